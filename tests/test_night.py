# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""A night of frames (README, A night of frames): normalization, the drift
warning, noise weights, the valid range, float32 output and the per-frame
statistics, in memory and through files.

The frames are built from one scene with known levels, factors and noise,
so that the expected values come from those known numbers or from plain
numpy; the file job is also compared with the in-memory `stack_array`,
which must agree with it exactly.
"""

import csv
import math
import re
import warnings

import numpy as np
import pytest
import tifffile

import imgstack
from imgstack import ImgstackWarning
from tests.helpers import INTERPRETER, run_measured, write_frames

MODES = ['additive', 'multiplicative', 'additive-scale']
DRIFT = 'frame backgrounds span'


# -- helpers ----------------------------------------------------------------------


def scene(h, w, seed, level=1000.0, area=300):
    """A sky with a gentle gradient and a star per ``area`` pixels
    (float64, no noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    sky = level + 2.0 * x + 1.0 * y
    for _ in range(max(h * w // area, 1)):
        cy, cx, flux = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(200, 3000)
        sky += flux * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 2.0)
    return sky


def mad_std(v):
    """numpy's MAD * 1.4826 (the scale imgstack names)."""
    v = np.asarray(v, np.float64)
    return imgstack.MAD_SCALE * np.median(np.abs(v - np.median(v)))


def steady_frames(n, h, w, seed, noise=20.0):
    """Frames of one scene with their own noise, a trail in frame 3, then
    moved so that every frame has exactly the same median and MAD scale:
    normalizing them changes nothing, so the stack of any transform of them
    normalized equals their plain stack."""
    rng = np.random.default_rng(seed)
    s = scene(h, w, seed) + rng.normal(0, noise, (n, h, w))
    s[3, h // 2, :] += 4000.0  # a trail: something to reject
    med = np.median(s, axis=(1, 2))
    scale = np.array([mad_std(f) for f in s])
    s = (s - med[:, None, None]) * (scale.mean() / scale)[:, None, None] + med.mean()
    return s


def transform(s, mode):
    """Known offsets (mean 0) and factors (mean 1), frame by frame."""
    n = len(s)
    offsets = np.linspace(-300.0, 300.0, n)[:, None, None]
    factors = np.linspace(1.25, 0.75, n)[:, None, None]
    if mode == 'additive':
        return s + offsets
    if mode == 'multiplicative':
        return s * factors
    return s * factors + offsets


def read_csv(path):
    with open(path, newline='') as fh:
        return list(csv.DictReader(fh))


def no_drift_warning(record):
    return [w for w in record if DRIFT in str(w.message)] == []


# -- frame_statistics -------------------------------------------------------------


def numpy_statistics(x, ok=None):
    """Location, scale and noise of (rows, width) values as numpy says:
    median, MAD * 1.4826, MAD * 1.4826 of horizontal neighbour differences
    (both valid) / sqrt(2)."""
    x = x.astype(np.float64)
    ok = np.ones(x.shape, bool) if ok is None else ok
    diff = (x[:, 1:] - x[:, :-1])[ok[:, 1:] & ok[:, :-1]]
    v = x[ok]
    return np.median(v), mad_std(v), mad_std(diff) / math.sqrt(2)


@pytest.mark.parametrize('dtype', ['uint8', 'uint16', 'int16', 'float64'])
def test_frame_statistics_match_numpy_on_gaussian_data(dtype):
    rng = np.random.default_rng(11)
    h, w, sigma = 200, 300, 12.0
    mid = {'uint8': 120.0, 'uint16': 30000.0, 'int16': -50.0, 'float64': 0.25}[dtype]
    values = rng.normal(mid, sigma, (h, w, 2)) + np.array([0.0, 7.0])  # two channels
    if dtype != 'float64':
        values = np.rint(values)
    x = values.astype(dtype)
    stats = imgstack.frame_statistics(x)
    for c in range(2):
        loc, scale, noise = numpy_statistics(x[..., c])
        assert stats.location[c] == pytest.approx(loc, rel=1e-12, abs=1e-12)
        assert stats.scale[c] == pytest.approx(scale, rel=1e-12)
        assert stats.noise[c] == pytest.approx(noise, rel=1e-12)
        assert stats.count[c] == h * w
        # and they estimate the truth: N values give the median to about
        # 1.25 sigma / sqrt(N), the MAD scale to about 1.17 sigma / sqrt(N)
        # (5 of those, plus the integers' half-unit steps)
        n = h * w
        step = 0.0 if dtype == 'float64' else imgstack.MAD_SCALE * 0.5
        assert abs(stats.location[c] - (mid + 7.0 * c)) < 5 * 1.2533 * sigma / math.sqrt(n) + 0.5
        assert abs(stats.scale[c] - sigma) < 5 * 1.17 * sigma / math.sqrt(n) + step
        assert abs(stats.noise[c] - sigma) < 10 * 1.17 * sigma / math.sqrt(n) + step


@pytest.mark.parametrize('dtype', ['uint8', 'uint16', 'int16'])
def test_histogram_and_sort_paths_agree_on_integers(dtype):
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -300), min(info.max, 250), (64, 77, 3)).astype(dtype)
    x[5, :, 1] = info.max  # outliers do not matter, but must agree
    ok = rng.random(x.shape) > 0.2
    for valid in (None, ok):
        a = imgstack.frame_statistics(x, valid)  # histogram path
        b = imgstack.frame_statistics(x.astype(np.float64), valid)  # sort path
        for name in ('location', 'scale', 'noise', 'count'):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    # the valid mask is honoured: numpy on the valid values only
    for c in range(3):
        loc, scale, noise = numpy_statistics(x[..., c], ok[..., c])
        a = imgstack.frame_statistics(x, ok)
        assert (a.location[c], a.scale[c]) == pytest.approx((loc, scale), rel=1e-12)
        assert a.noise[c] == pytest.approx(noise, rel=1e-12)


@pytest.mark.parametrize('dtype', ['uint16', 'float64'])
def test_frame_statistics_even_counts_by_hand(dtype):
    # median of 1 2 3 4 is 2.5; |x - 2.5| = 1.5 .5 .5 1.5, MAD 1; the
    # differences 1 1 1 have MAD 0
    x = np.array([[[1], [2], [3], [4]]], dtype)
    stats = imgstack.frame_statistics(x)
    assert stats.location[0] == 2.5
    assert stats.scale[0] == pytest.approx(1.482602218505602)
    assert stats.noise[0] == 0.0


def test_noise_ignores_stars_and_gradients():
    rng = np.random.default_rng(2)
    sigma = 15.0
    # a star every 2000 pixels (a rich field), and a steep gradient
    sky = scene(240, 320, seed=2, area=2000) + 8.0 * np.mgrid[0:240, 0:320][1]
    x = sky + rng.normal(0, sigma, sky.shape)
    stats = imgstack.frame_statistics(x[..., None])
    assert stats.noise[0] == pytest.approx(sigma, rel=0.05)
    assert stats.scale[0] > 10 * sigma  # the gradient is not noise


# -- normalization ----------------------------------------------------------------


@pytest.mark.parametrize('mode', MODES)
def test_normalization_recovers_the_scene_in_memory(mode):
    s = steady_frames(12, 64, 80, seed=1)
    t = transform(s, mode)
    want, want_rejected = imgstack.stack_array(s)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        got, rejected = imgstack.stack_array(t, normalize=mode)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert rejected == want_rejected and rejected >= 64  # the trail, at least
    # the transform matters: without normalization the levels change what
    # is rejected (the mean of the levels is the same)
    raw, _ = imgstack.stack_array(t)
    assert np.abs(raw - want).max() > 10


@pytest.mark.parametrize('mode', MODES)
def test_normalization_recovers_the_scene_through_files(tmp_path, mode):
    s = steady_frames(12, 64, 80, seed=2)
    t = np.rint(transform(s, mode)).astype(np.uint16)  # frames in whole ADU
    paths = write_frames(tmp_path, t)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', '--normalize', mode, out, *paths]) == 0
    got = tifffile.imread(out).astype(np.float64)
    want = np.rint(imgstack.stack_array(s)[0])
    # within rounding: the frames were rounded to whole ADU (half a unit,
    # over factors down to 0.75), their medians too, and the output again
    diff = np.abs(got - want)
    assert diff.mean() < 0.5, diff.mean()
    assert np.mean(diff <= 1) > 0.995
    # the library gives the same file, and so does the in-memory stack
    lib = str(tmp_path / 'lib.tif')
    imgstack.stack_files(paths, lib, normalize=mode)
    np.testing.assert_array_equal(tifffile.imread(lib), tifffile.imread(out))
    mem, _ = imgstack.stack_array(t, normalize=mode)
    np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(mem, t.dtype))
    # without --normalize the levels change what is rejected
    assert imgstack.main(['-q', '-f', out, *paths]) == 0
    assert np.abs(tifffile.imread(out).astype(np.float64) - want).max() > 10


@pytest.mark.parametrize('mode', MODES)
def test_in_memory_paths_agree_with_normalization(mode):
    # stack_array takes a fast path without return_mask, the window core
    # with it (and the file job takes the core when it keeps per-frame
    # counts): whole-ADU frames with whole-ADU medians give means that are
    # exactly halves, which both must round alike
    s = steady_frames(12, 64, 80, seed=2)
    t = np.rint(transform(s, mode)).astype(np.uint16)
    fast, r0 = imgstack.stack_array(t, normalize=mode)
    core, r1, _ = imgstack.stack_array(t, normalize=mode, return_mask=True)
    assert r0 == r1
    np.testing.assert_allclose(fast, core, rtol=1e-12)
    differ = imgstack._to_dtype(fast, t.dtype) != imgstack._to_dtype(core, t.dtype)
    assert not differ.any(), f'{differ.sum()} of {differ.size} points round differently'


def test_normalization_keeps_the_plain_average_background():
    # the reference is the mean of the frames' locations: switching
    # normalization on does not move the background
    rng = np.random.default_rng(3)
    levels = 1000.0 + 40.0 * np.arange(10)
    stack = levels[:, None, None] + rng.normal(0, 30, (10, 50, 60))
    for mode in MODES:
        got, _ = imgstack.stack_array(stack, normalize=mode)
        assert np.median(got) == pytest.approx(levels.mean(), abs=2.0), mode


# -- the drift warning ------------------------------------------------------------


def drifting(tmp_path, step, n=10, noise=30.0, seed=4):
    """Flat frames whose level rises by step ADU a frame, with noise."""
    rng = np.random.default_rng(seed)
    levels = 1000.0 + step * np.arange(n)
    stack = np.rint(levels[:, None, None] + rng.normal(0, noise, (n, 60, 80))).astype(np.uint16)
    return write_frames(tmp_path, stack, name=f'd{step}-'), levels


@pytest.mark.parametrize(('step', 'warned'),
                         [(0.0, False), (2.0, False), (40.0, True), (150.0, True)])
def test_drift_warning_on_the_command_line(tmp_path, capsys, step, warned):
    paths, levels = drifting(tmp_path, step)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-f', out, *paths]) == 0
    err = capsys.readouterr().err
    assert (DRIFT in err) == warned, err
    if warned:
        m = re.search(r'frame backgrounds span ([\d.e+]+) ADU, (\d+) times their noise; '
                      r'changes of the light between frames will be rejected as outliers, or '
                      r'widen the spread so that '
                      r'outliers hide \(try --normalize additive\)', err)
        assert m, err
        span = levels.max() - levels.min()
        assert float(m.group(1)) == pytest.approx(span, abs=3.0)
        assert int(m.group(2)) == pytest.approx(span / 30.0, rel=0.1, abs=1)
    # never with --normalize
    assert imgstack.main(['-f', '--normalize', 'additive', out, *paths]) == 0
    assert DRIFT not in capsys.readouterr().err


def test_drift_warning_through_the_library(tmp_path):
    paths, _ = drifting(tmp_path, 40.0)
    out = str(tmp_path / 'out.tif')
    with pytest.warns(ImgstackWarning, match=DRIFT):
        imgstack.stack_files(paths, out)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        imgstack.stack_files(paths, out, force=True, normalize='additive')
    assert no_drift_warning(record)
    steady, _ = drifting(tmp_path, 0.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        imgstack.stack_files(steady, out, force=True)
    assert no_drift_warning(record)


# -- weights ----------------------------------------------------------------------


SIGMAS = np.array([10.0, 20.0, 40.0] * 3)


def noisy_frames(h, w, seed, sigmas=SIGMAS):
    """One scene (a gradient, no stars), frames of known
    unequal noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 1000.0 + 0.5 * x + 0.2 * y  # scale (MAD) is not noise here
    return base + rng.normal(0, 1, (len(sigmas), h, w)) * sigmas[:, None, None]


def weight_tolerance(h, w, sigmas, integer=False):
    """Largest relative error of an estimated weight 1/sigma**2: the MAD
    scale of N neighbour differences has a relative error of about
    1.17/sqrt(N), doubled for the differences' correlation, taken 5 times;
    integers add their half-unit steps of the MAD; a weight doubles it."""
    rel = 5 * 2 * 1.17 / math.sqrt(h * (w - 1))
    if integer:
        rel += imgstack.MAD_SCALE * 0.25 / math.sqrt(2) / sigmas.min()
    return 2 * rel


def check_inverse_variance(got, stack, sigmas, tolerance, rounding=0.0):
    w = 1.0 / sigmas**2
    p = (w / w.sum())[:, None, None]
    exact = (p * stack).sum(axis=0)
    # |p_hat - p| <= 2 * tolerance * p when each weight is within tolerance
    bound = 2 * tolerance * (p * np.abs(stack - exact)).sum(axis=0) + rounding + 1e-9
    excess = np.abs(got - exact) - bound
    assert excess.max() <= 0, f'{(excess > 0).sum()} points off, worst by {excess.max():.3g}'
    plain = stack.mean(axis=0)
    rms = np.sqrt(np.mean((got - exact) ** 2))
    assert rms < 0.1 * np.sqrt(np.mean((plain - exact) ** 2)) + rounding


def test_weights_give_the_inverse_variance_mean_in_memory():
    h, w = 200, 250
    stack = noisy_frames(h, w, seed=6)
    got, rejected = imgstack.stack_array(stack, weights='noise', iterations=0)
    assert rejected == 0
    check_inverse_variance(got, stack, SIGMAS, weight_tolerance(h, w, SIGMAS))


def test_weights_give_the_inverse_variance_mean_through_files(tmp_path):
    h, w = 200, 250
    stack = np.rint(noisy_frames(h, w, seed=7)).astype(np.uint16)
    paths = write_frames(tmp_path, stack)
    out, table = str(tmp_path / 'out.tif'), str(tmp_path / 'frames.csv')
    assert imgstack.main(['-q', '-i', '0', '--weights', 'noise', '--frame-stats', table,
                          out, *paths]) == 0
    tol = weight_tolerance(h, w, SIGMAS, integer=True)
    rows = read_csv(table)
    weights = np.array([float(r['weight_0']) for r in rows])
    np.testing.assert_allclose(weights, 1 / SIGMAS**2, rtol=tol)
    got = tifffile.imread(out).astype(np.float64)
    check_inverse_variance(got, stack.astype(np.float64), SIGMAS, tol, rounding=0.5)


def test_zero_iterations_with_weights_is_the_plain_weighted_mean(tmp_path):
    stack = np.rint(noisy_frames(40, 50, seed=8)).astype(np.uint16)
    stack[2, 10, 10] = 60000  # an outlier, kept: no rejection
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    stats = imgstack.stack_files(paths, out, iterations=0, weights='noise', dtype='float32')
    assert stats.rejected == 0
    w = np.array([row['weight_0'] for row in stats.frame_table])
    assert w.argmax() in (0, 3, 6) and w.argmin() in (2, 5, 8)  # the sigma-10 and -40 frames
    want = np.average(stack.astype(np.float64), axis=0, weights=w) / 65535
    np.testing.assert_allclose(tifffile.imread(out), want, rtol=2**-23)


def outlier_stack(seed, shape=(30, 40), n=10):
    rng = np.random.default_rng(seed)
    sig = np.linspace(8, 40, n)
    stack = 1000 + rng.normal(0, 1, (n, *shape)) * sig.reshape(-1, *([1] * len(shape)))
    hits = rng.random(stack.shape) < 0.01
    stack[hits] += rng.choice([-600.0, 900.0], hits.sum())
    return np.rint(stack).astype(np.uint16)


@pytest.mark.parametrize('reject', ['sigma', 'mad', 'winsorized'])
def test_rejection_unchanged_by_weights_in_memory(reject):
    stack = outlier_stack(9)
    plain, r0, k0 = imgstack.stack_array(stack, reject=reject, return_mask=True)
    weighted, r1, k1 = imgstack.stack_array(stack, reject=reject, weights='noise', return_mask=True)
    assert r0 == r1 and r0 > 0
    np.testing.assert_array_equal(k1, k0)
    assert np.abs(weighted - plain).max() > 1  # the weights did change the mean


def test_rejection_unchanged_by_weights_through_files(tmp_path):
    stack = outlier_stack(10, (30, 40, 3))
    paths = write_frames(tmp_path, stack, photometric='rgb')
    maps = [str(tmp_path / 'map0.tif'), str(tmp_path / 'map1.tif')]
    s0 = imgstack.stack_files(paths, str(tmp_path / 'a.tif'), rejection_map=maps[0])
    s1 = imgstack.stack_files(paths, str(tmp_path / 'b.tif'), rejection_map=maps[1],
                              weights='noise')
    assert s0.rejected == s1.rejected > 0 and s0.low == s1.low
    for page in range(3):
        np.testing.assert_array_equal(tifffile.imread(maps[1], key=page),
                                      tifffile.imread(maps[0], key=page))


def test_in_memory_noise_uses_neighbours_within_rows(tmp_path):
    # the noise is the MAD of differences of horizontal neighbours: the last
    # pixel of a row and the first of the next are no neighbours; a steep
    # horizontal gradient makes the difference show
    rng = np.random.default_rng(12)
    n, h, w = 8, 60, 24
    sig = np.linspace(10, 30, n)
    x = np.arange(w, dtype=np.float64)
    stack = 1000 + 40.0 * x + rng.normal(0, 1, (n, h, w)) * sig[:, None, None]
    noise = np.array([numpy_statistics(f)[2] for f in stack])
    want = np.average(stack, axis=0, weights=1 / noise**2)
    got, _ = imgstack.stack_array(stack, weights='noise', iterations=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # and the file job agrees with the in-memory stack
    paths = write_frames(tmp_path, stack.astype(np.float32))
    stats = imgstack.stack_files(paths, str(tmp_path / 'out.tif'), weights='noise', iterations=0)
    mem, _ = imgstack.stack_array(stack.astype(np.float32), weights='noise', iterations=0)
    filed = np.array([r['weight_0'] for r in stats.frame_table])
    np.testing.assert_allclose(tifffile.imread(str(tmp_path / 'out.tif')), mem.astype(np.float32),
                               rtol=1e-6)
    np.testing.assert_allclose(filed, 1 / noise**2, rtol=1e-5)


# -- the valid range --------------------------------------------------------------


def test_valid_range_excludes_zero_borders(tmp_path):
    n, h, w = 10, 24, 30
    rng = np.random.default_rng(13)
    stack = np.empty((n, h, w), np.uint16)
    tops = rng.integers(1, 8, n)  # every frame has row 0 in its border
    lefts = rng.integers(0, 9, n)
    for i in range(n):
        stack[i] = 1000 + i  # 1000..1009: never rejected at 2.5 sigma
        stack[i, :tops[i], :] = 0
        stack[i, :, :lefts[i]] = 0
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', '--valid-range', '1:', out, *paths]) == 0
    want = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            inside = [1000 + i for i in range(n) if r >= tops[i] and c >= lefts[i]]
            want[r, c] = sum(inside) / len(inside) if inside else 0.0
    got = tifffile.imread(out)
    np.testing.assert_array_equal(got, imgstack._to_dtype(want, np.dtype(np.uint16)))
    assert (got[0] == 0).all() and (got[-1, -1] == 1004 or got[-1, -1] == 1005)
    # the same in memory; and without the range the borders drag it down
    mem, _ = imgstack.stack_array(stack, valid_range=(1, None))
    np.testing.assert_allclose(mem, want, rtol=1e-12)
    assert imgstack.main(['-q', '-f', out, *paths]) == 0
    assert (tifffile.imread(out)[1:].astype(float) < want[1:] - 50).any()


def test_valid_range_excludes_saturation(tmp_path):
    n, h, w = 10, 20, 25
    rng = np.random.default_rng(14)
    stack = (1000 + np.arange(n))[:, None, None] * np.ones((n, h, w))
    saturated = rng.random(stack.shape) < 0.3
    saturated[:, 5, 5] = True  # saturated in every frame: no valid value
    stack[saturated] = 65535
    stack = stack.astype(np.uint16)
    stack[0, 2, 2] = 65000  # on the bound: kept
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', '--valid-range', ':65000', out, *paths]) == 0
    x = stack.astype(np.float64)
    ok = x <= 65000
    with np.errstate(invalid='ignore'):
        # no valid value (saturated in every frame): the plain mean, saturated
        want = np.where(ok.any(axis=0), (x * ok).sum(axis=0) / ok.sum(axis=0), x.mean(axis=0))
    assert want[5, 5] == 65535
    # 65000 is on the bound: valid, and then a matter for the clipping,
    # which the in-memory stack decides alike
    want_mem, _ = imgstack.stack_array(stack, valid_range=(None, 65000))
    got = tifffile.imread(out)
    np.testing.assert_array_equal(got, imgstack._to_dtype(want_mem, stack.dtype))
    mask = np.ones((h, w), bool)
    mask[2, 2] = False
    np.testing.assert_array_equal(got[mask], imgstack._to_dtype(want, stack.dtype)[mask])
    kept, _ = imgstack.stack_array(stack[:, 2:3, 2:3], reject='none', valid_range=(None, 65000))
    assert kept[0, 0] == pytest.approx(x[:, 2, 2][ok[:, 2, 2]].mean()) and kept[0, 0] > 5000
    assert got[5, 5] == 65535  # saturated in every frame: stays saturated


def test_valid_range_excludes_borders_from_the_normalization(tmp_path):
    n, h, w = 10, 60, 70
    rng = np.random.default_rng(15)
    levels = 1000.0 + 30.0 * np.arange(n)
    stack = np.rint(levels[:, None, None] + rng.normal(0, 20, (n, h, w))).astype(np.uint16)
    stack[0, :40] = 0  # two thirds of frame 0 is border
    stack[5, :, :10] = 0
    paths = write_frames(tmp_path, stack)
    out, table = str(tmp_path / 'out.tif'), str(tmp_path / 'frames.csv')
    assert imgstack.main(['-q', '-i', '0', '--valid-range', '1:', '--normalize', 'additive',
                          '--dtype', 'float32', '--frame-stats', table, out, *paths]) == 0
    rows = read_csv(table)
    loc = np.array([float(r['location_0']) for r in rows])
    np.testing.assert_allclose(loc, levels, atol=3.0)  # frame 0 by its sky
    # expected: each frame moved by its own (numpy) median of valid values
    x = stack.astype(np.float64)
    ok = x >= 1
    med = np.array([np.median(f[k]) for f, k in zip(x, ok)])
    norm = x - med[:, None, None] + med.mean()
    want = (norm * ok).sum(axis=0) / ok.sum(axis=0)
    np.testing.assert_allclose(tifffile.imread(out) * 65535.0, want, rtol=1e-6)
    mem, _ = imgstack.stack_array(stack, iterations=0, valid_range=(1, None), normalize='additive')
    np.testing.assert_allclose(mem, want, rtol=1e-12)
    assert np.ptp(want) < 200  # the sky is flat again: no step where the border ends


# -- float output -----------------------------------------------------------------


@pytest.mark.parametrize('compress', [None, 'zlib'])
@pytest.mark.parametrize('dtype', ['uint8', 'uint16', 'float32', 'float64'])
def test_float32_output(tmp_path, dtype, compress):
    rng = np.random.default_rng(16)
    if dtype.startswith('uint'):
        top = np.iinfo(dtype).max
        stack = np.rint(rng.normal(top / 3, top / 40, (10, 21, 26, 3)).clip(0, top)).astype(dtype)
        stack[4, 3, 4] = top
    else:
        top = 1.0
        stack = rng.normal(0.3, 0.02, (10, 21, 26, 3)).astype(dtype)
        stack[4, 3, 4] = 7.5
    paths = write_frames(tmp_path, stack, photometric='rgb')
    out = str(tmp_path / 'out.tif')
    args = ['-q', '--dtype', 'float32', *(['-c', compress] if compress else []), out, *paths]
    assert imgstack.main(args) == 0
    want, _ = imgstack.stack_array(stack)
    got = tifffile.imread(out)
    assert got.dtype == np.float32 and got.shape == stack.shape[1:]
    np.testing.assert_allclose(got, want / top, rtol=2**-24, atol=0)
    if dtype.startswith('uint'):
        assert got.min() >= 0 and got.max() <= 1
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.sampleformat == 3 and page.bitspersample == 32
        if compress:
            assert page.compression == 8 and page.predictor == 3


# -- the frame statistics table ---------------------------------------------------


COLOUR = np.array([1.0, 0.8, 0.6])


def night(n=8, h=40, w=50, seed=17):
    """RGB frames of known levels (1000 + 40 k) * colour, noise 30, a
    bright trail in frame 2 and dark pixels in frame 5."""
    rng = np.random.default_rng(seed)
    levels = (1000.0 + 40.0 * np.arange(n))[:, None] * COLOUR
    stack = levels[:, None, None, :] + rng.normal(0, 30, (n, h, w, 3))
    stack[2, 20, :, :] += 3000
    stack[5, 5:8, 10:13, :] = 100
    return np.rint(stack).astype(np.uint16), levels


def table_rows(err):
    """The -v table's lines, by path."""
    text = err.split('frames:\n', 1)[1]
    return {line.split('  ')[0]: line for line in text.splitlines() if '  ch0 ' in line}


@pytest.mark.parametrize('weights', ['none', 'noise'])
def test_frame_stats_csv(tmp_path, capsys, weights):
    stack, levels = night()
    n, h, w = stack.shape[:3]
    paths = write_frames(tmp_path, stack, photometric='rgb')
    out, table, rmap = (str(tmp_path / f) for f in ('out.tif', 'frames.csv', 'map.tif'))
    assert imgstack.main(['-v', '--normalize', 'additive', '--weights', weights,
                          '--frame-stats', table, '--rejection-map', rmap, out, *paths]) == 0
    err = capsys.readouterr().err
    rows = read_csv(table)
    assert [r['path'] for r in rows] == paths
    columns = ['path'] + [f'{k}_{c}' for c in range(3) for k in (
        'location', 'scale', 'noise', 'weight', 'rejected_low', 'rejected_low_pct',
        'rejected_high', 'rejected_high_pct')] + ['stars', 'fwhm', 'roundness', 'transparency',
                                                  'snr']
    assert sorted(rows[0]) == sorted(columns)
    get = lambda key: np.array([[float(r[f'{key}_{c}']) for c in range(3)] for r in rows])  # noqa: E731
    np.testing.assert_allclose(get('location'), levels, atol=3.0)  # the frames' levels
    np.testing.assert_allclose(get('scale'), 30.0, rtol=0.15)
    np.testing.assert_allclose(get('noise'), 30.0, rtol=0.15)
    if weights == 'none':
        np.testing.assert_array_equal(get('weight'), 1.0)
    else:
        np.testing.assert_allclose(get('weight'), 1 / get('noise') ** 2, rtol=1e-5)
    low, high = get('rejected_low'), get('rejected_high')
    np.testing.assert_allclose(get('rejected_low_pct'), 100 * low / (h * w), rtol=1e-5)
    np.testing.assert_allclose(get('rejected_high_pct'), 100 * high / (h * w), rtol=1e-5)
    # the trail is frame 2's high rejections; the dark pixels frame 5's low
    assert high[2].sum() >= 3 * w and high[2].sum() == high.sum(axis=1).max()
    assert low[5].sum() >= 27 and low[5].sum() == low.sum(axis=1).max()
    # they agree with the rejection map and the summary
    assert low.sum() == tifffile.imread(rmap, key=1).sum()
    assert high.sum() == tifffile.imread(rmap, key=2).sum()
    total = int(re.search(r'(\d+) values rejected', err).group(1))
    assert low.sum() + high.sum() == total == tifffile.imread(rmap, key=0).sum()
    # -v prints the same table
    printed = table_rows(err)
    assert list(printed) == paths
    for r in rows:
        line = printed[r['path']]
        for c in range(3):
            m = re.search(rf'ch{c} loc (\S+) scale (\S+) noise (\S+) w (\S+) low (\d+) \(\S+%\) '
                          rf'high (\d+) \(\S+%\)', line)
            assert m, line
            assert float(m.group(1)) == pytest.approx(float(r[f'location_{c}']), rel=1e-5)
            assert float(m.group(3)) == pytest.approx(float(r[f'noise_{c}']), rel=1e-3)
            assert float(m.group(4)) == pytest.approx(float(r[f'weight_{c}']), rel=1e-3)
            assert int(m.group(5)) == int(r[f'rejected_low_{c}'])
            assert int(m.group(6)) == int(r[f'rejected_high_{c}'])


@pytest.mark.parametrize('options', [[], ['--normalize', 'additive']], ids=['plain', 'normalized'])
def test_verbose_table_counts_rejections_without_frame_stats(tmp_path, capsys, options):
    # -v prints the table on every run that has one (a plain run has one:
    # the drift warning needs the frames' statistics); its rejection counts
    # must be the run's, not zeros
    stack, _ = night()
    paths = write_frames(tmp_path, stack, photometric='rgb')
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-v', *options, out, *paths]) == 0
    err = capsys.readouterr().err
    total = int(re.search(r'(\d+) values rejected', err).group(1))
    assert total > 0
    printed = table_rows(err)
    assert len(printed) == len(paths)
    counts = sum(int(x) for line in printed.values()
                 for x in re.findall(r'(?:low|high) (\d+) \(', line))
    assert counts == total, f'-v table counts {counts} rejections, the run {total}'


@pytest.mark.parametrize('dtype', ['int8', 'int16'])
def test_signed_frames_spanning_their_type(tmp_path, dtype):
    # the frame statistics (taken on every run with rejection, for the
    # drift warning) must not overflow on signed values far apart
    info = np.iinfo(dtype)
    rng = np.random.default_rng(19)
    stack = rng.integers(info.min // 2, info.max // 2 + 2, (10, 20, 30)).astype(dtype)
    stack[:, 3, 4] = info.max
    stack[:, 4, 3] = info.min
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', out, *paths]) == 0
    want, _ = imgstack.sigma_clipped_mean(stack)
    np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(want, stack.dtype))
    got, _ = imgstack.stack_array(stack, normalize='additive')
    assert np.isfinite(got).all()


@pytest.mark.parametrize('rows', [1, 7, 100])
@pytest.mark.parametrize('planar', [False, True], ids=['chunky', 'planar'])
def test_small_frames_are_sampled_whole(tmp_path, rows, planar):
    # a frame with fewer than a million values per channel: its statistics
    # use every value, whatever the band height (the budget is 1 GiB)
    stack, _ = night(n=9, h=33, w=41)
    paths = write_frames(tmp_path, stack, planar=planar, photometric='rgb',
                  **({'planarconfig': 'separate'} if planar else {}))
    stats = imgstack.stack_files(paths, str(tmp_path / 'out.tif'), rows=rows, normalize='additive')
    for i, row in enumerate(stats.frame_table):
        whole = imgstack.frame_statistics(stack[i])
        got = [row[f'location_{c}'] for c in range(3)], [row[f'scale_{c}'] for c in range(3)]
        assert got[0] == list(whole.location), \
            f'frame {i}: locations {got[0]} != {list(whole.location)}'
        assert got[1] == list(whole.scale), f'frame {i}'


# -- streamed equals in memory ----------------------------------------------------


LAYOUTS = {
    'gray-strips': ((33, 41), {'rowsperstrip': 5}),
    'rgb-strips': ((33, 41, 3), {'photometric': 'rgb', 'rowsperstrip': 4}),
    'rgb-tiles': ((33, 41, 3), {'photometric': 'rgb', 'tile': (16, 16), 'compression': 'zlib'}),
    'rgb-one-strip-lzw': ((33, 41, 3),
                          {'photometric': 'rgb', 'compression': 'lzw', 'rowsperstrip': 33}),
    'planar': ((33, 41, 3), {'photometric': 'rgb', 'planarconfig': 'separate', 'rowsperstrip': 6}),
}


def night_stack(shape, seed, n=9):
    """Frames of one scene with drifting levels, unequal noise, outliers and
    zero borders that differ frame by frame."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    base = scene(h, w, seed)
    if len(shape) == 3:
        base = base[..., None] * COLOUR
    levels = np.linspace(-200, 200, n)
    sig = np.linspace(10, 35, n)
    factors = np.linspace(0.9, 1.1, n)[::-1]
    stack = np.empty((n, *shape))
    for i in range(n):
        stack[i] = (base * factors[i] + levels[i] + rng.normal(0, sig[i], shape))
    hits = rng.random(stack.shape) < 0.01
    stack[hits] += 5000
    for i in range(n):
        stack[i, :rng.integers(0, 4)] = 0
        stack[i, :, w - rng.integers(0, 4):] = 0
    return np.rint(stack.clip(0, 65535)).astype(np.uint16)


@pytest.mark.parametrize('weights', ['none', 'noise'])
@pytest.mark.parametrize('rows', [1, 7, 1000])
@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_streamed_equals_in_memory(tmp_path, layout, rows, weights):
    shape, kwargs = LAYOUTS[layout]
    stack = night_stack(shape, seed=rows)
    planar = kwargs.get('planarconfig') == 'separate'
    paths = write_frames(tmp_path, stack, planar=planar, **kwargs)
    out = str(tmp_path / 'out.tif')
    settings = {'normalize': 'additive-scale', 'weights': weights, 'valid_range': (1, None),
                'sigma': 2.5, 'iterations': 3}
    stats = imgstack.stack_files(paths, out, rows=rows, **settings)
    want, rejected = imgstack.stack_array(stack, channel_axis=3 if stack.ndim == 4 else None,
                                          **settings)
    got = tifffile.imread(out)
    if planar:
        got = np.moveaxis(got, 0, -1)
    want = imgstack._to_dtype(want, stack.dtype)
    differ = got != want
    assert not differ.any(), (f'{differ.sum()} of {differ.size} points differ, by up to '
                              f'{np.abs(got.astype(int) - want).max()}')
    assert stats.rejected == rejected


# -- memory -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize('reject', ['sigma', 'winsorized', 'linear'])
def test_peak_memory_with_every_option(tmp_path, reject):
    # sigma takes the threshold path; winsorized the window core, with
    # prefix sums of float64 values and the masks in frame order; linear
    # fit sorts whole chunks, keeps masks of their sorted rows and runs its
    # passes on blocks
    rng = np.random.default_rng(18)
    base = rng.normal(3000, 300, (1200, 1000, 3)).astype(np.float32)
    paths = []
    for i in range(16):
        frame = base * (1 + 0.01 * i) + 20 * i + rng.normal(0, 40, base.shape).astype(np.float32)
        frame[:8 + i] = 0  # zero borders
        paths.append(str(tmp_path / f'in{i:02d}.tif'))
        tifffile.imwrite(paths[-1], frame.clip(0, 65535).astype(np.uint16), photometric='rgb',
                         metadata=None)
    del base
    out, table, rmap = (str(tmp_path / f) for f in ('out.tif', 'frames.csv', 'map.tif'))
    budget = 128 * imgstack.MIB
    status, err, peak = run_measured([
        '-q', '-m', '128M', '--normalize', 'additive-scale', '--weights', 'noise',
        '--valid-range', '1:', '--dtype', 'float32', '--frame-stats', table,
        '--rejection-map', rmap, '-c', 'zlib', '--reject', reject, out, *paths])
    assert status == 0, err
    assert peak <= budget + INTERPRETER, f'peak RSS {peak / imgstack.MIB:.0f} MiB'
    assert tifffile.imread(out).dtype == np.float32 and len(read_csv(table)) == 16


# -- the demo ---------------------------------------------------------------------


def test_demo_shows_what_normalization_changes(tmp_path, capsys):
    # tests/test_demo.py checks the demo's files; here: its report shows a
    # drifting sky, and a trail that normalization removes better
    assert imgstack.main(['--demo', str(tmp_path / 'demo')]) == 0
    err = capsys.readouterr().err
    low, high = map(float, re.search(r'median level (\d+) to (\d+)', err).groups())
    assert high - low > 100 and DRIFT in err
    raw = re.search(r'sigma-clipped \(not-normalized\.tif\):\s+(\S+)\s+\(([\d.]+)%', err)
    normalized = re.search(r'--normalize multiplicative \(stacked\.tif\):\s+(\S+)\s+\(([\d.]+)%',
                           err)
    assert raw and normalized, err
    # the trail's excess over the sky: smaller normalized
    assert abs(float(normalized.group(1))) < abs(float(raw.group(1))), err
    # and normalization changes what is rejected
    assert float(normalized.group(2)) != float(raw.group(2))


@pytest.mark.parametrize('options', [['--normalize', 'additive-scale'], ['--weights', 'noise'],
                                     ['--normalize', 'multiplicative']])
def test_alpha_is_neither_normalized_nor_weighted(tmp_path, capsys, options):
    """An alpha channel is constant where opaque (MAD 0): it must not stop
    additive-scale or noise weights, and stays opaque in the result."""
    rng = np.random.default_rng(12)
    paths = []
    for i in range(8):
        frame = np.empty((30, 40, 4), np.uint16)
        frame[..., :3] = np.rint(rng.normal(1000 + 25 * i, 20, (30, 40, 3)))
        frame[..., 3] = 65535
        frame[i % 4, :, 3] = 0  # a transparent row
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], frame, photometric='rgb', extrasamples=[2], metadata=None)
    out = tmp_path / 'out.tif'
    assert imgstack.main(['-q', *options, str(out), *paths]) == 0, capsys.readouterr().err
    result = tifffile.imread(out)
    assert (result[..., 3] == 65535).all()
    assert abs(float(np.median(result[..., :3])) - (1000 + 25 * 3.5)) < 10
