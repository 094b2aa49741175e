# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Memory bounds and file limits (README, Memory and speed), measured on
child processes: peak resident memory is the child's own ``ru_maxrss``; and
the allocator settings of the command (`imgstack._tune_allocator`).
"""

import gc
import os
import re
import resource
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import IMGSTACK, INTERPRETER, run_measured


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['plain', 'lzw1'])
@pytest.mark.parametrize('center', ['mean', 'median'])
def test_peak_memory_within_budget(moderate, kind, center):
    root, sets = moderate
    out = str(root / f'out-{kind}-{center}.tif')
    budget = 128 * imgstack.MIB
    status, err, peak = run_measured(
        ['-q', '-f', '-m', '128M', '-s', '2.5', '-i', '3', '--center', center, out, *sets[kind]])
    assert status == 0, err
    assert peak <= budget + INTERPRETER, f'peak RSS {peak / imgstack.MIB:.0f} MiB'
    # the result is still right: compare a few rows with the in-memory stack
    rows = slice(500, 503)
    stack = np.stack([tifffile.imread(p)[rows] for p in sets['plain']])
    want, _ = imgstack.sigma_clipped_mean(stack, iterations=3, center=center)
    np.testing.assert_array_equal(tifffile.imread(out)[rows], imgstack._to_dtype(want, stack.dtype))
    assert not [f for f in os.listdir(root) if f.endswith(('.part', '.raw'))]


def test_budget_too_small_names_one_that_works(tmp_path, capsys):
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], np.full((50, 4000), i, np.uint16), metadata=None)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-m', '1M', out, *paths]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0
    assert 'too small for one row of every input' in err
    smallest = re.search(r'-m (\d+M)', err).group(1)
    assert imgstack.main(['-q', '-m', smallest, out, *paths]) == 0
    assert tifffile.imread(out).shape == (50, 4000)
    # and just below it does not fit
    below = f'{int(smallest[:-1]) - 1}M'
    assert imgstack.main(['-q', '-f', '-m', below, out, *paths]) == 1


def test_more_inputs_than_open_file_limit(tmp_path):
    rng = np.random.default_rng(9)
    stack = rng.integers(0, 1000, (40, 30, 20), dtype=np.uint16)
    paths = []
    for i, frame in enumerate(stack):
        paths.append(str(tmp_path / f'in{i:02d}.tif'))
        tifffile.imwrite(paths[-1], frame, compression='zlib', rowsperstrip=4, metadata=None)
    out = str(tmp_path / 'out.tif')
    status, err, _ = run_measured(
        ['-q', '-r', '4', out, *paths], limits=[(resource.RLIMIT_NOFILE, 32)])
    assert status == 0, err
    want, _ = imgstack.sigma_clipped_mean(stack)
    np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(want, stack.dtype))


@pytest.mark.slow
def test_strip_larger_than_budget_is_decoded_in_pieces(tmp_path):
    """Single-strip deflate frames of 60 MB each, stacked under -m 64M."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:5000, 0:6000]
    base = (1000 + y // 10 + x // 20).astype(np.uint16)
    paths = []
    for i in range(3):
        frame = base + rng.integers(0, 4, base.shape, dtype=np.uint16)
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], frame, compression='zlib', predictor=True,
                         rowsperstrip=5000, metadata=None)
    del y, x
    frame = imgstack.open_frame(paths[0])
    assert frame.segment_bytes == 60_000_000 and frame.streamable
    out = str(tmp_path / 'out.tif')
    status, err, peak = run_measured(['-v', '-m', '64M', '-i', '2', out, *paths])
    assert status == 0, err
    assert peak <= 64 * imgstack.MIB + INTERPRETER, f'peak RSS {peak / imgstack.MIB:.0f} MiB'
    stack = np.stack([tifffile.imread(p)[2000:2010] for p in paths])
    want, _ = imgstack.sigma_clipped_mean(stack, iterations=2)
    np.testing.assert_array_equal(tifffile.imread(out)[2000:2010],
                                  imgstack._to_dtype(want, stack.dtype))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(('.part', '.raw'))]


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


def _glibc_with_mallinfo2():
    """Whether this is glibc 2.33 or later (``mallinfo2``, for the test)."""
    try:
        import ctypes

        return (os.confstr('CS_GNU_LIBC_VERSION').startswith('glibc')
                and hasattr(ctypes.CDLL(None), 'mallinfo2'))
    except (AttributeError, OSError, ValueError):
        return False


ALLOCATION = (
    'import ctypes, os, sys, tempfile, threading\n'
    'import numpy as np\n'
    'import imgstack\n'
    'class Info(ctypes.Structure):\n'
    '    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks",\n'
    '                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]\n'
    'libc = ctypes.CDLL(None)\n'
    'libc.mallinfo2.restype = Info\n'
    'tuned = imgstack._tune_allocator(int(sys.argv[1]))\n'
    'block = np.ones(24 << 20, np.uint8)  # a chunk-sized working array\n'
    'mapped = libc.mallinfo2().hblkhd  # bytes in blocks of their own mapping\n'
    'del block\n'
    'kept = libc.mallinfo2().fordblks  # free bytes the heaps keep\n'
    '# four threads that allocate at once, as the readers and stackers do\n'
    'ready = threading.Barrier(5)\n'
    'def work():\n'
    '    held = [np.ones(1000, np.uint8) for _ in range(100)]\n'
    '    ready.wait()\n'
    'threads = [threading.Thread(target=work) for _ in range(4)]\n'
    'for t in threads: t.start()\n'
    'ready.wait()\n'
    'for t in threads: t.join()\n'
    'libc.fopen.restype = ctypes.c_void_p\n'
    'libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)\n'
    'libc.fclose.argtypes = (ctypes.c_void_p,)\n'
    'handle, path = tempfile.mkstemp()\n'
    'os.close(handle)\n'
    'f = libc.fopen(path.encode(), b"w")\n'
    'libc.malloc_info(0, f)\n'
    'libc.fclose(f)\n'
    'heaps = open(path).read().count("<heap nr=")\n'
    'os.remove(path)\n'
    'print(tuned, mapped, kept, heaps)\n'
)


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason='glibc 2.33 or later only')
@pytest.mark.parametrize('budget', ['1G', '4G', '1023M', '256M'])
def test_allocator_set_for_the_budget(budget):
    """From a budget of 1 GiB, a 24 MiB working array comes from malloc's
    heaps and stays there once freed, for the next chunk, and each thread
    has a heap of its own; below it a 24 MiB array is a mapping of its
    own, returned at once (glibc's default), and all threads share two
    heaps, so that what one frees serves the others and the run's peak
    stays in the budget (129 MiB against a bound of 128 once, with a heap
    per thread, in test_strip_larger_than_budget_is_decoded_in_pieces)."""
    memory = imgstack.parse_size(budget)
    done = subprocess.run([sys.executable, '-c', ALLOCATION, str(memory)],
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(IMGSTACK))
    assert done.returncode == 0, done.stderr
    tuned, mapped, kept, heaps = done.stdout.split()
    block = 24 * imgstack.MIB
    assert tuned == 'True'
    if memory >= imgstack.ALLOCATOR_BUDGET:
        assert int(mapped) < block <= int(kept)
        assert int(heaps) >= 5
    else:
        assert int(kept) < block <= int(mapped)
        assert int(heaps) == 2


def test_only_the_command_tunes_the_allocator(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(imgstack, '_tune_allocator', calls.append)
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], np.full((4, 5), i, np.uint16), metadata=None)
    out = str(tmp_path / 'out.tif')
    handlers = {s: signal.getsignal(s) for s in imgstack.SIGNALS}
    try:
        assert imgstack._cli(['-q', '--reject', 'none', '-m', '2G', out, *paths]) == 0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert calls == [2 << 30]
    # main() called by a program leaves the process's allocator alone
    assert imgstack.main(['-q', '-f', '--reject', 'none', '-m', '2G', out, *paths]) == 0
    assert calls == [2 << 30]
    # as a program calls it: its allocator is its own
    imgstack.stack_files(paths, out, reject='none', force=True, memory='2G')
    assert calls == [2 << 30]


@pytest.mark.parametrize('confstr', [
    {'side_effect': AttributeError},  # Windows: no os.confstr
    {'side_effect': ValueError},  # macOS: no such name
    {'return_value': None},  # a C library that does not say
])
def test_allocator_left_alone_without_glibc(monkeypatch, confstr):
    def fake(name):
        assert name == 'CS_GNU_LIBC_VERSION'
        if 'side_effect' in confstr:
            raise confstr['side_effect']
        return confstr['return_value']

    monkeypatch.setattr(os, 'confstr', fake)
    assert imgstack._tune_allocator(4 << 30) is False
