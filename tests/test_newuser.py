# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""What a new user hit in the first hour (issue 10), each point checked.

A photographer who forgets OUTPUT and follows the hint, files that come out
private, one clipping pass by default, a tool that cannot be installed as a
command, rough edges of the library, a rejection map that viewers show as
gray+alpha, a progress bar that wraps in a narrow terminal, and smaller
things: a PNG name, a folder as input, a file given twice, ``--centre``, a
missing dependency, a stack that cannot tell how it was made.  The exact
messages are those of spec_10_11.
"""

from __future__ import annotations

import inspect
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import imgstack
from test_errors import IMGSTACK, Guard, assert_error, frame, run_main, write
from test_faults import _count_reads

ROOT = os.path.dirname(IMGSTACK)


def inputs_in(directory: Path, count: int = 3, shape: tuple[int, ...] = (40, 50),
              **kwargs: Any) -> list[str]:
    """Write count stackable inputs into directory; return their paths."""
    directory.mkdir(exist_ok=True)
    return [write(directory / f'in{i}.tif', frame(i, shape=shape), **kwargs)
            for i in range(count)]


def child(*args: str, env: dict[str, str] | None = None, cwd: str | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a child process; return its status, stdout and stderr."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**os.environ, 'PYTHONDONTWRITEBYTECODE': '1', **(env or {})},
    )


# few frames: the warnings that settings can hardly reject are expected
few_frames = pytest.mark.filterwarnings('ignore::UserWarning')


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- 1. a frame lost by following the tool's own hint ------------------------------


FRAMES = ['f1.tif', 'f2.tif', 'f3.tif', 'f4.tif', 'f5.tif']


@pytest.fixture
def five_frames(tmp_path, monkeypatch):
    """f1.tif ... f5.tif and g.tif in the current folder."""
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate([*FRAMES, 'g.tif']):
        write(tmp_path / name, frame(i))
    return tmp_path


@pytest.mark.parametrize(
    ('argv', 'message'),
    [
        (FRAMES, 'f1.tif looks like one of the frames (f2.tif ... f5.tif): did you forget OUTPUT?'),
        (['-f', *FRAMES],
         'f1.tif looks like one of the frames (f2.tif ... f5.tif): did you forget OUTPUT?'),
        (['-f', 'f6.tif', *FRAMES],
         'f6.tif looks like one of the frames (f1.tif ... f5.tif): did you forget OUTPUT?'),
        (['--force', 'f1.tif', 'f2.tif', 'g.tif'],
         'f1.tif looks like one of the frames (f2.tif): did you forget OUTPUT?'),
    ],
    ids=['no force', 'force', 'new name', 'one match'],
)
def test_forgotten_output_refused(five_frames, capsys, argv, message):
    """``imgstack.py -f f*.tif`` replaced f1.tif with the stack of f2-f5."""
    guard = Guard(*[five_frames / name for name in [*FRAMES, 'g.tif', 'f6.tif']])
    result = run_main(capsys, '--center', 'median', *argv)
    line = assert_error(result, guard)
    assert line == f'imgstack: error: {message}'


@pytest.mark.parametrize('output', ['stack.tif', 'sub/f6.tif', 'F6.tif', 'f6.tiff'],
                         ids=['other name', 'other folder', 'other case', 'other extension'])
def test_output_like_a_frame_but_not_one(five_frames, capsys, output):
    """The counterpart: names that only look alike are accepted."""
    (five_frames / 'sub').mkdir()
    result = run_main(capsys, '-q', '--center', 'median', output, *FRAMES)
    assert result.status == 0, result.err
    assert tifffile.imread(five_frames / output).shape == (20, 30)


def test_existing_output_names_both_ways_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    write(tmp_path / 'b.tif', frame(2))
    (tmp_path / 'out.tif').write_bytes(b'precious')
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--center', 'median', 'out.tif', 'a.tif', 'b.tif')
    line = assert_error(result, guard)
    assert line == 'imgstack: error: out.tif exists: name another OUTPUT, or add --force to replace it'


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


# -- 2. outputs are private ------------------------------------------------------


@pytest.mark.parametrize('existing', [False, True], ids=['new', 'replaced'])
@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002], ids=['022', '077', '002'])
def test_output_mode_follows_umask(tmp_path, capsys, umask, existing):
    """OUTPUT and the rejection map get 0666 & ~umask (as cp and tifffile
    do), also when -f replaces a file."""
    paths = inputs_in(tmp_path / 'in')
    out, rmap = tmp_path / 'out.tif', tmp_path / 'rejected.tif'
    args = ['-q', '--center', 'median', '--rejection-map', str(rmap)]
    if existing:
        for p in (out, rmap):
            p.write_bytes(b'old')
            os.chmod(p, 0o600 if umask != 0o077 else 0o644)
        args.append('-f')
    previous = os.umask(umask)
    try:
        result = run_main(capsys, *args, out, *paths)
    finally:
        os.umask(previous)
    assert result.status == 0, result.err
    for p in (out, rmap):
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode == 0o666 & ~umask, f'{p.name}: {oct(mode)} under umask {oct(umask)}'


# -- 3. one pass by default leaves residue ---------------------------------------


def test_default_iterations_is_five(tmp_path, capsys):
    for name in ('stack_files', 'sigma_clipped_mean', 'stack_array'):
        if not hasattr(imgstack, name):
            continue
        default = inspect.signature(getattr(imgstack, name)).parameters['iterations'].default
        assert default == 5, f'{name}: iterations={default!r}'
    # two outliers at one point: the first pass rejects 1000, the second 300
    rng = np.random.default_rng(3)
    stack = rng.integers(98, 103, (20, 4, 5)).astype(np.uint16)
    stack[0, 1, 1], stack[1, 1, 1] = 1000, 300
    once, _ = imgstack.sigma_clipped_mean(stack, iterations=1)
    five, _ = imgstack.sigma_clipped_mean(stack, iterations=5)
    assert once[1, 1] > 105 > five[1, 1]
    paths = [write(tmp_path / f'in{i:02d}.tif', image) for i, image in enumerate(stack)]
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', out, *paths)
    assert result.status == 0, result.err
    np.testing.assert_array_equal(tifffile.imread(out), imgstack.to_dtype(five, stack.dtype))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        imgstack.main(['-h'])
    text = ' '.join(capsys.readouterr().out.split())
    match = re.search(r'--iterations N\b(.*?)\(default (\w+)\)', text)
    assert match and match.group(2) == '5', text


# -- 4. install as a command -----------------------------------------------------


def _minimums(requirements: list[str]) -> dict[str, str]:
    """name -> minimum version of requirement strings like 'numpy>=1.24'."""
    found = {}
    for text in requirements:
        match = re.match(r'\s*([A-Za-z0-9._-]+)\s*>=\s*([0-9][^,;\s]*)', text)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


REQUIRED = _minimums(Path(ROOT, 'requirements.txt').read_text().splitlines())


def test_requirements_name_the_three():
    assert set(REQUIRED) == {'numpy', 'tifffile', 'imagecodecs'}, REQUIRED


def test_shebang_and_executable_bit():
    with open(IMGSTACK, encoding='utf-8') as fh:
        assert fh.readline().rstrip('\n') == '#!/usr/bin/env python3'
    assert os.stat(IMGSTACK).st_mode & stat.S_IXUSR, 'imgstack.py is not executable'
    # run through the shebang, with this interpreter's folder first on PATH
    bindir = os.path.dirname(sys.executable)
    if not os.path.exists(os.path.join(bindir, 'python3')):
        pytest.skip(f'no python3 beside {sys.executable}')
    done = child(IMGSTACK, '--version', env={'PATH': f'{bindir}{os.pathsep}{os.environ["PATH"]}'})
    assert done.returncode == 0, done.stderr
    assert imgstack.__version__ in done.stdout + done.stderr


def test_inline_script_metadata():
    """PEP 723: ``pipx run imgstack.py`` / ``uv run`` need no set-up."""
    text = Path(IMGSTACK).read_text(encoding='utf-8')
    pattern = r'(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$'
    blocks = [m for m in re.finditer(pattern, text) if m.group('type') == 'script']
    assert len(blocks) == 1, 'no (or more than one) "# /// script" block'
    block = blocks[0]
    content = ''.join(line[2:] if line.startswith('# ') else line[1:]
                      for line in block.group('content').splitlines(keepends=True))
    metadata = tomllib.loads(content)
    assert _minimums(metadata['dependencies']) == REQUIRED
    first_import = re.search(r'(?m)^(import|from) ', text)
    assert first_import and block.start() < first_import.start(), 'the block is not at the top'


def test_pyproject():
    path = Path(ROOT, 'pyproject.toml')
    assert path.exists(), 'no pyproject.toml: pip install . fails'
    data = tomllib.loads(path.read_text(encoding='utf-8'))
    project = data['project']
    assert project['name'] == 'imgstack'
    assert project['scripts']['imgstack'] == 'imgstack:main'
    assert _minimums(project['dependencies']) == REQUIRED
    if 'version' in project:
        assert project['version'] == imgstack.__version__
    else:
        assert 'version' in project.get('dynamic', [])
    assert 'build-system' in data
    assert data['tool']['setuptools']['py-modules'] == ['imgstack']


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


# -- 5. the library --------------------------------------------------------------


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
    with pytest.raises(imgstack.ImgstackError, match=r'(^|[^_\w])sigma must be finite and > 0, not -1'):
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
    opened = _count_reads(monkeypatch)
    with pytest.raises(imgstack.ImgstackError, match=message):
        imgstack.stack_files(paths, str(tmp_path / 'out.tif'), center='median', **{keyword: value})
    assert opened == [], f'inputs read before the check: {opened}'
    assert not (tmp_path / 'out.tif').exists()


def test_library_warnings(tmp_path):
    """Warnings reach library users through `warnings`."""
    assert issubclass(imgstack.ImgstackWarning, UserWarning)
    paths = inputs_in(tmp_path / 'in')
    with pytest.warns(imgstack.ImgstackWarning, match='never reject'):
        imgstack.stack_files(paths, str(tmp_path / 'out1.tif'))
    pages = str(tmp_path / 'in' / 'pages.tif')
    with tifffile.TiffWriter(pages) as tw:
        tw.write(frame(7, shape=(40, 50)), metadata=None)
        tw.write(frame(8, shape=(40, 50)), metadata=None)
    with pytest.warns(imgstack.ImgstackWarning, match=re.escape(pages)):
        imgstack.stack_files([*paths, pages], str(tmp_path / 'out2.tif'), center='median')


def test_command_line_prints_warnings(tmp_path, capsys):
    paths = inputs_in(tmp_path / 'in')
    result = run_main(capsys, tmp_path / 'out.tif', *paths)
    assert result.status == 0, result.err
    warned = [line for line in result.lines if line.startswith('imgstack: warning:')]
    assert any('never reject' in line for line in warned), result.err
    assert not [line for line in result.lines if line.startswith('warning')], result.err
    quiet = run_main(capsys, '-q', tmp_path / 'quiet.tif', *paths)
    assert quiet.status == 0 and quiet.err == ''


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


# -- 6. the rejection map ----------------------------------------------------------


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


# -- 7. the progress bar -----------------------------------------------------------


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


def test_interrupt_message_on_a_new_line(tmp_path, monkeypatch):
    """After Ctrl-C on a terminal the message starts on a line of its own,
    not after the bar (``^Cimgstack: interrupted``)."""
    paths = inputs_in(tmp_path / 'in')
    out = tmp_path / 'out.tif'
    calls = []
    original = imgstack.clip_points

    def clip_points(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(imgstack, 'clip_points', clip_points)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    status = imgstack.main(['-r', '4', '--center', 'median', str(out), *paths])
    text = terminal.getvalue()
    assert status == 130, text
    at = text.find('imgstack: interrupted')
    assert at >= 0, repr(text)
    assert at == 0 or text[at - 1] == '\n', f'the message starts mid-line: {text!r}'
    assert not out.exists()


# -- 8. smaller things -------------------------------------------------------------


@pytest.mark.parametrize('name', ['out.png', 'out.jpg', 'out.jpeg', 'out.fits'])
def test_non_tiff_output_refused(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    write(tmp_path / 'b.tif', frame(2))
    guard = Guard(tmp_path / name)
    result = run_main(capsys, '--center', 'median', name, 'a.tif', 'b.tif')
    line = assert_error(result, guard)
    assert line == f'imgstack: error: {name}: imgstack writes TIFF: name OUTPUT .tif or .tiff'


def test_non_tiff_rejection_map_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    write(tmp_path / 'b.tif', frame(2))
    guard = Guard(tmp_path / 'out.tif', tmp_path / 'map.png')
    result = run_main(capsys, '--center', 'median', '--rejection-map', 'map.png',
                      'out.tif', 'a.tif', 'b.tif')
    line = assert_error(result, guard, 'map.png')
    assert line.startswith('imgstack: error: map.png: imgstack writes TIFF'), line


def test_directory_input_suggests_a_pattern(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    (tmp_path / 'frames').mkdir()
    write(tmp_path / 'frames' / 'b.tif', frame(2))
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--center', 'median', 'out.tif', 'a.tif', 'frames')
    line = assert_error(result, guard)
    assert line == 'imgstack: error: frames: is a directory; did you mean frames/*.tif?'


@pytest.mark.parametrize('spelling', ['same', './', 'hard link', 'symlink'])
def test_same_file_twice_refused(tmp_path, capsys, monkeypatch, spelling):
    """The same file twice would silently double its weight."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    write(tmp_path / 'b.tif', frame(2))
    other = {'same': 'b.tif', './': './b.tif', 'hard link': 'link.tif',
             'symlink': 'sym.tif'}[spelling]
    if spelling == 'hard link':
        os.link('b.tif', 'link.tif')
    elif spelling == 'symlink':
        os.symlink('b.tif', 'sym.tif')
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--center', 'median', 'out.tif', 'a.tif', 'b.tif', other)
    line = assert_error(result, guard, 'b.tif', other)
    assert line in (f'imgstack: error: {other}: given twice (also as b.tif)',
                    f'imgstack: error: b.tif: given twice (also as {other})'), line


def test_centre_suggests_center(tmp_path, capsys):
    a, b = write(tmp_path / 'a.tif', frame(1)), write(tmp_path / 'b.tif', frame(2))
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--centre', 'median', tmp_path / 'out.tif', a, b)
    assert_error(result, guard, code=2, only_line=False)
    assert 'did you mean --center?' in result.err, result.err


@pytest.mark.parametrize('module', ['numpy', 'tifffile', 'imagecodecs'])
def test_missing_dependency_one_line(tmp_path, module):
    """Without numpy, tifffile or imagecodecs even -h printed a traceback."""
    fake = tmp_path / 'fake' / module
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text(
        f'raise ModuleNotFoundError("No module named {module!r}", name={module!r})\n')
    done = child(sys.executable, IMGSTACK, '-h', env={'PYTHONPATH': str(tmp_path / 'fake')})
    assert 'Traceback' not in done.stderr, done.stderr
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stderr.count('\n') == 1, done.stderr
    assert done.stderr.startswith('imgstack: error:'), done.stderr
    assert module in done.stderr and 'pip install' in done.stderr, done.stderr


@pytest.mark.parametrize(('args', 'settings'),
                         [([], '-s 2.5 -i 5'), (['--center', 'median'], '--center median')],
                         ids=['defaults', 'median'])
def test_output_says_how_it_was_made(tmp_path, capsys, args, settings):
    paths = inputs_in(tmp_path / 'in')
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', *args, out, *paths)
    assert result.status == 0, result.err
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages.first.tags
        software = tags['Software'].value
        description = tags['ImageDescription'].value
    assert software == f'imgstack {imgstack.__version__}'
    assert description.startswith(f'imgstack {imgstack.__version__}'), description
    assert description.endswith('; 3 frames'), description
    assert settings in description, description
