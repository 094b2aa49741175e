# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by the test files (the helper functions are in
tests/helpers.py): the sets of large frames that take seconds to write
(module-scoped: each test module that asks writes its own set, once), and
the surroundings a test may need (imgstack's signal handler, a small file
system).
"""

from __future__ import annotations

import shutil
import signal
import subprocess

import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import IS_ROOT, write

# -- large frames ------------------------------------------------------------


@pytest.fixture(scope='module')
def big_frames(tmp_path_factory):
    """8 frames of 2000x2000 uint16 for the Ctrl-C tests: uncompressed, and
    single-strip zstd (decoded once to a raw temporary with -r 8)."""
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


@pytest.fixture(scope='module')
def big_noisy_frames(tmp_path_factory):
    """8 noisy frames of 2000x2000 uint16 for the SIGTERM, SIGHUP and SIGKILL
    tests (a run takes about a second with -r 2 --center median):
    uncompressed, and single-strip deflate (decoded once to temporaries)."""
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


@pytest.fixture(scope='module')
def moderate(tmp_path_factory):
    """16 frames of 1200x1000 RGB uint16 (7 MB each, 110 MB in all), stored
    plain and as single-strip LZW."""
    root = tmp_path_factory.mktemp('moderate')
    rng = np.random.default_rng(3)
    sets = {'plain': [], 'lzw1': []}
    base = rng.normal(3000, 300, (1200, 1000, 3)).astype(np.float32)
    for i in range(16):
        frame = (base + rng.normal(0, 40, base.shape)).clip(0, 65535).astype(np.uint16)
        for name, kwargs in (('plain', {}), ('lzw1', {'compression': 'lzw', 'rowsperstrip': 1200})):
            path = str(root / f'{name}{i:02d}.tif')
            tifffile.imwrite(path, frame, photometric='rgb', metadata=None, **kwargs)
            sets[name].append(path)
    return root, sets


# -- surroundings ------------------------------------------------------------


@pytest.fixture
def interrupts():
    """imgstack's handler installed for SIGINT and SIGTERM, as main() does."""
    handler = imgstack._Interrupts()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    yield handler
    for signum, old in previous.items():
        signal.signal(signum, old)


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
