# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""The faster ways of the core give what the plain ways give (README, What
is computed, "How it is computed"; and Memory and speed).

A sorting network for small integers, tables repeated along rows for
normalization and weights, exact window sums from 32-bit prefix sums, and
chunk sizes per method: each is compared here with the obvious way; the
methods themselves are compared with an independent reference in
tests/test_rejections.py, and the threshold paths with the window core in
test_imgstack.py.
"""

from __future__ import annotations

import itertools
import math
import signal
import sys
from fractions import Fraction

import numpy as np
import pytest
import tifffile

import imgstack


@pytest.mark.parametrize('n', range(1, 13))
def test_sorting_network_sorts_every_zero_one_input(n):
    # the 0-1 principle: a comparator network that sorts every sequence of
    # zeros and ones sorts every sequence
    pairs = imgstack._sorting_network(n)
    assert all(0 <= i < j < n for i, j in pairs)
    for bits in itertools.product((0, 1), repeat=n):
        items = list(bits)
        for i, j in pairs:
            if items[i] > items[j]:
                items[i], items[j] = items[j], items[i]
        assert items == sorted(bits), bits


@pytest.mark.parametrize('n', [2, 3, 5, 16, 24, 25, 33, 64, 100, 128, 129, 200])
@pytest.mark.parametrize('dtype', ['uint8', 'uint16', 'int16', 'float32', 'float64'])
def test_sort_points_is_a_sort_with_invalid_values_last(n, dtype):
    rng = np.random.default_rng(n)
    info = np.iinfo(dtype) if dtype[0] in 'ui' else None
    if info is not None:
        x = rng.integers(info.min, int(info.max) + 1, (n, 301)).astype(dtype)
        x[:, :5] = x[0, :5]  # ties
    else:
        x = rng.normal(0, 100, (n, 301)).astype(dtype)
    invalid = rng.random(x.shape) < 0.2
    got = imgstack._sort_points(x, invalid)
    assert got.shape == x.shape and got.dtype == x.dtype
    fill = np.nan if info is None else info.max
    want = np.sort(np.where(invalid, fill, x), axis=0)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(imgstack._sort_points(x, None), np.sort(x, axis=0))


def test_sort_points_uses_the_network_for_small_integers_only(monkeypatch):
    calls = []
    real = imgstack._sorting_network
    monkeypatch.setattr(imgstack, '_sorting_network', lambda n: calls.append(n) or real(n))
    x = np.arange(24 * 10, dtype=np.uint16).reshape(24, 10)[::-1]
    imgstack._sort_points(x, None)
    imgstack._sort_points(x.astype(np.float64), None)
    imgstack._sort_points(np.zeros((imgstack.NETWORK_MAX + 1, 3), np.uint16), None)
    assert calls == [24]


@pytest.mark.parametrize('channels', [1, 3, 4])
@pytest.mark.parametrize('additive', [False, True])
def test_normalized_chunks_are_the_per_point_formula(channels, additive):
    rng = np.random.default_rng(channels)
    n, pixels = 7, 50
    values = rng.integers(0, 4000, (n, pixels * channels)).astype(np.uint16)
    factor = np.ones((n, channels)) if additive else rng.uniform(0.8, 1.2, (n, channels))
    offset = rng.normal(0, 50, (n, channels))
    per_point = np.arange(values.shape[1]) % channels
    want = values * factor[:, per_point] + offset[:, per_point]
    # the chunks of a pass each start on a whole pixel: cut them small
    method = imgstack.Method(reject='none')
    got = imgstack._clip_points(values, None, method, factor=factor, offset=offset,
                               channels=channels, scratch=1)
    np.testing.assert_allclose(got.result, want.mean(axis=0), rtol=1e-12)
    rows = imgstack._rows(offset, 5 * channels)
    np.testing.assert_array_equal(rows, offset[:, np.arange(5 * channels) % channels])


@pytest.mark.parametrize('dtype', ['uint8', 'uint16', 'int16'])
@pytest.mark.parametrize('cut', [1, 9])
def test_exact_window_sums_both_ways(dtype, cut):
    # few rows cut: the total less them; many: 32-bit prefix sums
    rng = np.random.default_rng(cut)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, (20, 500)).astype(dtype)
    with np.errstate(invalid='ignore', divide='ignore'):
        chunk = imgstack._Chunk(x, None, imgstack.Method(reject='minmax'), None)
    a = rng.integers(0, cut + 1, 500)
    b = 20 - rng.integers(0, cut + 1, 500)
    s = chunk.s.astype(np.int64)
    want = [s[a[j]:b[j], j].sum() for j in range(500)]
    assert chunk._exact_sum(a, b).tolist() == want


@pytest.mark.parametrize('dtype', ['uint16', 'float64'])
def test_search_finds_each_window_end(dtype):
    # a window's start moves past the values < bound, its end back past the
    # values > bound (inclusive): looked at first from the end that usually
    # stays (start, or the last value), then searched; NaN bounds stay
    rng = np.random.default_rng(21)
    n, c = 16, 3000
    x = rng.integers(0, 40, (n, c)).astype(dtype)  # ties
    with np.errstate(invalid='ignore', divide='ignore'):
        chunk = imgstack._Chunk(x, None, imgstack.Method(reject='sigma'), None)
    s = chunk.s.astype(np.float64)
    idx = np.arange(c)
    start = rng.integers(0, n + 1, c)
    end = np.maximum(start, rng.integers(0, n + 1, c))
    bound = rng.integers(-2, 43, c).astype(np.float64)
    bound[::17] = np.nan
    for inclusive in (False, True):
        got = chunk.search(idx, start, end, bound, inclusive)
        for j in range(c):
            rows = range(start[j], end[j])
            if np.isnan(bound[j]):
                want = end[j] if inclusive else start[j]
            elif inclusive:
                want = next((r for r in rows if s[r, j] > bound[j]), end[j])
            else:
                want = next((r for r in rows if not s[r, j] < bound[j]), end[j])
            assert got[j] == want, (inclusive, j)


@pytest.mark.parametrize('nan', [False, True])
def test_float_window_sums_never_subtract_an_outlier_outside(nan):
    # a cluster near 1 between a low and a high outlier of 1e12: the window
    # of the cluster must be summed from its own values (prefix sums
    # anchored at the median row), or the squares' sum is lost in 1e24
    rng = np.random.default_rng(3)
    n, c = 24, 400
    x = 1 + 1e-3 * rng.standard_normal((n, c))
    x[0], x[1] = -1e12, 1e12
    if nan:  # some points have fewer values: one median row per point
        x[2:2 + 5, ::3] = np.nan
    with np.errstate(invalid='ignore', divide='ignore'):
        chunk = imgstack._Chunk(x, None, imgstack.Method(reject='winsorized'), None)
    k = chunk.k
    a, b = np.ones(c, np.int64), k - 1  # every value but the two outliers
    total, squares = chunk.window_sums(a, b, np.arange(c))
    for j in range(c):
        z = chunk.s[a[j]:b[j], j]
        assert total[j] == pytest.approx(math.fsum(z), rel=1e-9, abs=1e-15)
        assert squares[j] == pytest.approx(math.fsum(z * z), rel=1e-9)
    # windows wholly above or below the median subtract only values near it
    m = (k - 1) // 2
    total, squares = chunk.window_sums(m + 1, k - 1, np.arange(c))
    for j in range(c):
        z = chunk.s[m[j] + 1:k[j] - 1, j]
        assert squares[j] == pytest.approx(math.fsum(z * z), rel=1e-9)


def test_chunk_sizes_follow_each_path_scratch():
    mib = imgstack.MIB
    # without prefix sums a small-integer value takes 8 bytes less; each
    # point's own arrays add POINT_BYTES shared by its 24 values
    with_sums = imgstack._chunk_points(24, 3, None, 'mean', True, 64 * mib, True)
    without = imgstack._chunk_points(24, 3, None, 'mean', True, 64 * mib, False)
    point = -(-imgstack.POINT_BYTES[None] // 24)
    assert without == pytest.approx(with_sums * (28 + point) / (20 + point), rel=0.01)
    # winsorized's arrays per point take far more (few frames, then, far
    # fewer points a chunk)
    assert imgstack._chunk_points(2, 1, None, 'mean', True, 64 * mib, True, reject='winsorized') \
        == 64 * mib // (2 * imgstack.SCRATCH_SMALL + imgstack.POINT_BYTES['winsorized'])
    # sigma clipping around the median of small integers: 16 bytes a value,
    # at most SORTED_POINTS a chunk
    small = imgstack._chunk_points(24, 3, 2, 'sorted', True, 16 * mib)
    assert small == 16 * mib // (24 * imgstack.SCRATCH_SORTED) // 3 * 3
    assert imgstack._chunk_points(24, 3, 2, 'sorted', True, 64 * mib) <= imgstack.SORTED_POINTS


def test_median_clipping_of_small_integers_takes_the_sorted_path(monkeypatch):
    calls = []
    real = imgstack._clip_sorted
    monkeypatch.setattr(imgstack, '_clip_sorted', lambda *a: calls.append(a[0].shape) or real(*a))
    stack = np.random.default_rng(3).integers(0, 1000, (9, 40, 30)).astype(np.uint16)
    stack[2, 5, 5] = 60000
    got, rejected = imgstack.stack_array(stack, center='median', sigma=2.0, iterations=3)
    assert calls and rejected >= 1
    monkeypatch.setattr(imgstack, '_clip_sorted', real)
    want, again = imgstack.stack_array(stack.astype(np.float64), center='median', sigma=2.0,
                                       iterations=3)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert rejected == again


@pytest.mark.parametrize('dtype', [np.uint8, np.int16, np.uint16])
@pytest.mark.parametrize('sigma', [(0.047, 0.053), (0.31, 2.93), (2.47, 0.23), (2.51, 2.49)])
def test_sorted_median_clip_walks_stay_inside_the_run(dtype, sigma):
    # tight and lopsided bounds, ties, constant points and the type's ends:
    # the walks that count rejections from each end of a run must stop
    # inside it, and give the float64 threshold path's results (factors
    # that put no bound exactly on a value, where rounding would decide)
    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    n, c = 10, 3000
    x = rng.integers(0, 4, (n, c)) * rng.integers(1, 40, c) + rng.integers(0, 3, c)
    x = (x + info.min + 3).astype(dtype)
    x[:, :50] = x[0, :50]  # constant points
    x[rng.integers(0, n, 400), rng.integers(0, c, 400)] = info.max
    x[rng.integers(0, n, 400), rng.integers(0, c, 400)] = info.min
    x[:2, 60:80] = info.min  # two at each end of the type
    x[-2:, 60:80] = info.max
    low, high = sigma
    got = imgstack._clip_sorted(np.ascontiguousarray(imgstack._sort_points(x, None)),
                                low, high, 10)
    want = imgstack._clip_chunk(x.astype(np.float64), None, low, high, 10, 'median', None)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(g, w)


def chunk_widths(monkeypatch) -> list[int]:
    """The widths of the chunks made from now on, in a list that grows."""
    widths: list[int] = []
    real = imgstack._Chunk.__init__

    def record(self, values, *args):
        widths.append(values.shape[1])
        real(self, values, *args)

    monkeypatch.setattr(imgstack._Chunk, '__init__', record)
    return widths


def test_gesd_and_mad_chunks_hold_at_most_their_points(monkeypatch):
    # the steps of GESD and MAD stay in the processor's cache: their chunks
    # are capped, whatever the scratch, and the cap changes no result
    x = np.random.default_rng(5).normal(100, 10, (12, 3000))
    x[3, ::7] += 200
    method = imgstack.Method(reject='gesd')
    whole = imgstack._clip_points(x, None, method, scratch=1 << 30)
    widths = chunk_widths(monkeypatch)
    monkeypatch.setitem(imgstack.MOST_POINTS, 'gesd', 700)
    capped = imgstack._clip_points(x, None, method, scratch=1 << 30)
    assert widths and max(widths) <= 700 and sum(widths) == 3000
    np.testing.assert_array_equal(capped.result, whole.result)
    np.testing.assert_array_equal(capped.rejected, whole.rejected)
    assert whole.rejected.sum() > 0
    monkeypatch.setitem(imgstack.MOST_POINTS, 'mad', 900)
    widths.clear()
    imgstack._clip_points(x, None, imgstack.Method(reject='mad'), scratch=1 << 30)
    assert max(widths) <= 900 and sum(widths) == 3000
    # other methods are not capped
    widths.clear()
    imgstack._clip_points(x, None, imgstack.Method(reject='winsorized'), scratch=1 << 30)
    assert widths == [3000]


@pytest.mark.parametrize('npoints, cap', [(3000, 700), (3003, 1000), (2997, 999), (600, 700)])
def test_chunks_are_even_for_the_threads(monkeypatch, npoints, cap):
    # a band waits for its last chunk: the chunks are as many for each
    # thread and of about one size, whole pixels, within the cap
    x = np.random.default_rng(6).normal(100, 10, (12, npoints))
    widths = chunk_widths(monkeypatch)
    monkeypatch.setitem(imgstack.MOST_POINTS, 'mad', cap)
    imgstack._clip_points(x, None, imgstack.Method(reject='mad'), channels=3, scratch=1 << 30)
    assert sum(widths) == npoints and max(widths) <= cap
    if npoints > cap:
        assert len(widths) % imgstack.WORKERS == 0
        assert all(w % 3 == 0 for w in widths[:-1])
        assert max(widths) - min(widths) < len(widths) * 3
    else:
        assert widths == [npoints]


def test_linear_passes_run_in_blocks_of_their_own_scratch(monkeypatch):
    # linear fit works on every kept value each pass: its passes run on
    # blocks of LINEAR_BYTES, while its chunks (sorted whole) follow the
    # budget's scratch; the blocks give the same result as one block
    x = np.random.default_rng(6).normal(100, 10, (12, 3000))
    x[3, 5] = np.nan  # an invalid value: a point with fewer values
    widths = chunk_widths(monkeypatch)
    blocks: list[int] = []
    real = imgstack._Chunk._linear

    def record(self, idx):
        if not self._linear_left:  # a block's first pass
            blocks.append(idx.size)
        return real(self, idx)

    monkeypatch.setitem(imgstack._STEPS, 'linear', record)
    monkeypatch.setattr(imgstack, 'LINEAR_BYTES', 1 << 18)
    block = imgstack._chunk_points(12, 1, None, 'mean', False, 1 << 18, False)
    assert block < 1000
    method = imgstack.Method(reject='linear')
    small = imgstack._clip_points(x, None, method, scratch=1 << 30)
    assert widths == [3000]  # one chunk, sorted whole
    assert sum(blocks) == 3000 and max(blocks) <= block and len(blocks) > 3
    monkeypatch.setattr(imgstack, 'LINEAR_BYTES', 1 << 30)
    widths.clear()
    blocks.clear()
    whole = imgstack._clip_points(x, None, method, scratch=1 << 20)
    assert blocks == [3000]
    assert small.passes == whole.passes > 1
    np.testing.assert_array_equal(small.rejected, whole.rejected)
    np.testing.assert_array_equal(small.low, whole.low)
    np.testing.assert_array_equal(small.result, whole.result)


@pytest.mark.parametrize('blocks', [1, 5])
def test_linear_without_masks_gives_what_its_masks_give(monkeypatch, blocks):
    # the mean alone needs no masks of the kept values: linear fit keeps a
    # count, a sum and the values rejected low per point instead; asking
    # for the masks (the rejection map) gives the same numbers, in one
    # block of passes or several
    if blocks > 1:
        point = -(-imgstack.POINT_BYTES[None] // 15)
        monkeypatch.setattr(imgstack, 'LINEAR_BYTES', 15 * (40 + point) * 800)
        assert imgstack._chunk_points(15, 1, None, 'mean', False, imgstack.LINEAR_BYTES,
                                     False) == 800
    rng = np.random.default_rng(9)
    x = rng.normal(1000, 30, (15, 4000))
    x[rng.random(x.shape) < 0.05] += 500  # outliers
    x[2, :7] = np.nan
    x[:, 9] = np.nan  # a point with no valid value
    x[:, 11] = [0, 0, 0, 0, 0, 0, 0, 1e6, -1e6, 0, 0, 0, 0, 0, 0]
    for sigma in (0.5, 2.5):  # 0.5: some points lose every value
        method = imgstack.Method(reject='linear', sigma_low=sigma, sigma_high=sigma)
        plain = imgstack._clip_points(x, None, method)
        masked = imgstack._clip_points(x, None, method, want_mask=True)
        np.testing.assert_array_equal(plain.result, masked.result)
        np.testing.assert_array_equal(plain.rejected, masked.rejected)
        np.testing.assert_array_equal(plain.low, masked.low)
        assert plain.rejected.sum() > 0 and plain.low.sum() > 0
        valid = (~np.isnan(x)).sum(axis=0)
        assert (masked.kept.sum(axis=0) + plain.rejected == valid).all()
        if sigma == 0.5:  # the fallback: the mean of every valid value
            lost = ((plain.rejected == valid) & (valid > 0)).nonzero()[0]
            assert lost.size
            np.testing.assert_allclose(plain.result[lost], np.nanmean(x[:, lost], axis=0))


def _mad_values(n, dtype, rng):
    """n values of 500 points of dtype: the type's extremes, ties, and
    (floats) repeated whole numbers."""
    if np.dtype(dtype).kind == 'f':
        x = rng.normal(0, 10, (n, 500)).astype(dtype)
        x[:, ::3] = np.round(x[:, ::3])
        return x
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, (n, 500)).astype(dtype)
    x[:, ::4] = rng.integers(0, 3, (n, 125)) + (info.min + info.max) // 2  # ties
    x[:, 1::4] = rng.choice([info.min, info.max], (n, 125))  # the extremes
    return x


@pytest.mark.parametrize('dtype', ['uint8', 'int8', 'uint16', 'int16', 'float64'])
@pytest.mark.parametrize('n', [1, 2, 3, 4, 7, 24, 25, 48])
def test_mad_rows_give_what_the_search_gives(dtype, n):
    # MAD's first pass reads whole rows; it gives the median and MAD of
    # each point's values, the search's to the last bit (small integers in
    # their own unsigned type: their differences wrap around and must not)
    x = _mad_values(n, dtype, np.random.default_rng(n))
    chunk = imgstack._Chunk(x, None, imgstack.Method(reject='mad'), None)
    idx = np.arange(x.shape[1])
    a, b = chunk.a[idx], chunk.b[idx]
    c, mad = chunk.mad_rows()
    np.testing.assert_array_equal(c, chunk.median(a, b, idx))
    np.testing.assert_array_equal(mad, chunk.mad(a, b, c, idx))
    values = x.astype(np.float64)
    median = np.median(values, axis=0)
    np.testing.assert_allclose(c + chunk.shift, median, rtol=1e-12, atol=1e-12)  # floats: shifted
    np.testing.assert_allclose(mad, np.median(np.abs(values - median), axis=0), rtol=1e-12)


@pytest.mark.parametrize('dtype', ['uint16', 'int16', 'float32'])
def test_mad_first_pass_reads_rows_up_to_its_frames(monkeypatch, dtype):
    # pass 1 (every point keeps its n values) takes the rows, later passes
    # (windows of their own) the search; past MAD_ROWS frames, the search
    # only; the rejections and results are the same either way
    x = _mad_values(24, dtype, np.random.default_rng(7))
    x[5, ::5] = x[5, ::5] // 2 if x.dtype.kind != 'f' else x[5, ::5] * 40  # outliers
    searched = []
    search = imgstack._Chunk.mad

    def mad(self, a, b, c, idx):
        searched.append((idx.size, int((b - a).min())))
        return search(self, a, b, c, idx)

    monkeypatch.setattr(imgstack._Chunk, 'mad', mad)
    method = imgstack.Method(reject='mad', iterations=4)
    rows = imgstack._clip_points(x, None, method, scratch=1 << 26)
    assert searched and all(size < 500 or low < 24 for size, low in searched)
    searched.clear()
    monkeypatch.setitem(imgstack.MAD_ROWS, x.dtype.kind != 'f', 23)
    alone = imgstack._clip_points(x, None, method, scratch=1 << 26)
    assert searched[0] == (500, 24)
    np.testing.assert_array_equal(rows.result, alone.result)
    np.testing.assert_array_equal(rows.rejected, alone.rejected)
    assert rows.rejected.sum() > 0 and rows.passes == alone.passes > 1


def test_the_command_shortens_the_thread_switch_interval(tmp_path, monkeypatch):
    # a stacking thread waiting for the interpreter lock asks for it after
    # SWITCH_SECONDS, not Python's 5 ms: the command's entry point sets it;
    # main(), the library and a program that imports imgstack keep their own
    before = sys.getswitchinterval()
    paths = []
    for i in range(3):
        path = tmp_path / f'f{i}.tif'
        tifffile.imwrite(path, np.full((4, 5), 100 + i, np.uint16))
        paths.append(str(path))
    handlers = {s: signal.getsignal(s) for s in imgstack.SIGNALS}
    try:
        sys.setswitchinterval(0.005)
        imgstack.stack_files(paths, str(tmp_path / 'lib.tif'), reject='none')
        assert sys.getswitchinterval() == pytest.approx(0.005)
        assert imgstack.main(['-q', '--reject', 'none', str(tmp_path / 'main.tif'), *paths]) == 0
        assert sys.getswitchinterval() == pytest.approx(0.005)
        assert {s: signal.getsignal(s) for s in imgstack.SIGNALS} == handlers
        monkeypatch.setattr(imgstack, '_tune_allocator', lambda memory: True)
        assert imgstack._cli(['-q', '--reject', 'none', str(tmp_path / 'cli.tif'), *paths]) == 0
        assert sys.getswitchinterval() == pytest.approx(imgstack.SWITCH_SECONDS)
        assert imgstack.SWITCH_SECONDS < 0.005
    finally:
        sys.setswitchinterval(before)
        for s, h in handlers.items():
            signal.signal(s, h)


@pytest.mark.parametrize('dtype', ['uint16', 'int16', 'uint8'])
@pytest.mark.parametrize('count', [1000, (1 << 21) + 5])
def test_sums_without_rejected_values(dtype, count):
    # the fast path takes the rejected values out of exact sums per point:
    # bincount in float64 below 2^21 values, int64 add.at above
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    width = 700
    gone = rng.integers(info.min, int(info.max) + 1, count).astype(dtype)
    points = rng.integers(0, width, count)
    total, squares = np.full(width, 10**15), np.full(width, 10**16)
    got = imgstack._without(gone, points, width, total, squares)
    g = gone.astype(np.int64)
    want_total, want_squares = total.copy(), squares.copy()
    np.subtract.at(want_total, points, g)
    np.subtract.at(want_squares, points, g * g)
    np.testing.assert_array_equal(got[0], want_total)
    np.testing.assert_array_equal(got[1], want_squares)


@pytest.mark.parametrize('dtype', ['uint16', 'float32'])
def test_threshold_path_with_many_frames_matches_the_window_core(dtype):
    # with 1,500 frames every point loses values in every pass, so no point
    # leaves the threshold path's working set; it still gives the window
    # core's values and counts
    rng = np.random.default_rng(5)
    x = rng.normal(1000, 30, (1500, 40))
    x[rng.random(x.shape) < 0.01] = 1600
    x = np.rint(x).astype(dtype)
    method = imgstack.Method(iterations=4)
    fast = imgstack._clip_chunk(x, None, 2.5, 2.5, 4, 'mean')
    with np.errstate(invalid='ignore', divide='ignore'):
        chunk = imgstack._Chunk(x, None, method, None, False)
        passes = chunk.reject()
        window = imgstack._combine(chunk)
    np.testing.assert_allclose(fast[0], window[0], rtol=1e-12)
    np.testing.assert_array_equal(fast[1], window[1])
    np.testing.assert_array_equal(fast[2], window[2])
    assert fast[3] == passes
    assert (fast[1] > 20).all()  # every point lost more than its 15 outliers


def test_percentile_decides_each_median_once(monkeypatch):
    # percentile's exact bounds depend on the median alone: with 0.2, 0.8 m
    # is whole for a fifth of the medians; each median is decided once, in
    # integers, not once per point in fractions (that made percentile 13
    # times as slow on a night)
    calls = []
    real = imgstack._percentile_bounds
    monkeypatch.setattr(imgstack, '_percentile_bounds',
                        lambda twice, *a: calls.append(twice) or real(twice, *a))
    rng = np.random.default_rng(2)
    x = rng.normal(1000, 3, (12, 20000)).astype(np.uint16)
    got = imgstack._clip_points(x, None, imgstack.Method(reject='percentile'))
    twice = [t for call in calls for t in call]
    assert twice and len(twice) == len(set(twice))  # one chunk here: each once
    assert len(twice) <= np.unique(2 * np.median(x, axis=0)).size
    medians = np.median(x, axis=0)
    kept = (x >= np.ceil(0.8 * medians)) & (x <= np.floor(1.1 * medians))
    np.testing.assert_array_equal(got.rejected, (~kept).sum(axis=0))


@pytest.mark.parametrize(('low', 'high'), [(0.2, 0.1), (0.5, 0.4375), (0.3, 0.7), (1e-17, 0.9)])
def test_percentile_bounds_in_integers_are_exact(low, high):
    twice = list(range(-2001, 2001, 7)) + [2 * 65535, 2 * (2**31 - 1), -2 * 2**31]
    lows, highs = imgstack._percentile_bounds(twice, low, high)
    for t, lo, hi in zip(twice, lows, highs):
        m = Fraction(t, 2)
        assert lo == math.ceil(m - Fraction(low) * m)
        assert hi == math.floor(m + Fraction(high) * m)


def test_plain_average_does_no_pass_work(monkeypatch):
    # -i 0 is the plain average: no sums of squares and no copy of the
    # chunk, which the passes alone need (they made -i 0 1.4 times as slow)
    calls = []
    monkeypatch.setattr(imgstack, '_square_sums', lambda x: calls.append(x.shape))
    x = np.random.default_rng(1).integers(0, 4000, (6, 50000)).astype(np.uint16)
    view = x[:, 10:40000]
    got = imgstack._clip_chunk(view, None, 2.5, 2.5, 0, 'mean')
    assert not calls
    np.testing.assert_array_equal(got[0], view.mean(axis=0))
    assert got[3] == 0
