# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""OUTPUT and the rejection map are written to temporary files created once,
never through a planted symlink, synced, given the umask's mode (a file
that -f replaces keeps its own) and published all or none (README, Files:
"Nothing is lost, and nothing is let in").

Wrappers around ``os.open``, ``open``, ``os.link``/``os.rename``/
``os.replace`` and ``os.fsync`` (`FileLog`) record what the run does to the
file system.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import tifffile

import imgstack
from tests.helpers import (
    FileLog,
    Guard,
    assert_error,
    inputs_in,
    leftovers,
    real_path,
    run_main,
)


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


# -- temporary files ---------------------------------------------------------


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
    wanted = {real_path(str(t)) for t in targets}
    for event in log.published():
        if event['dst'] in wanted and not (event['path'] in made
                                           or event['path'].startswith('/proc/')):
            problems.append(f"{os.path.basename(event['dst'])} published from "
                            f"{event['path']}, which this run did not create")
    assert not problems, '\n'.join(problems)
    assert tifffile.imread(targets[0]).shape == (40, 50)


@pytest.mark.parametrize('kind', ['plain', 'everything'])
def test_symlink_planted_for_a_temporary_is_not_followed(tmp_path, capsys, monkeypatch, kind):
    """An attacker who wins every race: as soon as a temporary file
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
    if hasattr(imgstack, '_read_rows'):
        real_read = imgstack._read_rows

        def read_rows(*a: Any, **k: Any) -> Any:
            look()
            return real_read(*a, **k)

        monkeypatch.setattr(imgstack, '_read_rows', read_rows)
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


# -- publishing --------------------------------------------------------------


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
    wanted = {real_path(str(t)) for t in targets}
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
    target = real_path(str(rmap))

    def refuse(dst: str) -> None:
        if dst == target:
            raise PermissionError(errno.EACCES, 'Permission denied', str(rmap))

    guard = Guard(out, rmap)
    FileLog(monkeypatch, outdir, fail_publish=refuse)
    result = run_main(capsys, *args, out, *paths)
    assert_error(result, guard, str(rmap), only_line=False)
    assert leftovers(outdir) == []


@pytest.mark.parametrize('existing', [False, True], ids=['new', 'replaced'])
@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002], ids=['022', '077', '002'])
def test_output_mode_follows_umask(tmp_path, capsys, umask, existing):
    """OUTPUT and the rejection map get 0666 & ~umask (as cp and tifffile
    do); a file that -f replaces keeps its permissions, as cp and tifffile
    keep them (README, Files): a private 0600 file stays private."""
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
        want = (0o600 if umask != 0o077 else 0o644) if existing else 0o666 & ~umask
        assert mode == want, f'{p.name}: {oct(mode)} under umask {oct(umask)}'


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
