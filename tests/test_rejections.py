# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Every rejection and combination (README, What is computed; and Which
rejection?, for where imgstack differs from Siril): in memory against an
independent reference, then through files and the command line.

``imgstack.stack_array`` is compared with a reference written here from the
words of README alone: plain Python loops over the values of one point,
in float64 (sums with ``math.fsum``), slow and obvious.  The comparisons run
on random stacks with planted outliers, NaN, a ``valid`` mask and a
``valid_range``, for every rejection x every combination, in float64 and
uint16; hand-checkable vectors follow, with the arithmetic in comments.

Where float rounding may decide (a value within 1e-9, relative, of a bound;
a winsorization that converges right at its threshold; a GESD statistic at
its critical value, where ``imgstack._t_quantile`` is an approximation), the
reference marks the point as *near*: only there may the library differ, at
no more than 0.5 % of the points.  Where README leaves a choice open
(which of two equal values a linear fit ranks first, which of two values
equally far from the mean GESD removes first), every choice is accepted.

Readings of README that the reference makes (each has a test below):

- ``winsorized``: every repetition clamps a fresh copy of the kept values
  (the textbook Huber winsorization; Siril clamps one copy again and
  again), and stops when ``|d_new - d_old| <= 0.0005 * d_new``.
- ``linear``: with k <= 2 kept values the line fits exactly, d = 0 and
  nothing is rejected; which of equal values takes which rank is left open.
- ``minmax``: values are ordered by (value, frame): of equal lowest values
  the first frame's goes, of equal highest values the last frame's.
- ``gesd``: at most k - 2 tests (Student's t needs k - j - 1 >= 1 degrees
  of freedom); R_j = 0 when the values left are all equal; of values
  equally far from the mean, any may be removed first.
- ``percentile``, ``minmax`` and ``gesd`` run their one pass whatever
  ``iterations`` is (it caps only sigma, mad, winsorized and linear).
- A point whose values were all rejected gets the (weighted) mean of its
  valid values whatever ``combine`` is; ``rejected`` counts them all.

Through files, the job must give the in-memory result for every method,
layout and band height, with NaN, alpha and a valid range; the command line
must refuse a parameter of another method, and warn when a method suits the
frame count poorly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pytest
import tifffile
from astropy import stats as astropy_stats
from scipy import stats as scipy_stats

import imgstack
from tests.helpers import write_frames

MAD_SCALE = 1.482602218505602  # 1 / Phi^-1(3/4): MAD -> SD of a normal
NEAR = 1e-9  # relative distance to a bound below which rounding may decide
T_TOL = 5e-5  # relative error allowed to imgstack._t_quantile (Hill 1970)
REJECTS = ['sigma', 'mad', 'winsorized', 'linear', 'percentile', 'minmax', 'gesd', 'none']
COMBINES = ['mean', 'median', 'min', 'max']
DEFAULTS = {
    'sigma': None, 'sigma_low': None, 'sigma_high': None, 'iterations': None, 'center': 'mean',
    'percentile': (0.2, 0.1), 'minmax': (1, 1), 'gesd': (0.03, 0.3),
}
# README, Which rejection?: each method's own factor and passes when none is given
FACTORS = {('sigma', 'mean'): 2.5, ('sigma', 'median'): 2.9, 'mad': 4.4, 'winsorized': 3.7,
           'linear': 6.5}
PASSES = {'sigma': 5, 'mad': 1, 'winsorized': 1, 'linear': 1}


# -- the reference: one point at a time, straight from README ----------------


def _mean(x: Sequence[float]) -> float:
    return math.fsum(x) / len(x)


def _sd(x: Sequence[float]) -> float:
    """Standard deviation about the mean, divisor k."""
    m = _mean(x)
    return math.sqrt(math.fsum((v - m) ** 2 for v in x) / len(x))


def _median(x: Sequence[float]) -> float:
    """Middle value; mean of the two middle values of an even count."""
    s = sorted(x)
    h = len(s) // 2
    return s[h] if len(s) % 2 else (s[h - 1] + s[h]) / 2


def _bounds_test(x: Sequence[float], c: float, d: float, low: float, high: float):
    """Keep c - low*d <= x <= c + high*d; and is any value near a bound?

    A value equal to c is kept whatever rounding does to d >= 0, and with
    d == 0 every decision is exact: neither is ever near.
    """
    lo, hi = c - low * d, c + high * d
    keep = [lo <= v <= hi for v in x]
    tol = NEAR * max(abs(c), d)
    near = d > 0 and any(v != c and min(abs(v - lo), abs(v - hi)) <= tol for v in x)
    return keep, near


def ref_sigma_pass(x, low, high, center):
    """One pass of `sigma`: c = mean or median, d = SD."""
    c = _median(x) if center == 'median' else _mean(x)
    return _bounds_test(x, c, _sd(x), low, high)


def ref_mad_pass(x, low, high):
    """One pass of `mad`: c = median, d = 1.4826 * median |x - c|."""
    c = _median(x)
    d = MAD_SCALE * _median([abs(v - c) for v in x])
    return _bounds_test(x, c, d, low, high)


def ref_winsorized_pass(x, low, high, fresh=True):
    """One pass of `winsorized`; ``fresh=False`` is Siril's re-clamped copy."""
    c = _median(x)
    d = _sd(x)
    copy = list(x)
    near = False
    for _ in range(10_000):
        lo, hi = c - 1.5 * d, c + 1.5 * d
        copy = [min(max(v, lo), hi) for v in (x if fresh else copy)]
        new = 1.134 * _sd(copy)
        change = abs(new - d)
        done = change <= 0.0005 * new
        # 0.0005 * d_old (Siril) or a rounding might stop one step apart
        if new > 0 and (done != (change <= 0.0005 * d) or abs(change - 0.0005 * new) <= NEAR * new):
            near = True
        d = new
        if done:
            break
    else:  # pragma: no cover - the iteration always settles
        raise AssertionError(f'winsorization of {x} does not converge')
    keep, near_bound = _bounds_test(x, c, d, low, high)
    return keep, near or near_bound


def ref_linear_pass(x, low, high):
    """One pass of `linear`: least squares on the ranks of the sorted values."""
    k = len(x)
    if k <= 2:  # a line through two points: every residual is 0
        return [True] * k, False
    order = sorted(range(k), key=lambda i: (x[i], i))
    y = [x[i] for i in order]
    ranks = range(1, k + 1)
    r_mean, y_mean = (k + 1) / 2, _mean(y)
    b = math.fsum((r - r_mean) * (v - y_mean) for r, v in zip(ranks, y)) / math.fsum(
        (r - r_mean) ** 2 for r in ranks
    )
    a = y_mean - b * r_mean
    residuals = [v - (a + b * r) for r, v in zip(ranks, y)]
    d = math.fsum(abs(e) for e in residuals) / k
    keep = [False] * k
    for i, e in zip(order, residuals):
        keep[i] = -low * d <= e <= high * d
    tol = NEAR * max(d, *map(abs, y))
    near = d > 0 and any(min(abs(e + low * d), abs(e - high * d)) <= tol for e in residuals)
    return keep, near


def ref_iterate(x, one_pass: Callable, iterations: int):
    """Cumulative passes, at most `iterations`, stopping after one that rejects nothing."""
    kept = list(range(len(x)))
    near = False
    for _ in range(iterations):
        if not kept:
            break
        keep, n = one_pass([x[i] for i in kept])
        near |= n
        if all(keep):
            break
        kept = [i for i, flag in zip(kept, keep) if flag]
    return [i in kept for i in range(len(x))], near


def ref_percentile(x, low, high):
    """One pass: keep m - low*m <= x <= m + high*m, m = median."""
    m = _median(x)
    lo, hi = m - low * m, m + high * m
    keep = [lo <= v <= hi for v in x]
    near = any(v != m and min(abs(v - lo), abs(v - hi)) <= NEAR * abs(m) for v in x)
    return keep, near


def ref_minmax(x, low, high):
    """One pass: drop the `low` smallest and `high` largest by (value, frame)."""
    k = len(x)
    if k <= low + high:
        return [False] * k, False
    order = sorted(range(k), key=lambda i: (x[i], i))
    dropped = set(order[:low]) | set(order[k - high:])
    return [i not in dropped for i in range(k)], False


@functools.cache
def t_ppf(p: float, df: int) -> float:
    return float(scipy_stats.t.ppf(p, df))


def gesd_lambda(k: int, j: int, alpha: float) -> tuple[float, float]:
    """Rosner's critical value lambda_j and the t quantile it uses."""
    t = t_ppf(1 - alpha / (2 * (k - j + 1)), k - j - 1)
    return (k - j) * t / math.sqrt((k - j - 1 + t * t) * (k - j + 1)), t


def gesd_statistics(x, alpha, fraction, pick=max):
    """The (removed value, R_j, lambda_j) of Rosner's test, farthest first."""
    k = len(x)
    left = list(x)
    rows = []
    for j in range(1, min(math.floor(fraction * k), k - 2) + 1):
        m = _mean(left)
        s = math.sqrt(math.fsum((v - m) ** 2 for v in left) / (len(left) - 1))
        far = pick(left, key=lambda v: abs(v - m))
        lam, _ = gesd_lambda(k, j, alpha)
        rows.append((far, abs(far - m) / s if s > 0 else 0.0, lam))
        left.remove(far)
    return rows


def ref_gesd(x, alpha, fraction):
    """Every outcome of GESD (as sorted kept values) over ties of the farthest value."""
    k = len(x)
    tests = min(math.floor(fraction * k), k - 2)
    outcomes = set()
    near = False

    def walk(left: list[float], removed: list[float], passed: int) -> None:
        nonlocal near
        j = len(removed) + 1
        if j > tests:
            out = list(x)
            for v in removed[:passed]:
                out.remove(v)
            outcomes.add(tuple(sorted(out)))
            return
        m = _mean(left)
        s = math.sqrt(math.fsum((v - m) ** 2 for v in left) / (len(left) - 1))
        far = max(abs(v - m) for v in left)
        lam, t = gesd_lambda(k, j, alpha)
        r = far / s if s > 0 else 0.0
        # lambda ~ t / sqrt(nu + t^2): a relative error e of t moves it by e * nu / (nu + t^2)
        nu = k - j - 1
        if abs(r - lam) <= (NEAR + T_TOL * nu / (nu + t * t)) * lam:
            near = True
        ties = {v for v in left if abs(v - m) >= far - NEAR * max(map(abs, left))}
        assert len(outcomes) < 1000
        for v in sorted(ties):
            rest = list(left)
            rest.remove(v)
            walk(rest, [*removed, v], j if r > lam else passed)

    walk(list(x), [], 0)
    return outcomes, near


class Outcome(NamedTuple):
    """What the reference allows at one point."""

    options: frozenset  # kept flags over the n frames, or sorted kept values
    by_value: bool  # options are sorted kept values: which equal value goes is open
    near: bool  # rounding may decide


def settings_of(settings: dict[str, Any], reject: str = 'sigma') -> dict[str, Any]:
    s = {**DEFAULTS, **settings}
    if s['sigma'] is None:
        s['sigma'] = FACTORS.get((reject, s['center']), FACTORS.get(reject, 2.5))
    if s['iterations'] is None:
        s['iterations'] = PASSES.get(reject, 5)
    s['low'] = s['sigma'] if s['sigma_low'] is None else s['sigma_low']
    s['high'] = s['sigma'] if s['sigma_high'] is None else s['sigma_high']
    return s


def reference_kept(values, ok, reject: str, **settings) -> Outcome:
    """The kept values of one point (`values` of the n frames, `ok` valid)."""
    s = settings_of(settings, reject)
    low, high, iterations = s['low'], s['high'], s['iterations']
    index = [i for i in range(len(values)) if ok[i]]
    x = [float(values[i]) for i in index]
    near = False
    if reject == 'gesd':
        options, near = ref_gesd(x, *s['gesd']) if x else ({()}, False)
        return Outcome(frozenset(options), True, near)
    if not x or reject == 'none':
        keep = [True] * len(x)
    elif reject == 'sigma':
        keep, near = ref_iterate(x, lambda y: ref_sigma_pass(y, low, high, s['center']), iterations)
    elif reject == 'mad':
        keep, near = ref_iterate(x, lambda y: ref_mad_pass(y, low, high), iterations)
    elif reject == 'winsorized':
        keep, near = ref_iterate(x, lambda y: ref_winsorized_pass(y, low, high), iterations)
    elif reject == 'linear':
        keep, near = ref_iterate(x, lambda y: ref_linear_pass(y, low, high), iterations)
    elif reject == 'percentile':
        keep, near = ref_percentile(x, *s['percentile'])
    elif reject == 'minmax':
        keep, near = ref_minmax(x, *s['minmax'])
    else:
        raise AssertionError(reject)
    if reject == 'linear':
        return Outcome(frozenset([tuple(sorted(v for v, f in zip(x, keep) if f))]), True, near)
    flags = [False] * len(values)
    for i, f in zip(index, keep):
        flags[i] = f
    return Outcome(frozenset([tuple(flags)]), False, near)


def reference_combine(values, ok, kept, combine: str, weights=None) -> float:
    """Combine the kept values of one point; all rejected -> mean of the
    valid ones; none valid -> the plain mean of the values that are not NaN
    (NaN if every value is)."""
    w = [1.0] * len(values) if weights is None else [float(v) for v in weights]
    valid = [i for i in range(len(values)) if ok[i]]
    if not valid:
        plain = [float(v) for v in values if not math.isnan(float(v))]
        return math.fsum(plain) / len(plain) if plain else math.nan
    use = [i for i in valid if kept[i]]
    if not use or combine == 'mean':
        use = use or valid
        return math.fsum(w[i] * float(values[i]) for i in use) / math.fsum(w[i] for i in use)
    x = [float(values[i]) for i in use]
    return {'median': _median, 'min': min, 'max': max}[combine](x)


def valid_values(stack, valid=None, valid_range=None) -> np.ndarray:
    """Where a value counts: not NaN, `valid`, inside the inclusive range."""
    x = np.asarray(stack, np.float64)
    ok = ~np.isnan(x)
    if valid is not None:
        ok &= np.broadcast_to(np.asarray(valid, bool), x.shape)
    if valid_range is not None:
        lo, hi = valid_range
        with np.errstate(invalid='ignore'):
            if lo is not None:
                ok &= x >= lo
            if hi is not None:
                ok &= x <= hi
    return ok


def reference(stack, reject, valid=None, valid_range=None, **settings) -> list[Outcome]:
    """`reference_kept` of every point of a stack, in C order."""
    x = np.asarray(stack, np.float64)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    ok = valid_values(x, valid, valid_range).reshape(n, -1)
    return [reference_kept(flat[:, j], ok[:, j], reject, **settings) for j in range(flat.shape[1])]


# -- random stacks: noise, planted outliers, values that are not valid -------

SHAPE = (8, 25)  # 200 points: the 0.5 % allowance near bounds is one point


@functools.cache
def random_case(n: int, dtype: str, seed: int):
    """A stack (n, *SHAPE) with its `valid` mask and `valid_range`."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(800, 3000, SHAPE)
    noise = np.broadcast_to(rng.uniform(2, 40, SHAPE), (n, *SHAPE))
    x = level + noise * rng.standard_normal((n, *SHAPE))
    bright = rng.random(x.shape) < 0.07  # cosmic rays, satellites
    x[bright] += rng.uniform(4, 60, bright.sum()) * noise[bright]
    dark = rng.random(x.shape) < 0.02
    x[dark] -= rng.uniform(4, 20, dark.sum()) * noise[dark]
    valid = rng.random(x.shape) > 0.05
    valid[:, 0, 0] = False  # no valid value
    valid[1:, 0, 1] = False  # one valid value
    valid[2:, 0, 2] = False  # two valid values
    if dtype == 'uint16':
        x = np.rint(np.clip(x, 0, 65535))  # integers: ties are frequent
        x[rng.random(x.shape) < 0.02] = 65535  # saturated: not valid
        x[:, 1, 0] = 60000  # on the range's bound, so valid; all equal
        valid_range = (None, 60000)
    else:
        x[rng.random(x.shape) < 0.03] = np.nan
        x[:, 0, 3] = np.nan
        x[rng.random(x.shape) < 0.02] = -1.0  # dead pixels: below the range
        x[:, 1, 0] = 100.0  # on the range's bound, so valid; all equal
        valid_range = (100.0, None)
    stack = x.astype(dtype)
    stack.flags.writeable = valid.flags.writeable = False
    return stack, valid, valid_range


# (id, settings) of every rejection: defaults, asymmetric factors, few and
# many passes, harsh factors (points where everything goes), no pass at all
SETTINGS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    'sigma': [
        ('default', {}),
        ('median-1.7-2.9-i3',
         {'center': 'median', 'sigma_low': 1.7, 'sigma_high': 2.9, 'iterations': 3}),
        ('mean-2.2-1.3-i1',
         {'center': 'mean', 'sigma_low': 2.2, 'sigma_high': 1.3, 'iterations': 1}),
        ('median-0.45-0.65-i10',
         {'center': 'median', 'sigma_low': 0.45, 'sigma_high': 0.65, 'iterations': 10}),
        ('mean-1.5-i0', {'sigma': 1.5, 'iterations': 0}),
    ],
    'mad': [
        ('default', {}),
        ('1.6-3.1-i2', {'sigma_low': 1.6, 'sigma_high': 3.1, 'iterations': 2}),
        ('3.3-1.2-i1', {'sigma_low': 3.3, 'sigma_high': 1.2, 'iterations': 1}),
        ('0.3-0.4-i8', {'sigma_low': 0.3, 'sigma_high': 0.4, 'iterations': 8}),
        ('i0', {'iterations': 0}),
    ],
    'winsorized': [
        ('default', {}),
        ('1.8-2.7-i3', {'sigma_low': 1.8, 'sigma_high': 2.7, 'iterations': 3}),
        ('3.1-1.3-i1', {'sigma_low': 3.1, 'sigma_high': 1.3, 'iterations': 1}),
        ('0.4-0.5-i6', {'sigma_low': 0.4, 'sigma_high': 0.5, 'iterations': 6}),
        ('i0', {'iterations': 0}),
    ],
    'linear': [  # with integer data e/d is a ratio of small integers: odd factors
        ('2.437', {'sigma': 2.437}),  # 2.5 = k/2 puts residuals on the bound at k = 5
        ('1.413-2.917-i3', {'sigma_low': 1.413, 'sigma_high': 2.917, 'iterations': 3}),
        ('3.083-1.637-i1', {'sigma_low': 3.083, 'sigma_high': 1.637, 'iterations': 1}),
        ('0.437-0.613-i6', {'sigma_low': 0.437, 'sigma_high': 0.613, 'iterations': 6}),
        ('i0', {'iterations': 0}),
    ],
    'percentile': [
        ('default', {}),
        ('0.0173-0.0219', {'percentile': (0.0173, 0.0219)}),
        ('0-0.05-i0', {'percentile': (0.0, 0.05), 'iterations': 0}),
    ],
    'minmax': [
        ('default', {}),
        ('0-2', {'minmax': (0, 2)}),
        ('2-0-i0', {'minmax': (2, 0), 'iterations': 0}),
        ('3-3', {'minmax': (3, 3)}),
        ('0-0', {'minmax': (0, 0)}),
    ],
    'gesd': [
        ('default', {}),
        ('0.2-0.45', {'gesd': (0.2, 0.45)}),
        ('0.01-0.1-i0', {'gesd': (0.01, 0.1), 'iterations': 0}),
        ('0.05-0.9', {'gesd': (0.05, 0.9)}),
    ],
    'none': [('default', {})],
}
CASES = [(reject, i) for reject in REJECTS for i in range(len(SETTINGS[reject]))]
CASE_IDS = [f'{reject}-{SETTINGS[reject][i][0]}' for reject, i in CASES]
SIZES = [3, 5, 8, 15, 24]


def case_seed(reject: str, index: int, n: int, dtype: str) -> int:
    return 1000 * REJECTS.index(reject) + 100 * index + 2 * n + (dtype == 'uint16')


@functools.cache
def reference_case(reject: str, index: int, n: int, dtype: str) -> list[Outcome]:
    stack, valid, valid_range = random_case(n, dtype, case_seed(reject, index, n, dtype))
    return reference(stack, reject, valid, valid_range, **SETTINGS[reject][index][1])


def check_against_reference(stack, outcomes, *, reject, combine, settings, valid=None,
                            valid_range=None, weights=None):
    """stack_array keeps what the reference allows and combines it as README says."""
    got, rejected, kept = imgstack.stack_array(
        stack, reject=reject, combine=combine, valid=valid, valid_range=valid_range,
        weights='none' if weights is None else weights, return_mask=True, **settings,
    )
    n = stack.shape[0]
    assert got.dtype == np.float64 and got.shape == stack.shape[1:]
    assert kept.dtype == bool and kept.shape == stack.shape
    ok = valid_values(stack, valid, valid_range)
    assert not (kept & ~ok).any(), 'a value that is not valid is marked kept'
    assert rejected == int(ok.sum() - kept.sum())
    values = np.asarray(stack, np.float64).reshape(n, -1)
    ok, kept, got = ok.reshape(n, -1), kept.reshape(n, -1), got.reshape(-1)
    wrong, near = [], []
    for j, outcome in enumerate(outcomes):
        flags = kept[:, j]
        key = (tuple(sorted(values[flags, j].tolist())) if outcome.by_value
               else tuple(flags.tolist()))
        if key not in outcome.options:
            (near if outcome.near else wrong).append(
                f'point {j}: values {values[:, j].tolist()} valid {ok[:, j].astype(int).tolist()} '
                f'kept {flags.astype(int).tolist()}, reference allows {sorted(outcome.options)}'
            )
        # whatever was kept, the result is its combination
        want = reference_combine(values[:, j], ok[:, j], flags, combine, weights)
        if not (math.isclose(got[j], want, rel_tol=1e-9, abs_tol=1e-12)
                or math.isnan(got[j]) and math.isnan(want)):
            wrong.append(f'point {j}: values {values[:, j].tolist()} '
                         f'kept {flags.astype(int).tolist()}: '
                         f'{combine} is {want!r}, stack_array gives {got[j]!r}')
    assert not wrong, '\n'.join(wrong[:5])
    assert len(near) <= 0.005 * len(outcomes), '\n'.join(near[:5])


@pytest.mark.parametrize('combine', COMBINES)
@pytest.mark.parametrize('n', SIZES)
@pytest.mark.parametrize('dtype', ['float64', 'uint16'])
@pytest.mark.parametrize(('reject', 'index'), CASES, ids=CASE_IDS)
def test_matches_reference(reject, index, dtype, n, combine):
    stack, valid, valid_range = random_case(n, dtype, case_seed(reject, index, n, dtype))
    check_against_reference(
        stack, reference_case(reject, index, n, dtype), reject=reject, combine=combine,
        settings=SETTINGS[reject][index][1], valid=valid, valid_range=valid_range,
    )


def kept_count(outcome: Outcome) -> int:
    option = min(outcome.options)
    return len(option) if outcome.by_value else sum(option)


HARSH = {'median-0.45-0.65-i10', '0.3-0.4-i8', '0.4-0.5-i6', '0.437-0.613-i6', '3-3'}
IDLE = {'i0', 'mean-1.5-i0', '0-0'}


@pytest.mark.parametrize(('reject', 'index'), CASES, ids=CASE_IDS)
def test_random_cases_are_not_idle(reject, index):
    # guards the test above: values are rejected (at least 1 %), harsh
    # settings make points fall back, and rounding seldom decides (the
    # allowance of each comparison is one point)
    name = SETTINGS[reject][index][0]
    valid = kept = fallbacks = 0
    for n in SIZES:
        for dtype in ['float64', 'uint16']:
            stack, ok, valid_range = random_case(n, dtype, case_seed(reject, index, n, dtype))
            counts = valid_values(stack, ok, valid_range).reshape(n, -1).sum(axis=0)
            outcomes = reference_case(reject, index, n, dtype)
            assert sum(o.near for o in outcomes) <= 0.005 * len(outcomes), (n, dtype)
            for count, outcome in zip(counts, outcomes):
                valid += count
                kept += kept_count(outcome)
                fallbacks += count > 0 and kept_count(outcome) == 0
    if reject == 'none' or name in IDLE:
        assert kept == valid
    else:
        assert kept < 0.99 * valid
    if name in HARSH:
        assert fallbacks > 0


def test_random_cases_have_ties():
    # integer data: equal values at a point, and GESD meets equally far values
    stack = random_case(8, 'uint16', 1)[0]
    assert (np.diff(np.sort(stack, axis=0), axis=0) == 0).any(axis=0).mean() > 0.2
    outcomes = [o for n in SIZES for i in range(len(SETTINGS['gesd']))
                for o in reference_case('gesd', i, n, 'uint16')]
    assert any(len(o.options) > 1 for o in outcomes)


# -- the reference against astropy and published numbers ---------------------

@pytest.mark.parametrize('center', ['mean', 'median'])
@pytest.mark.parametrize(('low', 'high', 'iterations'),
                         [(2.5, 2.5, 1), (1.7, 2.9, 1), (2.0, 2.0, 5), (1.3, 2.2, 10)])
def test_reference_sigma_is_astropy_sigma_clip(center, low, high, iterations):
    stack, valid, _ = random_case(15, 'float64', 99)
    ok = valid_values(stack, valid)
    clipped = astropy_stats.sigma_clip(
        np.ma.masked_array(stack, ~ok), sigma_lower=low, sigma_upper=high,
        maxiters=iterations, cenfunc=center, stdfunc='std', axis=0,
    )
    astropy_kept = ~np.ma.getmaskarray(clipped).reshape(15, -1)
    outcomes = reference(stack, 'sigma', valid, sigma_low=low, sigma_high=high,
                         iterations=iterations, center=center)
    differ = [j for j, o in enumerate(outcomes) if tuple(astropy_kept[:, j]) not in o.options]
    # one pass: the same; more: astropy re-tests every value each pass and
    # may restore one that a later pass's bounds take back in (README, What is computed)
    assert len(differ) <= (0 if iterations == 1 else 0.005 * len(outcomes))
    assert sum(kept_count(o) for o in outcomes) < 0.97 * ok.sum()


def test_reference_mad_scale_is_astropy_mad_std():
    rng = np.random.default_rng(5)
    for k in [1, 2, 3, 4, 7, 10, 24]:
        x = rng.normal(100, 15, k)
        d = MAD_SCALE * _median([abs(v - _median(x)) for v in x])
        assert d == pytest.approx(astropy_stats.mad_std(x), rel=1e-12, abs=1e-12)


# Rosner (1983), Technometrics 25, 165-172, as worked in the NIST/SEMATECH
# e-Handbook of Statistical Methods, section 1.3.5.17.3: 54 values, up to 10
# outliers at alpha 0.05; R_j and lambda_j as published (3 decimals).
ROSNER = [
    -0.25, 0.68, 0.94, 1.15, 1.20, 1.26, 1.26, 1.34, 1.38, 1.43, 1.49, 1.49, 1.55, 1.56,
    1.58, 1.65, 1.69, 1.70, 1.76, 1.77, 1.81, 1.91, 1.94, 1.96, 1.99, 2.06, 2.09, 2.10,
    2.14, 2.15, 2.23, 2.24, 2.26, 2.35, 2.37, 2.40, 2.47, 2.54, 2.62, 2.64, 2.90, 2.92,
    2.92, 2.93, 3.21, 3.26, 3.30, 3.59, 3.68, 4.30, 4.64, 5.34, 5.42, 6.01,
]
ROSNER_TABLE = [  # (removed value, R_j, lambda_j)
    (6.01, 3.118, 3.158), (5.42, 2.942, 3.151), (5.34, 3.179, 3.143), (4.64, 2.810, 3.136),
    (-0.25, 2.815, 3.128), (4.30, 2.848, 3.120), (3.68, 2.279, 3.111), (3.59, 2.310, 3.103),
    (0.68, 2.101, 3.094), (3.30, 2.067, 3.085),
]


def test_reference_gesd_reproduces_rosner():
    rows = gesd_statistics(ROSNER, 0.05, 10 / 54 + 1e-9)
    assert len(rows) == 10
    for (v, r, lam), (want_v, want_r, want_lam) in zip(rows, ROSNER_TABLE):
        assert v == want_v
        assert r == pytest.approx(want_r, abs=1.5e-3)
        assert lam == pytest.approx(want_lam, abs=1.5e-3)
    # R_3 > lambda_3 is the last: the three largest values are the outliers
    options, near = ref_gesd(ROSNER, 0.05, 0.19)
    assert options == {tuple(sorted(ROSNER[:-3]))} and not near


def test_stack_array_gesd_reproduces_rosner():
    stack = np.array(ROSNER)[:, None]
    got, rejected, kept = imgstack.stack_array(stack, reject='gesd', gesd=(0.05, 0.19),
                                               return_mask=True)
    assert kept[:, 0].tolist() == [True] * 51 + [False] * 3
    assert rejected == 3
    assert got[0] == pytest.approx(math.fsum(ROSNER[:-3]) / 51, rel=1e-12)


@pytest.mark.parametrize('df', [1, 2, 3, 4, 5, 7, 10, 13, 17, 22, 30, 60, 200])
def test_t_quantile_matches_scipy(df):
    # Hill's approximation is good to about 1e-5; a wrong tail, a two-sided p
    # or a degree of freedom off by one are off by far more
    for p in [0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9999, 1 - 0.05 / 48, 1 - 0.01 / 6]:
        assert imgstack._t_quantile(p, df) == pytest.approx(t_ppf(p, df), rel=T_TOL)
    assert imgstack._t_quantile(0.1, df) == pytest.approx(-t_ppf(0.9, df), rel=T_TOL)


# -- hand-checkable vectors -----------------------------------------------------

V = [10, 11, 12, 10, 11, 50]  # six frames of one point; frame 5 holds a cosmic ray
# n = 6: mean 17.333 (52/3), SD 14.625 (divisor 6), median 11, MAD 1.
# Without 50: mean 10.8, SD 0.748, median 11, MAD 1.
HAND = [
    # (id, values, settings, kept, result)
    # mean 17.333; 50 - 17.333 = 32.667 <= 2.5 * 14.625 = 36.56: kept (with 6
    # values and the mean as centre a lone outlier needs sigma < sqrt(5))
    ('sigma', V, {}, '111111', 52 / 3),
    # 32.667 > 2 * 14.625 = 29.25: out; pass 2 keeps [10.8 -+ 2 * 0.748]
    ('sigma-2', V, {'sigma': 2.0}, '111110', 10.8),
    # c = 11: 50 - 11 = 39 > 36.56: out; pass 2: 11 -+ 2.5 * 0.748 = [9.13, 12.87]
    ('sigma-median', V, {'center': 'median'}, '111110', 10.8),
    ('sigma-median-max', V, {'center': 'median', 'combine': 'max'}, '111110', 12.0),
    ('sigma-median-min', V, {'center': 'median', 'combine': 'min'}, '111110', 10.0),
    ('sigma-median-median', V, {'center': 'median', 'combine': 'median'}, '111110', 11.0),
    # |x - 11| = 1 0 1 1 0 39: MAD 1, d = 1.4826: keep [7.29, 14.71]; pass 2: MAD 1 again
    ('mad', V, {'reject': 'mad'}, '111110', 10.8),
    # c = 11, d0 = 14.625: 50 clamped to 11 + 1.5 d0 = 32.94 gives d = 1.134 SD
    # = 9.39, then 50 -> 25.08, d = 6.09, ... d settles at 1.1015 (50 -> 12.65):
    # 50 > 11 + 2.5 * 1.1015 = 13.75: out.  Pass 2: nothing clamped, d = 1.134
    # * 0.748 = 0.849 twice: [8.88, 13.12] keeps all.
    ('winsorized', V, {'reject': 'winsorized'}, '111110', 10.8),
    # sorted 10 10 11 11 12 50 on ranks 1..6: y = -3.267 + 5.886 r, residuals
    # 7.38 1.50 -3.39 -9.28 -14.16 17.95, d = 8.94: 17.95 <= 2.5 * 8.94 = 22.36:
    # the outlier tilts the line and stays
    ('linear', V, {'reject': 'linear'}, '111111', 52 / 3),
    # m = 11: keep [11 - 0.2 * 11, 11 + 0.1 * 11] = [8.8, 12.1]
    ('percentile', V, {'reject': 'percentile'}, '111110', 10.8),
    # 12 > 11 * 1.05 = 11.55 and 10 < 11 * 0.95 = 10.45 go too: 11 11 -> 11
    ('percentile-0.05', V, {'reject': 'percentile', 'percentile': (0.05, 0.05)}, '010010', 11.0),
    # the smallest is frame 0's 10 (before frame 3's), the largest 50: 11 12 10 11
    ('minmax', V, {'reject': 'minmax'}, '011110', 11.0),
    # K = floor(0.3 * 6) = 1: mean 17.333, sample SD 16.02, R1 = 32.667 / 16.02
    # = 2.039; t(1 - 0.05 / 12, 4 df) = 4.851, lambda1 = 5 * 4.851 /
    # sqrt((4 + 4.851^2) * 6) = 1.887 < R1: 50 is an outlier
    ('gesd', V, {'reject': 'gesd'}, '111110', 10.8),
    ('none', V, {'reject': 'none'}, '111111', 52 / 3),
    ('none-median', V, {'reject': 'none', 'combine': 'median'}, '111111', 11.0),  # (11 + 11) / 2
    ('none-min', V, {'reject': 'none', 'combine': 'min'}, '111111', 10.0),
    ('none-max', V, {'reject': 'none', 'combine': 'max'}, '111111', 50.0),
    # the median stack: odd count, middle value; even count, mean of the middle two
    ('median-odd', [9, 1, 4, 7, 3], {'reject': 'none', 'combine': 'median'}, '11111', 4.0),
    ('median-even', [5, 1, 4, 2, 8, 7], {'reject': 'none', 'combine': 'median'}, '111111', 4.5),
    # eight 0 with 30 and 1000, sigma 2.5, mean centre.  Pass 1: mean 103, SD
    # 299.1: 1000 - 103 = 897 > 747.8 goes, 30 stays.  Pass 2: mean 3.33, SD
    # 9.43: 30 - 3.33 = 26.67 > 23.57 goes.  Pass 3: SD 0: nothing.
    ('iterations-0', [0] * 8 + [30, 1000], {'iterations': 0}, '1' * 10, 103.0),
    ('iterations-1', [0] * 8 + [30, 1000], {'iterations': 1}, '1' * 9 + '0', 30 / 9),
    ('iterations-2', [0] * 8 + [30, 1000], {'iterations': 2}, '1' * 8 + '00', 0.0),
    # rejection is cumulative: 0 0 1 11 11 12, sigma 1.  Pass 1: mean 5.833,
    # SD 5.520: [0.313, 11.354] drops 0 0 12.  Pass 2 on 1 11 11: mean 7.667,
    # SD 4.714: [2.953, 12.381] drops 1, and 12 stays out though it is inside
    # (astropy's sigma_clip would take it back: 11.333)
    ('sigma-cumulative', [0, 0, 1, 11, 11, 12], {'sigma': 1.0, 'iterations': 2}, '000110', 11.0),
    # values exactly on a bound are kept: m = 10, [10 - 5, 10 + 5] keeps 5 and 15
    ('percentile-on-bound', [10, 10, 15, 10, 5],
     {'reject': 'percentile', 'percentile': (0.5, 0.5)}, '11111', 10.0),
    ('percentile-off-bound', [10, 10, 15, 10, 5],
     {'reject': 'percentile', 'percentile': (0.4, 0.4)}, '11010', 10.0),
    # a gradient across the frames (a sky brightening) with frame 4 hit: the
    # sorted 10 20 ... 100 200 on ranks 1..11 fit y = -16.36 + 14.09 r; the
    # residuals run 12.27 8.18 ... -24.55 and 61.36 for 200; d = 15.62:
    # 61.36 > 2.5 * 15.62 = 39.05: 200 goes, the line stays.  Pass 2: 10..100
    # is exactly y = 10 r: every residual 0, d = 0, nothing more goes.
    ('linear-gradient', [100, 90, 80, 70, 200, 60, 50, 40, 30, 20, 10], {'reject': 'linear'},
     '11110111111', 55.0),
    # two values lie on a line whatever the factor: nothing to reject
    ('linear-two', [10, 1000], {'reject': 'linear', 'sigma': 0.5}, '11', 505.0),
    # 2 and 4: mean 3, SD 1: both are 1 > 0.5 from the centre: all rejected,
    # the result is the mean of the valid values whatever the combination
    ('all-rejected', [2, 4], {'sigma': 0.5}, '00', 3.0),
    ('all-rejected-max', [2, 4], {'sigma': 0.5, 'combine': 'max'}, '00', 3.0),
    # k = 3 <= LOW + HIGH = 3: nothing kept, the mean of all three
    ('all-rejected-median', [2, 4, 100],
     {'reject': 'minmax', 'minmax': (2, 1), 'combine': 'median'}, '000', 106 / 3),
    # k = 2 <= LOW + HIGH: nothing kept; the mean of the two
    ('minmax-too-few', [4, 8], {'reject': 'minmax', 'combine': 'min'}, '00', 6.0),
    # the ties of README, Which rejection?: of the equal lowest values, the first frame's goes
    ('minmax-low-tie', [7, 3, 8, 3, 9, 5], {'reject': 'minmax'}, '101101', 5.75),
    ('minmax-low-ties', [5, 1, 1, 1, 9], {'reject': 'minmax', 'minmax': (2, 0)}, '10011', 5.0),
    # MAD 0 (four of five equal): d = 0, every value off the median goes
    ('mad-zero', [10, 10, 10, 10, 50], {'reject': 'mad'}, '11110', 10.0),
    # all equal: every spread is 0 and nothing goes
    ('sigma-equal', [7] * 5, {'sigma': 0.1}, '11111', 7.0),
    ('winsorized-equal', [7] * 5, {'reject': 'winsorized', 'sigma': 0.1}, '11111', 7.0),
    ('linear-equal', [7] * 5, {'reject': 'linear', 'sigma': 0.1}, '11111', 7.0),
    ('gesd-equal', [7] * 10, {'reject': 'gesd'}, '1' * 10, 7.0),
    # k = 3, fraction 0.9: floor(2.7) = 2 tests, but t needs k - j - 1 >= 1:
    # one test.  mean 23.37, sample SD 23.07, R1 = 26.63 / 23.07 = 1.15470 >
    # lambda1 = 2 * 38.19 / sqrt((1 + 38.19^2) * 3) = 1.15430, t(1 - 0.05/6, 1 df) = 38.19
    ('gesd-three', [10, 10.1, 50], {'reject': 'gesd', 'gesd': (0.05, 0.9)}, '110', 10.05),
]
# GESD on 20 values around 100 (mean 100.05), K = floor(0.3 * 20) = 6:
#   j       1      2      3      4      5      6
#   x     106     95    104     96    103     97
#   R_j  2.249  2.055  1.944  2.029  1.837  1.900
#   l_j  2.708  2.681  2.652  2.620  2.586  2.548   no R_j > l_j: nothing goes
GESD_20 = [100, 102, 98, 101, 99, 103, 97, 100, 104, 96,
           100, 101, 99, 102, 98, 100, 106, 95, 101, 99]
# The same with frame 7's 100 hit to 130 (mean 101.55, sample SD 7.20):
#   j       1      2      3      4      5      6
#   x     130    106     95    104     96    103
#   R_j  3.951  2.188  1.991  1.886  1.958  1.775
#   l_j  2.708  2.681  2.652  2.620  2.586  2.548   m = 1: only 130 goes;
# the other 19 average 1901 / 19 = 100.05
GESD_20_HIT = GESD_20[:7] + [130] + GESD_20[8:]
HAND += [
    ('gesd-none-of-20', GESD_20, {'reject': 'gesd'}, '1' * 20, 100.05),
    ('gesd-one-of-20', GESD_20_HIT, {'reject': 'gesd'}, '1' * 7 + '0' + '1' * 12, 1901 / 19),
]


def expected_outcome(values, settings):
    # the hand computations take -s 2.5 -i 5 and GESD 0.05:0.3 where they
    # name no factor (the definitions, not each method's default)
    s = {'sigma': 2.5, 'iterations': 5, **settings}
    if s.get('reject') == 'gesd':
        s.setdefault('gesd', (0.05, 0.3))
    reject, combine = s.pop('reject', 'sigma'), s.pop('combine', 'mean')
    return reject, combine, s


@pytest.mark.parametrize(('values', 'settings', 'kept', 'result'),
                         [h[1:] for h in HAND], ids=[h[0] for h in HAND])
def test_hand_vectors(values, settings, kept, result):
    reject, combine, s = expected_outcome(values, settings)
    stack = np.array(values, np.float64)[:, None]
    got, rejected, mask = imgstack.stack_array(stack, reject=reject, combine=combine,
                                               return_mask=True, **s)
    assert ''.join('1' if f else '0' for f in mask[:, 0]) == kept
    assert rejected == kept.count('0')
    assert got[0] == pytest.approx(result, rel=1e-12)
    # uint16 frames of the same integers give the same answer
    if all(float(v).is_integer() for v in values):
        got16, rejected16 = imgstack.stack_array(stack.astype(np.uint16), reject=reject,
                                                 combine=combine, **s)
        assert got16[0] == pytest.approx(got[0], rel=1e-12) and rejected16 == rejected


@pytest.mark.parametrize(('name', 'values', 'settings', 'kept', 'result'), HAND,
                         ids=[h[0] for h in HAND])
def test_reference_hand_vectors(name, values, settings, kept, result):
    # the reference gives the hand-computed answers too, and no rounding
    # decides them (but where values sit on a bound on purpose)
    reject, combine, s = expected_outcome(values, settings)
    flags = [c == '1' for c in kept]
    outcome = reference_kept(values, [True] * len(values), reject, **s)
    key = (tuple(sorted(float(v) for v, f in zip(values, flags) if f)) if outcome.by_value
           else tuple(flags))
    assert outcome.options == {key}
    assert outcome.near == name.endswith('on-bound')
    combined = reference_combine(values, [True] * len(values), flags, combine)
    assert combined == pytest.approx(result, rel=1e-12)


def test_minmax_high_tie_drops_the_last_frame():
    # "ties broken by frame order" read as one order by (value, frame): of
    # the equal highest 9s of frames 2 and 4, frame 4's is the largest and goes
    # (and of the equal lowest, frame 1's 3 before frame 3's)
    stack = np.array([7, 3, 9, 3, 9, 5], np.float64)[:, None]
    got, rejected, kept = imgstack.stack_array(stack, reject='minmax', return_mask=True)
    assert kept[:, 0].tolist() == [True, False, True, True, False, True]
    assert got[0] == (7 + 9 + 3 + 5) / 4 and rejected == 2


def test_winsorized_clamps_the_kept_values_afresh():
    # 11 9 16 13 14, sigma 1.5, one pass: c = 13, d0 = SD = 2.4166.
    # Clamp to 13 -+ 3.625: 9 -> 9.375; d1 = 1.134 SD = 2.6162.  The spread
    # grew: clamping the kept values afresh to 13 -+ 3.924 gives 9 -> 9.076,
    # d2 = 2.7149, then nothing clamped, d3 = d4 = 2.7404: 9 >= 13 - 1.5 *
    # 2.7404 = 8.889 stays.  (Clamping the clamped copy again, as Siril does,
    # keeps 9.375, stops at d = 2.6162, and rejects 9 < 9.076.)
    values = [11, 9, 16, 13, 14]
    stack = np.array(values, np.float64)[:, None]
    got, rejected, kept = imgstack.stack_array(stack, reject='winsorized', sigma=1.5, iterations=1,
                                               return_mask=True)
    assert kept[:, 0].all() and rejected == 0 and got[0] == pytest.approx(12.6, rel=1e-12)
    assert ref_winsorized_pass(values, 1.5, 1.5) == ([True] * 5, False)
    assert ref_winsorized_pass(values, 1.5, 1.5, fresh=False) == (
        [True, False, True, True, True], False)


@pytest.mark.parametrize('reject', REJECTS)
def test_values_that_are_not_valid_are_neither_used_nor_rejected(reject):
    # V with frame 5's 50 made invalid three ways: what is left is 10 11 12
    # 10 11, which every rejection keeps whole with these settings
    settings = {'reject': reject, 'minmax': (0, 0), 'percentile': (0.2, 0.2)}
    cases = [
        (np.array([10, 11, 12, 10, 11, np.nan]), {}),
        (np.array(V, np.float64), {'valid': np.array([1, 1, 1, 1, 1, 0], bool)[:, None]}),
        (np.array(V, np.float64), {'valid_range': (None, 49.0)}),
        (np.array(V, np.uint16), {'valid_range': (None, 49)}),
    ]
    for values, extra in cases:
        got, rejected, kept = imgstack.stack_array(values[:, None], return_mask=True, **settings,
                                                   **extra)
        assert kept[:, 0].tolist() == [True] * 5 + [False]
        assert rejected == 0 and got[0] == pytest.approx(10.8, rel=1e-12)


def test_valid_range_is_inclusive_and_one_sided():
    stack = np.array(V, np.float64)[:, None]
    for valid_range, want in [((10, 50), 52 / 3), ((11, None), 21.0), ((None, 10), 10.0),
                              ((10.5, 11.5), 11.0)]:
        got, rejected = imgstack.stack_array(stack, reject='none', valid_range=valid_range)
        assert got[0] == pytest.approx(want, rel=1e-12) and rejected == 0


def test_valid_mask_broadcasts():
    # one row of a 2 x 3 image is invalid in frame 2 only
    stack = np.arange(4 * 2 * 3, dtype=np.float64).reshape(4, 2, 3)
    valid = np.ones((4, 2, 1), bool)
    valid[2, 0, 0] = False
    got, rejected, kept = imgstack.stack_array(stack, reject='none', valid=valid, return_mask=True)
    assert kept.shape == stack.shape and not kept[2, 0].any() and kept.sum() == stack.size - 3
    want = stack.mean(axis=0)
    want[0] = stack[[0, 1, 3], 0].mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert rejected == 0


def test_no_valid_value_gives_the_plain_mean():
    # README, What is computed: the plain mean of the values that are not
    # NaN, whatever the rejection and combination; NaN if every value is NaN
    cases = [
        (np.full((3, 1), np.nan), {}, math.nan),
        (np.ones((3, 1)), {'valid': np.zeros((3, 1), bool)}, 1.0),
        (np.array([[5], [6], [7]], np.uint16), {'valid_range': (8, None)}, 6.0),
        (np.array([[5], [np.nan], [8]]), {'valid_range': (9, None)}, 6.5),
    ]
    for reject in REJECTS:
        for combine in COMBINES:
            for stack, extra, want in cases:
                got, rejected, kept = imgstack.stack_array(
                    stack, reject=reject, combine=combine, return_mask=True, **extra)
                assert got[0] == want or math.isnan(want) and math.isnan(got[0])
                assert rejected == 0 and not kept.any()


def test_infinity_is_a_valid_value():
    stack = np.array([1.0, np.inf, 3.0, np.nan])[:, None]
    for combine, want in [('mean', np.inf), ('median', 3.0), ('min', 1.0), ('max', np.inf)]:
        got, rejected = imgstack.stack_array(stack, reject='none', combine=combine)
        assert got[0] == want and rejected == 0


# -- weights ---------------------------------------------------------------------


def test_weights_hand_vector():
    # sigma with the median as centre drops 50 (see HAND); the weights 1 2 1 1 2
    # of the rest give (10 + 22 + 12 + 10 + 22) / 7 = 76 / 7.  All rejected
    # (sigma 0.5 on 2 and 4): the weighted mean of the valid values, 1 * 2 + 3 * 4 over 4
    stack = np.array(V, np.float64)[:, None]
    w = np.array([1.0, 2.0, 1.0, 1.0, 2.0, 5.0])
    got, rejected, kept = imgstack.stack_array(stack, center='median', sigma=2.5, weights=w,
                                               return_mask=True)
    assert got[0] == pytest.approx(76 / 7, rel=1e-12)
    assert rejected == 1 and kept[:, 0].tolist() == [True] * 5 + [False]
    for combine in COMBINES:
        got, rejected = imgstack.stack_array(np.array([[2.0], [4.0]]), sigma=0.5, combine=combine,
                                             weights=np.array([1.0, 3.0]))
        assert got[0] == pytest.approx(3.5, rel=1e-12) and rejected == 2


@pytest.mark.parametrize('dtype', ['float64', 'uint16'])
@pytest.mark.parametrize('reject', REJECTS)
def test_weights_change_the_mean_only(reject, dtype):
    n, index = 8, 0
    stack, valid, valid_range = random_case(n, dtype, case_seed(reject, index, n, dtype))
    settings = SETTINGS[reject][index][1]
    w = np.random.default_rng(17).uniform(0.2, 5.0, n)
    common = {'reject': reject, 'valid': valid, 'valid_range': valid_range, 'return_mask': True,
              **settings}
    plain, plain_rejected, plain_kept = imgstack.stack_array(stack, **common)
    got, rejected, kept = imgstack.stack_array(stack, weights=w, **common)
    # rejection is unweighted: the same values are kept
    np.testing.assert_array_equal(kept, plain_kept)
    assert rejected == plain_rejected
    # the mean is the weighted mean of the kept values (or of the valid ones)
    outcomes = reference_case(reject, index, n, dtype)
    for combine in COMBINES:
        check_against_reference(stack, outcomes, reject=reject, combine=combine, settings=settings,
                                valid=valid, valid_range=valid_range, weights=w)
    several = plain_kept.sum(axis=0) > 1
    assert (np.abs(got - plain)[several] > 1e-9 * np.abs(plain[several])).mean() > 0.9


# -- sigma_clipped_mean is stack_array(reject='sigma', combine='mean') ------------


@pytest.mark.parametrize('kwargs', [
    {},
    {'sigma': 1.8, 'iterations': 3},
    {'sigma_low': 1.5, 'sigma_high': 3.0, 'center': 'median', 'iterations': 10},
    {'sigma': 2.2, 'iterations': 1, 'center': 'mean'},
    {'iterations': 0},
], ids=['defaults', 'sigma-1.8-i3', 'median-asymmetric', 'i1', 'i0'])
@pytest.mark.parametrize('dtype', ['float64', 'uint16'])
def test_sigma_clipped_mean_is_stack_array(kwargs, dtype):
    stack, valid, _ = random_case(12, dtype, 23)
    a, a_rejected = imgstack.sigma_clipped_mean(stack, valid=valid, **kwargs)
    b, b_rejected = imgstack.stack_array(stack, reject='sigma', combine='mean', valid=valid,
                                         **kwargs)
    np.testing.assert_array_equal(a, b)
    assert a_rejected == b_rejected
    _, _, a_kept = imgstack.sigma_clipped_mean(stack, valid=valid, return_mask=True, **kwargs)
    _, _, b_kept = imgstack.stack_array(stack, valid=valid, return_mask=True, **kwargs)
    np.testing.assert_array_equal(a_kept, b_kept)
    if kwargs.get('iterations') != 0:
        assert a_rejected > 0


# -- bad arguments --------------------------------------------------------------


@pytest.mark.parametrize(('kwargs', 'name'), [
    ({'reject': 'kappa'}, 'reject'),
    ({'combine': 'mode'}, 'combine'),
    ({'reject': 'percentile', 'percentile': (1.0, 0.1)}, 'percentile'),
    ({'reject': 'percentile', 'percentile': (0.2, 1.5)}, 'percentile'),
    ({'reject': 'percentile', 'percentile': (-0.1, 0.1)}, 'percentile'),
    ({'reject': 'percentile', 'percentile': (math.nan, 0.1)}, 'percentile'),
    ({'reject': 'minmax', 'minmax': (-1, 1)}, 'minmax'),
    ({'reject': 'minmax', 'minmax': (1, -2)}, 'minmax'),
    ({'reject': 'gesd', 'gesd': (0.0, 0.3)}, 'gesd'),
    ({'reject': 'gesd', 'gesd': (1.0, 0.3)}, 'gesd'),
    ({'reject': 'gesd', 'gesd': (-0.05, 0.3)}, 'gesd'),
    ({'reject': 'gesd', 'gesd': (math.nan, 0.3)}, 'gesd'),
    ({'reject': 'gesd', 'gesd': (0.05, 1.0)}, 'gesd'),
    ({'reject': 'gesd', 'gesd': (0.05, -0.1)}, 'gesd'),
    ({'weights': np.ones(3)}, 'weights'),
    ({'center': 'mode'}, 'center'),
    ({'iterations': -1}, 'iterations'),
])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        imgstack.stack_array(np.ones((5, 2, 2)), **kwargs)


# -- through files and the command line --------------------------------------


LAYOUTS = {
    'strips': {'rowsperstrip': 3},
    'tiles': {'tile': (16, 16)},
    'planar': {'planarconfig': 'separate', 'rowsperstrip': 5},
    'one strip deflate': {'compression': 'zlib', 'rowsperstrip': 1000},
}


def night(n: int, shape: tuple[int, ...], dtype: str = 'uint16', seed: int = 0,
          drift: float = 60.0) -> np.ndarray:
    """Frames of one scene with a drifting sky, noise and outliers."""
    rng = np.random.default_rng(seed)
    scene = rng.uniform(900, 1500, shape)
    frames = scene + rng.normal(0, 20, (n, *shape)) + rng.uniform(-drift, drift, n).reshape(
        (n,) + (1,) * len(shape))
    hits = rng.random(frames.shape) < 0.03
    frames[hits] = rng.uniform(5000, 20000, hits.sum())
    if dtype == 'uint16':
        return np.rint(frames).astype(np.uint16)
    out = frames.astype(dtype)
    out[rng.random(out.shape) < 0.02] = np.nan
    return out


def write_night(directory, stack: np.ndarray, **kwargs) -> list[str]:
    """Write the frames of `night`: RGB with 3 or 4 samples (the 4th alpha)."""
    image = stack[0]
    photometric = 'rgb' if image.ndim == 3 and image.shape[-1] in (3, 4) else 'minisblack'
    extra = {'extrasamples': [2]} if image.ndim == 3 and image.shape[-1] == 4 else {}
    return write_frames(directory, stack, photometric=photometric, **extra, **kwargs)


# planar: the slowest layout (three planes a band), in the full suite only
@pytest.mark.parametrize('layout', [pytest.param(k, marks=pytest.mark.slow) if k == 'planar' else k
                                    for k in LAYOUTS])
@pytest.mark.parametrize('reject', REJECTS)
def test_streamed_equals_in_memory_every_method(tmp_path, reject, layout):
    stack = night(11, (23, 37, 3))
    paths = write_night(tmp_path, stack, **LAYOUTS[layout])
    combine = COMBINES[REJECTS.index(reject) % 4]
    for rows in (1, 7, 1000):
        out = str(tmp_path / f'out{rows}.tif')
        imgstack.stack_files(paths, out, reject=reject, combine=combine, rows=rows,
                             memory='64M', force=True)
        want, _ = imgstack.stack_array(stack, reject=reject, combine=combine)
        np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(want, stack.dtype))


@pytest.mark.parametrize('combine', COMBINES)
@pytest.mark.parametrize('reject', REJECTS)
def test_valid_values_every_method(tmp_path, reject, combine):
    """NaN, a valid range and alpha mark values that no method sees."""
    stack = night(9, (14, 19), dtype='float32', seed=3)
    paths = write_night(tmp_path, stack, rowsperstrip=4)
    out = str(tmp_path / 'out.tif')
    imgstack.stack_files(paths, out, reject=reject, combine=combine, rows=5,
                         valid_range=(800.0, 4000.0))
    want, _ = imgstack.stack_array(stack, reject=reject, combine=combine,
                                   valid_range=(800.0, 4000.0))
    got = tifffile.imread(out)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)
    # the valid range took the outliers out: what is left is the scene's level
    assert np.nanmax(got) < 4000
    # alpha: transparent pixels count in no statistic
    rgba = np.concatenate([night(9, (14, 19, 3), seed=4),
                           np.full((9, 14, 19, 1), 65535, np.uint16)], axis=-1)
    rgba[2, 5:9, :, 3] = 0  # frame 2 transparent in rows 5-8
    rgba[2, 5:9, :, :3] = 60000
    (tmp_path / 'rgba').mkdir()
    paths = write_night(tmp_path / 'rgba', rgba, rowsperstrip=3)
    imgstack.stack_files(paths, out, reject=reject, combine=combine, rows=4, force=True)
    valid = np.broadcast_to(rgba[..., 3:] == 65535, rgba.shape)
    want, _ = imgstack.stack_array(rgba, reject=reject, combine=combine, valid=valid)
    got = tifffile.imread(out)
    np.testing.assert_array_equal(got[..., :3], imgstack._to_dtype(want, rgba.dtype)[..., :3])
    assert got[5:9, :, :3].max() < 20000  # the transparent 60000 is not there


@pytest.mark.parametrize(
    ('args', 'words'),
    [
        (['--percentile', '0.2:0.1'], '--percentile applies to --reject percentile only'),
        (['--reject', 'sigma', '--minmax', '1:1'], '--minmax applies to --reject minmax only'),
        (['--reject', 'mad', '--gesd', '0.05:0.3'], '--gesd applies to --reject gesd only'),
        (['--reject', 'minmax', '-s', '3'], 'do not apply to --reject minmax'),
        (['--reject', 'percentile', '--sigma-low', '2'], 'do not apply to --reject percentile'),
        (['--reject', 'mad', '--center', 'median'], '--center applies to --reject sigma only'),
        (['--percentile', '1.5:0.1', '--reject', 'percentile'], None),
        (['--minmax', '1', '--reject', 'minmax'], 'LOW:HIGH'),
        (['--reject', 'median'], 'invalid choice'),
        (['--combine', 'average'], 'invalid choice'),
    ],
)
def test_parameters_of_another_method_are_usage_errors(tmp_path, capsys, args, words):
    paths = write_night(tmp_path, night(8, (6, 7)))
    out = tmp_path / 'out.tif'
    with pytest.raises(SystemExit) as exc:
        code = imgstack.main([*args, str(out), *paths])
        raise SystemExit(code)
    err = capsys.readouterr().err
    if words is None:  # a bad value in range: one error line, status 1
        assert exc.value.code == 1 and 'percentile must be' in err
    else:
        assert exc.value.code == 2 and words in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ('n', 'args', 'words'),
    [
        (5, [], 'with 5 frames, sigma clipping can never reject a value: try --reject percentile'),
        (4, ['--reject', 'mad'], 'with 4 frames, MAD clipping rarely tells an outlier from noise: '
                                 'try --reject percentile'),
        (10, ['--reject', 'gesd'], 'with 10 frames, generalized ESD has little power: '
                                   'try --reject winsorized'),
        (3, ['--reject', 'gesd'], 'with 3 frames, generalized ESD can never reject a value'),
        (2, ['--reject', 'minmax'], 'with 2 frames, --minmax 1:1 keeps no value'),
    ],
)
def test_poorly_suited_methods_are_named_with_advice(tmp_path, capsys, n, args, words):
    paths = write_night(tmp_path, night(n, (6, 7)))
    assert imgstack.main([*args, str(tmp_path / 'out.tif'), *paths]) == 0
    assert words in capsys.readouterr().err
    with pytest.warns(imgstack.ImgstackWarning, match=words.split(':')[0]):
        reject = args[1] if args else 'sigma'
        imgstack.stack_files(paths, str(tmp_path / 'lib.tif'), reject=reject)


@pytest.mark.parametrize('args', [[], ['--reject', 'winsorized'], ['--reject', 'percentile']])
def test_well_suited_methods_say_nothing(tmp_path, capsys, args):
    paths = write_night(tmp_path, night(24 if not args else 10, (6, 7), drift=0.0))
    assert imgstack.main([*args, str(tmp_path / 'out.tif'), *paths]) == 0
    assert 'warning' not in capsys.readouterr().err


def test_median_stack_removes_a_person_standing_still(tmp_path):
    """A photographer's figure in 4 of 15 frames survives every sigma clip,
    and a median stack removes it."""
    rng = np.random.default_rng(9)
    scene = rng.uniform(2000, 3000, (30, 40))
    stack = scene + rng.normal(0, 80, (15, 30, 40))
    stack[3:7, 10:20, 10:20] = 9000  # the person, in frames 3 to 6
    stack = np.rint(stack).astype(np.uint16)
    paths = write_night(tmp_path, stack)
    for args, worst in ((['--reject', 'none', '--combine', 'median'], 300), ([], None)):
        out = tmp_path / 'out.tif'
        assert imgstack.main(['-q', '-f', *args, str(out), *paths]) == 0
        error = np.abs(tifffile.imread(out).astype(float) - scene)[10:20, 10:20].mean()
        if worst is None:
            assert error > 1000  # sigma clipping keeps it
        else:
            assert error < worst


@pytest.mark.parametrize(
    ('args', 'recorded'),
    [
        ([], '-s 2.5 -i 5 --center mean; 8 frames'),
        (['--reject', 'minmax'], ': --reject minmax --minmax 1:1; 8 frames'),
        (['--reject', 'winsorized', '-s', '3'], ': --reject winsorized -s 3 -i 1; 8 frames'),
        (['--reject', 'mad'], ': --reject mad -s 4.4 -i 1; 8 frames'),
        (['--reject', 'gesd'], ': --reject gesd --gesd 0.03:0.3; 8 frames'),
        (['--reject', 'none', '--combine', 'median'], ': --reject none --combine median; 8 frames'),
    ],
)
def test_description_is_a_command_line_that_works(tmp_path, args, recorded):
    """ImageDescription records the options that apply, so that they can be
    given again: no -s or --center for a method that refuses them."""
    paths = write_night(tmp_path, night(8, (6, 7), drift=0.0))
    out = tmp_path / 'out.tif'
    assert imgstack.main(['-q', *args, str(out), *paths]) == 0
    with tifffile.TiffFile(out) as tif:
        description = tif.pages.first.tags['ImageDescription'].value
    assert description.endswith(recorded), description
    options = description.split(': ', 1)[1].rsplit(';', 1)[0].split()
    assert imgstack.main(['-q', '-f', *options, str(out), *paths]) == 0
