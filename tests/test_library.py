# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""imgstack as a library: what stack_files takes, refuses and reports,
warnings through `warnings`, progress callbacks and return_mask (README,
Library use).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import count_reads, frame, inputs_in, write

# few frames: the warnings that settings can hardly reject are expected
few_frames = pytest.mark.filterwarnings('ignore::UserWarning')


# -- inputs and settings -----------------------------------------------------


@few_frames
def test_library_takes_paths(tmp_path):
    paths = [Path(p) for p in inputs_in(tmp_path / 'in')]
    out, rmap = tmp_path / 'out.tif', tmp_path / 'rejected.tif'
    stats = imgstack.stack_files(paths, out, rejection_map=rmap, center='median')
    assert stats.frames == 3
    assert tifffile.imread(out).shape == (40, 50)
    assert rmap.exists()


@few_frames
@pytest.mark.parametrize('kind', ['str', 'Path'])
def test_library_single_pattern(tmp_path, kind):
    """A single str or Path is one wildcard (or one path), not a sequence of
    characters."""
    inputs_in(tmp_path / 'in')
    pattern = str(tmp_path / 'in' / 'in*.tif')
    out = tmp_path / 'out.tif'
    stats = imgstack.stack_files(pattern if kind == 'str' else Path(pattern), str(out),
                                 center='median')
    assert stats.frames == 3
    assert tifffile.imread(out).shape == (40, 50)


@pytest.mark.parametrize('kind', ['str', 'Path'])
def test_library_single_path(tmp_path, kind):
    path = inputs_in(tmp_path / 'in', count=1)[0]
    with pytest.raises(imgstack.ImgstackError) as info:
        imgstack.stack_files(path if kind == 'str' else Path(path), str(tmp_path / 'out.tif'))
    message = str(info.value)
    assert path in message and re.search(r'two or more|at least two', message), message
    assert 'directory' not in message


def test_library_sigma_named(tmp_path):
    paths = inputs_in(tmp_path / 'in')
    with pytest.raises(imgstack.ImgstackError,
                       match=r'(^|[^_\w])sigma must be finite and > 0, not -1'):
        imgstack.stack_files(paths, str(tmp_path / 'out.tif'), sigma=-1)
    with pytest.raises((imgstack.ImgstackError, ValueError),
                       match=r'(^|[^_\w])sigma must be finite and > 0, not -1'):
        imgstack.sigma_clipped_mean(np.zeros((3, 2)), sigma=-1)
    assert not (tmp_path / 'out.tif').exists()


@pytest.mark.parametrize(
    ('keyword', 'value', 'message'),
    [
        ('iterations', 2.0, r'^iterations must be an integer >= 0, not 2\.0$'),
        ('rows', 2.5, r'^rows must be an integer >= 1, not 2\.5$'),
        ('memory', float('inf'), r'^memory must be a size in bytes.* not inf'),
        ('compress', ('zstd', 99), r'\bcompress\b'),
    ],
)
def test_library_wrong_types_refused_at_the_door(tmp_path, monkeypatch, keyword, value, message):
    """Wrong types fail with ImgstackError naming the argument, before any
    input is read (not TypeError, OverflowError or KeyError deep inside)."""
    paths = inputs_in(tmp_path / 'in')
    opened = count_reads(monkeypatch)
    with pytest.raises(imgstack.ImgstackError, match=message):
        imgstack.stack_files(paths, str(tmp_path / 'out.tif'), center='median', **{keyword: value})
    assert opened == [], f'inputs read before the check: {opened}'
    assert not (tmp_path / 'out.tif').exists()


@few_frames
def test_library_errors_name_the_keyword(tmp_path):
    """Through the library the hint says force=True, not --force."""
    a, b = write(tmp_path / 'a.tif', frame(1)), write(tmp_path / 'b.tif', frame(2))
    out = tmp_path / 'out.tif'
    out.write_bytes(b'precious')
    with pytest.raises(imgstack.ImgstackError) as info:
        imgstack.stack_files([a, b], str(out), center='median')
    assert 'force=True' in str(info.value) and '--force' not in str(info.value)
    assert out.read_bytes() == b'precious'


# -- what it reports ---------------------------------------------------------


def test_library_warnings(tmp_path):
    """Warnings reach library users through `warnings`."""
    assert issubclass(imgstack.ImgstackWarning, UserWarning)
    paths = inputs_in(tmp_path / 'in')
    with pytest.warns(imgstack.ImgstackWarning, match='never reject'):
        imgstack.stack_files(paths, str(tmp_path / 'out1.tif'))
    pages = str(tmp_path / 'in' / 'pages.tif')
    with tifffile.TiffWriter(pages) as tw:
        for seed in (7, 8, 9):
            tw.write(frame(seed, shape=(40, 50)), metadata=None)
    with pytest.warns(imgstack.ImgstackWarning, match=re.escape(pages)):  # a group of one
        imgstack.stack_files([*paths, pages], str(tmp_path / 'out2.tif'), center='median',
                             group=5)


@few_frames
@pytest.mark.parametrize('compress', [None, 'zlib'])
def test_progress_callback(tmp_path, compress):
    paths = inputs_in(tmp_path / 'in')
    calls: list[tuple[int, int]] = []
    imgstack.stack_files(paths, str(tmp_path / 'out.tif'), rows=4, compress=compress,
                         center='median', progress=lambda done, total: calls.append((done, total)))
    assert calls, 'progress was never called'
    assert calls[-1] == (40, 40), calls[-3:]
    assert all(total == 40 for _, total in calls)
    dones = [done for done, _ in calls]
    assert dones == sorted(dones)


def test_return_mask_by_hand():
    stack = np.full((10, 2), 5.0)
    stack[9, 0] = 100.0  # 14.5 + 2.5 * 28.5 = 85.75 < 100: rejected
    stack[0, 1] = np.nan  # not valid: not kept, not counted as rejected
    result, rejected, kept = imgstack.sigma_clipped_mean(stack, return_mask=True)
    want = np.ones((10, 2), bool)
    want[9, 0] = want[0, 1] = False
    assert kept.dtype == bool and kept.shape == stack.shape
    np.testing.assert_array_equal(kept, want)
    np.testing.assert_array_equal(result, [5.0, 5.0])
    assert rejected == 1
    plain = imgstack.sigma_clipped_mean(stack)
    assert len(plain) == 2
