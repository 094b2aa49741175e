# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Nothing lost and nothing let in, under every fault a machine can throw.

One test (or parametrized group) per finding of issue 11, each reproducing
the fault: symlinks planted in the output folder, per-input bookkeeping
outside the memory budget, SIGTERM/SIGHUP/SIGKILL and a slow Ctrl-C, inputs
that change during the run, special files, OUTPUT and rejection-map names,
output that is silently wrong, and messages (CONTRACT sections 1, 3 and 4;
the exact messages are those of spec_10_11).

Faults are injected deterministically where possible: wrappers around
``os.open``, ``open``, ``os.link``/``os.rename``/``os.replace`` record what
the run does to the file system, and a hook inside the run changes an input
at a known moment.  Signals go to a child process once its progress shows
that the run has started.  Cases that need root (device nodes, a small
tmpfs) skip with a reason when it is not available; CI runs as root.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import errno
import gc
import io
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import imgstack
from test_errors import (
    IMGSTACK,
    IS_ROOT,
    Guard,
    Result,
    assert_error,
    frame,
    run_cli,
    run_main,
    segments,
    write,
)
from test_memory import INTERPRETER, run_measured

# -- helpers -----------------------------------------------------------------


def leftovers(directory: Path | str) -> list[str]:
    """Temporary files of any naming scheme: hidden names, .part, .raw, .tmp."""
    return sorted(
        name for name in os.listdir(directory)
        if name.startswith('.') or name.endswith(('.part', '.raw', '.tmp'))
    )


def inputs_in(directory: Path, count: int = 3, shape: Sequence[int] = (40, 50),
              dtype: Any = np.uint16, **kwargs: Any) -> list[str]:
    """Write count stackable inputs into directory; return their paths."""
    directory.mkdir(exist_ok=True)
    return [write(directory / f'in{i}.tif', frame(i, shape=shape, dtype=dtype), **kwargs)
            for i in range(count)]


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


def _real(path: str) -> str:
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
        name = _real(name)
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
            try:
                with_name = os.readlink(f'/proc/self/fd/{number}')
            except OSError:
                pass
            real(fd)
            if with_name is not None:
                with_name = with_name.removesuffix(' (deleted)')
                self._add(kind='sync', path=_real(with_name), fd=number)

        return sync

    # -- analysis --

    def created(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e['kind'] == 'os.open' and e['flags'] & os.O_CREAT]

    def opens_of(self, path: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e['kind'] in ('os.open', 'open') and e['path'] == path]

    def published(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e['kind'] == 'publish']


def _case_args(kind: str, indir: Path, outdir: Path) -> tuple[list[str], list[str], list[Path]]:
    """Inputs, options and targets of a run: 'plain' (uncompressed inputs,
    one OUTPUT) or 'everything' (single-strip deflate inputs decoded once to
    temporaries, a compressed rejection map, both replacing old files)."""
    out, rmap = outdir / 'out.tif', outdir / 'rejected.tif'
    if kind == 'plain':
        return inputs_in(indir), ['-q'], [out]
    paths = inputs_in(indir, compression='zlib', rowsperstrip=40)
    out.write_bytes(b'old stack')
    rmap.write_bytes(b'old map')
    return paths, ['-q', '-f', '-r', '4', '-c', 'zlib', '--rejection-map', str(rmap)], [out, rmap]


# -- 1. temporary files and symlinks -------------------------------------------


@pytest.mark.parametrize('kind', ['plain', 'everything'])
def test_temporaries_created_once_and_never_reopened(tmp_path, capsys, monkeypatch, kind):
    """Every temporary file is created with O_EXCL|O_NOFOLLOW, opened by name
    that one time only (tifffile gets a file object, the map and the raw
    decode files are not reopened), no other file in the output folder is
    opened for writing by name, and OUTPUT and the map are published from
    names this run created."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths, args, targets = _case_args(kind, indir, outdir)
    log = FileLog(monkeypatch, outdir)
    result = run_main(capsys, *args, *targets[:1], *paths)
    log.active = False
    assert result.status == 0, result.err
    assert leftovers(outdir) == []
    created = log.created()
    assert created, 'no temporary file was created with os.open under the output folder'
    problems = []
    for event in created:
        name = os.path.basename(event['path'])
        missing = [flag for flag in ('O_EXCL', 'O_NOFOLLOW')
                   if not event['flags'] & getattr(os, flag)]
        if missing:
            problems.append(f'{name} created without {"|".join(missing)}')
        opens = log.opens_of(event['path'])
        if len(opens) != 1:
            how = ', '.join(f"{e['kind']}({e.get('mode') or oct(e['flags'])})" for e in opens)
            problems.append(f'{name} opened by name {len(opens)} times: {how}')
    creations = {id(e) for e in created}
    for event in log.events:
        if event['kind'] == 'os.open' and id(event) not in creations:
            writes = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC
            if event['flags'] & writes:
                problems.append(f"{os.path.basename(event['path'])}: os.open for writing by "
                                f"name without O_CREAT|O_EXCL ({oct(event['flags'])})")
        elif event['kind'] == 'open' and set(event['mode']) & set('wax+'):
            problems.append(f"{os.path.basename(event['path'])}: open({event['mode']!r}) by name")
    made = {e['path'] for e in created}
    wanted = {_real(str(t)) for t in targets}
    for event in log.published():
        if event['dst'] in wanted and not (event['path'] in made
                                           or event['path'].startswith('/proc/')):
            problems.append(f"{os.path.basename(event['dst'])} published from "
                            f"{event['path']}, which this run did not create")
    assert not problems, '\n'.join(problems)
    assert tifffile.imread(targets[0]).shape == (40, 50)


@pytest.mark.parametrize('kind', ['plain', 'everything'])
def test_symlink_planted_for_a_temporary_is_not_followed(tmp_path, capsys, monkeypatch, kind):
    """The attacker of finding 1 wins every race: as soon as a temporary file
    is created in the (world-writable) output folder, its name is replaced
    by a symlink to a private file.  Whatever the run then does, the
    private file is neither written, truncated nor chmod'ed."""
    indir, outdir, private = tmp_path / 'in', tmp_path / 'out', tmp_path / 'private'
    outdir.mkdir()
    private.mkdir()
    paths, args, targets = _case_args(kind, indir, outdir)
    victims: list[Path] = []

    def plant(path: str) -> None:
        victim = private / f'secret{len(victims)}'
        victim.write_bytes(b'root only: do not touch')
        os.chmod(victim, 0o600)
        os.utime(victim, ns=(1_000_000_000, 1_000_000_000))
        victims.append(victim)
        os.unlink(path)
        os.symlink(victim, path)

    log = FileLog(monkeypatch, outdir, on_create=plant)
    result = run_main(capsys, *args, *targets[:1], *paths)
    log.active = False
    assert 'Traceback' not in result.err, result.err
    assert victims, 'no temporary file was created with os.open under the output folder'
    for victim in victims:
        st = os.lstat(victim)
        assert stat.S_ISREG(st.st_mode), f'{victim.name} was replaced'
        assert victim.read_bytes() == b'root only: do not touch', \
            f'{victim.name} was written through a planted symlink'
        assert stat.S_IMODE(st.st_mode) == 0o600, f'{victim.name} was chmod-ed: {oct(st.st_mode)}'
        assert st.st_mtime_ns == 1_000_000_000, f'{victim.name} was touched'


def test_decode_temporaries_never_visible(tmp_path, capsys, monkeypatch):
    """Single-strip inputs taller than a band are decoded once to temporary
    files: they are unlinked right after creation, so at no moment of the
    run does the output folder hold more than the output's own temporary
    (a SIGKILL cannot leave them, an attacker cannot swap them)."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir, compression='zlib', rowsperstrip=40)
    out = outdir / 'out.tif'
    snapshots: list[list[str]] = []

    def look(*_: Any) -> None:
        snapshots.append(leftovers(outdir))

    log = FileLog(monkeypatch, outdir, on_open=look)
    for name in ('pwrite', 'write', 'pwritev'):
        real = getattr(os, name)

        def writing(fd: int, *a: Any, _real: Any = real, **k: Any) -> Any:
            look()
            return _real(fd, *a, **k)

        monkeypatch.setattr(os, name, writing)
    if hasattr(imgstack, 'read_rows'):
        real_read = imgstack.read_rows

        def read_rows(*a: Any, **k: Any) -> Any:
            look()
            return real_read(*a, **k)

        monkeypatch.setattr(imgstack, 'read_rows', read_rows)
    result = run_main(capsys, '-q', '-r', '4', out, *paths)
    log.active = False
    assert result.status == 0, result.err
    assert snapshots, 'the run was not observed'
    published = {os.path.basename(e['path']) for e in log.published()}
    hidden = {os.path.basename(e['path']) for e in log.created()} - published
    seen = sorted({name for snap in snapshots for name in snap
                   if name in hidden or name.endswith('.raw')})
    assert not seen, f'decode temporaries visible during the run: {seen}'
    most = max(len(snap) for snap in snapshots)
    assert most <= 1, f'{most} temporary files visible at once: {max(snapshots, key=len)}'
    assert leftovers(outdir) == []


def test_data_synced_before_publishing(tmp_path, capsys, monkeypatch):
    """OUTPUT and the rejection map are fsync'ed before they are published,
    so a crash right after a run cannot leave them empty or partial."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths, args, targets = _case_args('everything', indir, outdir)
    log = FileLog(monkeypatch, outdir)
    result = run_main(capsys, *args, *targets[:1], *paths)
    log.active = False
    assert result.status == 0, result.err
    wanted = {_real(str(t)) for t in targets}
    synced: set[str] = set()
    published = set()
    for event in log.events:
        if event['kind'] == 'sync':
            synced.add(event['path'])
        elif event['kind'] == 'publish' and event['dst'] in wanted:
            published.add(event['dst'])
            if event['path'].startswith('/proc/'):
                continue  # linked from its descriptor: no name to match a sync with
            assert event['path'] in synced, \
                f"{os.path.basename(event['dst'])} published before its data were synced"

    assert published == wanted, f'not published by link/rename: {wanted - published}'


# -- 2. memory: per-input bookkeeping -------------------------------------------


@pytest.fixture(scope='module')
def many_strips(tmp_path_factory):
    """100 inputs of 65536 rows x 4 columns uint8, one row per strip."""
    directory = tmp_path_factory.mktemp('strips')
    rng = np.random.default_rng(11)
    image = rng.integers(0, 255, (65536, 4), dtype=np.uint8)
    first = write(directory / 'in000.tif', image, rowsperstrip=1)
    paths = [first]
    for i in range(1, 100):
        paths.append(str(directory / f'in{i:03d}.tif'))
        shutil.copyfile(first, paths[-1])
    return directory, paths, image


def test_per_input_bookkeeping_is_counted(many_strips):
    """Whatever an input keeps in memory after its header is read (its strip
    tables: 1 MiB of int64 for 65536 strips before the fix) is counted by
    `plan_bands`, or not kept at all."""
    _, paths, _ = many_strips
    imgstack.open_frame(paths[1])  # warm up: imports and caches
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        first = imgstack.open_frame(paths[0])
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    plan = imgstack.plan_bands([first] * 100, memory=1 << 30, rows=100)
    assert plan.needed >= 100 * kept, (
        f'each input keeps {kept} bytes; 100 need {100 * kept / imgstack.MIB:.0f} MiB, '
        f'the plan counts {plan.needed / imgstack.MIB:.0f} MiB in all')


@pytest.mark.slow
def test_many_strips_stay_in_budget(many_strips):
    """100 inputs of 65536 strips under -m 48M: peak RSS within the budget
    plus the interpreter's allowance (203 MiB before the fix).  If 48M
    cannot hold the tables, the run must say so and name a budget that
    works, and that budget must hold."""
    directory, paths, image = many_strips
    out = str(directory / 'out.tif')
    budget = '48M'
    status, err, peak = run_measured(['-q', '-f', '-m', budget, out, *paths])
    if status == 1 and 'too small' in err:
        assert err.count('\n') <= 1, err
        match = re.search(r'-m (\d+M)', err)
        assert match, err
        budget = match.group(1)
        assert imgstack.parse_size(budget) <= 128 * imgstack.MIB, err
        status, err, peak = run_measured(['-q', '-f', '-m', budget, out, *paths])
    assert status == 0, err
    limit = imgstack.parse_size(budget) + INTERPRETER
    assert peak <= limit, f'peak RSS {peak / imgstack.MIB:.0f} MiB under -m {budget}'
    np.testing.assert_array_equal(tifffile.imread(out), image)


# -- 3. signals --------------------------------------------------------------


@pytest.fixture(scope='module')
def big_frames(tmp_path_factory):
    """8 noisy frames of 2000x2000 uint16 (a run takes about a second with
    -r 2 --center median): uncompressed, and single-strip deflate (decoded
    once to temporaries)."""
    directory = tmp_path_factory.mktemp('big')
    rng = np.random.default_rng(5)
    base = rng.integers(1000, 50000, (2000, 2000)).astype(np.float32)
    sets: dict[str, list[str]] = {'plain': [], 'deflate': []}
    for i in range(8):
        image = (base + rng.normal(0, 300, base.shape)).astype(np.uint16)
        sets['plain'].append(write(directory / f'plain{i}.tif', image))
        sets['deflate'].append(write(directory / f'deflate{i}.tif', image, compression='zlib',
                                     compressionargs={'level': 1}, rowsperstrip=2000))
    return sets


def _signal_when(
    argv: Sequence[Any],
    log: Path,
    ready: Callable[[str], bool],
    signum: int,
    delay: float = 0.05,
) -> tuple[Result, bool, float]:
    """Run imgstack.py with stderr to a file; once ready(stderr) holds, wait
    delay and send signum.  Return the result, whether the signal was sent
    while it ran, and the seconds from the signal to the exit."""
    env = {**os.environ, 'PYTHONDONTWRITEBYTECODE': '1', 'OPENBLAS_NUM_THREADS': '1'}
    with open(log, 'w+') as err:
        proc = subprocess.Popen([sys.executable, IMGSTACK, *map(str, argv)],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        sent, seconds = False, 0.0
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and not ready(log.read_text()):
                if time.monotonic() > deadline:
                    raise AssertionError(f'the run never started: {log.read_text()!r}')
                time.sleep(0.002)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signum)
                sent = True
                started = time.monotonic()
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if sent:
                seconds = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return Result(proc.returncode, out, log.read_text()), sent, seconds


def _progress_started(text: str) -> bool:
    return re.search(r'^\s*\d+%', text, re.MULTILINE) is not None


@pytest.mark.parametrize(
    ('name', 'source', 'existing'),
    [('SIGTERM', 'plain', True), ('SIGHUP', 'plain', False),
     ('SIGTERM', 'deflate', False), ('SIGHUP', 'deflate', True)],
)
def test_terminate_and_hang_up_mid_run(tmp_path, big_frames, name, source, existing):
    """SIGTERM and SIGHUP are handled like Ctrl-C: nothing written or left,
    one line, exit 143 / 129."""
    if not hasattr(signal, name):
        pytest.skip(f'no {name} here')
    signum = getattr(signal, name)
    outdir = tmp_path / 'out'
    outdir.mkdir()
    out = outdir / 'out.tif'
    args = ['-r', '2', '--center', 'median', '-i', '5']
    if existing:
        out.write_bytes(b'precious')
        args.append('-f')
    guard = Guard(out)
    result, sent, _ = _signal_when([*args, out, *big_frames[source]], tmp_path / 'stderr',
                                   _progress_started, signum)
    assert sent, f'the run ended before the signal: {result.err}'
    assert 'Traceback' not in result.err, result.err
    assert result.status == 128 + signum, (result.status, result.err)
    message = {'SIGTERM': 'terminated', 'SIGHUP': 'hung up'}[name]
    assert result.lines[-1] == f'imgstack: {message}; nothing written', result.err
    assert not [line for line in result.lines if line.startswith('imgstack: error')], result.err
    assert result.out == ''
    guard.check()


@pytest.fixture
def interrupts():
    """imgstack's handler installed for SIGINT and SIGTERM, as main() does."""
    handler = imgstack.Interrupts()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    yield handler
    for signum, old in previous.items():
        signal.signal(signum, old)


def test_signal_while_waiting_for_a_worker_waits_for_a_checkpoint(interrupts):
    """A signal that comes while the main thread is in the standard library's
    thread code is held back to the next checkpoint: raised there, it can
    leave a lock released twice (CI saw "RuntimeError: cannot release
    un-acquired lock" and a traceback for SIGHUP) or held for ever (a hang)."""
    def work() -> str:
        time.sleep(0.2)  # the main thread is waiting in Future.result
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        return 'done'

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            assert pool.submit(work).result() == 'done'
        except imgstack.Interrupted:
            pytest.fail('the signal was raised inside Future.result')
    assert interrupts.pending == signal.SIGTERM
    with pytest.raises(imgstack.Interrupted) as info:
        imgstack.checkpoint()
    assert info.value.signum == signal.SIGTERM
    assert interrupts.pending is None
    imgstack.checkpoint()  # raised once only


def test_waits_for_workers_answer_a_signal_before_the_work_ends(interrupts):
    """`wait_for` and `pool_map` look for a held-back signal while they wait:
    the run stops without waiting for a long piece of work (which is told to
    stop by the run's cancel event once the interruption is raised)."""
    release = threading.Event()

    def work(k: int) -> int:
        if k == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            release.wait(30)
        return k

    for wait in ('wait_for', 'pool_map'):
        release.clear()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(work, 1)]
            with pytest.raises(imgstack.Interrupted):
                if wait == 'wait_for':
                    imgstack.wait_for(futures[0])
                else:
                    list(imgstack.pool_map(pool, work, [0, 1, 2]))
            assert not futures[0].done(), wait
            release.set()


def test_a_timed_out_read_in_a_worker_is_its_error(tmp_path):
    """A worker's TimeoutError (a read of a network file that timed out,
    ETIMEDOUT) is raised by `wait_for` and `pool_map` as the worker's
    error, not taken for a wait that ran out and waited on for ever."""
    def work(k: int) -> int:
        raise TimeoutError(errno.ETIMEDOUT, 'Connection timed out', str(tmp_path / 'in.tif'))

    caught: list[BaseException] = []

    def waits() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            for wait in (lambda: imgstack.wait_for(pool.submit(work, 0)),
                         lambda: list(imgstack.pool_map(pool, work, [0, 1]))):
                try:
                    wait()
                except TimeoutError as exc:
                    caught.append(exc)

    waiter = threading.Thread(target=waits, daemon=True)
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive(), 'a wait never ended'
    assert [exc.filename for exc in caught] == [str(tmp_path / 'in.tif')] * 2


def test_signal_held_back_at_the_end_is_raised_before_publishing(tmp_path, capsys, monkeypatch):
    """A signal held back while the last workers finished (no checkpoint
    after it) still stops the run before the outputs are published."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    indir.mkdir()
    outdir.mkdir()
    inputs = [write(indir / f'in{i}.tif', frame(i, shape=(40, 50))) for i in range(3)]
    out = outdir / 'out.tif'
    original = imgstack.Job.write

    def write_then_signal(self: Any, *a: Any, **k: Any) -> Any:
        done = original(self, *a, **k)
        signal.getsignal(signal.SIGINT).pending = signal.SIGTERM  # as if held back
        return done

    monkeypatch.setattr(imgstack.Job, 'write', write_then_signal)
    result = run_main(capsys, '-r', '4', out, *inputs)
    assert result.status == 128 + signal.SIGTERM, result.err
    assert result.lines[-1] == 'imgstack: terminated; nothing written', result.err
    assert os.listdir(outdir) == []


def test_sigkill_leaves_no_decode_temporaries(tmp_path, big_frames):
    """SIGKILL cannot be caught: after it, the output folder holds at most
    the output's own temporary file, never the inputs decoded beforehand."""
    outdir = tmp_path / 'out'
    outdir.mkdir()
    out = outdir / 'out.tif'
    args = ['-r', '2', '--center', 'median', '-i', '5']
    result, sent, _ = _signal_when([*args, out, *big_frames['deflate']], tmp_path / 'stderr',
                                   _progress_started, signal.SIGKILL, delay=0.0)
    assert sent, f'the run ended before the signal: {result.err}'
    assert result.status == -signal.SIGKILL
    left = leftovers(outdir)
    assert not [name for name in left if name.endswith('.raw')], left
    assert len(left) <= 1, f'more than the output temporary left: {left}'
    assert not out.exists()


@pytest.fixture(scope='module')
def lzw_frames(tmp_path_factory):
    """Two 4000x4000 uint16 frames, each one LZW strip larger than the
    smallest budget: decoded slowly in pieces."""
    directory = tmp_path_factory.mktemp('lzw')
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:4000, 0:4000]
    base = (1000 + y // 10 + x // 20).astype(np.uint16)
    del y, x
    return [write(directory / f'lzw{i}.tif', base + rng.integers(0, 4, base.shape, np.uint16),
                  compression='lzw', rowsperstrip=4000) for i in range(2)]


@pytest.mark.slow
def test_ctrl_c_during_piecewise_lzw_decode(tmp_path, lzw_frames):
    """Under the smallest budget that works, single-strip LZW is decoded in
    pieces (slowly); Ctrl-C there takes effect within a second (45 s before
    the fix), with nothing left."""
    outdir = tmp_path / 'out'
    outdir.mkdir()
    out = outdir / 'out.tif'
    small = run_cli('-m', '1M', out, *lzw_frames)
    match = re.search(r'-m (\d+M)', small.err)
    assert small.status == 1 and match, small.err
    budget = match.group(1)
    guard = Guard(out)
    result, sent, seconds = _signal_when(
        ['-v', '-m', budget, out, *lzw_frames], tmp_path / 'stderr',
        lambda text: 'decod' in text, signal.SIGINT, delay=0.7)
    assert sent, f'the run ended before the signal: {result.err}'
    assert seconds < 1.0, f'Ctrl-C took {seconds:.1f} s or more to take effect'
    assert result.status == 130, (result.status, result.err)
    assert 'Traceback' not in result.err
    assert leftovers(outdir) == []
    guard.check()


AFTER_PUBLISH = textwrap.dedent(r'''
    import io, json, os, runpy, signal, sys
    script, outdir, out, *argv = sys.argv[1:]  # argv: imgstack's, OUTPUT included
    results = []
    for k in range(1, 400):
        state = {'n': 0, 'at': None}

        def profile(frame, event, arg, k=k, state=state):
            if event not in ('call', 'return') or state['at'] is not None:
                return
            code = frame.f_code
            if code.co_name == '<module>':
                return
            caller = frame.f_back
            if code.co_filename != script and (
                    caller is None or caller.f_code.co_filename != script):
                return
            if not os.path.lexists(out):
                return
            state['n'] += 1
            if state['n'] == k:
                state['at'] = f'{event} {code.co_name}'
                signal.raise_signal(signal.SIGINT)

        sys.argv = [script, *argv]
        sys.stderr = err = io.StringIO()
        sys.setprofile(profile)
        try:
            runpy.run_path(script, run_name='__main__')
            status = 'returned without exit'
        except SystemExit as exc:
            status = exc.code
        except BaseException as exc:
            status = f'{type(exc).__name__} escaped'
        finally:
            sys.setprofile(None)
            sys.stderr = sys.__stderr__
        results.append({'k': k, 'at': state['at'], 'status': status, 'err': err.getvalue(),
                        'left': sorted(os.listdir(outdir))})
        for name in os.listdir(outdir):
            os.unlink(os.path.join(outdir, name))
        if state['at'] is None:
            break
    print(json.dumps(results))
''')


@pytest.mark.slow
def test_ctrl_c_after_publishing_is_success(tmp_path):
    """A Ctrl-C that lands after OUTPUT is published (at each Python call
    and return of imgstack from then on, the script's own ``__main__``
    block included): the run has succeeded, exit 0, OUTPUT in place, the
    summary printed, never 'nothing written'."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir, shape=(20, 30))
    out = outdir / 'out.tif'
    proc = subprocess.run(
        [sys.executable, '-c', AFTER_PUBLISH, IMGSTACK, str(outdir), str(out),
         '--center', 'median', str(out), *paths],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert len(results) > 3, results
    assert results[-1]['at'] is None, 'more moments than tried'
    failures = []
    for r in results:  # the last run had no moment left to signal: a plain run
        ok = (r['status'] == 0 and r['left'] == ['out.tif'] and 'nothing written' not in r['err']
              and 'Traceback' not in r['err'] and str(out) in r['err'])
        if not ok:
            failures.append(f"SIGINT at {r['at']} (#{r['k']}): status {r['status']!r}, "
                            f"left {r['left']}, stderr {r['err'][-300:]!r}")
    assert 'nothing written' not in proc.stderr, proc.stderr[-2000:]
    assert not failures, f'{len(failures)} of {len(results) - 1} moments fail:\n' + '\n'.join(
        failures[:20])


AT_EXIT = textwrap.dedent(r'''
    import os, runpy, signal, sys
    script, *argv = sys.argv[1:]
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name='__main__')
        status = 'returned without exit'
    except SystemExit as exc:
        status = exc.code
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    os.kill(os.getpid(), signal.SIGTERM)  # after the run: changes nothing
    print(status, all(h is signal.SIG_IGN for h in handlers), flush=True)
''')


@pytest.mark.parametrize('outcome', ['success', 'error'])
def test_a_signal_while_the_interpreter_exits_changes_nothing(tmp_path, outcome):
    """Once main() has returned, the script ignores SIGINT, SIGTERM and
    SIGHUP: Python puts back the default handlers while it shuts down,
    and a SIGTERM then killed a run that had published its output (exit
    -15, seen twice in 100 runs signalled at random moments)."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir, shape=(20, 30))
    if outcome == 'error':
        paths.append(str(indir / 'missing.tif'))
    proc = subprocess.run(
        [sys.executable, '-c', AT_EXIT, IMGSTACK, '-q', str(outdir / 'out.tif'), *paths],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['0' if outcome == 'success' else '1', 'True'], proc.stderr
    assert os.listdir(outdir) == (['out.tif'] if outcome == 'success' else [])


# -- 4. inputs that change during the run ---------------------------------------


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
        watched = _real(victim)

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


# -- 5. special files ----------------------------------------------------------


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


# -- 6. OUTPUT and the rejection map ---------------------------------------------


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every TIFF file tifffile opens."""
    opened: list[str] = []
    real = tifffile.TiffFile

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, file: Any, *a: Any, **k: Any) -> None:
            opened.append(str(file))
            super().__init__(file, *a, **k)

    monkeypatch.setattr(tifffile, 'TiffFile', Counting)
    return opened


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
    reads = _count_reads(monkeypatch)
    result = run_main(capsys, '-f', '--rejection-map', rmap, 'out.tif', *paths)
    line = assert_error(result, guard, rmap)
    assert line == f'imgstack: error: {rmap}: the rejection map cannot be OUTPUT'
    assert reads == [], f'inputs were read before the refusal: {reads}'


@pytest.mark.parametrize('existing', [True, False], ids=['force', 'new'])
def test_map_not_published_means_output_not_either(tmp_path, capsys, monkeypatch, existing):
    """When the rejection map cannot be published, OUTPUT is not published
    (nor replaced) either: both or neither."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir)
    out, rmap = outdir / 'out.tif', outdir / 'rejected.tif'
    args = ['-q', '--rejection-map', str(rmap)]
    if existing:
        out.write_bytes(b'old stack')
        rmap.write_bytes(b'old map')
        for p in (out, rmap):
            os.utime(p, ns=(1_000_000_000, 1_000_000_000))
        args.append('-f')
    target = _real(str(rmap))

    def refuse(dst: str) -> None:
        if dst == target:
            raise PermissionError(errno.EACCES, 'Permission denied', str(rmap))

    guard = Guard(out, rmap)
    FileLog(monkeypatch, outdir, fail_publish=refuse)
    result = run_main(capsys, *args, out, *paths)
    assert_error(result, guard, str(rmap), only_line=False)
    assert leftovers(outdir) == []


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
    reads = _count_reads(monkeypatch)
    result = run_main(capsys, *args)
    line = assert_error(result, guard)
    assert line == f'imgstack: error: {given}: {cause}'
    assert reads == [], f'inputs were read before the refusal: {reads}'
    assert not (tmp_path / 'new.tif').exists() and not (tmp_path / 'map.tif').exists()


@pytest.mark.parametrize(
    ('which', 'length'),
    [('output', 250), ('output', 255), ('compressed map', 250), ('compressed map', 255)],
)
def test_long_names(tmp_path, capsys, which, length):
    """Valid names up to 255 bytes work: the temporary names are short."""
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    paths = inputs_in(indir)
    name = 'n' * (length - 4) + '.tif'
    assert len(name.encode()) == length
    if which == 'output':
        out, args = outdir / name, []
        targets = [out]
    else:
        out = outdir / 'out.tif'
        args = ['-c', 'zlib', '--rejection-map', str(outdir / name)]
        targets = [out, outdir / name]
    result = run_main(capsys, '-q', *args, out, *paths)
    assert result.status == 0, result.err
    for target in targets:
        assert tifffile.imread(target, key=0).shape == (40, 50)
    assert leftovers(outdir) == []


# -- 7. output that is wrong without a word ------------------------------------------


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


@pytest.mark.parametrize('tag', ['missing', 'unspecified'])
def test_unspecified_extra_sample_stays_unspecified(tmp_path, capsys, tag):
    """OpenCV's BGRA frames: RGB with 4 samples and no ExtraSamples tag.  The
    4th channel is stacked as data and the output leaves it unspecified
    (ExtraSamples = 0), not unassociated alpha."""
    paths = []
    for i in range(3):
        path = write(tmp_path / f'in{i}.tif', frame(i, shape=(20, 30, 4), dtype=np.uint8),
                     photometric='rgb', extrasamples=['unspecified'])
        if tag == 'missing':
            remove_tags(path, {338})
            with tifffile.TiffFile(path) as tif:
                assert tif.pages.first.extrasamples == ()
        paths.append(path)
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', out, *paths)
    assert result.status == 0, result.err
    assert tifffile.imread(out).shape == (20, 30, 4)
    value = tag_values(out).get(338)
    values = tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))
    assert values == (0,), f'ExtraSamples {value!r}'


@pytest.mark.parametrize('resolution', ['none', '300 dpi'])
def test_resolution_only_when_the_input_has_one(tmp_path, capsys, resolution):
    """No resolution tags in the output when the first input had none (not
    tifffile's 1/1 without unit, which ImageMagick shows as 1x1 dpi)."""
    paths = []
    for i in range(3):
        if resolution == 'none':
            path = write(tmp_path / f'in{i}.tif', frame(i))
            remove_tags(path, {282, 283, 296})
        else:
            path = write(tmp_path / f'in{i}.tif', frame(i), resolution=(300, 300),
                         resolutionunit='INCH')
        paths.append(path)
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', out, *paths)
    assert result.status == 0, result.err
    tags = tag_values(out)
    if resolution == 'none':
        assert 282 not in tags and 283 not in tags, {k: tags[k] for k in (282, 283) if k in tags}
    else:
        assert tags[282] == (300, 1) and tags[283] == (300, 1) and int(tags[296]) == 2


# -- 8. messages -------------------------------------------------------------


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


@pytest.fixture
def small_filesystem(tmp_path):
    """A 64 KiB tmpfs (root only)."""
    if not IS_ROOT or not shutil.which('mount'):
        pytest.skip('mounting a small tmpfs needs root')
    where = tmp_path / 'small'
    where.mkdir()
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {done.stderr.strip()}')
    try:
        yield where
    finally:
        if subprocess.run(['umount', str(where)], capture_output=True).returncode != 0:
            subprocess.run(['umount', '-l', str(where)], capture_output=True)


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
