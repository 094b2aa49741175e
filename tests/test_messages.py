# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""What the command prints: progress, the summary, -q, help and warnings,
naming the program as it was invoked (README, Use).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import IMGSTACK, FakeTerminal, child, inputs_in, leftovers, run_main

# -- progress and the summary ------------------------------------------------


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


def test_progress_bar_fits_a_narrow_terminal(monkeypatch):
    monkeypatch.setenv('COLUMNS', '60')
    monkeypatch.setattr(shutil, 'get_terminal_size',
                        lambda *a, **k: os.terminal_size((60, 24)))
    stream = FakeTerminal()
    report = imgstack.Reporter(1, stream)
    report.start()
    for done in range(1, 41):
        report.progress(done, 40, 1000, done * 10**9)
    text = stream.getvalue()
    assert '\r' in text, 'not redrawn in place'
    assert text.count('\n') <= 1, f'{text.count(chr(10))} lines: the bar wraps'
    widths = [len(part) for part in re.split(r'[\r\n]', text)]
    assert max(widths) <= 60, f'a line of {max(widths)} columns in 60'


def test_progress_reaches_100_percent_with_compression(tmp_path, capsys):
    """With -c the progress lines (and the library's callback) end at 100%."""
    paths = inputs_in(tmp_path / 'in')
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-c', 'zlib', '-r', '4', '--center', 'median', out, *paths)
    assert result.status == 0, result.err
    percents = [int(m.group(1)) for line in result.lines
                if (m := re.match(r'\s*\[?[#\s]*\]?\s*(\d+)%', line))]
    assert percents, result.err
    assert percents[-1] == 100, result.err
    calls: list[tuple[int, int]] = []
    imgstack.stack_files(paths, str(tmp_path / 'lib.tif'), rows=4, compress='zlib',
                         center='median', progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] > 0, calls[-3:]


@pytest.mark.parametrize('when', ['at once', 'after a line'])
def test_stderr_broken_pipe(tmp_path, when):
    """``imgstack out.tif in*.tif 2>&1 | head -n 2``: when stderr goes
    away, progress stops and the stack is finished: exit 0, OUTPUT written."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir, shape=(400, 300))
    out = outdir / 'out.tif'
    env = {**os.environ, 'PYTHONDONTWRITEBYTECODE': '1'}
    proc = subprocess.Popen([sys.executable, IMGSTACK, '-r', '4', '--center', 'median',
                             str(out), *paths],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        if when == 'after a line':
            proc.stderr.readline()
        proc.stderr.close()
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0, f'exit {status}'
    assert tifffile.imread(out).shape == (400, 300)
    assert leftovers(outdir) == []


# -- help --------------------------------------------------------------------


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exc:
        imgstack.main(['-h'])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for group in ('rejection and combination:', 'a night of frames:', 'memory:', 'output:',
                  'messages:', 'examples:'):
        assert group in text
    prog = imgstack._program_name()
    assert '2.5 for sigma)' in text and f'{prog} -s 2.5 -i 3 out.tif in*.tif' in text


@pytest.mark.parametrize(('name', 'prog'),
                         [(None, 'imgstack.py'), ('imgstack', 'imgstack'), ('stacker', 'imgstack')],
                         ids=['script', 'command', 'other name'])
def test_help_names_the_program_as_invoked(tmp_path, name, prog):
    script = IMGSTACK
    if name is not None:
        script = str(tmp_path / name)
        os.symlink(IMGSTACK, script)
    done = child(sys.executable, script, '-h')
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f'usage: {prog} '), done.stdout[:80]
    missing = child(sys.executable, script, str(tmp_path / 'out.tif'),
                    str(tmp_path / 'missing.tif'), str(tmp_path / 'other.tif'))
    assert missing.returncode == 1
    assert missing.stderr.startswith('imgstack: error:'), missing.stderr


@pytest.mark.parametrize(('argv0', 'prog'), [('/usr/local/bin/imgstack.py', 'imgstack.py'),
                                             ('/usr/bin/imgstack', 'imgstack'),
                                             ('/usr/bin/pytest', 'imgstack')])
def test_main_names_the_program_as_invoked(capsys, monkeypatch, argv0, prog):
    monkeypatch.setattr(sys, 'argv', [argv0])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        imgstack.main(['-h'])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f'usage: {prog} ')


# -- warnings ----------------------------------------------------------------


def test_command_line_prints_warnings(tmp_path, capsys):
    paths = inputs_in(tmp_path / 'in')
    result = run_main(capsys, tmp_path / 'out.tif', *paths)
    assert result.status == 0, result.err
    warned = [line for line in result.lines if line.startswith('imgstack: warning:')]
    assert any('never reject' in line for line in warned), result.err
    assert not [line for line in result.lines if line.startswith('warning')], result.err
    quiet = run_main(capsys, '-q', tmp_path / 'quiet.tif', *paths)
    assert quiet.status == 0 and quiet.err == ''
