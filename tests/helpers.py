# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Helpers of the tests, each defined once: frames and files to stack,
imgstack run in-process and as a program, the one-line error of README's
"Errors and exit statuses" checked, what a run does to the file system
recorded, and the peak memory of a child process measured.

The fixtures are in ``conftest.py`` at the top of the repository; test
files import these as ``from tests.helpers import ...`` (``pythonpath = .``
in pytest.ini) and never import one another.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import glob
import io
import logging
import os
import re
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import imgstack

IMGSTACK = os.path.abspath(imgstack.__file__)
IS_ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0
ROOT_REASON = 'runs as root, which ignores file permissions'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # README.rst, .ci/run
# what the tests allow above the budget for Python itself (README, Memory and
# speed: the interpreter's own footprint)
INTERPRETER = 64 * imgstack.MIB


# -- frames and files --------------------------------------------------------


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


def write_frames(directory: Path | str, stack: Any, name: str = 'in', planar: bool = False,
                 **kwargs: Any) -> list[str]:
    """Write each frame of a stack as ``{name}00.tif``, ``{name}01.tif`` ... in
    directory (``planar``: channels last in the stack, first in the file);
    return the paths."""
    kwargs.setdefault('metadata', None)
    paths = []
    for i, image in enumerate(stack):
        paths.append(str(Path(directory) / f'{name}{i:02d}.tif'))
        tifffile.imwrite(paths[-1], np.moveaxis(image, -1, 0) if planar else image, **kwargs)
    return paths


def inputs_in(directory: Path, count: int = 3, shape: Sequence[int] = (40, 50),
              dtype: Any = np.uint16, **kwargs: Any) -> list[str]:
    """Write count stackable inputs into directory; return their paths."""
    directory.mkdir(exist_ok=True)
    return [write(directory / f'in{i}.tif', frame(i, shape=shape, dtype=dtype), **kwargs)
            for i in range(count)]


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


# -- running imgstack --------------------------------------------------------


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


def child(*args: str, env: dict[str, str] | None = None, cwd: str | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a child process; return its status, stdout and stderr."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**os.environ, 'PYTHONDONTWRITEBYTECODE': '1', **(env or {})},
    )


def run_measured(args, limits=()):
    """Run imgstack in a fresh measuring process so that RUSAGE_CHILDREN
    holds this run alone; return (status, stderr, peak RSS bytes)."""
    code = (
        'import os, resource, subprocess, sys\n'
        'limits = eval(sys.argv[1])\n'
        'def setup():\n'
        '    for what, value in limits:\n'
        '        resource.setrlimit(what, (value, value))\n'
        'p = subprocess.run(sys.argv[2:], preexec_fn=setup, stderr=subprocess.PIPE)\n'
        'peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n'
        'sys.stdout.write(str(peak) + "\\n")\n'
        'sys.stdout.write(str(p.returncode) + "\\n")\n'
        'sys.stdout.write(p.stderr.decode())\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code, repr(list(limits)), sys.executable, IMGSTACK, *args],
        capture_output=True, text=True, timeout=600,
    )
    peak, status, err = done.stdout.split('\n', 2)
    return int(status), err, int(peak)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- what a run leaves -------------------------------------------------------


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


def leftovers(directory: Path | str) -> list[str]:
    """Temporary files of any naming scheme: hidden names, .part, .raw, .tmp."""
    return sorted(
        name for name in os.listdir(directory)
        if name.startswith('.') or name.endswith(('.part', '.raw', '.tmp'))
    )


# -- TIFF files taken apart --------------------------------------------------


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


def remove_tags(path: str, codes: set[int]) -> None:
    """Remove entries from the first IFD of a little-endian classic TIFF
    (their out-of-line values stay behind, unreferenced)."""
    data = bytearray(Path(path).read_bytes())
    assert data[:4] == b'II*\x00'
    ifd = struct.unpack_from('<I', data, 4)[0]
    count = struct.unpack_from('<H', data, ifd)[0]
    entries = [bytes(data[ifd + 2 + 12 * i:ifd + 14 + 12 * i]) for i in range(count)]
    following = struct.unpack_from('<I', data, ifd + 2 + 12 * count)[0]
    kept = [e for e in entries if struct.unpack_from('<H', e)[0] not in codes]
    assert len(kept) == count - len(codes), 'tag not found'
    block = struct.pack('<H', len(kept)) + b''.join(kept) + struct.pack('<I', following)
    size = 2 + 12 * count + 4
    data[ifd:ifd + size] = block + bytes(size - len(block))
    Path(path).write_bytes(data)


def tag_values(path: str | Path) -> dict[int, Any]:
    """Tag code -> value of the first image of a TIFF file."""
    with tifffile.TiffFile(path) as tif:
        return {tag.code: tag.value for tag in tif.pages.first.tags}


# -- what a run does to the file system --------------------------------------


def real_path(path: str) -> str:
    """Absolute path with the directories resolved, not the last name (which
    may be a planted symlink)."""
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(head), tail)


class FileLog:
    """Record what a run does to the files under root.

    Wraps ``os.open``, ``open``/``io.open``, ``os.link``, ``os.rename``,
    ``os.replace``, ``os.fsync`` and ``os.fdatasync``.  ``events`` holds, in
    order, dicts with ``kind`` ('os.open', 'open', 'publish', 'sync'),
    ``path`` and details.  ``on_create(path)`` runs right after a file is
    created under root (``os.open`` with ``O_CREAT``); ``on_open(path)``
    after any other open by name under root; ``fail_publish(dst)`` may
    raise instead of publishing.  Only calls while ``active`` are recorded.
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        root: Path | str,
        *,
        on_create: Callable[[str], None] | None = None,
        on_open: Callable[[str], None] | None = None,
        fail_publish: Callable[[str], None] | None = None,
    ) -> None:
        self.root = os.path.realpath(root)
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.active = True
        self.on_create = on_create
        self.on_open = on_open
        self.fail_publish = fail_publish
        self.real_open = os.open
        self.real_builtin_open = builtins.open
        self._real = {name: getattr(os, name)
                      for name in ('link', 'rename', 'replace', 'fsync', 'fdatasync')}
        monkeypatch.setattr(os, 'open', self._os_open)
        monkeypatch.setattr(builtins, 'open', self._open)
        monkeypatch.setattr(io, 'open', self._open)
        for name in ('link', 'rename', 'replace'):
            monkeypatch.setattr(os, name, self._publisher(name))
        monkeypatch.setattr(os, 'fsync', self._syncer('fsync'))
        monkeypatch.setattr(os, 'fdatasync', self._syncer('fdatasync'))

    def _where(self, path: Any, dir_fd: int | None = None) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        name = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(name):
            name = os.path.join(os.readlink(f'/proc/self/fd/{dir_fd}'), name)
        name = real_path(name)
        return name if name.startswith(self.root + os.sep) else None

    def _add(self, **event: Any) -> None:
        if self.active:
            with self.lock:
                self.events.append(event)

    def _os_open(self, path: Any, flags: int, mode: int = 0o777, *,
                 dir_fd: int | None = None) -> int:
        fd = self.real_open(path, flags, mode, dir_fd=dir_fd)
        where = self._where(path, dir_fd) if self.active else None
        if where is not None:
            self._add(kind='os.open', path=where, flags=flags, fd=fd)
            if flags & os.O_CREAT:
                if self.on_create is not None:
                    self.on_create(where)
            elif self.on_open is not None:
                self.on_open(where)
        return fd

    def _open(self, file: Any, mode: str = 'r', *args: Any, **kwargs: Any) -> Any:
        result = self.real_builtin_open(file, mode, *args, **kwargs)
        where = self._where(file) if self.active else None
        if where is not None:
            self._add(kind='open', path=where, mode=mode)
            if self.on_open is not None:
                self.on_open(where)
        return result

    def _publisher(self, name: str) -> Callable[..., Any]:
        real = self._real[name]

        def publish(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            target = self._where(dst, kwargs.get('dst_dir_fd'))
            if target is not None:
                source = os.fsdecode(src)
                if not source.startswith('/proc/'):
                    source = self._where(src, kwargs.get('src_dir_fd')) or source
                self._add(kind='publish', how=name, path=source, dst=target)
                if self.fail_publish is not None and self.active:
                    self.fail_publish(target)
            return real(src, dst, *args, **kwargs)

        return publish

    def _syncer(self, name: str) -> Callable[[Any], None]:
        real = self._real[name]

        def sync(fd: Any) -> None:
            number = fd if isinstance(fd, int) else fd.fileno()
            with_name = None
            with contextlib.suppress(OSError):
                with_name = os.readlink(f'/proc/self/fd/{number}')
            real(fd)
            if with_name is not None:
                with_name = with_name.removesuffix(' (deleted)')
                self._add(kind='sync', path=real_path(with_name), fd=number)

        return sync

    # -- analysis --

    def created(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e['kind'] == 'os.open' and e['flags'] & os.O_CREAT]

    def opens_of(self, path: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e['kind'] in ('os.open', 'open') and e['path'] == path]

    def published(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e['kind'] == 'publish']


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every TIFF file tifffile opens."""
    opened: list[str] = []
    real = tifffile.TiffFile

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, file: Any, *a: Any, **k: Any) -> None:
            opened.append(str(file))
            super().__init__(file, *a, **k)

    monkeypatch.setattr(tifffile, 'TiffFile', Counting)
    return opened
