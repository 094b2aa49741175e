# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Tests of the computation, the streaming and the command line of imgstack
(README, What is computed; and Use).

The other tests are in tests/, a file per feature: test_rejections.py (every
rejection and combination), test_night.py (normalization, weights, the valid
range), test_files.py (the TIFF files read and written), test_errors.py (bad
input), test_signals.py, test_publish.py, test_memory.py, test_library.py,
test_messages.py and more; their helpers are in tests/helpers.py, their
fixtures in conftest.py.
"""

import inspect
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgstack
from imgstack import ImgstackError, sigma_clipped_mean
from tests.helpers import run_main, write, write_frames

DTYPES = ['uint8', 'uint16', 'uint32', 'int8', 'int16', 'int32', 'float32', 'float64']


# -- an independent reference: one point at a time, in plain numpy ----------


def reference_point(values, valid, low, high, iterations, center):
    """Sigma-clipped mean of one point, written as README says it."""
    values = np.asarray(values, np.float64)
    good = np.asarray(valid, bool) & ~np.isnan(values)
    kept = values[good]
    if kept.size == 0:
        return 0.0, 0
    everything = kept.mean()
    for _ in range(iterations):
        if kept.size == 0:
            break
        c = np.median(kept) if center == 'median' else kept.mean()
        d = math.sqrt(((kept - kept.mean()) ** 2).sum() / kept.size)
        keep = (kept >= c - low * d) & (kept <= c + high * d)
        if keep.all():
            break
        kept = kept[keep]
    rejected = int(good.sum()) - kept.size
    return (kept.mean() if kept.size else everything), rejected


def reference(stack, valid, low, high, iterations, center):
    n = stack.shape[0]
    flat = stack.reshape(n, -1)
    ok = np.broadcast_to(valid, stack.shape).reshape(n, -1)
    result = np.empty(flat.shape[1])
    rejected = 0
    for j in range(flat.shape[1]):
        result[j], r = reference_point(flat[:, j], ok[:, j], low, high, iterations, center)
        rejected += r
    return result.reshape(stack.shape[1:]), rejected


def random_stack(dtype, shape, n=12, seed=0):
    """Noisy values around a level, with bright and dark outliers (and NaN)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == 'f':
        lo, hi = -1000.0, 1000.0
    else:
        info = np.iinfo(dtype)
        lo, hi = float(info.min), float(info.max)
    level = lo + 0.5 * (hi - lo)
    spread = (hi - lo) / 40
    stack = rng.normal(level, spread, (n, *shape))
    hits = rng.random(stack.shape) < 0.05
    stack[hits] = rng.choice([lo + spread, hi - spread], hits.sum())
    if dtype.kind == 'f':
        stack[rng.random(stack.shape) < 0.03] = np.nan
    else:
        stack = np.rint(np.clip(stack, lo, hi))
    return stack.astype(dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', [(7, 9), (5, 6, 3), (4, 5, 4)], ids=['gray', 'rgb', 'rgba'])
@pytest.mark.parametrize('center', ['mean', 'median'])
@pytest.mark.parametrize(('low', 'high', 'iterations'),
                         [(2.0, 2.0, 3), (1.5, 2.5, 5), (3.0, 1.0, 1)])
def test_matches_reference(dtype, shape, center, low, high, iterations):
    stack = random_stack(dtype, shape, seed=len(shape) + iterations)
    valid = np.ones(stack.shape, bool)
    if shape[-1] == 4:  # RGBA: transparent pixels are not valid
        rng = np.random.default_rng(5)
        valid = np.broadcast_to(rng.random((*stack.shape[:-1], 1)) > 0.2, stack.shape)
    got, rejected = sigma_clipped_mean(
        stack, iterations=iterations, sigma_low=low, sigma_high=high,
        center=center, valid=valid,
    )
    want, want_rejected = reference(stack, valid, low, high, iterations, center)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert rejected == want_rejected


def test_reference_sees_outliers():
    # guards the test above: the random stacks do have values to reject
    stack = random_stack('uint16', (5, 6))
    _, rejected = reference(stack, True, 2.0, 2.0, 3, 'mean')
    assert rejected > 10


astropy_stats = pytest.importorskip('astropy.stats')


@pytest.mark.parametrize('dtype', ['uint16', 'int16', 'float32', 'float64'])
@pytest.mark.parametrize('center', ['mean', 'median'])
@pytest.mark.parametrize(('low', 'high', 'iterations'),
                         [(2.5, 2.5, 1), (2.0, 3.0, 3), (1.5, 1.5, 10)])
def test_matches_astropy(dtype, center, low, high, iterations):
    stack = random_stack(dtype, (30, 40), n=15, seed=iterations)
    clipped = astropy_stats.sigma_clip(
        stack.astype(np.float64), sigma_lower=low, sigma_upper=high,
        maxiters=iterations, cenfunc=center, stdfunc='std', axis=0,
    )
    want = clipped.mean(axis=0)
    got, rejected = sigma_clipped_mean(
        stack, sigma_low=low, sigma_high=high, iterations=iterations, center=center
    )
    # astropy masks points where every value went; compare the others.  A
    # value exactly at a bound may flip with float rounding: allow a few.
    both = ~np.ma.getmaskarray(want)
    close = np.isclose(got[both], want.data[both], rtol=1e-12, atol=1e-9)
    assert close.mean() > 0.995
    nan_count = int(np.isnan(stack).sum()) if stack.dtype.kind == 'f' else 0
    assert abs(rejected - (int(clipped.mask.sum()) - nan_count)) <= 3


# -- cases a person can check by hand ----------------------------------------


def test_satellite_trail_vanishes():
    rng = np.random.default_rng(7)
    stack = rng.normal(1000, 10, (10, 50, 60)).round().astype(np.uint16)
    stack[4, 20:23, :] = 60000  # a trail across frame 4
    plain = stack.astype(np.float64).mean(axis=0)
    got, rejected = sigma_clipped_mean(stack, sigma=2.5, iterations=3)
    assert plain[21].mean() > 6000  # the plain average keeps the trail
    assert abs(got[21].mean() - 1000) < 5  # the clipped one does not
    assert rejected >= 3 * 60


def test_uint16_mean_rounds_to_nearest(tmp_path):
    # 9, 10, 10, 10, 9: mean 9.6 must give 10 (truncation would give 9)
    values = [9, 10, 10, 10, 9]
    paths = []
    for i, v in enumerate(values):
        paths.append(str(tmp_path / f'{i}.tif'))
        tifffile.imwrite(paths[-1], np.full((3, 4), v, np.uint16))
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', '-i', '0', out, *paths]) == 0
    assert (tifffile.imread(out) == 10).all()
    rounded = imgstack._to_dtype(np.array([9.6, 9.4, -3.0, 70000.0]), np.dtype('uint16'))
    assert rounded.tolist() == [10, 9, 0, 65535]


def test_zero_iterations_is_plain_mean():
    stack = random_stack('float64', (6, 7), seed=3)
    got, rejected = sigma_clipped_mean(stack, iterations=0)
    np.testing.assert_allclose(got, np.nanmean(stack, axis=0), rtol=1e-12)
    assert rejected == 0


def test_many_iterations_equal_early_stop():
    stack = random_stack('int16', (8, 9), n=20, seed=11)
    a, ra = sigma_clipped_mean(stack, sigma=1.5, iterations=100)
    b, rb = sigma_clipped_mean(stack, sigma=1.5, iterations=10_000)
    np.testing.assert_array_equal(a, b)
    assert ra == rb
    # and the passes stopped early: far fewer than 100 were needed
    method = imgstack.Method(sigma_low=1.5, sigma_high=1.5, iterations=100)
    passes = imgstack._clip_points(stack.reshape(20, -1), None, method).passes
    assert 1 < passes < 100


def test_two_inputs():
    stack = np.array([[1.0, 5.0], [3.0, 5.0]])
    got, rejected = sigma_clipped_mean(stack, sigma=2.5, iterations=3)
    assert got.tolist() == [2.0, 5.0]
    assert rejected == 0


def test_all_rejected_falls_back_to_mean():
    # two values are both one std from the mean: a factor below 1 rejects both
    got, rejected = sigma_clipped_mean(np.array([[2.0], [4.0]]), sigma=0.5)
    assert got.tolist() == [3.0]
    assert rejected == 2


def test_no_valid_value_gives_the_plain_mean():
    # README, What is computed: with no valid value, the plain mean of the
    # values that are not NaN; NaN where every value is NaN
    stack = np.array([[np.nan, 1.0], [np.nan, 3.0]])
    got, rejected = sigma_clipped_mean(stack)
    assert np.isnan(got[0]) and got[1] == 2.0
    valid = np.array([[False, True], [False, False]])
    got, _ = sigma_clipped_mean(np.array([[5, 1], [7, 3]]), valid=valid)
    assert got.tolist() == [6.0, 1.0]
    # a star saturated in every frame stays saturated; a zero border, zero
    stack = np.array([[65535, 0, 100], [65535, 0, 120], [65535, 0, 110]], np.uint16)
    for method in ('sigma', 'mad', 'winsorized', 'linear', 'percentile', 'minmax', 'gesd',
                   'none'):
        got, _ = imgstack.stack_array(stack, reject=method, valid_range=(1, 65000))
        assert got[:2].tolist() == [65535.0, 0.0], method


def test_bounds_are_inclusive():
    # values 0, 0, 0, 4: mean 1, std sqrt(3); 4 is sqrt(3) stds above
    stack = np.array([0.0, 0.0, 0.0, 4.0])[:, None]
    at_bound, r = sigma_clipped_mean(stack, sigma=math.sqrt(3) * (1 + 1e-12))
    assert r == 0 and at_bound[0] == 1.0
    below, r = sigma_clipped_mean(stack, sigma=math.sqrt(3) * (1 - 1e-9))
    assert r == 1 and below[0] == 0.0


def test_asymmetric_factors():
    stack = np.array([10.0] * 8 + [0.0, 20.0])[:, None]
    # mean 10, std sqrt(20) = 4.47: 0 and 20 lie 2.24 stds from the mean
    got, r = sigma_clipped_mean(stack, sigma_low=2.5, sigma_high=2.5, iterations=1)
    assert r == 0
    got, r = sigma_clipped_mean(stack, sigma_low=2.0, sigma_high=2.0, iterations=1)
    assert r == 2 and got[0] == 10.0
    got, r = sigma_clipped_mean(stack, sigma_low=2.0, sigma_high=2.5, iterations=1)
    assert r == 1 and got[0] == pytest.approx(100 / 9)
    got, r = sigma_clipped_mean(stack, sigma_low=2.5, sigma_high=2.0, iterations=1)
    assert r == 1 and got[0] == pytest.approx(80 / 9)
    # a second pass: 20 now lies 2.83 stds above the mean of the other 9
    got, r = sigma_clipped_mean(stack, sigma_low=2.0, sigma_high=2.5)
    assert r == 2 and got[0] == 10.0


def test_settings_are_checked():
    with pytest.raises(ValueError, match='^sigma must'):  # named as given
        sigma_clipped_mean(np.zeros((3, 2)), sigma=0)
    with pytest.raises(ValueError, match='sigma_low'):
        sigma_clipped_mean(np.zeros((3, 2)), sigma_low=0)
    with pytest.raises(ValueError, match='sigma_high'):
        sigma_clipped_mean(np.zeros((3, 2)), sigma_high=math.inf)
    with pytest.raises(ValueError, match='iterations'):
        sigma_clipped_mean(np.zeros((3, 2)), iterations=-1)
    with pytest.raises(ValueError, match='center'):
        sigma_clipped_mean(np.zeros((3, 2)), center='mode')


def test_never_rejects():
    assert imgstack._never_rejects(7, 2.5, 2.5, 'mean')
    assert not imgstack._never_rejects(8, 2.5, 2.5, 'mean')
    assert not imgstack._never_rejects(3, 2.5, 2.5, 'median')
    # and it is true: 7 values with one lone outlier keep it
    stack = np.array([0.0] * 6 + [1e6])[:, None]
    assert sigma_clipped_mean(stack, sigma=2.5, iterations=5)[1] == 0
    stack = np.array([0.0] * 7 + [1e6])[:, None]
    assert sigma_clipped_mean(stack, sigma=2.5, iterations=5)[1] == 1


# -- streaming equals the in-memory result -----------------------------------


@pytest.mark.parametrize('rows', [1, 3, 7, 1000])
@pytest.mark.parametrize(
    ('dtype', 'shape', 'kwargs'),
    [
        ('uint16', (23, 17), {}),
        ('uint8', (23, 17, 3), {'photometric': 'rgb'}),
        ('float32', (23, 17), {'rowsperstrip': 5}),
        ('int16', (23, 17, 3), {'photometric': 'rgb', 'compression': 'zlib', 'rowsperstrip': 4}),
        ('uint16', (23, 17, 3), {'photometric': 'rgb', 'tile': (16, 16), 'compression': 'lzw'}),
        ('uint16', (3, 23, 17),
         {'photometric': 'rgb', 'planarconfig': 'separate', 'rowsperstrip': 6}),
    ],
    ids=['gray-one-strip', 'rgb8', 'float-strips', 'int16-deflate', 'tiles-lzw', 'planar'],
)
def test_streamed_equals_in_memory(tmp_path, rows, dtype, shape, kwargs):
    stack = random_stack(dtype, shape, n=9, seed=rows)
    paths = write_frames(tmp_path, stack, **kwargs)
    out = str(tmp_path / 'out.tif')
    stats = imgstack.stack_files(paths, out, sigma=2.0, iterations=3, rows=rows)
    want, rejected = sigma_clipped_mean(stack, sigma=2.0, iterations=3)
    got = tifffile.imread(out)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, imgstack._to_dtype(want, np.dtype(dtype)))
    assert stats.rejected == rejected
    assert 1 <= stats.band_rows <= rows


def test_one_row_images(tmp_path):
    # a TIFF of one row reads back from tifffile as a 1-D array
    stack = random_stack('uint16', (1, 50), n=6)
    paths = write_frames(tmp_path, stack)
    assert tifffile.imread(paths[0]).shape in [(50,), (1, 50)]
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', out, *paths]) == 0
    want, _ = sigma_clipped_mean(stack)
    np.testing.assert_array_equal(tifffile.imread(out).reshape(1, 50),
                                  imgstack._to_dtype(want, np.dtype('uint16')))


def test_one_column_rgb(tmp_path):
    stack = random_stack('uint8', (9, 1, 3), n=5)
    paths = write_frames(tmp_path, stack, photometric='rgb')
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', '-r', '2', out, *paths]) == 0
    want, _ = sigma_clipped_mean(stack)
    np.testing.assert_array_equal(tifffile.imread(out).reshape(9, 1, 3),
                                  imgstack._to_dtype(want, np.dtype('uint8')))


# -- the command line ---------------------------------------------------------


def test_cli_end_to_end_and_library_agree(tmp_path, capsys):
    stack = np.stack(list(imgstack.make_frames(10, 40, 50, channels=3)))
    paths = write_frames(tmp_path, stack, photometric='rgb')
    cli_out = str(tmp_path / 'cli.tif')
    status = imgstack.main(['-s', '2.5', '-i', '3', cli_out, str(tmp_path / 'in*.tif')])
    err = capsys.readouterr().err
    assert status == 0
    assert 'values rejected' in err and cli_out in err and 'passes' in err
    lib_out = str(tmp_path / 'lib.tif')
    stats = imgstack.stack_files(paths, lib_out, sigma=2.5, iterations=3)
    assert Path(cli_out).read_bytes() == Path(lib_out).read_bytes()
    assert stats.frames == 10 and stats.values == stack.size and stats.rejected > 0
    want, rejected = sigma_clipped_mean(stack, sigma=2.5, iterations=3)
    np.testing.assert_array_equal(tifffile.imread(cli_out), imgstack._to_dtype(want, stack.dtype))
    assert stats.rejected == rejected
    assert f'{rejected} values rejected' in err


def test_cli_options_reach_the_computation(tmp_path):
    stack = random_stack('float32', (12, 13), n=10, seed=4)
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    args = ['-q', '--sigma-low', '1.5', '--sigma-high', '3', '-i', '4', '--center', 'median']
    assert imgstack.main([*args, out, *paths]) == 0
    want, _ = sigma_clipped_mean(stack, sigma_low=1.5, sigma_high=3.0, iterations=4,
                                 center='median')
    np.testing.assert_array_equal(tifffile.imread(out), want.astype(np.float32))


def test_default_iterations_is_five(tmp_path, capsys):
    # sigma clipping's passes are astropy's maxiters, 5, whoever asks (README,
    # Which rejection?: the other iterative methods take one pass by default)
    default = inspect.signature(imgstack.sigma_clipped_mean).parameters['iterations'].default
    assert default == 5
    assert imgstack.Settings.from_options().method.iterations == 5
    assert imgstack.Settings.from_options(reject='mad').method.iterations == 1
    probe = np.arange(40, dtype=np.float64).reshape(8, 5)
    assert imgstack.stack_array(probe)[0].tolist() == sigma_clipped_mean(probe)[0].tolist()
    # two outliers at one point: the first pass rejects 1000, the second 300
    rng = np.random.default_rng(3)
    stack = rng.integers(98, 103, (20, 4, 5)).astype(np.uint16)
    stack[0, 1, 1], stack[1, 1, 1] = 1000, 300
    once, _ = imgstack.sigma_clipped_mean(stack, iterations=1)
    five, _ = imgstack.sigma_clipped_mean(stack, iterations=5)
    assert once[1, 1] > 105 > five[1, 1]
    paths = [write(tmp_path / f'in{i:02d}.tif', image) for i, image in enumerate(stack)]
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', out, *paths)
    assert result.status == 0, result.err
    np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(five, stack.dtype))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        imgstack.main(['-h'])
    text = ' '.join(capsys.readouterr().out.split())
    match = re.search(r'--iterations N\b(.*?)\(default (\w+) for sigma', text)
    assert match and match.group(2) == '5', text


@pytest.mark.parametrize(
    'args',
    [['-s', '0'], ['-s', '-1'], ['-s', 'nan'], ['-s', 'inf'], ['--sigma-low', '0'],
     ['-i', '-1'], ['-i', '1.5'], ['-r', '0'], ['-m', 'lots'], ['-m', '0'], ['-c', 'gzip'],
     ['-c', 'lzw:5'], ['-c', 'zstd:99'], ['--center', 'mode']],
)
def test_bad_option_values_are_usage_errors(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exc:
        imgstack.main([*args, str(tmp_path / 'o.tif'), 'a.tif', 'b.tif'])
    assert exc.value.code == 2
    assert 'usage:' in capsys.readouterr().err


@pytest.mark.parametrize(
    ('text', 'size'),
    [('512M', 512 << 20), ('2G', 2 << 30), ('1.5GiB', 3 << 29), ('100MB', 10**8),
     ('1000000', 10**6), ('64k', 64 << 10), (' 1 GiB ', 1 << 30)],
)
def test_parse_size(text, size):
    assert imgstack.parse_size(text) == size


@pytest.mark.parametrize('text', ['', 'M', '-5M', '1.5X', 'nanG', '0'])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match='not a memory size'):
        imgstack.parse_size(text)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        imgstack.main(['--version'])
    assert exc.value.code == 0
    assert imgstack.__version__ in capsys.readouterr().out


def test_plan_bands_accounts_every_byte(tmp_path):
    stack = random_stack('uint16', (200, 300, 3), n=4)
    paths = write_frames(tmp_path, stack, photometric='rgb')
    frames = [imgstack.open_frame(p) for p in paths]
    plan = imgstack.plan_bands(frames, memory=128 * imgstack.MIB, rows=100)  # 16 MiB scratch
    assert plan.rows == 100
    v = 300 * 3
    # two bands of 4 inputs, float64 results, two counts, output and its
    # strips, a validity mask
    assert plan.per_row == 2 * 4 * v * 2 + v * (24 + 2 * 2) + 4 * v
    assert plan.needed == plan.fixed + plan.per_row * 100
    # a tight budget lowers the band height to what fits
    budget = plan.fixed + plan.per_row * 37 + 10
    plan = imgstack.plan_bands(frames, memory=budget, rows=100)
    assert plan.rows == 37 and plan.needed <= budget
    with pytest.raises(ImgstackError, match='smallest that works is'):
        imgstack.plan_bands(frames, memory=plan.fixed, rows=100)


@pytest.mark.parametrize('reject, scratch', [('winsorized', 64), ('mad', 32)])
def test_a_run_plans_and_clips_with_its_method_scratch(tmp_path, monkeypatch, reject, scratch):
    paths = write_frames(tmp_path, random_stack('uint16', (20, 30), n=5))
    seen = {'plan': [], 'clip': []}
    plan, clip = imgstack.plan_bands, imgstack._clip_points

    def spy_plan(*args, **kwargs):
        result = plan(*args, **kwargs)
        seen['plan'].append(result.fixed - plan(*args, **{**kwargs, 'method': None}).fixed)
        return result

    def spy_clip(*args, **kwargs):
        seen['clip'].append(kwargs['scratch'])
        return clip(*args, **kwargs)

    monkeypatch.setattr(imgstack, 'plan_bands', spy_plan)
    monkeypatch.setattr(imgstack, '_clip_points', spy_clip)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-q', '-m', '256M', '--reject', reject, out, *paths]) == 0
    assert seen['clip'] and set(seen['clip']) == {scratch * imgstack.MIB}
    assert seen['plan'] == [2 * (scratch - 32) * imgstack.MIB]  # reserved for two threads


def test_library_accepts_lists_and_leaves_input_alone():
    stack = [[1, 2, 3], [1, 2, 30], [1, 2, 3], [2, 2, 3]]
    copy = [row[:] for row in stack]
    got, _ = sigma_clipped_mean(stack, iterations=2)
    assert got.shape == (3,)
    assert stack == copy


def test_summary_counts(tmp_path, capsys):
    stack = np.full((8, 4, 5), 100, np.uint16)
    stack[2, 1, 1] = 5000
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-i', '3', out, *paths]) == 0
    err = capsys.readouterr().err
    assert '1 values rejected (0.625%)' in err
    assert '2 passes' in err
    assert os.path.exists(out)


@pytest.mark.parametrize('center', ['mean', 'median'])
@pytest.mark.parametrize('seed', range(30))
def test_chunks_of_any_width_give_the_same_bits(center, seed):
    """A point's result does not depend on its neighbours in a chunk: float
    data with NaN and outliers, stacked whole and cut into chunks of every
    width, one column included (numpy sums a lone column, or columns in
    column order, pairwise: other roundings)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 30, (int(rng.integers(8, 13)), 37))
    x[rng.random(x.shape) < 0.05] = -950.0
    x[rng.random(x.shape) < 0.03] = np.nan
    method = imgstack.Method(iterations=int(rng.integers(1, 5)), center=center,
                             sigma_low=rng.uniform(0.8, 4), sigma_high=rng.uniform(0.8, 4))
    whole = imgstack._clip_points(x, None, method).result
    for width in (1, 2, 5, 16):
        parts = [imgstack._clip_points(x[:, a:a + width], None, method).result
                 for a in range(0, x.shape[1], width)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


# -- properties over random shapes, types, layouts and settings -------------

@st.composite
def stacks(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(2, 12))
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 15))
    channels = draw(st.sampled_from([1, 3]))
    shape = (height, width) if channels == 1 else (height, width, 3)
    return random_stack(dtype, shape, n=n, seed=draw(st.integers(0, 2**16)))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    stack=stacks(),
    rows=st.integers(1, 25),
    strip=st.integers(1, 25),
    compression=st.sampled_from([None, 'zlib', 'lzw']),
    iterations=st.integers(0, 4),
    center=st.sampled_from(['mean', 'median']),
    low=st.floats(0.8, 4.0),
    high=st.floats(0.8, 4.0),
)
def test_property_streamed_equals_in_memory_and_reference(
    tmp_path_factory, stack, rows, strip, compression, iterations, center, low, high
):
    directory = tmp_path_factory.mktemp('prop')
    kwargs = {'photometric': 'rgb'} if stack.ndim == 4 else {}
    paths = write_frames(directory, stack, rowsperstrip=strip, compression=compression, **kwargs)
    out = str(directory / 'out.tif')
    stats = imgstack.stack_files(paths, out, sigma_low=low, sigma_high=high,
                                 iterations=iterations, center=center, rows=rows)
    want, rejected = sigma_clipped_mean(stack, sigma_low=low, sigma_high=high,
                                        iterations=iterations, center=center)
    got = tifffile.imread(out).reshape(stack.shape[1:])
    np.testing.assert_array_equal(got, imgstack._to_dtype(want, stack.dtype))
    assert stats.rejected == rejected
    ref, ref_rejected = reference(stack, True, low, high, iterations, center)
    np.testing.assert_allclose(want, ref, rtol=1e-12, atol=1e-9)
    assert rejected == ref_rejected


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('center', ['mean', 'median'])
@pytest.mark.parametrize('with_valid', [False, True])
def test_fast_path_equals_window_core(dtype, center, with_valid):
    """The default method's threshold fast path (no sort) gives the window
    core's result, counts and low counts, point by point."""
    stack = random_stack(dtype, (23, 17), n=15, seed=5)
    values = stack.reshape(15, -1)
    valid = None
    if with_valid:
        valid = np.random.default_rng(2).random(values.shape) > 0.1
    method = imgstack.Method(sigma_low=2.0, sigma_high=2.3, iterations=4, center=center)
    fast = imgstack._clip_points(values, valid, method)
    core = imgstack._clip_points(values, valid, method, want_mask=True)  # no fast path
    np.testing.assert_array_equal(fast.rejected, core.rejected)
    np.testing.assert_array_equal(fast.low, core.low)
    np.testing.assert_allclose(fast.result, core.result, rtol=1e-12, atol=1e-9)
    assert fast.passes == core.passes
    assert fast.rejected.sum() > 0 and fast.low.sum() > 0


def test_rounding_ignores_the_last_bits_of_a_half():
    # 2063 / 2 summed in another order is 1031.4999999999998: still a half,
    # rounded to even like 1031.5; a real fraction is rounded as it is
    got = imgstack._to_dtype(np.array([1031.4999999999998, 1031.5, 1030.5000000000002, 7.4999]),
                            np.dtype('uint16'))
    assert got.tolist() == [1032, 1032, 1030, 7]


@pytest.mark.parametrize('dtype', ['uint16', 'float32', 'int8'])
@pytest.mark.parametrize('with_valid', [False, True])
def test_fast_path_weighted_equals_window_core(dtype, with_valid):
    """With weights the fast path's weighted mean is the window core's."""
    stack = random_stack(dtype, (19, 13), n=12, seed=8)
    values = stack.reshape(12, -1)
    valid = None
    if with_valid:
        valid = np.random.default_rng(4).random(values.shape) > 0.15
    weights = np.random.default_rng(5).uniform(0.2, 4.0, (12, 1))
    method = imgstack.Method(sigma_low=1.8, sigma_high=2.2, iterations=4)
    fast = imgstack._clip_points(values, valid, method, weights=weights)
    core = imgstack._clip_points(values, valid, method, weights=weights, want_mask=True)
    np.testing.assert_array_equal(fast.rejected, core.rejected)
    np.testing.assert_allclose(fast.result, core.result, rtol=1e-12, atol=1e-9)
    plain = imgstack._clip_points(values, valid, method)
    assert not np.allclose(fast.result, plain.result)  # the weights count


def test_scratch_grows_with_the_budget_within_bounds(tmp_path):
    mib = imgstack.MIB
    assert imgstack._chunk_scratch(48 * mib) == imgstack.CHUNK_BYTES
    assert imgstack._chunk_scratch(256 * mib) == 32 * mib
    assert imgstack._chunk_scratch(8 << 30) == 4 * imgstack.CHUNK_BYTES
    frames = [imgstack.open_frame(p)
              for p in write_frames(tmp_path, random_stack('uint16', (20, 30), n=3))]
    small, large = (imgstack.plan_bands(frames, memory=m, rows=10) for m in (64 * mib, 1 << 30))
    assert large.fixed - small.fixed == 2 * (64 - 16) * mib  # two threads' scratch
    # winsorized takes a 4th of the budget per thread, up to 128 MiB
    winsorized = imgstack.Method(reject='winsorized')
    assert imgstack._chunk_scratch(256 * mib, winsorized) == 64 * mib
    assert imgstack._chunk_scratch(32 * mib, winsorized) == imgstack.CHUNK_BYTES
    assert imgstack._chunk_scratch(1 << 30, winsorized) == 128 * mib
    assert imgstack._chunk_scratch(8 << 30, winsorized) == 128 * mib
    assert imgstack._chunk_scratch(256 * mib, imgstack.Method(reject='mad')) == 32 * mib
    plain, wide = (imgstack.plan_bands(frames, memory=256 * mib, rows=10, method=m)
                   for m in (None, winsorized))
    assert wide.fixed - plain.fixed == 2 * (64 - 32) * mib
