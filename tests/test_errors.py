# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Bad input never costs data and never shows a traceback.

Every case below must end with one clear line on stderr that names the file
and the cause, exit status 1 (2 for argparse usage errors, 130 for Ctrl-C),
no Python traceback, no OUTPUT written, any existing OUTPUT untouched and no
temporary file (``.imgstack-*.tmp``) left in the output
directory (CONTRACT.md sections 1 and 3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import glob
import logging
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile

import imgstack

IMGSTACK = os.path.abspath(imgstack.__file__)
IS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0
ROOT_REASON = 'runs as root, which ignores file permissions'

# -- helpers -----------------------------------------------------------------


def frame(seed: int = 0, shape: Sequence[int] = (20, 30), dtype: Any = np.uint16) -> np.ndarray:
    """Return a small random image."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == 'f':
        return rng.random(shape).astype(dtype)
    if dtype.kind == 'b':
        return rng.random(shape) > 0.5
    if dtype.kind == 'c':
        return (rng.random(shape) + 1j * rng.random(shape)).astype(dtype)
    info = np.iinfo(dtype)
    hi = min(int(info.max), 60000)
    return rng.integers(max(int(info.min), 0), hi, shape, endpoint=True).astype(dtype)


def write(path: Path | str, data: np.ndarray | None = None, **kwargs: Any) -> str:
    """Write a TIFF file (a 20x30 uint16 image by default); return its path."""
    if data is None:
        data = frame()
    kwargs.setdefault('metadata', None)
    tifffile.imwrite(path, data, **kwargs)
    return str(path)


def in_and_out_dirs(tmp_path):
    """Make separate folders for the inputs and the outputs."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    indir.mkdir()
    outdir.mkdir()
    return indir, outdir


def pair(tmp_path: Path, **kwargs: Any) -> tuple[str, str]:
    """Write two valid, stackable inputs."""
    return (
        write(tmp_path / 'a.tif', frame(1), **kwargs),
        write(tmp_path / 'b.tif', frame(2), **kwargs),
    )


@dataclasses.dataclass
class Result:
    status: int | str | None
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@contextlib.contextmanager
def cli_logging() -> Iterator[None]:
    """Log as in a fresh interpreter: without handlers on the root logger
    (pytest installs some), so that a record that passes the 'tifffile'
    logger's level reaches stderr through `logging.lastResort`, exactly as
    it would when imgstack.py runs as a program."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = []
    try:
        yield
    finally:
        root.handlers[:] = saved


def run_main(capsys: pytest.CaptureFixture[str], *argv: Any) -> Result:
    """Run ``imgstack.main`` in-process; return status, stdout and stderr."""
    capsys.readouterr()
    with cli_logging():
        try:
            status = imgstack.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            status = exc.code
        except KeyboardInterrupt:  # would stop the whole pytest session
            status = 'KeyboardInterrupt escaped main()'
    out, err = capsys.readouterr()
    return Result(status, out, err)


def run_cli(
    *argv: Any,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 60,
    cwd: str | None = None,
) -> Result:
    """Run imgstack.py as a program; return status, stdout and stderr."""
    env = {**os.environ, 'PYTHONDONTWRITEBYTECODE': '1', 'OPENBLAS_NUM_THREADS': '1'}
    proc = subprocess.run(
        [sys.executable, IMGSTACK, *map(str, argv)],
        capture_output=True, text=True, timeout=timeout,
        preexec_fn=preexec_fn, cwd=cwd, env=env,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class Guard:
    """Remember the output directory and an existing OUTPUT; `check` that
    neither changed: no new file (OUTPUT, temporary files), OUTPUT absent or
    byte-identical with the same mtime."""

    def __init__(self, *outputs: Path | str) -> None:
        self.outputs = [Path(o) for o in outputs]
        self.dirs = {o.parent.resolve() for o in self.outputs if o.parent.is_dir()}
        self.listing = {d: sorted(os.listdir(d)) for d in self.dirs}
        self.state = {o: self._state(o) for o in self.outputs}

    @staticmethod
    def _state(path: Path) -> tuple[bytes, int] | None:
        if not os.path.lexists(path):
            return None
        st = os.lstat(path)
        if not os.path.isfile(path):
            return (b'', st.st_mtime_ns)
        return path.read_bytes(), st.st_mtime_ns

    def check(self) -> None:
        for o, before in self.state.items():
            after = self._state(o)
            if before is None:
                assert after is None, f'{o} was written'
            else:
                assert after is not None, f'existing {o} was removed'
                assert after[0] == before[0], f'existing {o} was changed'
                assert after[1] == before[1], f'existing {o} was touched (mtime)'
        for d, before in self.listing.items():
            now = sorted(os.listdir(d))
            left = sorted(set(now) - set(before))
            assert not left, f'files left in {d}: {left}'
            gone = sorted(set(before) - set(now))
            assert not gone, f'files removed from {d}: {gone}'


def assert_error(
    result: Result,
    guard: Guard | None,
    *names: str,
    code: int = 1,
    words: Sequence[str] = (),
    only_line: bool = True,
) -> str:
    """Assert the one-line-error contract; return the error line.

    ``names`` must all appear in the error line, ``words`` are regular
    expressions (case-insensitive) that must match it.  With ``only_line``
    stderr holds nothing but that line; otherwise it is the last line and
    the only error line (warnings and progress may come first).
    """
    assert 'Traceback' not in result.err, result.err
    assert result.status == code, (result.status, result.err)
    lines = result.lines
    assert lines, 'nothing on stderr'
    errors = [line for line in lines if line.startswith('imgstack: error')]
    if only_line:
        assert len(lines) == 1, f'stderr is not one line: {result.err!r}'
    assert len(errors) == 1, f'not exactly one error line: {result.err!r}'
    line = lines[-1]
    assert line.startswith('imgstack: error:'), f'last line is not the error: {result.err!r}'
    cause = line
    for name in names:
        assert str(name) in line, f'{name!r} not named in {line!r}'
        cause = cause.replace(str(name), '')
    for word in words:  # in the cause, not in a file name
        assert re.search(word, cause, re.IGNORECASE), f'{word!r} not in {line!r}'
    assert result.out == '', f'stdout: {result.out!r}'
    if guard is not None:
        guard.check()
    return line


def temporaries(directory: Path | str) -> list[str]:
    """Temporary files of imgstack in a directory."""
    return sorted(glob.glob(os.path.join(glob.escape(str(directory)), '.imgstack-*')))


def segments(path: str) -> tuple[list[int], list[int]]:
    """Return the data offsets and byte counts of the first image."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        return list(page.dataoffsets), list(page.databytecounts)


def patch_tags(path: str, values: dict[int, int]) -> None:
    """Overwrite single-valued tags of the first IFD of a little-endian
    classic TIFF with LONG values."""
    data = bytearray(Path(path).read_bytes())
    assert data[:4] == b'II*\x00'
    ifd = struct.unpack_from('<I', data, 4)[0]
    count = struct.unpack_from('<H', data, ifd)[0]
    done = set()
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, _, n = struct.unpack_from('<HHI', data, entry)
        if tag in values:
            assert n == 1
            struct.pack_into('<HHII', data, entry, tag, 4, 1, values[tag])
            done.add(tag)
    assert done == set(values), 'tag not found'
    Path(path).write_bytes(data)


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
    original = imgstack.clip_points

    def clip_points(*args: Any, **kwargs: Any) -> Any:
        if not target.exists():
            target.write_bytes(b'written by someone else')
            os.utime(target, ns=(1_000_000_000, 1_000_000_000))
        return original(*args, **kwargs)

    monkeypatch.setattr(imgstack, 'clip_points', clip_points)
    result = run_main(capsys, '-q', '--rejection-map', rejected, out, a, b)
    assert_error(result, None, str(target), words=['exists'])
    assert target.read_bytes() == b'written by someone else'
    assert target.stat().st_mtime_ns == 1_000_000_000
    other = rejected if late == 'output' else out
    assert not other.exists(), f'the failed run wrote {other.name}'
    assert sorted(os.listdir(tmp_path)) == sorted(['a.tif', 'b.tif', target.name])


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
    assert_error(result, guard, str(locked), words=['cannot create a file here', 'permission denied'],
                 only_line=False)


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


# -- Ctrl-C ------------------------------------------------------------------


@pytest.fixture(scope='module')
def big_frames(tmp_path_factory):
    """8 frames of 2000x2000 uint16: uncompressed, and single-strip zstd
    (decoded once to a raw temporary with -r 8)."""
    directory = tmp_path_factory.mktemp('big')
    rng = np.random.default_rng(5)
    base = rng.integers(0, 60000, (2000, 2000), dtype=np.uint16)
    plain, packed = [], []
    for i in range(8):
        image = base + np.uint16(i)
        plain.append(write(directory / f'plain{i}.tif', image))
        packed.append(write(directory / f'packed{i}.tif', image, compression='zstd',
                            compressionargs={'level': 1}, rowsperstrip=2000))
    return {'plain': plain, 'packed': packed}


def _interrupt(
    argv: Sequence[Any], outdir: Path, trigger: Callable[[int], bool], delay: float
) -> tuple[Result, bool]:
    """Start imgstack.py, wait for trigger(pid), sleep delay, send SIGINT.

    Returns the result and whether the signal was sent while it ran.
    """
    env = {**os.environ, 'PYTHONDONTWRITEBYTECODE': '1'}
    proc = subprocess.Popen(
        [sys.executable, IMGSTACK, *map(str, argv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and not trigger(proc.pid):
            if time.monotonic() > deadline:
                raise AssertionError('trigger never fired')
            time.sleep(0.0005)
        time.sleep(delay)
        sent = proc.poll() is None
        if sent:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Result(proc.returncode, out, err), sent


def _assert_interrupted(result: Result, guard: Guard, outdir: Path) -> None:
    assert 'Traceback' not in result.err, result.err
    assert result.status == 130, (result.status, result.err)
    lines = result.lines
    assert lines and lines[-1].startswith('imgstack:'), result.err
    assert 'interrupt' in lines[-1].lower(), result.err
    assert not any(line.startswith('imgstack: error') for line in lines), result.err
    assert result.out == ''
    assert temporaries(outdir) == []
    guard.check()


@pytest.mark.slow
@pytest.mark.parametrize(
    ('source', 'trigger', 'delay'),
    [
        ('plain', 'part', 0.0),
        ('plain', 'part', 0.1),
        ('plain', 'part', 0.3),
        ('packed', 'raw', 0.0),
        ('packed', 'part', 0.05),
    ],
)
@pytest.mark.parametrize('existing', [False, True], ids=['', 'existing'])
def test_ctrl_c_while_stacking(tmp_path, big_frames, source, trigger, delay, existing):
    """SIGINT once a temporary file exists: 130, nothing written or left."""
    outdir = tmp_path
    out = outdir / 'out.tif'
    # winsorized: 2.5 s of stacking on these frames, so that the signal
    # lands while it runs (the median clip took 0.33 s: on a loaded machine
    # the 0.3 s delay after the temporary appeared could outlast it)
    args = ['-r', '8', '--reject', 'winsorized', '-i', '3',
            '--rejection-map', outdir / 'rejected.tif']
    if existing:
        out.write_bytes(b'precious')
        args.append('--force')
    guard = Guard(out, outdir / 'rejected.tif')
    def started(pid: int) -> bool:
        if trigger == 'part':  # the output's temporary file exists
            return bool(temporaries(outdir))
        # decoding beforehand: an unlinked temporary file is open
        with contextlib.suppress(OSError):
            for fd in os.listdir(f'/proc/{pid}/fd'):
                with contextlib.suppress(OSError):
                    target = os.readlink(f'/proc/{pid}/fd/{fd}')
                    if target.startswith(str(outdir)) and target.endswith('(deleted)'):
                        return True
        return False

    result, sent = _interrupt([*args, out, *big_frames[source]], outdir, started, delay)
    assert sent, f'the run ended before SIGINT: {result.err}'
    _assert_interrupted(result, guard, outdir)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists('/proc/self/maps'), reason='needs /proc')
def test_ctrl_c_during_startup(tmp_path, big_frames):
    """SIGINT while imgstack.py imports numpy (its shared library is mapped,
    so the interpreter runs and has its SIGINT handler): still 130 and no
    traceback, as a user who presses Ctrl-C right after Enter sees it."""
    out = tmp_path / 'out.tif'
    guard = Guard(out)

    def importing(pid: int) -> bool:
        try:
            with open(f'/proc/{pid}/maps') as fh:
                return '_multiarray_umath' in fh.read()
        except OSError:
            return False

    result, sent = _interrupt([out, *big_frames['plain']], tmp_path, importing, 0.0)
    assert sent
    _assert_interrupted(result, guard, tmp_path)


@pytest.mark.parametrize(
    ('name', 'nth'),
    [
        ('clip_points', 1),
        ('clip_points', 4),
        ('to_dtype', 2),
        ('read_rows', 7),
        ('_predecode_segments', 2),
        ('open_frame', 2),
        ('check_frames', 1),
        ('plan_bands', 1),
        ('_pwrite_all', 3),
    ],
)
@pytest.mark.parametrize('existing', [False, True], ids=['', 'existing'])
def test_ctrl_c_in_process(tmp_path, capsys, monkeypatch, name, nth, existing):
    """KeyboardInterrupt from inside the run (on the nth call of a function):
    main returns 130, nothing written, no temporary file left."""
    indir, outdir = in_and_out_dirs(tmp_path)
    inputs = [write(indir / f'in{i}.tif', frame(i, shape=(40, 50)), compression='zlib',
                    rowsperstrip=40) for i in range(3)]
    out = outdir / 'out.tif'
    args = ['-r', '4', '--rejection-map', outdir / 'rejected.tif']
    if existing:
        out.write_bytes(b'precious')
        args.append('--force')
    calls = []
    original = getattr(imgstack, name)

    def interrupted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == nth:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(imgstack, name, interrupted)
    guard = Guard(out, outdir / 'rejected.tif')
    result = run_main(capsys, *args, out, *inputs)
    assert len(calls) >= nth, f'{name} was called {len(calls)} times only'
    _assert_interrupted(result, guard, outdir)


@pytest.mark.slow
# a signal that lands in a weakref callback or a finalizer is "ignored" by
# Python itself (printed, not raised); the run then goes on and must still end
# cleanly, which the test checks
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_ctrl_c_at_every_moment(tmp_path, capsys):
    """A real SIGINT delivered as imgstack calls any function, for each call
    of a whole run in turn (deterministic "any moment"): every run ends
    with 130 and nothing written and nothing left, or, when the signal
    comes after the outputs are complete, with both complete outputs."""
    indir, outdir = in_and_out_dirs(tmp_path)
    # single-strip inputs taller than a band: decoded once to raw temporaries
    inputs = [write(indir / f'in{i}.tif', frame(i, shape=(16, 20)), compression='zlib',
                    rowsperstrip=16) for i in range(3)]
    argv = ['-q', '-r', '4', '--rejection-map', str(outdir / 'rejected.tif'),
            str(outdir / 'out.tif'), *inputs]
    assert run_main(capsys, *argv).status == 0
    reference = {name: (outdir / name).read_bytes() for name in os.listdir(outdir)}
    assert sorted(reference) == ['out.tif', 'rejected.tif']
    for name in reference:
        os.unlink(outdir / name)
    source = imgstack.__file__
    failures: list[str] = []
    n = 0
    while True:
        n += 1
        state: dict[str, Any] = {'calls': 0, 'stacking': False, 'at': None}

        def tracer(frame: Any, event: str, arg: Any, n: int = n, state: Any = state) -> None:
            if event != 'call':
                return
            if frame.f_code.co_name == 'stack_files' and frame.f_code.co_filename == source:
                state['stacking'] = True
            caller = frame.f_back
            if caller is not None and caller.f_code.co_filename == source:
                state['calls'] += 1
                if state['calls'] == n:
                    state['at'] = (f'{caller.f_code.co_name}:{caller.f_lineno} '
                                   f'calling {frame.f_code.co_name}')
                    signal.raise_signal(signal.SIGINT)

        capsys.readouterr()
        previous = sys.gettrace()
        with cli_logging():
            sys.settrace(tracer)
            try:
                status: Any = imgstack.main(argv)
            except KeyboardInterrupt:
                status = 'KeyboardInterrupt escaped main()'
            except BaseException as exc:  # noqa: BLE001
                status = f'{type(exc).__name__} escaped main(): {exc}'
            finally:
                sys.settrace(previous)
        err = capsys.readouterr().err
        if state['at'] is None:  # n is past the last call: all moments done
            break
        left = {name: (outdir / name).read_bytes() for name in os.listdir(outdir)}
        complete = left == reference
        if status == 130:
            ok = not left and 'Traceback' not in err and 'interrupt' in err.lower()
        elif status == 0:
            ok = complete
        elif status == 'KeyboardInterrupt escaped main()':
            # acceptable before the job starts (the program's entry point may
            # catch it) or after it has finished: never in between
            ok = (not left and not state['stacking']) or complete
        else:
            ok = False
        if not ok:
            failures.append(
                f'SIGINT at {state["at"]}: status {status!r}, left {sorted(left)}'
                + (f', stderr {err!r}' if 'Traceback' in err else '')
            )
        for name in left:
            os.unlink(outdir / name)
    assert n > 100, f'only {n} calls traced'
    assert not failures, f'{len(failures)} of {n - 1} moments fail:\n' + '\n'.join(failures)


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
