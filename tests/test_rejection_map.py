# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""The rejection map: one grayscale uint16 count per pixel, then the counts
rejected low and high, compressed like OUTPUT (README, Files).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import child, run_main, write


def test_rejection_map_counts_injected_outliers(tmp_path):
    # 499 and 501 in turn: one std from their mean, never rejected at 3
    stack = np.empty((30, 6, 7, 3), np.uint16)
    stack[0::2], stack[1::2] = 499, 501
    stack[3, 1, 2, 0] = 9000
    stack[5, 1, 2, 0] = 9100  # two outliers at one point
    stack[7, 4, 4, 2] = 10
    stack[:, 0, 0, 1] = 500  # flat: nothing to reject
    paths = []
    for i, frame in enumerate(stack):
        paths.append(str(tmp_path / f'in{i:02d}.tif'))
        tifffile.imwrite(paths[-1], frame, photometric='rgb', metadata=None)
    out, rmap = str(tmp_path / 'out.tif'), str(tmp_path / 'map.tif')
    assert imgstack.main(['-q', '-s', '3', '-i', '5', '--rejection-map', rmap, out, *paths]) == 0
    # one count per pixel, summed over its samples; then the low and the
    # high ones
    counts, low, high = (tifffile.imread(rmap, key=k) for k in range(3))
    assert counts.dtype == np.uint16 and counts.shape == stack.shape[1:3]
    want = np.zeros(stack.shape[1:3], np.uint16)
    want[1, 2] = 2
    want[4, 4] = 1
    np.testing.assert_array_equal(counts, want)
    want_low = np.zeros_like(want)
    want_low[4, 4] = 1
    np.testing.assert_array_equal(low, want_low)
    np.testing.assert_array_equal(high, want - want_low)


def test_rejection_map_planar_and_streamed(tmp_path):
    stack = np.empty((10, 3, 23, 9), np.uint16)
    stack[0::2], stack[1::2] = 499, 501
    stack[2, 1, 20, 3] = 60000
    paths = []
    for i, frame in enumerate(stack):
        paths.append(str(tmp_path / f'in{i:02d}.tif'))
        tifffile.imwrite(paths[-1], frame, photometric='rgb', planarconfig='separate',
                         metadata=None)
    out, rmap = str(tmp_path / 'out.tif'), str(tmp_path / 'map.tif')
    imgstack.stack_files(paths, out, sigma=2.5, iterations=5, rows=4, rejection_map=rmap)
    counts = tifffile.imread(rmap, key=0)
    assert counts.shape == (23, 9) and counts.sum() == 1 and counts[20, 3] == 1
    assert tifffile.imread(rmap, key=2)[20, 3] == 1  # high


@pytest.mark.parametrize('layout', ['gray', 'rgb', 'planar'])
def test_rejection_map_compressed_with_the_output(tmp_path, layout):
    shape = {'gray': (120, 100), 'rgb': (120, 100, 3), 'planar': (3, 120, 100)}[layout]
    stack = np.empty((10, *shape), np.uint16)
    stack[0::2], stack[1::2] = 499, 501
    stack[(4, 1, 7, 2)[:stack.ndim]] = 60000
    kwargs = {'gray': {}, 'rgb': {'photometric': 'rgb'},
              'planar': {'photometric': 'rgb', 'planarconfig': 'separate'}}[layout]
    paths = []
    for i, frame in enumerate(stack):
        paths.append(str(tmp_path / f'in{i:02d}.tif'))
        tifffile.imwrite(paths[-1], frame, metadata=None, **kwargs)
    plain_map, packed_map = str(tmp_path / 'plain.tif'), str(tmp_path / 'packed.tif')
    imgstack.stack_files(paths, str(tmp_path / 'a.tif'), rows=7, rejection_map=plain_map)
    imgstack.stack_files(paths, str(tmp_path / 'b.tif'), rows=7, rejection_map=packed_map,
                         compress='zstd')
    for page in range(3):  # all, low, high
        np.testing.assert_array_equal(tifffile.imread(packed_map, key=page),
                                      tifffile.imread(plain_map, key=page))
    assert tifffile.imread(packed_map, key=0).sum() == 1
    assert tifffile.imread(packed_map, key=2).sum() == 1  # the outlier is high
    with tifffile.TiffFile(packed_map) as tif:
        assert [p.compression for p in tif.pages] == [50000] * 3
    assert os.path.getsize(packed_map) < os.path.getsize(plain_map) / 4
    assert not [f for f in os.listdir(tmp_path) if f.startswith('.imgstack-')]


def test_rejection_map_of_rgb_is_gray_counts(tmp_path, capsys):
    """One count per pixel (the sum over its samples), grayscale uint16, no
    extra samples; pages 2 and 3 hold the low and high counts."""
    stack = np.empty((30, 6, 7, 3), np.uint16)
    stack[0::2], stack[1::2] = 499, 501  # one SD from their mean: kept at 2.5
    stack[3, 1, 2, 0] = 9000
    stack[5, 1, 2, 2] = 9100  # two high outliers in one pixel
    stack[7, 4, 4, 1] = 10  # one low outlier
    paths = [write(tmp_path / f'in{i:02d}.tif', image, photometric='rgb')
             for i, image in enumerate(stack)]
    out, rmap = tmp_path / 'out.tif', tmp_path / 'rejected.tif'
    result = run_main(capsys, '-q', '--rejection-map', rmap, out, *paths)
    assert result.status == 0, result.err
    total = np.zeros((6, 7), np.uint16)
    total[1, 2], total[4, 4] = 2, 1
    low, high = np.zeros_like(total), np.zeros_like(total)
    low[4, 4], high[1, 2] = 1, 2
    with tifffile.TiffFile(rmap) as tif:
        assert len(tif.pages) == 3
        pages = [page.asarray() for page in tif.pages]
        for page in tif.pages:
            assert page.shape == (6, 7) and page.dtype == np.uint16
            assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
            assert page.extrasamples == ()
    np.testing.assert_array_equal(pages[0], total)
    np.testing.assert_array_equal(pages[1], low)
    np.testing.assert_array_equal(pages[2], high)
    np.testing.assert_array_equal(pages[1] + pages[2], pages[0])


@pytest.mark.skipif(not shutil.which('identify'), reason='ImageMagick identify not installed')
def test_rejection_map_seen_by_imagemagick(tmp_path, capsys):
    stack = np.full((9, 5, 6, 3), 500, np.uint16)
    stack[2, 1, 1, 0] = 60000
    paths = [write(tmp_path / f'in{i}.tif', image, photometric='rgb')
             for i, image in enumerate(stack)]
    rmap = tmp_path / 'rejected.tif'
    result = run_main(capsys, '-q', '--rejection-map', rmap, tmp_path / 'out.tif', *paths)
    assert result.status == 0, result.err
    done = child('identify', '-format', r'%[colorspace] %z %[channels]\n', f'{rmap}[0]')
    assert done.returncode == 0, done.stderr
    colorspace, depth, channels = done.stdout.split()[:3]
    assert (colorspace, depth) == ('Gray', '16'), done.stdout
    assert channels.startswith('gray') and 'graya' not in channels, done.stdout
