# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Damaged and hostile files, short reads, and what a new user trips on:
each test reproduces one finding and fails without its fix (README, Files
and Errors and exit statuses)."""

import lzma
import os
import resource
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
import tifffile

import imgstack

SCRIPT = imgstack.__file__


def run(args, timeout=120, **kwargs):
    """Run the command in a child process; return (status, stderr)."""
    done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    return done.returncode, done.stderr


def peak_of(args):
    """Run the command in a fresh measuring process; return (status,
    stderr, peak RSS bytes)."""
    code = ('import resource, subprocess, sys\n'
            'p = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE)\n'
            'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n'
            'print(p.returncode)\n'
            'sys.stdout.write(p.stderr.decode())\n')
    done = subprocess.run([sys.executable, '-c', code, sys.executable, SCRIPT, *args],
                          capture_output=True, text=True, timeout=600)
    peak, status, err = done.stdout.split('\n', 2)
    return int(status), err, int(peak)


def damaged(path, codec, height=4000, width=8000):
    """A single-strip uint16 frame whose compressed stream ends properly
    at half its rows, followed by 16 bytes that are not data."""
    half = np.zeros((height // 2, width), np.uint16).tobytes()
    blob = zlib.compress(half) if codec == 'zlib' else lzma.compress(half)
    tifffile.imwrite(path, iter([blob + b'\0' * 16]), shape=(height, width), dtype=np.uint16,
                     compression=codec, rowsperstrip=height, metadata=None)
    return str(path)


# 1. a damaged stream decoded in pieces ends in one line, never hangs

@pytest.mark.parametrize('codec', ['zlib', 'lzma'])
def test_stream_ended_early_is_corrupt_not_a_hang(tmp_path, codec):
    paths = [damaged(tmp_path / f'in{i}.tif', codec) for i in range(3)]
    assert imgstack.open_frame(paths[0]).streamable
    out = str(tmp_path / 'out.tif')
    status, err = run(['-m', '64M', out, *paths], timeout=60)  # hung forever before
    assert status == 1
    assert err.splitlines()[-1] == (f'imgstack: error: {paths[0]}: corrupt or truncated data '
                                    'in rows 2000-3999')
    assert 'Traceback' not in err
    assert sorted(os.listdir(tmp_path)) == ['in0.tif', 'in1.tif', 'in2.tif']  # nothing left


@pytest.mark.parametrize('codec', ['deflate', 'lzma'])
def test_decoder_stops_at_the_end_of_the_stream(codec):
    data = bytes(range(256)) * 40
    blob = zlib.compress(data) if codec == 'deflate' else lzma.compress(data)
    chunks = iter([blob + b'junk' * 4, b'more junk'])
    assert b''.join(imgstack._decoded_pieces(codec, chunks, 1000)) == data


# 2. a hostile LZW stream: the table is capped at 4,096 codes

def lzw_stream(codes):
    """Pack LZW codes as a TIFF encoder would (9 to 12 bits, most
    significant bit first, widened one code early), the table growing by
    one entry a code after the first, as the decoder's does."""
    bits = count = 0
    out = bytearray()
    size, width = 258, 9
    for k, code in enumerate(codes):
        bits = (bits << width) | code
        count += width
        while count >= 8:
            count -= 8
            out.append((bits >> count) & 0xFF)
        if k >= 2 and size < imgstack.LZW_CODES:  # after the clear code and the first
            size += 1
        if size >= (1 << width) - 1 and width < 12:
            width += 1
    if count:
        out.append((bits << (8 - count)) & 0xFF)
    return bytes(out)


def test_lzw_table_that_never_clears_stays_small():
    # every code extends the last entry by one byte until the table is
    # full, then repeats the longest entry: without a cap each repeat added
    # an entry of 3.8 KB (834 MB for two files of 155 KB)
    codes = [256, 0, *range(258, 4096)] + [4095] * 20_000
    stream = lzw_stream(codes)
    tracemalloc.start()
    size = 0
    for piece in imgstack._lzw_pieces(iter([stream]), 1 << 17):
        size += len(piece)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    longest = 4096 - 258 + 1
    assert size == sum(range(1, longest + 1)) + 20_000 * longest
    assert peak < imgstack.LZW_TABLE_BYTES + 2 * imgstack.MIB, peak


def test_lzw_table_counts_in_the_plan(tmp_path):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], np.zeros((4000, 8000), np.uint16), compression='lzw',
                         rowsperstrip=4000, metadata=None)
    frames = [imgstack.open_frame(p) for p in paths]
    plan = imgstack.plan_bands(frames, memory=64 * imgstack.MIB, rows=100)
    assert plan.streamed == (True, True)
    deflate = [imgstack.dataclasses.replace(f, compression=8) for f in frames]
    other = imgstack.plan_bands(deflate, memory=64 * imgstack.MIB, rows=100)
    assert other.streamed == (True, True)
    # the LZW table is held while a strip is decoded beforehand
    assert plan.predecode_workers * (imgstack.STREAM_BYTES + imgstack.LZW_TABLE_BYTES) \
        + imgstack.RESERVE_BYTES <= 64 * imgstack.MIB


# 3. winsorized on few frames stays within its budget

@pytest.mark.slow
@pytest.mark.parametrize('frames', [2, 5])
def test_winsorized_few_frames_within_budget(tmp_path, frames):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(frames):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], rng.normal(1000, 30, (4000, 4000)).astype(np.uint16),
                         metadata=None)
    out = str(tmp_path / 'out.tif')
    status, err, peak = peak_of(['-q', '-m', '64M', '--reject', 'winsorized', out, *paths])
    assert status == 0, err
    assert peak <= 128 * imgstack.MIB, f'peak RSS {peak / imgstack.MIB:.0f} MiB'  # was 206, 161


# 4. a read that returns less than asked is continued, not taken for damage

@pytest.mark.parametrize('kind', ['raw', 'tiled-deflate', 'strips-lzw'])
def test_short_reads_are_continued(tmp_path, monkeypatch, kind):
    rng = np.random.default_rng(2)
    kwargs = {'raw': {}, 'tiled-deflate': {'tile': (32, 32), 'compression': 'zlib'},
              'strips-lzw': {'compression': 'lzw', 'rowsperstrip': 50}}[kind]
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], rng.integers(0, 4000, (100, 96), dtype=np.uint16),
                         metadata=None, **kwargs)
    want = imgstack.to_dtype(imgstack.stack_array(np.stack([tifffile.imread(p) for p in paths]), iterations=0)[0],
                             np.dtype(np.uint16))

    cap = 1000  # as a FUSE or network file system may return

    def pread(fd, size, offset, real=os.pread):
        return real(fd, min(size, cap), offset)

    def preadv(fd, buffers, offset, real=os.preadv):
        view = memoryview(buffers[0]).cast('B')
        return real(fd, [view[:cap]], offset)

    monkeypatch.setattr(os, 'pread', pread)
    monkeypatch.setattr(os, 'preadv', preadv)
    out = str(tmp_path / 'out.tif')
    imgstack.stack_files(paths, out, iterations=0)
    np.testing.assert_array_equal(tifffile.imread(out), want)
