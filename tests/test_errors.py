# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Bad input never costs data and never shows a traceback.

Every case below must end with one clear line on stderr that names the file
and the cause, exit status 1 (2 for argparse usage errors), no Python
traceback, no OUTPUT written, any existing OUTPUT untouched and no
temporary file (``.imgstack-*.tmp``) left in the output directory (README,
Errors and exit statuses; and Files, for what is read and what OUTPUT may
be).  Signals are tested in tests/test_signals.py.
"""

from __future__ import annotations

import faulthandler
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import (
    IS_ROOT,
    ROOT_REASON,
    FileLog,
    Guard,
    Result,
    assert_error,
    count_reads,
    frame,
    in_and_out_dirs,
    inputs_in,
    leftovers,
    pair,
    patch_tags,
    real_path,
    run_cli,
    run_main,
    segments,
    temporaries,
    write,
)

# -- inputs that cannot be read ----------------------------------------------


def test_input_missing(tmp_path, capsys):
    a, _ = pair(tmp_path)
    missing = str(tmp_path / 'missing.tif')
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, a, missing)
    assert_error(result, guard, missing, words=[r'no such file|does not exist|not found'])


def test_input_is_directory(tmp_path, capsys):
    a, _ = pair(tmp_path)
    directory = tmp_path / 'frames.tif'
    directory.mkdir()
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, a, directory)
    assert_error(result, guard, str(directory), words=['directory'])


def test_input_unreadable(tmp_path, capsys):
    a, b = pair(tmp_path)
    os.chmod(b, 0)
    try:
        if os.access(b, os.R_OK):
            pytest.skip(f'{ROOT_REASON}: a chmod 000 file stays readable')
        out = tmp_path / 'out.tif'
        guard = Guard(out)
        result = run_main(capsys, out, a, b)
        assert_error(result, guard, b, words=['permission'])
    finally:
        os.chmod(b, 0o644)


def test_input_unreadable_even_as_root(tmp_path, capsys, monkeypatch):
    # root reads a chmod 000 file: let the system refuse it instead, as it
    # would refuse anyone else
    a, b = pair(tmp_path)
    real_open = os.open

    def refusing_open(file, *args, **kwargs):
        if os.fspath(file) == b:
            raise PermissionError(13, 'Permission denied', b)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, 'open', refusing_open)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, a, b)
    assert_error(result, guard, b, words=['permission denied'])


@pytest.mark.parametrize('kind', ['png', 'text', 'empty', 'zeros'])
def test_input_not_a_tiff(tmp_path, capsys, kind):
    a, _ = pair(tmp_path)
    bad = tmp_path / 'bad.tif'
    if kind == 'png':
        bad.write_bytes(imagecodecs.png_encode(frame(3, dtype=np.uint8)))
    elif kind == 'text':
        bad.write_text('this is not an image\n')
    elif kind == 'empty':
        bad.write_bytes(b'')
    else:
        bad.write_bytes(bytes(1000))
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, a, bad)
    assert_error(result, guard, str(bad), words=[r'not a .*TIFF|empty'])


@pytest.mark.parametrize('compression', [None, 'zlib'])
@pytest.mark.parametrize('keep', [0.995, 0.5, 0.1, 12, 6])
def test_input_truncated(tmp_path, capsys, compression, keep):
    a = write(tmp_path / 'a.tif', frame(1), compression=compression, rowsperstrip=8)
    data = Path(write(tmp_path / 'b.tif', frame(2), compression=compression,
                      rowsperstrip=8)).read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    b = tmp_path / 'b.tif'
    b.write_bytes(data[:size])
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, a, b)
    assert_error(result, guard, str(b), words=[r'truncated|not a .*TIFF|corrupt'])


@pytest.mark.parametrize('layout', ['strips', 'tiles', 'single strip'])
@pytest.mark.parametrize('existing', [False, True])
def test_input_corrupt_data(tmp_path, capsys, layout, existing):
    """Corrupt compressed data: the error names the file and the rows, even
    when it is found during the stacking, and an existing OUTPUT survives
    (with --force too)."""
    kwargs: dict[str, Any] = {'compression': 'zlib'}
    if layout == 'strips':
        kwargs['rowsperstrip'] = 8
    elif layout == 'tiles':
        kwargs['tile'] = (16, 16)
    image = frame(2, shape=(40, 30))
    a = write(tmp_path / 'a.tif', frame(1, shape=(40, 30)), **kwargs)
    b = write(tmp_path / 'b.tif', image, **kwargs)
    offsets, counts = segments(b)
    k = 1 if layout != 'single strip' else 0  # strips: rows 8-15; tiles: rows 0-15
    data = bytearray(Path(b).read_bytes())
    data[offsets[k]:offsets[k] + counts[k]] = b'\xff' * counts[k]
    Path(b).write_bytes(data)
    rows = {'strips': '8-15', 'tiles': '0-15', 'single strip': '0-39'}[layout]
    out = tmp_path / 'out.tif'
    args = ['-r', '8']
    if existing:
        out.write_bytes(b'precious result')
        args.append('--force')
    guard = Guard(out)
    result = run_main(capsys, *args, out, a, b)
    assert_error(result, guard, b, words=['corrupt', rf'rows? {rows}\b'], only_line=False)


@pytest.mark.parametrize('kind', ['fifo', '/dev/null'])
def test_input_not_a_regular_file(tmp_path, kind):
    """A FIFO (or device) as input is refused before it is opened: no
    blocking forever in open."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir, count=2)
    if kind == 'fifo':
        special = str(indir / 'fifo.tif')
        os.mkfifo(special)
    else:
        special = kind
        if not os.path.exists(special):
            pytest.skip(f'no {special} here')
    out = outdir / 'out.tif'
    guard = Guard(out)
    try:
        result = run_cli('--center', 'median', out, paths[0], special, paths[1], timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f'imgstack blocks on the {kind} input')
    line = assert_error(result, guard, special, only_line=False)
    assert line == f'imgstack: error: {special}: not a regular file'


@pytest.mark.parametrize('name', ['a\nb.tif', 'a\x1bb.tif', 'a\rb.tif'],
                         ids=['newline', 'escape', 'return'])
def test_control_characters_in_a_name(tmp_path, capsys, name):
    """A missing input whose name holds a newline (or other control
    character) gives a one-line error, the name escaped."""
    paths = inputs_in(tmp_path / 'in', count=2)
    missing = str(tmp_path / 'in' / name)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, '--center', 'median', out, *paths, missing)
    line = assert_error(result, guard, only_line=False)
    assert all(text.startswith('imgstack: ') for text in result.err.splitlines()), \
        f'a line of stderr is not a message of its own: {result.err!r}'
    assert not re.search(r'[\x00-\x09\x0b-\x1f\x7f]', result.err), repr(result.err)
    assert repr(name)[1:-1] in line, repr(line)


def test_directory_input_suggests_a_pattern(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    (tmp_path / 'frames').mkdir()
    write(tmp_path / 'frames' / 'b.tif', frame(2))
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--center', 'median', 'out.tif', 'a.tif', 'frames')
    line = assert_error(result, guard)
    assert line == 'imgstack: error: frames: is a directory; did you mean frames/*.tif?'


# -- inputs that do not go together ------------------------------------------


def _mismatch(tmp_path: Path, kind: str) -> tuple[str, str, str]:
    """Write a reference, a same-kind input and an odd one; return paths."""
    if kind == 'shape':
        good, odd = {'data': frame(1)}, {'data': frame(2, shape=(20, 31))}
    elif kind == 'height':
        good, odd = {'data': frame(1)}, {'data': frame(2, shape=(21, 30))}
    elif kind == 'dtype':
        good, odd = {'data': frame(1)}, {'data': frame(2, dtype=np.uint8)}
    elif kind == 'float':
        good, odd = {'data': frame(1, dtype=np.float32)}, {'data': frame(2, dtype=np.float64)}
    elif kind == 'channels':
        good, odd = {'data': frame(1)}, {'data': frame(2, shape=(20, 30, 3)),
                                         'photometric': 'rgb'}
    elif kind == 'layout':
        good = {'data': frame(1, shape=(20, 30, 3)), 'photometric': 'rgb'}
        odd = {'data': frame(2, shape=(3, 20, 30)), 'photometric': 'rgb',
               'planarconfig': 'separate'}
    elif kind == 'alpha':
        good = {'data': frame(1, shape=(20, 30, 4)), 'photometric': 'rgb',
                'extrasamples': ['unassalpha']}
        odd = {'data': frame(2, shape=(20, 30, 4)), 'photometric': 'rgb',
               'extrasamples': ['unspecified']}
    else:
        raise AssertionError(kind)
    a = write(tmp_path / 'a.tif', **good)
    b = write(tmp_path / 'b.tif', good['data'][::-1].copy(),
              **{k: v for k, v in good.items() if k != 'data'})
    c = write(tmp_path / 'c.tif', **odd)
    return a, b, c


@pytest.mark.parametrize(
    'kind', ['shape', 'height', 'dtype', 'float', 'channels', 'layout', 'alpha']
)
def test_inputs_differ(tmp_path, capsys, kind):
    a, b, c = _mismatch(tmp_path, kind)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, a, b, c)
    # the first mismatch, with both files named
    assert_error(result, guard, a, c)


@pytest.mark.parametrize('order', ['black first', 'white first'])
def test_mixed_photometric_refused(tmp_path, capsys, order):
    """A MinIsWhite input and a MinIsBlack input would be averaged inverted:
    refused, naming both."""
    kinds = ['minisblack', 'miniswhite']
    if order == 'white first':
        kinds.reverse()
    a = write(tmp_path / 'a.tif', frame(1), photometric=kinds[0])
    b = write(tmp_path / 'b.tif', frame(2), photometric=kinds[1])
    c = write(tmp_path / 'c.tif', frame(3), photometric=kinds[0])
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, '--center', 'median', out, a, c, b)
    line = assert_error(result, guard, a, b, only_line=False)
    assert line == f'imgstack: error: {b}: photometric {kinds[1]} differs from {kinds[0]} of {a}'


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


def test_single_input(tmp_path, capsys):
    a, _ = pair(tmp_path)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, a)
    assert_error(result, guard, a, words=['two or more|at least two'])


@pytest.mark.parametrize('argv', [[], ['out.tif']], ids=['nothing', 'output only'])
def test_no_input(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    guard = Guard(tmp_path / 'out.tif')
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        imgstack.main(argv)
    assert info.value.code == 2
    result = Result(2, *capsys.readouterr())
    assert_error(result, guard, code=2, words=['INPUT'], only_line=False)


# -- inputs that change during the run ---------------------------------------


@pytest.mark.parametrize('how', ['rewritten in place', 'renamed over', 'longer header'])
@pytest.mark.parametrize('when', ['after the headers', 'after the first band'])
def test_input_changed_while_stacking(tmp_path, capsys, monkeypatch, how, when):
    """An input rewritten or renamed over after its header was read:
    '<input>: changed while stacking', exit 1, no OUTPUT, nothing left."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir, rowsperstrip=4)
    victim = paths[1]
    out = outdir / 'out.tif'
    replacement = str(indir / 'new.tif')
    if how == 'longer header':
        write(replacement, frame(9, shape=(40, 50)), rowsperstrip=4, description='x' * 600)
    else:
        write(replacement, frame(9, shape=(40, 50)), rowsperstrip=4)
        assert os.path.getsize(replacement) == os.path.getsize(victim)
    new_bytes = Path(replacement).read_bytes()
    offset = segments(victim)[0][0]
    lock, done = threading.Lock(), threading.Event()
    real_open = os.open

    def change() -> None:
        with lock:
            if done.is_set():
                return
            done.set()
            st = os.stat(victim)
            if how == 'renamed over':  # same size and mtime: only the identity differs
                os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.replace(replacement, victim)
                return
            fd = real_open(victim, os.O_WRONLY)
            try:
                if how == 'rewritten in place':  # same inode and size, new pixels, later mtime
                    os.pwrite(fd, new_bytes[offset:], offset)
                else:  # same inode, another size
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, new_bytes, 0)
            finally:
                os.close(fd)
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    if when == 'after the headers':
        real_plan = imgstack.plan_bands

        def plan_bands(*a: Any, **k: Any) -> Any:
            plan = real_plan(*a, **k)
            change()
            return plan

        monkeypatch.setattr(imgstack, 'plan_bands', plan_bands)
    else:
        opened = []
        watched = real_path(victim)

        def on_open(path: str) -> None:
            if path == watched:
                opened.append(path)
                if len(opened) == 2:  # the header, then the first band
                    change()

        FileLog(monkeypatch, indir, on_open=on_open)
    guard = Guard(out)
    result = run_main(capsys, '-q', '-r', '4', '--center', 'median', out, *paths)
    assert done.is_set(), 'the input was never changed: the hook did not fire'
    line = assert_error(result, guard, victim)
    assert line == f'imgstack: error: {victim}: changed while stacking'
    assert leftovers(outdir) == []


# -- the output --------------------------------------------------------------


@pytest.mark.parametrize('kind', ['file', 'empty file', 'dangling symlink', 'directory'])
def test_output_exists(tmp_path, capsys, kind):
    a, b = pair(tmp_path)
    out = tmp_path / 'out.tif'
    if kind == 'file':
        write(out, frame(7))
    elif kind == 'empty file':
        out.write_bytes(b'')
    elif kind == 'dangling symlink':
        out.symlink_to(tmp_path / 'nowhere.tif')
    else:
        out.mkdir()
    os.utime(out, ns=(1_000_000_000, 1_000_000_000), follow_symlinks=False)
    guard = Guard(out)
    result = run_main(capsys, out, a, b)
    assert_error(result, guard, str(out), words=[r'exists|directory'])


def test_output_exists_force_replaces(tmp_path, capsys):
    """The counterpart: with --force the same run succeeds (the guard of
    test_output_exists is not a blanket refusal)."""
    a, b = pair(tmp_path)
    out = tmp_path / 'out.tif'
    out.write_bytes(b'old')
    result = run_main(capsys, '-q', '--force', out, a, b)
    assert result.status == 0, result.err
    assert tifffile.imread(out).shape == (20, 30)
    assert temporaries(tmp_path) == []


def test_existing_output_names_both_ways_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    write(tmp_path / 'b.tif', frame(2))
    (tmp_path / 'out.tif').write_bytes(b'precious')
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--center', 'median', 'out.tif', 'a.tif', 'b.tif')
    line = assert_error(result, guard)
    assert line == ('imgstack: error: out.tif exists: name another OUTPUT, '
                    'or add --force to replace it')


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


@pytest.mark.parametrize('force', [False, True], ids=['', 'force'])
@pytest.mark.parametrize(
    'spelling',
    ['same', 'relative', 'dot', 'dotdot', 'double slash', 'symlink output',
     'symlink input', 'symlinked directory', 'hard link', 'rejection map'],
)
def test_output_is_input(tmp_path, capsys, monkeypatch, spelling, force):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'dir').mkdir()
    a, b = pair(tmp_path)
    os.utime(a, ns=(1_000_000_000, 1_000_000_000))
    inputs: list[str] = [a, b]
    args: list[str] = ['--force'] if force else []
    out = a
    if spelling == 'relative':
        out = 'a.tif'
    elif spelling == 'dot':
        out = './a.tif'
    elif spelling == 'dotdot':
        out = './dir/../a.tif'
    elif spelling == 'double slash':
        out = str(tmp_path) + '//a.tif'
    elif spelling == 'symlink output':
        out = 'link.tif'
        os.symlink(a, out)
    elif spelling == 'symlink input':
        os.symlink(a, 'link.tif')
        inputs = ['link.tif', b]
    elif spelling == 'symlinked directory':
        os.symlink(tmp_path, 'here')
        out = 'here/a.tif'
    elif spelling == 'hard link':
        os.link(a, 'same.tif')
        os.utime('same.tif', ns=(1_000_000_000, 1_000_000_000))
        out = 'same.tif'
    elif spelling == 'rejection map':
        args += ['--rejection-map', './dir/../b.tif']
        out = str(tmp_path / 'out.tif')
    guard = Guard(a, b, tmp_path / 'out.tif')
    result = run_main(capsys, *args, out, *inputs)
    named = './dir/../b.tif' if spelling == 'rejection map' else out
    assert_error(result, guard, named, words=['input'])


@pytest.mark.parametrize('late', ['output', 'rejection map'])
def test_output_appears_during_run(tmp_path, capsys, monkeypatch, late):
    """A file created at OUTPUT (or at the rejection map) while the run
    lasts is not replaced without --force, and the failed run writes
    nothing: neither OUTPUT nor the rejection map."""
    a, b = pair(tmp_path)
    out = tmp_path / 'out.tif'
    rejected = tmp_path / 'rejected.tif'
    target = out if late == 'output' else rejected
    original = imgstack._clip_points

    def clip_points(*args: Any, **kwargs: Any) -> Any:
        if not target.exists():
            target.write_bytes(b'written by someone else')
            os.utime(target, ns=(1_000_000_000, 1_000_000_000))
        return original(*args, **kwargs)

    monkeypatch.setattr(imgstack, '_clip_points', clip_points)
    result = run_main(capsys, '-q', '--rejection-map', rejected, out, a, b)
    assert_error(result, None, str(target), words=['exists'])
    assert target.read_bytes() == b'written by someone else'
    assert target.stat().st_mtime_ns == 1_000_000_000
    other = rejected if late == 'output' else out
    assert not other.exists(), f'the failed run wrote {other.name}'
    assert sorted(os.listdir(tmp_path)) == sorted(['a.tif', 'b.tif', target.name])


def _special(path: Path, kind: str) -> None:
    if kind == 'fifo':
        os.mkfifo(path)
        return
    if not IS_ROOT:
        pytest.skip('making a device node needs root')
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    except PermissionError as exc:
        pytest.skip(f'device nodes cannot be made here: {exc}')


@pytest.mark.parametrize('kind', ['fifo', 'device'])
def test_output_not_a_regular_file(tmp_path, capsys, kind):
    """With -f, a FIFO or device node given as OUTPUT is refused, not
    replaced by a regular file (as root, following the hint with OUTPUT
    /dev/null would replace /dev/null)."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir)
    out = outdir / 'out.tif'
    _special(out, kind)
    guard = Guard(out)
    result = run_main(capsys, '-f', '--center', 'median', out, *paths)
    line = assert_error(result, guard, str(out), only_line=False)
    assert line == f'imgstack: error: {out}: exists and is not a regular file'
    mode = os.lstat(out).st_mode
    assert stat.S_ISFIFO(mode) if kind == 'fifo' else stat.S_ISCHR(mode)


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


@pytest.mark.parametrize(
    ('spelling', 'existing'),
    [('directory symlink', True), ('directory symlink', False),
     ('file symlink', False), ('dotdot', True)],
)
def test_rejection_map_reaches_output(tmp_path, capsys, monkeypatch, spelling, existing):
    """``ln -s . same; -f --rejection-map same/out.tif out.tif``: refused
    before any work, the existing OUTPUT untouched."""
    monkeypatch.chdir(tmp_path)
    paths = [os.path.basename(p) for p in inputs_in(tmp_path, count=2)]
    (tmp_path / 'sub').mkdir()
    if spelling == 'directory symlink':
        os.symlink('.', 'same')
        rmap = 'same/out.tif'
    elif spelling == 'file symlink':
        os.symlink('out.tif', 'link.tif')  # dangling until OUTPUT is written
        rmap = 'link.tif'
    else:
        rmap = 'sub/../out.tif'
    if existing:
        Path('out.tif').write_bytes(b'precious stack')
        os.utime('out.tif', ns=(1_000_000_000, 1_000_000_000))
    guard = Guard(tmp_path / 'out.tif', tmp_path / 'link.tif')
    reads = count_reads(monkeypatch)
    result = run_main(capsys, '-f', '--rejection-map', rmap, 'out.tif', *paths)
    line = assert_error(result, guard, rmap)
    assert line == f'imgstack: error: {rmap}: the rejection map cannot be OUTPUT'
    assert reads == [], f'inputs were read before the refusal: {reads}'


@pytest.mark.parametrize(
    ('args', 'given', 'cause'),
    [
        (['', 'a.tif', 'b.tif'], "''", 'empty file name'),
        (['new.tif/', 'a.tif', 'b.tif'], 'new.tif/', 'names a directory, not a file'),
        (['--rejection-map', '', 'out.tif', 'a.tif', 'b.tif'], "''", 'empty file name'),
        (['--rejection-map', 'map.tif/', 'out.tif', 'a.tif', 'b.tif'], 'map.tif/',
         'names a directory, not a file'),
    ],
    ids=['output empty', 'output slash', 'map empty', 'map slash'],
)
def test_bad_output_names_refused_at_once(tmp_path, capsys, monkeypatch, args, given, cause):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'a.tif', frame(1))
    write(tmp_path / 'b.tif', frame(2))
    guard = Guard(tmp_path / 'out.tif')
    reads = count_reads(monkeypatch)
    result = run_main(capsys, *args)
    line = assert_error(result, guard)
    assert line == f'imgstack: error: {given}: {cause}'
    assert reads == [], f'inputs were read before the refusal: {reads}'
    assert not (tmp_path / 'new.tif').exists() and not (tmp_path / 'map.tif').exists()


def test_output_directory_missing(tmp_path, capsys):
    a, b = pair(tmp_path)
    out = tmp_path / 'missing' / 'out.tif'
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, out, a, b)
    assert_error(result, guard, str(out), words=[r'does not exist|no such'])
    assert not out.parent.exists()


@pytest.mark.skipif(IS_ROOT, reason=ROOT_REASON + ': a read-only directory stays writable')
def test_output_directory_read_only(tmp_path, capsys):
    a, b = pair(tmp_path)
    locked = tmp_path / 'locked'
    locked.mkdir()
    out = locked / 'out.tif'
    os.chmod(locked, 0o555)
    try:
        guard = Guard(out)
        result = run_main(capsys, out, a, b)
        assert_error(result, guard, str(out), words=[r'writable|permission'])
    finally:
        os.chmod(locked, 0o755)


def test_output_directory_refuses_files_even_as_root(tmp_path, capsys, monkeypatch):
    # root may write anywhere: let the system refuse the temporary file
    a, b = pair(tmp_path)
    locked = tmp_path / 'locked'
    locked.mkdir()
    out = locked / 'out.tif'

    real_open = os.open

    def refusing_open(file, flags, *args, **kwargs):
        if os.path.dirname(os.fspath(file)) == str(locked) and flags & os.O_CREAT:
            raise PermissionError(13, 'Permission denied', os.fspath(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, 'open', refusing_open)
    guard = Guard(out)
    result = run_main(capsys, out, a, b)
    assert_error(result, guard, str(locked),
                 words=['cannot create a file here', 'permission denied'], only_line=False)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write fails with EFBIG

    return preexec


@pytest.mark.parametrize(
    'case', ['plain', 'compressed output', 'rejection map', 'predecode', 'existing'],
)
def test_file_size_limit(tmp_path, case):
    """RLIMIT_FSIZE hit while writing: one line, no output, no temporary."""
    indir, outdir = in_and_out_dirs(tmp_path)
    kwargs: dict[str, Any] = {}
    args: list[str] = []
    if case == 'predecode':  # single-strip inputs decoded to a raw temporary
        kwargs = {'compression': 'zlib', 'rowsperstrip': 200}
        args = ['-r', '4']
    elif case == 'compressed output':
        args = ['-c', 'zlib']
    elif case == 'rejection map':
        args = ['--rejection-map', str(outdir / 'rejected.tif')]
    a = write(indir / 'a.tif', frame(1, shape=(200, 300)), **kwargs)
    b = write(indir / 'b.tif', frame(2, shape=(200, 300)), **kwargs)
    out = outdir / 'out.tif'
    if case == 'existing':
        out.write_bytes(b'precious')
        args.append('--force')
    guard = Guard(out, outdir / 'rejected.tif')
    result = run_cli(*args, out, a, b, preexec_fn=_limit_file_size(50_000))
    line = assert_error(result, guard, words=[r'too large|file size|limit'], only_line=False)
    assert str(outdir) in line, f'the output (directory) is not named: {line!r}'
    assert temporaries(outdir) == []


def test_no_space_for_the_map_names_the_map(tmp_path, capsys, small_filesystem):
    """ENOSPC while writing the rejection map names the map, not OUTPUT."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir, shape=(300, 400), dtype=np.uint8)
    out, rmap = outdir / 'out.tif', small_filesystem / 'rejected.tif'
    guard = Guard(out, rmap)
    result = run_main(capsys, '-q', '--rejection-map', rmap, out, *paths)
    line = assert_error(result, guard, str(rmap), words=['no space'])
    assert leftovers(outdir) == [] and leftovers(small_filesystem) == []
    assert str(out) not in line


# -- settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ('args', 'option'),
    [
        (['-s', '0'], '--sigma'),
        (['-s', '-1'], '--sigma'),
        (['-s', 'nan'], '--sigma'),
        (['-s', 'inf'], '--sigma'),
        (['--sigma=-inf'], '--sigma'),
        (['-s', 'two'], '--sigma'),
        (['--sigma-low', '0'], '--sigma-low'),
        (['--sigma-low', '-2'], '--sigma-low'),
        (['--sigma-high', 'nan'], '--sigma-high'),
        (['--sigma-high', 'inf'], '--sigma-high'),
        (['-i', '-1'], '--iterations'),
        (['-i', '1.5'], '--iterations'),
        (['-r', '0'], '--rows'),
        (['-r', '-5'], '--rows'),
        (['-c', 'jpeg2000'], '--compress'),
        (['-c', 'gzip'], '--compress'),
        (['-c', 'zstd:99'], '--compress'),
        (['-c', 'lzw:5'], '--compress'),
        (['-m', '0'], '--memory'),
        (['-m', 'lots'], '--memory'),
        (['--center', 'mode'], '--center'),
    ],
)
def test_usage_errors(tmp_path, capsys, args, option):
    a, b = pair(tmp_path)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        imgstack.main([*args, str(out), a, b])
    assert info.value.code == 2
    result = Result(2, *capsys.readouterr())
    assert_error(result, guard, option, code=2, only_line=False)


def test_centre_suggests_center(tmp_path, capsys):
    a, b = write(tmp_path / 'a.tif', frame(1)), write(tmp_path / 'b.tif', frame(2))
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--centre', 'median', tmp_path / 'out.tif', a, b)
    assert_error(result, guard, code=2, only_line=False)
    assert 'did you mean --center?' in result.err, result.err


@pytest.mark.parametrize(
    'case', ['small', 'wide', 'many', 'single strip', 'alpha and map']
)
@pytest.mark.parametrize('budget', ['1', '1M', '20M'])
def test_budget_too_small(tmp_path, capsys, case, budget):
    """The message names a budget that works; rerunning with it succeeds."""
    kwargs: dict[str, Any] = {}
    shape: tuple[int, ...] = (20, 30)
    count, extra = 2, []
    if case == 'wide':
        shape = (12, 60_000)
    elif case == 'many':
        shape, count = (10, 20_000), 12
    elif case == 'single strip':
        shape, kwargs = (300, 400), {'compression': 'zlib', 'rowsperstrip': 300}
    elif case == 'alpha and map':
        shape = (10, 9000, 4)
        kwargs = {'photometric': 'rgb', 'extrasamples': ['unassalpha'],
                  'planarconfig': 'separate'}
        extra = ['--rejection-map', str(tmp_path / 'rejected.tif')]
    if kwargs.get('planarconfig') == 'separate':
        data = [np.moveaxis(frame(i, shape=shape), -1, 0).copy() for i in range(count)]
    else:
        data = [frame(i, shape=shape) for i in range(count)]
    inputs = [write(tmp_path / f'in{i}.tif', d, **kwargs) for i, d in enumerate(data)]
    out = tmp_path / 'out.tif'
    guard = Guard(out, tmp_path / 'rejected.tif')
    result = run_main(capsys, '-m', budget, *extra, out, *inputs)
    line = assert_error(result, guard, words=['memory|budget'])
    match = re.search(r'-m (\S+?)[)\s]*$', line) or re.search(r'-m (\S+)', line)
    assert match, f'no working budget named in {line!r}'
    works = match.group(1).rstrip(').,;')
    assert imgstack.parse_size(works) > imgstack.parse_size(budget)
    again = run_main(capsys, '-q', '-m', works, *extra, out, *inputs)
    assert again.status == 0, again.err
    assert again.err == ''
    assert out.exists()
    assert temporaries(tmp_path) == []


# -- images that cannot be stacked -------------------------------------------


UNSUPPORTED = {
    'palette': (
        {'data': frame(3, dtype=np.uint8), 'photometric': 'palette',
         'colormap': np.tile(np.arange(256, dtype=np.uint16) * 257, (3, 1))},
        r'palette|indexed',
    ),
    'bilevel': ({'data': frame(3, dtype=bool)}, r'bilevel|1-bit'),
    'complex64': ({'data': frame(3, dtype=np.complex64)}, r'complex'),
    'float16': ({'data': frame(3, dtype=np.float16)}, r'float16|16-bit float|half'),
    'uint64': ({'data': frame(3, dtype=np.uint64)},
               r'uint64|64-bit unsigned'),
    'int64': ({'data': frame(3, dtype=np.int64)}, r'int64|64-bit signed'),
    'volume': ({'data': frame(3, shape=(2, 20, 30)), 'volumetric': True,
                'tile': (16, 16)}, r'volum|3-D'),
}


@pytest.mark.parametrize('kind', list(UNSUPPORTED))
@pytest.mark.parametrize('position', ['first', 'second'])
def test_unsupported_image(tmp_path, capsys, kind, position):
    """Say what is unsupported, in words a user knows (not TIFF codes)."""
    kwargs, what = UNSUPPORTED[kind]
    bad = write(tmp_path / f'{kind}.tif', **kwargs)
    good = write(tmp_path / 'good.tif', frame(1))
    inputs = [bad, good] if position == 'first' else [good, bad]
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, out, *inputs)
    assert_error(result, guard, bad, words=[what, r'not supported|unsupported|cannot'])


def _limit_memory(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return preexec


@pytest.mark.slow
@pytest.mark.parametrize(
    'layout', ['uncompressed', 'deflate', 'deflate strips', 'deflate tiles', 'uint16 planar'],
)
def test_absurd_header(tmp_path, layout):
    """A header claiming 100000 x 100000 pixels over a few bytes: an error
    naming the file, quickly, with no attempt to allocate the image (the run
    has a 2 GiB address-space limit; a 10 GB allocation would fail there
    and be reported as 'out of memory', not as a bad file)."""
    kwargs: dict[str, Any] = {'rowsperstrip': 20}
    data = np.zeros((20, 30), np.uint8)
    if layout == 'deflate':
        kwargs['compression'] = 'zlib'
    elif layout == 'deflate strips':
        kwargs = {'compression': 'zlib', 'rowsperstrip': 8}
    elif layout == 'deflate tiles':
        kwargs = {'compression': 'zlib', 'tile': (16, 16)}
    elif layout == 'uint16 planar':
        data = np.zeros((2, 20, 30), np.uint16)
        kwargs = {'compression': 'zlib', 'planarconfig': 'separate',
                  'photometric': 'minisblack', 'rowsperstrip': 20}
    good = write(tmp_path / 'good.tif', data, **kwargs)
    huge = write(tmp_path / 'huge.tif', data, **kwargs)
    tags = {256: 100_000, 257: 100_000}
    if 'tile' not in kwargs:
        tags[278] = 100_000
    patch_tags(huge, tags)
    patch_tags(good, tags)  # the same header: only the size check stops them
    out = tmp_path / 'out.tif'
    limit = _limit_memory(2 << 30)
    sane = run_cli('-q', tmp_path / 'sane.tif', write(tmp_path / 's1.tif'),
                   write(tmp_path / 's2.tif'), preexec_fn=limit)
    assert sane.status == 0, f'the memory limit itself breaks imgstack: {sane.err}'
    os.unlink(tmp_path / 'sane.tif')
    guard = Guard(out)
    started = time.monotonic()
    result = run_cli(out, huge, good, preexec_fn=limit, timeout=30)
    seconds = time.monotonic() - started
    line = assert_error(result, guard, huge)
    assert 'out of memory' not in line
    assert seconds < 15, f'took {seconds:.1f} s'


# -- wildcards ---------------------------------------------------------------


def test_unexpanded_wildcard(tmp_path, capsys):
    inputs = [write(tmp_path / f'in{i}.tif', frame(i)) for i in range(3)]
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', '-i', '0', out, str(tmp_path / 'in*.tif'))
    assert result.status == 0, result.err
    stacked = tifffile.imread(out)
    expected = np.rint(np.mean([tifffile.imread(p).astype(float) for p in inputs], axis=0))
    np.testing.assert_array_equal(stacked, expected.astype(np.uint16))
    assert temporaries(tmp_path) == []


def test_unexpanded_wildcard_in_subprocess(tmp_path):
    """As a Windows shell passes it: the pattern reaches the program."""
    for i in range(2):
        write(tmp_path / f'in{i}.tif', frame(i))
    result = run_cli('-q', 'out.tif', 'in*.tif', cwd=str(tmp_path))
    assert result.status == 0, result.err
    assert (tmp_path / 'out.tif').exists()


@pytest.mark.parametrize('pattern', ['in*.tif', 'in?.tif', 'in[0-9].tif', 'sub*/in*.tif'])
def test_wildcard_matches_nothing(tmp_path, capsys, pattern):
    a, _ = pair(tmp_path)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    spelled = str(tmp_path / pattern)
    result = run_main(capsys, out, a, spelled)
    assert_error(result, guard, spelled, words=[r'match'])


def test_wildcard_characters_in_a_real_name(tmp_path, capsys):
    """A file whose name holds wildcard characters is taken as it is."""
    a = write(tmp_path / 'in[1].tif', frame(1))
    b = write(tmp_path / 'in[2].tif', frame(2))
    write(tmp_path / 'in1.tif', frame(3, shape=(5, 5)))  # what in[1].tif would match
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', out, a, b)
    assert result.status == 0, result.err
    assert tifffile.imread(out).shape == (20, 30)


# -- robustness --------------------------------------------------------------


class Hang(BaseException):
    """One run took far too long."""


def _variants(data: bytes, header: int) -> Iterator[tuple[str, bytes]]:
    """Yield broken copies of a TIFF file (fixed seed)."""
    rng = np.random.default_rng(1234)
    size = len(data)
    for _ in range(110):  # one byte flipped anywhere
        at = int(rng.integers(0, size))
        b = bytearray(data)
        b[at] ^= int(rng.integers(1, 256))
        yield f'flip byte {at}', bytes(b)
    for _ in range(90):  # one byte flipped in the header and IFD
        at = int(rng.integers(0, header))
        b = bytearray(data)
        b[at] ^= int(rng.integers(1, 256))
        yield f'flip header byte {at}', bytes(b)
    for _ in range(40):  # a few bytes set at random in the header and IFD
        b = bytearray(data)
        where = rng.integers(0, header, 4)
        for at in where:
            b[int(at)] = int(rng.choice([0, 0xFF, int(rng.integers(0, 256))]))
        yield f'set header bytes {sorted(int(w) for w in where)}', bytes(b)
    for _ in range(20):  # a run of bytes in the data set to 0xFF or 0
        at = int(rng.integers(header, size - 8))
        b = bytearray(data)
        b[at:at + 8] = bytes([int(rng.choice([0, 0xFF]))]) * 8
        yield f'set data bytes {at}-{at + 7}', bytes(b)
    for at in np.unique(np.linspace(0, size - 1, 60).astype(int)):  # truncated
        yield f'truncated to {at} bytes', data[:at]


@pytest.mark.slow
@pytest.mark.parametrize('compression', ['lzw', 'zlib', None])
def test_broken_files_never_crash(tmp_path, capsys, compression):
    """A few hundred broken variants of a small compressed TIFF, each
    stacked with a valid file: status 0 or 1, never an exception, a
    traceback or a hang; status 1 is exactly one line; nothing left."""
    indir, outdir = in_and_out_dirs(tmp_path)
    kwargs = {'compression': compression, 'rowsperstrip': 8,
              'resolution': (300, 300), 'resolutionunit': 'INCH'}
    good = write(indir / 'good.tif', frame(1, shape=(32, 40)), **kwargs)
    base = Path(write(indir / 'base.tif', frame(2, shape=(32, 40)), **kwargs)).read_bytes()
    header = min(segments(str(indir / 'base.tif'))[0])
    broken = indir / 'broken.tif'
    out = outdir / 'out.tif'
    failures: list[str] = []

    def alarm(signum: int, frame: Any) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    faulthandler.dump_traceback_later(120, exit=True, file=sys.__stderr__)  # hang in C
    started = time.monotonic()
    count = 0
    try:
        for i, (what, data) in enumerate(_variants(base, header)):
            count += 1
            broken.write_bytes(data)
            inputs = [broken, good] if i % 2 == 0 else [good, broken]
            signal.alarm(10)
            try:
                result = run_main(capsys, '-q', '-r', '8', out, *inputs)
            except Hang:
                failures.append(f'{what}: hangs')
                continue
            except BaseException as exc:  # noqa: BLE001
                capsys.readouterr()
                failures.append(f'{what}: raises {type(exc).__name__}: {exc}')
                continue
            finally:
                signal.alarm(0)
            problem = None
            if 'Traceback' in result.err:
                problem = f'traceback {result.err!r}'
            elif result.status not in (0, 1):
                problem = f'status {result.status!r} {result.err!r}'
            elif result.status == 1 and (
                len(result.lines) != 1
                or not result.lines[0].startswith('imgstack: error:')
            ):
                problem = f'stderr not one error line: {result.err!r}'
            elif result.status == 1 and str(broken) not in result.err:
                problem = f'error does not name the broken file: {result.err!r}'
            elif result.status == 0 and result.err:
                problem = f'output on stderr with -q: {result.err!r}'
            elif result.status == 1 and out.exists():
                problem = 'output written'
            if problem:
                failures.append(f'{what}: {problem}')
            if out.exists():
                out.unlink()
            left = os.listdir(outdir)
            if left:
                failures.append(f'{what}: left {left}')
                for name in left:
                    os.unlink(outdir / name)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    seconds = time.monotonic() - started
    assert count >= 300
    assert not failures, f'{len(failures)} of {count} variants fail:\n' + '\n'.join(
        failures[:25]
    )
    assert seconds < 60, f'{count} variants took {seconds:.1f} s'
