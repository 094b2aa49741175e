# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Damaged and hostile files, short reads, and what a new user trips on:
each test reproduces one finding and fails without its fix (README, Files
and Errors and exit statuses)."""

import csv
import io
import lzma
import os
import signal
import stat
import sys
import threading
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import inputs_in, run_cli, run_main, run_measured, write


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
    result = run_cli('-m', '64M', out, *paths, timeout=60)  # hung forever before
    status, err = result.status, result.err
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
    status, err, peak = run_measured(['-q', '-m', '64M', '--reject', 'winsorized', out, *paths])
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
    stack = np.stack([tifffile.imread(p) for p in paths])
    want = imgstack._to_dtype(imgstack.stack_array(stack, iterations=0)[0], stack.dtype)

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


# 5. segments that overlap count their stored bytes once

def test_tiles_sharing_one_blob_are_not_believed(tmp_path):
    # every tile points at the same few hundred bytes: 128 MB decoded "from"
    # 300 KB of byte counts that are one blob counted 1,024 times
    blob = zlib.compress(np.zeros((256, 256), np.uint16).tobytes())
    path = str(tmp_path / 'a.tif')
    tifffile.imwrite(path, iter([blob] * 1024), shape=(8192, 8192), dtype=np.uint16,
                     tile=(256, 256), compression='zlib', metadata=None)
    offsets = tifffile.TiffFile(path).pages.first.dataoffsets
    with open(path, 'r+b') as fh:  # point every tile at the first one
        data = bytearray(fh.read())
        tag = tifffile.TiffFile(path).pages.first.tags['TileOffsets']
        at = tag.valueoffset
        for i in range(len(offsets)):
            data[at + 4 * i:at + 4 * i + 4] = int(offsets[0]).to_bytes(4, 'little')
        fh.seek(0)
        fh.write(data)
    with pytest.raises(imgstack.ImgstackError, match=r'from only \d\d\d bytes of data'):
        imgstack.open_frame(path)  # refused before any work


def test_stored_bytes_count_each_byte_once():
    offsets = np.array([100, 100, 100, 150, 400], np.int64)
    counts = np.array([100, 100, 20, 100, 10], np.int64)
    assert imgstack._stored_bytes(offsets, counts) == 150 + 10  # 100..250 and 400..410


def test_many_segments_from_few_bytes_are_refused(tmp_path):
    # 1,000 planar samples one pixel wide: 8,000 strips of a shared byte
    path = str(tmp_path / 'a.tif')
    blob = zlib.compress(b'\0\0')
    tifffile.imwrite(path, iter([blob] * 8000), shape=(1000, 8, 1), dtype=np.uint16,
                     planarconfig='separate', photometric='minisblack', rowsperstrip=1,
                     compression='zlib', metadata=None)
    with open(path, 'r+b') as fh:
        data = bytearray(fh.read())
        page = tifffile.TiffFile(path).pages.first
        tag = page.tags['StripOffsets']
        first = int(page.dataoffsets[0]).to_bytes(4, 'little')
        for i in range(len(page.dataoffsets)):
            data[tag.valueoffset + 4 * i:tag.valueoffset + 4 * i + 4] = first
        fh.seek(0)
        fh.write(data)
    with pytest.raises(imgstack.ImgstackError, match='claims 8000 strips or tiles from only'):
        imgstack.open_frame(path)


# 6. a closed stderr: the stack completes

@pytest.mark.parametrize('quiet', [False, True])
def test_closed_stderr_still_stacks(tmp_path, quiet):
    paths = inputs_in(tmp_path / 'in')
    out = str(tmp_path / 'out.tif')
    script = ('import os, runpy, sys\n'
              'os.close(2)\n'
              'sys.stderr = None\n'
              'sys.argv = sys.argv[1:]\n'
              'runpy.run_path(sys.argv[0], run_name="__main__")\n')
    args = [*(['-q'] if quiet else []), out, *paths]
    done = subprocess_run([sys.executable, '-c', script, imgstack.__file__, *args])
    assert done.returncode == 0
    assert done.stdout == ''  # nothing lands on stdout instead
    assert tifffile.imread(out).shape == (40, 50)
    # an error, with nobody to tell: exit 1 all the same, nothing on stdout
    done = subprocess_run([sys.executable, '-c', script, imgstack.__file__, out, *paths])
    assert done.returncode == 1 and done.stdout == ''


def subprocess_run(args):
    import subprocess
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_reporter_without_a_stream_is_silent():
    saved = sys.stderr
    sys.stderr = None
    try:
        reporter = imgstack.Reporter(2)
        reporter.say('nobody hears this')
        assert reporter.level == 0
    finally:
        sys.stderr = saved


# 7. one line, never a traceback

def test_threads_that_cannot_start(tmp_path, capsys, monkeypatch):
    paths = inputs_in(tmp_path / 'in')

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, 'start', refuse)
    result = run_main(capsys, '-q', str(tmp_path / 'out.tif'), *paths)
    assert result.status == 1
    assert result.lines == [
        "imgstack: error: cannot start the threads of a run (can't start new thread): the "
        'process or memory limits (ulimit -u, ulimit -v) are too low']
    assert not os.path.exists(tmp_path / 'out.tif')


def test_huge_minmax_counts_drop_everything(tmp_path, capsys):
    paths = inputs_in(tmp_path / 'in')
    out = str(tmp_path / 'out.tif')
    result = run_main(capsys, '-q', '--reject', 'minmax', '--minmax', '100000000000000000000:0',
                      out, *paths)
    assert result.status == 0, result.err
    stack = np.stack([tifffile.imread(p) for p in paths])
    value, _ = imgstack.stack_array(stack, reject='none')  # every value dropped: the mean
    np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(value, stack.dtype))


def test_gesd_smallest_alpha_in_range():
    # 1 - 1e-17 / (2 cnt) rounds to 1.0: the quantile comes from the lower tail
    lam = imgstack._gesd_critical(20, 1e-17)
    assert np.isfinite(lam[3:]).all() and (lam[3:] > imgstack._gesd_critical(20, 0.05)[3:]).all()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 50))
    imgstack.stack_array(x, reject='gesd', gesd=(1e-17, 0.3))


def test_non_utf8_name_in_the_frame_statistics(tmp_path):
    names = [os.fsencode(str(tmp_path)) + b'/in\xff%d.tif' % i for i in range(3)]
    for i, name in enumerate(names):
        write(os.fsdecode(name), np.full((4, 5), 100 + i, np.uint16))
    table = str(tmp_path / 'frames.csv')
    result = run_cli('--frame-stats', table, str(tmp_path / 'out.tif'),
                     *(os.fsdecode(n) for n in names))
    assert result.status == 0, result.err
    with open(table, 'rb') as fh:
        body = fh.read()
    assert all(name in body for name in names)  # the names' own bytes


@pytest.mark.parametrize(('keyword', 'value', 'match'), [
    ('percentile', None, 'percentile must be a pair of numbers'),
    ('valid_range', 5, "valid_range must be 'LOW:HIGH' or a pair"),
    ('force', 'no', 'force must be True or False'),
    ('no_alpha', 1, 'no_alpha must be True or False'),
])
def test_library_settings_of_the_wrong_type(tmp_path, keyword, value, match):
    paths = inputs_in(tmp_path / 'in')
    options = {keyword: value}
    if keyword == 'percentile':
        options['reject'] = 'percentile'
    with pytest.raises(imgstack.ImgstackError, match=match):
        imgstack.stack_files(paths, str(tmp_path / 'out.tif'), **options)
    assert not os.path.exists(tmp_path / 'out.tif')


def test_library_minmax_beyond_any_integer():
    stack = np.arange(30, dtype=np.float64).reshape(3, 10)
    value, rejected = imgstack.stack_array(stack, reject='minmax', minmax=(10**20, 0))
    assert rejected == 30
    np.testing.assert_array_equal(value, stack.mean(axis=0))


EARLY = """
import builtins, os, runpy, signal, sys
script, module, *argv = sys.argv[1:]
real = builtins.__import__
def hook(name, *args, **kwargs):
    if name == module:  # a Ctrl-C while this module loads
        builtins.__import__ = real
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = hook
sys.argv = [script, *argv]
runpy.run_path(script, run_name='__main__')
"""


@pytest.mark.parametrize('module', ['argparse', 'concurrent.futures', 'numpy', 'tifffile'])
def test_signal_while_the_modules_load(tmp_path, module):
    # the handler that ends the run cleanly is in place before any module
    # but os, signal and sys loads (a Ctrl-C 0.1 s after start was a traceback)
    import subprocess
    paths = inputs_in(tmp_path / 'in')
    proc = subprocess.run([sys.executable, '-c', EARLY, imgstack.__file__, module,
                           str(tmp_path / 'out.tif'), *paths],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == 'imgstack: interrupted; nothing written\n'
    assert not os.path.exists(tmp_path / 'out.tif')


# 8. names reach the terminal escaped, the CSV quoted and inert

def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    evil = str(tmp_path / 'esc\x1b]0;PWNED\x07')
    paths = [write(f'{evil}{i}.tif', np.full((4, 5, 2), i, np.uint16)) for i in range(3)]
    table = str(tmp_path / 'frames.csv')
    result = run_main(capsys, '-v', '--frame-stats', table, str(tmp_path / 'out.tif'), *paths)
    assert result.status == 0, result.err
    assert '\x1b' not in result.err and '\x07' not in result.err
    assert '\\x1b]0;PWNED\\x07' in result.err  # the warning, the table and the summary


@pytest.mark.parametrize('name', ['=cmd|calc', '+1', '-2', '@SUM(A1)', 'line\rbreak'])
def test_frame_statistics_names_are_quoted_and_inert(tmp_path, name):
    paths = [write(tmp_path / f'{name}{i}.tif', np.full((4, 5), i, np.uint16)) for i in range(3)]
    os.chdir(tmp_path)
    table = str(tmp_path / 'frames.csv')
    imgstack.stack_files([os.path.basename(p) for p in paths], 'out.tif', frame_stats=table)
    with open(table, newline='') as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    for i, row in enumerate(rows):
        want = f'{name}{i}.tif'
        assert row['path'] in (want, "'" + want)
        assert row['path'][:1] not in ('=', '+', '-', '@')


# 9. -f keeps the permissions of the file it replaces

def test_force_keeps_a_private_file_private(tmp_path):
    paths = inputs_in(tmp_path / 'in')
    targets = [tmp_path / 'out.tif', tmp_path / 'map.tif', tmp_path / 'frames.csv']
    for t in targets:
        t.write_bytes(b'old')
        os.chmod(t, 0o600)
    previous = os.umask(0o022)
    try:
        imgstack.stack_files(paths, targets[0], rejection_map=targets[1], frame_stats=targets[2],
                             force=True)
    finally:
        os.umask(previous)
    assert [stat.S_IMODE(os.stat(t).st_mode) for t in targets] == [0o600] * 3


# 10. outputs have no name until published, where the system allows it;
# SIGQUIT and SIGUSR1/2 end a run like SIGTERM

@pytest.mark.parametrize('signum', [signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2])
def test_other_signals_end_a_run_cleanly(tmp_path, signum):
    import subprocess
    import time
    indir, outdir = tmp_path / 'in', tmp_path / 'out'
    outdir.mkdir()
    rng = np.random.default_rng(0)
    indir.mkdir()
    paths = [write(indir / f'in{i}.tif', rng.integers(0, 60000, (1500, 2000), np.uint16))
             for i in range(10)]
    args = ['--reject', 'winsorized', '--rejection-map', str(outdir / 'map.tif'),
            '--frame-stats', str(outdir / 'frames.csv'), str(outdir / 'out.tif'), *paths]
    proc = subprocess.Popen([sys.executable, imgstack.__file__, *args], stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and 'rows' not in (proc.stderr.readline() or 'rows'):
        pass  # a progress line: the run is stacking
    proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signum, err
    assert 'nothing written' in err and 'Traceback' not in err
    assert os.listdir(outdir) == []


def test_unnamed_outputs_where_the_system_links_them(tmp_path):
    with imgstack.contextlib.ExitStack() as stack:
        temp = imgstack._temporary_file(str(tmp_path), stack, target=str(tmp_path / 'out.tif'))
        if imgstack._links_unnamed(str(tmp_path)):
            assert temp.path == '' and os.listdir(tmp_path) == []
        else:  # this system refuses (a sandbox, no /proc, no O_TMPFILE): a name
            assert os.path.basename(temp.path).startswith(imgstack.TEMP_PREFIX)
    assert os.listdir(tmp_path) == []


def test_output_folder_gone_names_the_output(tmp_path, capsys, monkeypatch):
    paths = inputs_in(tmp_path / 'in')
    outdir = tmp_path / 'out'
    outdir.mkdir()
    out = outdir / 'out.tif'
    real = imgstack._publish

    def move_away(temps, targets, force, cli=True):
        os.rename(outdir, tmp_path / 'moved')
        return real(temps, targets, force, cli)

    monkeypatch.setattr(imgstack, '_publish', move_away)
    result = run_main(capsys, '-q', str(out), *paths)
    assert result.status == 1
    assert len(result.lines) == 1 and result.lines[0].startswith(f'imgstack: error: {out}: ')
    assert '.imgstack-' not in result.err
    assert [n for n in os.listdir(tmp_path / 'moved')] == []


# 11. an error in the CSV names the CSV

def test_frame_statistics_write_error_names_the_csv(tmp_path, capsys, monkeypatch):
    paths = inputs_in(tmp_path / 'in')
    table = tmp_path / 'frames.csv'
    real = imgstack._write_frame_stats

    def full(temp, rows):
        def refuse(data):
            raise OSError(28, 'No space left on device')
        temp.file.write = refuse
        real(temp, rows)

    monkeypatch.setattr(imgstack, '_write_frame_stats', full)
    result = run_main(capsys, '-q', '--frame-stats', str(table), str(tmp_path / 'out.tif'), *paths)
    assert result.status == 1
    assert result.lines == [f'imgstack: error: {table}: cannot write it (No space left on device)']
    assert os.listdir(tmp_path) == ['in']


# 12. silent wrong results

def test_packed_12_bit_input_is_refused(tmp_path):
    path = str(tmp_path / 'a.tif')
    tifffile.imwrite(path, np.zeros((4, 6), np.uint16), bitspersample=12, metadata=None)
    with pytest.raises(imgstack.ImgstackError, match='12-bit packed samples are not supported'):
        imgstack.open_frame(path)


def test_masked_array_mask_is_honoured():
    stack = np.ma.array(np.array([[1.0, 2.0], [3.0, 4.0], [1000.0, 6.0]]),
                        mask=[[False, False], [False, False], [True, False]])
    value, _ = imgstack.stack_array(stack, reject='none')
    np.testing.assert_array_equal(value, [2.0, 4.0])


def test_complex_stack_is_refused():
    with pytest.raises(ValueError, match='complex'):
        imgstack.stack_array(np.ones((3, 2), np.complex64))


def test_float64_near_the_maximum_does_not_overflow():
    stack = np.full((3, 4), 1e308)
    value, _ = imgstack.stack_array(stack, reject='none')
    np.testing.assert_array_equal(value, 1e308)
    value, _ = imgstack.sigma_clipped_mean(stack)
    np.testing.assert_array_equal(value, 1e308)


# 13-15. what a new user tripped on

def test_options_between_output_and_inputs(tmp_path, capsys):
    paths = inputs_in(tmp_path / 'in')
    out = str(tmp_path / 'o.tif')
    result = run_main(capsys, out, '-s', '3', *paths[:1], '-q', *paths[1:])
    assert result.status == 0, result.err
    assert 'imgstack 0.2.0: -s 3' in tifffile.TiffFile(out).pages.first.description


def test_a_folder_given_alone_gets_the_folder_hint(tmp_path, capsys):
    (tmp_path / 'seq').mkdir()
    result = run_main(capsys, str(tmp_path / 'avg.tif'), str(tmp_path / 'seq'))
    assert result.lines == [f'imgstack: error: {tmp_path / "seq"}: is a directory; '
                            f'did you mean {tmp_path / "seq" / "*.tif"}?']


def test_stats_print_short_and_warnings_name_the_caller(tmp_path):
    paths = inputs_in(tmp_path / 'in')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        stats = imgstack.stack_files(paths, str(tmp_path / 'out.tif'), frame_stats=str(
            tmp_path / 'frames.csv'))
    ours = [w for w in caught if issubclass(w.category, imgstack.ImgstackWarning)]
    assert ours and all(w.filename == __file__ for w in ours), [w.filename for w in ours]
    assert 'frame_table' not in repr(stats) and len(repr(stats)) < 400
    assert len(stats.frame_table) == 3
    out = io.StringIO()
    print(stats, file=out)
    assert 'location_0' not in out.getvalue()
