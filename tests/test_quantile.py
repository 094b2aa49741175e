# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Student's t quantile ``imgstack._t_quantile`` (Hill 1970, CACM 396).

Generalized ESD needs ``_t_quantile(1 - alpha / (2 (m + 1)), df)`` for
``m`` up to 10000, so the relative error must stay below 1e-6 against
``scipy.stats.t.ppf`` for ``1 <= df <= 10000`` and ``1 - p`` down to about
5e-8.  SciPy is only the oracle here: imgstack itself never imports it.
"""

import math

import numpy as np
import pytest

from imgstack import _t_quantile

RTOL = 1e-6
ALPHAS = [0.001, 0.01, 0.05, 0.1, 0.2]
ALL_DF = np.arange(1, 10001)
# every df where Hill's expansion is refined, then a geometric ladder to 10000
SOME_DF = np.unique(np.concatenate([np.arange(1, 121), np.geomspace(120, 10000, 60).astype(int)]))
# m = 2..10000, denser where the sample is small
SOME_M = np.unique(np.concatenate([np.arange(2, 41), np.geomspace(40, 10000, 40).astype(int)]))


@pytest.fixture(scope='module')
def t_dist():
    pytest.importorskip('scipy')
    from scipy import stats

    return stats.t


def gesd_p(alpha, m):
    """The probability generalized ESD asks for with m + 1 values left."""
    return 1.0 - alpha / (2.0 * (m + 1.0))


def assert_close(p, df, t_dist):
    """_t_quantile(p, df) against SciPy on the broadcast arrays p and df."""
    p, df = np.broadcast_arrays(np.asarray(p, float), np.asarray(df, float))
    expected = t_dist.ppf(p, df)
    got = np.array([_t_quantile(a, b) for a, b in zip(p.ravel().tolist(), df.ravel().tolist())])
    error = np.abs(got - expected.ravel()) / np.abs(expected.ravel())
    worst = int(np.argmax(error))
    assert error[worst] <= RTOL, (
        f'relative error {error[worst]:.3g} at p={p.ravel()[worst]!r}, '
        f'df={df.ravel()[worst]!r}: {got[worst]!r} != {expected.ravel()[worst]!r}'
    )


@pytest.mark.parametrize('p', [0.6, 0.75, 0.9, 0.975, 0.995, 0.9999, 1 - 5e-8])
def test_every_df_from_1_to_10000(p, t_dist):
    assert_close(p, ALL_DF, t_dist)


@pytest.mark.parametrize('alpha', ALPHAS)
def test_gesd_probabilities(alpha, t_dist):
    p = gesd_p(alpha, SOME_M)
    assert_close(p[:, None], SOME_DF[None, :], t_dist)


@pytest.mark.parametrize('alpha', ALPHAS)
def test_gesd_table_as_used(alpha, t_dist):
    # with m + 1 values left the statistic has m - 1 degrees of freedom
    m = np.arange(2, 10001)
    assert_close(gesd_p(alpha, m), m - 1, t_dist)


def test_grid_of_p(t_dist):
    # from 0.5025 on: closer to 0.5, SciPy itself is off for df 4 and 6
    p = np.linspace(0.5, 0.9999999, 201)[1:]
    assert_close(p[:, None], SOME_DF[None, :], t_dist)


def test_real_df(t_dist):
    df = np.array([1.0001, 1.1, 1.5, 1.9, 2.0001, 2.5, 3.7, 4.5, 10.25, 99.9, 100.5, 1234.5])
    p = np.concatenate([np.linspace(0.5, 0.9999999, 41)[1:], gesd_p(0.001, np.array([10000.0]))])
    assert_close(p[:, None], df[None, :], t_dist)


def test_lower_half(t_dist):
    p = np.array([5e-8, 1e-6, 0.001, 0.025, 0.1, 0.3, 0.49])
    assert_close(p[:, None], SOME_DF[None, ::10], t_dist)


@pytest.mark.parametrize('df', [1, 1.5, 2, 3, 7.5, 10, 99, 100, 10000])
def test_symmetry(df):
    # p below and above 0.5 whose complement 1 - p is exact
    for p in [2.0**-30, 0.001953125, 0.0625, 0.25, 0.3125, 0.4990234375]:
        assert 1.0 - (1.0 - p) == p
        assert _t_quantile(p, df) == -_t_quantile(1.0 - p, df)
        assert _t_quantile(p, df) < 0.0
    # any other p: the same up to the rounding of 1 - p
    for p in [1e-7, 0.01, 0.05, 0.2, 0.4]:
        assert _t_quantile(p, df) == pytest.approx(-_t_quantile(1.0 - p, df), rel=1e-9)


@pytest.mark.parametrize('df', [1, 1.5, 2, 3, 4, 10, 100, 10000, math.inf])
def test_median_is_zero(df):
    assert _t_quantile(0.5, df) == 0.0


def test_cauchy_exact():
    # df = 1: t = cot(pi (1 - p))
    assert _t_quantile(0.75, 1) == 1.0
    assert _t_quantile(0.25, 1) == -1.0
    exact = {
        0.875: 1.0 + math.sqrt(2.0),  # cot(pi/8)
        0.9: math.sqrt(5.0 + 2.0 * math.sqrt(5.0)),  # cot(pi/10)
        11 / 12: 2.0 + math.sqrt(3.0),  # cot(pi/12)
        5 / 6: math.sqrt(3.0),  # cot(pi/6)
        2 / 3: 1.0 / math.sqrt(3.0),  # cot(pi/3)
    }
    for p, t in exact.items():
        assert _t_quantile(p, 1) == pytest.approx(t, rel=1e-14)
        assert _t_quantile(1.0 - p, 1) == pytest.approx(-t, rel=1e-14)
    # far tail: cot(pi q) = 1 / (pi q) (1 - (pi q)**2 / 3 + ...)
    q = 1.0 - (1.0 - 5e-8)  # the tail probability 1 - p holds exactly
    assert _t_quantile(1.0 - q, 1) == pytest.approx(1.0 / (math.pi * q) - math.pi * q / 3.0,
                                                   rel=1e-14)


def test_df2_exact():
    # df = 2: t = (2p - 1) / sqrt(2 p (1 - p)), i.e. t**2 = 2 u**2 / (1 - u**2), u = 2p - 1
    exact = {
        0.75: math.sqrt(2.0 / 3.0),
        0.875: math.sqrt(18.0 / 7.0),
        0.9: 4.0 * math.sqrt(2.0) / 3.0,
        0.95: math.sqrt(162.0 / 19.0),
        (1.0 + 1.0 / math.sqrt(3.0)) / 2.0: 1.0,
    }
    for p, t in exact.items():
        assert _t_quantile(p, 2) == pytest.approx(t, rel=1e-14)
        assert _t_quantile(1.0 - p, 2) == pytest.approx(-t, rel=1e-14)
    q = 2.0**-30
    assert _t_quantile(1.0 - q, 2) == pytest.approx(
        (1.0 - 2.0 * q) / math.sqrt(2.0 * q * (1.0 - q)), rel=1e-14)


@pytest.mark.parametrize('df', [1, 1.5, 2, 3, 4, 6, 10, 99, 100, 1000, 10000])
def test_near_the_median(df):
    # t = (p - 1/2) / density(0) (1 + O(t**2)); SciPy loses digits here
    density = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    for d in [2.0**-52, 1e-12, 1e-9]:
        p = 0.5 + d
        assert _t_quantile(p, df) == pytest.approx((p - 0.5) / density, rel=1e-9)
        assert _t_quantile(1.0 - p, df) == pytest.approx(-(p - 0.5) / density, rel=1e-9)


def test_large_df_is_normal():
    z = 1.959963984540054  # the 0.975 normal quantile
    assert _t_quantile(0.975, math.inf) == pytest.approx(z, rel=1e-14)
    assert _t_quantile(0.975, 1e30) == pytest.approx(z, rel=1e-14)
    assert _t_quantile(0.975, 1e8) == pytest.approx(z * (1 + (z * z + 1) / 4e8), rel=1e-12)


def test_far_tails_stay_finite():
    for df in [1.5, 2.5, 3, 10, 100, 1000, 10000]:
        for p in [1e-300, 1e-100, 1e-20, 1 - 2.0**-53]:
            t = _t_quantile(p, df)
            assert math.isfinite(t) and (t < 0) == (p < 0.5)
    assert _t_quantile(1e-300, 1.0) == pytest.approx(-1.0 / (math.pi * 1e-300), rel=1e-14)


@pytest.mark.parametrize('p', [0.0, 1.0, -0.1, 1.5, math.nan, math.inf])
def test_bad_p(p):
    with pytest.raises(ValueError, match=r'^p '):
        _t_quantile(p, 10)


@pytest.mark.parametrize('df', [0.999, 0.5, 0.0, -3.0, math.nan])
def test_bad_df(df):
    with pytest.raises(ValueError, match=r'^df '):
        _t_quantile(0.9, df)
