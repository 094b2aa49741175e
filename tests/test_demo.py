# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""The demo: its frames, stack and report, the folder it writes to, and the
output README shows at its top.
"""

import os
import re
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import REPO, Guard, assert_error, frame, run_main, write


def test_demo_removes_the_trail(tmp_path, capsys):
    directory = str(tmp_path / 'demo')
    assert imgstack.main(['--demo', directory]) == 0
    err = capsys.readouterr().err
    assert 'satellite trail' in err and 'values rejected' in err
    assert 'above the sky there' in err and '--normalize multiplicative (stacked.tif)' in err
    assert 'sky drifts' in err and 'frame backgrounds span' in err  # the drift warning
    frames = np.stack([tifffile.imread(os.path.join(directory, f'frame{i:02d}.tif'))
                       for i in range(12)]).astype(np.float64)
    levels = np.median(frames, axis=(1, 2))
    assert levels.max() - levels.min() > 100  # the sky drifts
    stacked = tifffile.imread(os.path.join(directory, 'stacked.tif')).astype(np.float64)
    others = np.median(np.delete(frames, 3, axis=0), axis=0)
    trail = frames[3] - others > 0.2 * 65535
    assert trail.sum() > 200  # the trail is there in frame 3 ...
    plain = frames.mean(axis=0)
    excess_plain = (plain - others)[trail].mean()
    assert excess_plain > 1000  # ... and in the plain average ...
    # ... but not in the stack: there it is the mean of the other frames,
    # each scaled to the mean sky level (the clouds and the sky scale them)
    normalized = frames * (levels.mean() / levels)[:, None, None]
    expected = np.delete(normalized, 3, axis=0).mean(axis=0)
    assert abs((stacked - expected)[trail].mean()) < 0.01 * excess_plain
    png = imagecodecs.png_decode(Path(directory, 'compare.png').read_bytes())
    assert png.shape[0] == 240 and png.shape[1] > 4 * 320
    counts = tifffile.imread(os.path.join(directory, 'rejected.tif'), key=0)
    assert counts.dtype == np.uint16 and counts[trail].mean() >= 0.9


def test_demo_refuses_a_folder_in_use(tmp_path, capsys):
    """--demo DIR does not overwrite a user's files without --force."""
    folder = tmp_path / 'mine'
    folder.mkdir()
    (folder / 'stacked.tif').write_bytes(b'my own stack')
    os.utime(folder / 'stacked.tif', ns=(1_000_000_000, 1_000_000_000))
    guard = Guard(folder / 'stacked.tif')
    result = run_main(capsys, '--demo', folder)
    line = assert_error(result, guard, str(folder))
    assert line == f'imgstack: error: {folder}: is not empty (use --force to write the demo there)'
    assert os.listdir(folder) == ['stacked.tif']
    again = run_main(capsys, '--demo', folder, '--force')
    assert again.status == 0, again.err
    assert tifffile.imread(folder / 'stacked.tif').ndim == 2


@pytest.mark.parametrize('extra', [['out.tif'], ['out.tif', 'a.tif', 'b.tif']],
                         ids=['OUTPUT', 'OUTPUT INPUT'])
def test_demo_with_output_is_a_usage_error(tmp_path, capsys, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    write(tmp_path / 'b.tif', frame(2))
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--demo', 'demo', *extra)
    assert_error(result, guard, code=2, words=['demo'], only_line=False)
    assert 'usage:' in result.err
    assert not (tmp_path / 'demo').exists()


def readme_demo_output():
    """The demo's output as README.rst shows it."""
    text = Path(REPO, 'README.rst').read_text(encoding='utf-8').split('\n')
    start = next(i for i, line in enumerate(text) if line.startswith('    imgstack: warning:'))
    lines = []
    for line in text[start:]:
        if not line.startswith('    '):
            break
        lines.append(line[4:])
    return lines


def test_readme_shows_what_the_demo_prints(tmp_path, capsys, monkeypatch):
    """Every line of README's excerpt of the demo's output is printed, in
    that order (the summary's time and rate aside, which vary)."""
    shown = readme_demo_output()
    assert len(shown) >= 6
    monkeypatch.chdir(tmp_path)
    assert imgstack.main(['--demo', 'demo']) == 0
    timing = re.compile(r', [\d.]+ s, \d+ MB/s$')
    printed = iter(timing.sub('', line) for line in capsys.readouterr().err.splitlines())
    for line in shown:  # each found after the one before
        assert timing.sub('', line) in printed, line
