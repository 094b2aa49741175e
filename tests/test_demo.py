# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""A newcomer's first five minutes: demo, messages, rejection map, README."""

import io
import os
import re
import shlex

import imagecodecs
import numpy as np
import pytest
import tifffile

import imgstack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_removes_the_trail(tmp_path, capsys):
    directory = str(tmp_path / 'demo')
    assert imgstack.main(['--demo', directory]) == 0
    err = capsys.readouterr().err
    assert 'satellite trail' in err and 'values rejected' in err
    assert 'above the sky there' in err and '--normalize additive (stacked.tif)' in err
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
    # each moved to the mean sky level
    normalized = frames - levels[:, None, None] + levels.mean()
    expected = np.delete(normalized, 3, axis=0).mean(axis=0)
    assert abs((stacked - expected)[trail].mean()) < 0.01 * excess_plain
    png = imagecodecs.png_decode(open(os.path.join(directory, 'compare.png'), 'rb').read())
    assert png.shape[0] == 240 and png.shape[1] > 4 * 320
    counts = tifffile.imread(os.path.join(directory, 'rejected.tif'), key=0)
    assert counts.dtype == np.uint16 and counts[trail].mean() >= 0.9


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
        tifffile.imwrite(paths[-1], frame, photometric='rgb', planarconfig='separate', metadata=None)
    out, rmap = str(tmp_path / 'out.tif'), str(tmp_path / 'map.tif')
    imgstack.stack_files(paths, out, sigma=2.5, iterations=5, rows=4, rejection_map=rmap)
    counts = tifffile.imread(rmap, key=0)
    assert counts.shape == (23, 9) and counts.sum() == 1 and counts[20, 3] == 1
    assert tifffile.imread(rmap, key=2)[20, 3] == 1  # high


def test_quiet_prints_nothing(tmp_path, capsys):
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], np.full((4, 5), i, np.uint8))
    assert imgstack.main(['-q', str(tmp_path / 'out.tif'), *paths]) == 0
    captured = capsys.readouterr()
    assert captured.out == '' and captured.err == ''
    # without -q: progress and the summary
    assert imgstack.main([str(tmp_path / 'out2.tif'), *paths]) == 0
    err = capsys.readouterr().err
    assert '100%  rows 4/4' in err and 'stacked 3 frames into' in err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal():
    stream = FakeTerminal()
    report = imgstack.Reporter(1, stream)
    report.start()
    for done in (10, 20, 40):
        report.progress(done, 40, 24, done * 1000)
    text = stream.getvalue()
    assert text.count('\r') == 3 and text.endswith('\n')
    assert '[######' in text and 'rows 40/40' in text and '24 frames' in text and 'MB/s' in text


def test_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    report = imgstack.Reporter(1, stream)
    report.start()
    for done in range(1, 101):
        report.progress(done, 100, 5, done)
    lines = stream.getvalue().splitlines()
    assert 10 <= len(lines) <= 12 and '\r' not in stream.getvalue()
    quiet = io.StringIO()
    imgstack.Reporter(0, quiet).progress(5, 10, 2, 3)
    assert quiet.getvalue() == ''


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exc:
        imgstack.main(['-h'])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for group in ('rejection and combination:', 'a night of frames:', 'memory:', 'output:',
                  'messages:', 'examples:'):
        assert group in text
    prog = imgstack.program_name()
    assert '(default 2.5)' in text and f'{prog} -s 2.5 -i 3 out.tif in*.tif' in text


def readme_test_command():
    text = open(os.path.join(ROOT, 'README.rst'), encoding='utf-8').read()
    block = text.split('.. test-command', 1)[1]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip().startswith('python')]
    return lines[0]


def test_readme_test_command_is_what_ci_runs():
    command = readme_test_command()
    assert command.startswith('python -m pytest')
    ci = open(os.path.join(ROOT, '.ci', 'run'), encoding='utf-8').read()
    run_lines = [ln for ln in ci.splitlines() if '-m pytest' in ln and not ln.lstrip().startswith('#')]
    assert len(run_lines) == 1
    # .ci/run calls the same command with its own environment's python
    ci_args = shlex.split(run_lines[0])[1:]
    assert ci_args == shlex.split(command)[1:]


def test_readme_opens_with_the_two_setup_commands():
    text = open(os.path.join(ROOT, 'README.rst'), encoding='utf-8').read()
    head = text[:2500]
    assert re.search(r'pip install -r requirements.txt.*&&.*imgstack.py --demo', head, re.S)
    assert 'requirements-test.txt' in head and readme_test_command() in head


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


def readme_demo_output():
    """The demo's output as README.rst shows it."""
    text = open(os.path.join(ROOT, 'README.rst'), encoding='utf-8').read().split('\n')
    start = next(i for i, line in enumerate(text) if line.startswith('    imgstack: warning:'))
    lines = []
    for line in text[start:]:
        if not line.startswith('    '):
            break
        lines.append(line[4:])
    return lines


def test_readme_shows_what_the_demo_prints(tmp_path, capsys, monkeypatch):
    """Every line of README's demo output is what the program prints (the
    summary's time and rate aside, which vary)."""
    shown = readme_demo_output()
    assert len(shown) > 10
    monkeypatch.chdir(tmp_path)
    assert imgstack.main(['--demo', 'demo']) == 0
    printed = [line for line in capsys.readouterr().err.splitlines() if '%  rows' not in line]
    timing = re.compile(r', [\d.]+ s, \d+ MB/s$')
    assert [timing.sub('', line) for line in printed] == [timing.sub('', line) for line in shown]
