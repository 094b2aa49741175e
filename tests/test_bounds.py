# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""A value exactly on a bound is kept, on every path (README, What is
computed): for integer data exactly, for floats within the stated
tolerance (``imgstack.FLOAT_TOLERANCE``).

The reference here is exact: Python integers and ``fractions.Fraction``,
the factors taken as the floats they are (exact binary fractions), d
compared squared (sigma: ``(x - c)^2 <= H^2 d^2``, no square root).  Each
point is run through every path that `_clip_points` chooses from: the fast
path (`_clip_chunk`, with or without a ``valid`` mask), the sorted path
(`_clip_sorted`: 8/16-bit integers around the median) and the window core
(`_Chunk`, asked for the mask), and with the frame counts (the fast
path's values beside the window core's counts); in uint8, uint16, int16
(negative values), int32, float32 and float64.  The float copies hold
small integers: no value lies within the tolerance of a bound without
being on it, so the exact reference holds for them too.

Winsorized (d from an iteration with square roots) and GESD (a t
quantile) are decided within rounding only; tests/test_rejections.py
holds them to its float reference with its ``near`` allowance, and they
are not compared here.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import imgstack

MAD_SCALE = Fraction(imgstack.MAD_SCALE)
DTYPES = ['uint8', 'uint16', 'int16', 'int32', 'float32', 'float64']


# -- the exact reference: one point, Python integers and fractions -----------


def _median(v: list[int] | list[Fraction]) -> Fraction:
    s = sorted(v)
    k = len(s)
    return Fraction(s[(k - 1) // 2] + s[k // 2], 2)


def _between(x: int, c: Fraction, low2: Fraction, high2: Fraction) -> bool:
    """c - sqrt(low2) <= x <= c + sqrt(high2), exactly."""
    gap = x - c
    return gap * gap <= (high2 if gap > 0 else low2)


def exact_pass(v: list[int], method: imgstack.Method) -> tuple[list[bool], list[bool]]:
    """One pass on the kept values v: (kept, rejected low) flags, in the
    order of v (linear: v sorted, ranks 1..k)."""
    k = len(v)
    low, high = Fraction(method.sigma_low), Fraction(method.sigma_high)
    if method.reject == 'sigma':
        total, squares = sum(v), sum(x * x for x in v)
        c = Fraction(total, k) if method.center == 'mean' else _median(v)
        var = Fraction(k * squares - total * total, k * k)
        keep = [_between(x, c, low * low * var, high * high * var) for x in v]
        return keep, [not f and x < c for f, x in zip(keep, v)]
    if method.reject in ('mad', 'percentile'):
        c = _median(v)
        if method.reject == 'mad':
            lo = c - low * MAD_SCALE * _median([abs(x - c) for x in v])
            hi = c + high * MAD_SCALE * _median([abs(x - c) for x in v])
        else:
            p_low, p_high = (Fraction(p) for p in method.percentile)
            lo, hi = c - p_low * c, c + p_high * c
        return [lo <= x <= hi for x in v], [x < lo for x in v]
    assert method.reject == 'linear'
    y = sorted(v)
    if k <= 2:
        return [True] * k, [False] * k
    r_mean, y_mean = Fraction(k + 1, 2), Fraction(sum(y), k)
    slope = (sum((r - r_mean) * (x - y_mean) for r, x in enumerate(y, 1))
             / sum((r - r_mean) ** 2 for r in range(1, k + 1)))
    res = [x - y_mean - slope * (r - r_mean) for r, x in enumerate(y, 1)]
    d = sum(abs(e) for e in res) / k
    return [-low * d <= e <= high * d for e in res], [e < -low * d for e in res]


def exact_point(values: list[int], ok: list[bool],
                method: imgstack.Method) -> tuple[list[int], int, int]:
    """The kept values (sorted), the values rejected and those rejected low."""
    kept = sorted(x for x, f in zip(values, ok) if f)
    low = rejected = 0
    passes = method.passes
    for _ in range(passes):
        if not kept:
            break
        keep, under = exact_pass(kept, method)
        if method.reject == 'linear':
            kept = sorted(kept)
        rejected += keep.count(False)
        low += sum(under)
        done = all(keep)
        kept = sorted(x for x, f in zip(kept, keep) if f)
        if done:
            break
    return kept, rejected, low


def exact_result(values: list[int], ok: list[bool], kept: list[int]) -> float:
    use = kept or [x for x, f in zip(values, ok) if f] or values
    return float(Fraction(sum(use), len(use)))


# -- every path ---------------------------------------------------------------


def paths(x: np.ndarray, valid: np.ndarray | None, method: imgstack.Method):
    """(name, Clipped) of every path that computes these points."""
    yield 'plain', imgstack._clip_points(x, valid, method)
    yield 'mask', imgstack._clip_points(x, valid, method, want_mask=True)
    yield 'counts', imgstack._clip_points(x, valid, method, frame_counts=True)
    if valid is None:  # a mask that keeps every value: off the sorted path
        yield 'valid', imgstack._clip_points(x, np.ones(x.shape, bool), method)
    if method.reject != 'sigma' or method.combine != 'mean' or valid is not None:
        return
    # the fast path on its own, as clip_points hands it a chunk (clip_points
    # gives the points with no valid value their plain mean afterwards)
    result, rejected, low, _ = imgstack._clip_chunk(
        x, valid, method.sigma_low, method.sigma_high, method.passes, method.center)
    yield 'chunk', imgstack._Clipped(result, rejected, low, 0)


def check_points(values: np.ndarray, ok: np.ndarray | None, method: imgstack.Method,
                 dtypes=DTYPES) -> None:
    """values (n, points) of small integers: every path and type against the reference."""
    n, count = values.shape
    mask = np.ones(values.shape, bool) if ok is None else ok
    for dtype in dtypes:
        shift = -3 if dtype == 'int16' else 0  # negative values too
        v = values + shift
        want = [exact_point(v[:, j].tolist(), mask[:, j].tolist(), method) for j in range(count)]
        for name, got in paths(v.astype(dtype), ok, method):
            where = f'{dtype} {name} {method}'
            for j, (kept, rejected, low) in enumerate(want):
                point = f'{where}: point {v[:, j].tolist()} valid {mask[:, j].astype(int).tolist()}'
                assert (got.rejected[j], got.low[j]) == (rejected, low), (
                    f'{point}: rejected {got.rejected[j]} (low {got.low[j]}), '
                    f'exact {rejected} (low {low}), kept {kept}')
                assert got.result[j] == pytest.approx(
                    exact_result(v[:, j].tolist(), mask[:, j].tolist(), kept), rel=1e-12,
                    abs=1e-12), point
                if got.kept is not None:
                    assert sorted(v[got.kept[:, j], j].tolist()) == kept, point
            if got.frame_low is not None:
                assert got.frame_low.sum() == sum(w[2] for w in want), where
                assert got.frame_high.sum() == sum(w[1] - w[2] for w in want), where


# -- hand vectors: values exactly on a bound ---------------------------------

# (values, method, kept): each a point whose bound falls on a value; derived
# with exact arithmetic in the comments
HAND = [
    # 2 5 5 5 5: mean 4.4, d^2 = (5 * 104 - 22^2) / 25 = 1.44, d = 1.2: the
    # low bound 4.4 - 2 * 1.2 = 2 is the 2 (float64 put it at 2.0000000000000004)
    ([2, 5, 5, 5, 5], dict(sigma_low=2.0, sigma_high=2.0), '11111'),
    ([2, 5, 5, 5, 5], dict(sigma_low=1.9, sigma_high=2.0), '01111'),
    # 0 0 0 0 5: mean 1, d = 2: 1 + 2 * 2 = 5 (a lone value is sqrt(k - 1) d out)
    ([0, 0, 0, 0, 5], dict(sigma_low=2.0, sigma_high=2.0), '11111'),
    ([0, 0, 0, 0, 5], dict(sigma_low=2.0, sigma_high=1.9375), '11110'),
    # median centre 0, d = 2: 0 + 2.5 * 2 = 5, and mirrored below
    ([0, 0, 5, 0, 0], dict(center='median', sigma_low=2.5, sigma_high=2.5), '11111'),
    ([5, 5, 0, 5, 5], dict(center='median', sigma_low=2.5, sigma_high=2.5), '11111'),
    ([0, 0, 5, 0, 0], dict(center='median', sigma_low=2.5, sigma_high=2.375), '11011'),
    # linear fit, k = 5: sorted 0 1 3 3 4 on ranks 1..5 fit y = -0.8 + r, the
    # residuals -0.2 -0.2 0.8 -0.2 -0.2 sum to 0, d = 0.32: the lone positive
    # one is 2.5 d (k / 2), on the bound at -s 2.5.  0 1 2 4 4: y = -1.1 + 1.1 r,
    # residuals 0 -0.1 -0.2 0.7 -0.4, d = 0.28: 0.7 = 2.5 d
    ([3, 0, 4, 1, 3], dict(reject='linear', sigma_low=2.5, sigma_high=2.5), '11111'),
    ([4, 2, 0, 4, 1], dict(reject='linear', sigma_low=2.5, sigma_high=2.5), '11111'),
    ([3, 0, 4, 1, 3], dict(reject='linear', sigma_low=2.5, sigma_high=2.4375), None),
    # percentile: m = 4, 4 -+ 0.25 * 4 = 3, 5; m = 10, 10 -+ 0.5 * 10 = 5, 15
    ([4, 4, 5, 3, 4], dict(reject='percentile', percentile=(0.25, 0.25)), '11111'),
    ([10, 10, 15, 10, 5], dict(reject='percentile', percentile=(0.5, 0.5)), '11111'),
    ([10, 10, 15, 10, 5], dict(reject='percentile', percentile=(0.5, 0.4375)), '11011'),
]


@pytest.mark.parametrize(('values', 'settings', 'kept'), HAND,
                         ids=[f'{h[1].get("reject", "sigma")}-{i}' for i, h in enumerate(HAND)])
def test_values_on_a_bound_are_kept_on_every_path(values, settings, kept):
    method = imgstack.Method(**{'iterations': 1, **settings})
    x = np.array(values, np.int64)[:, None]
    if kept is not None:  # the reference agrees with the hand computation
        want = exact_point(values, [True] * len(values), method)[0]
        assert want == sorted(v for v, f in zip(values, kept) if f == '1')
    # one point, and among others (the vectorized steps)
    check_points(x, None, method)
    wide = np.concatenate([x, np.arange(3 * len(values)).reshape(len(values), 3) % 4], axis=1)
    check_points(wide, None, method)
    check_points(wide, np.ones(wide.shape, bool), method)


def test_the_old_rounding_cases_are_on_their_bounds():
    # the cases float64 used to decide: the bound is exactly the value
    assert imgstack._exact_bounds([2, 5, 5, 5, 5], 'sigma', 'mean', 2.0, 2.0) == (2, 6)
    assert imgstack._exact_bounds([2, 5, 5, 5, 5], 'sigma', 'mean', 2.0 + 2 ** -40, 2.0)[0] == 2
    assert imgstack._exact_bounds([2, 5, 5, 5, 5], 'sigma', 'mean', 2.0 - 2 ** -40, 2.0)[0] == 3
    lows, outs = imgstack._exact_linear([0, 1, 3, 3, 4], 2.5, 2.5)
    assert not any(outs)
    assert imgstack._exact_linear([0, 1, 3, 3, 4], 2.5, 2.5 - 2 ** -40)[1] == [
        False, False, True, False, False]


def test_float_values_within_the_tolerance_are_kept():
    # float data: a value within FLOAT_TOLERANCE (|c| + d) of a bound counts
    # as on it.  m = 10, d = |m|: 15 + 20 tol is on the bound, 15 + 60 tol out
    tol = imgstack.FLOAT_TOLERANCE
    method = imgstack.Method(reject='percentile', percentile=(0.5, 0.5))
    for above, rejected in ((0, 0), (10 * tol, 0), (60 * tol, 1)):
        x = np.array([[10.0], [10.0], [15.0 + above], [10.0], [5.0]])
        for name, got in paths(x, None, method):
            assert got.rejected[0] == rejected, (above, name)
    lo, hi = imgstack._tolerant(np.array([-3.0]), np.array([5.0]), np.array([1.0]),
                                np.array([2.0]))
    assert (lo, hi) == (-3.0 - 3 * tol, 5.0 + 3 * tol)


# -- small-integer stacks full of ties ----------------------------------------

VALUES = st.sampled_from([0, 1, 2, 3, 4] * 8 + [0, 9, 40, 200])
FACTORS = {
    'sigma': [1.0, 1.5, 2.0, 2.5, 3.0],
    'mad': [1.0, 1.5, 2.0, 3.0],
    'linear': [1.25, 1.5, 2.0, 2.5],
}


@st.composite
def stacks(draw):
    n = draw(st.integers(2, 12))
    values = draw(hnp.arrays(np.int64, (n, 16), elements=VALUES))
    ok = draw(st.none() | hnp.arrays(np.bool_, (n, 16), elements=st.sampled_from(
        [True] * 9 + [False])))
    return values, ok


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks(), data=st.data())
@pytest.mark.parametrize('kind', ['sigma-mean', 'sigma-median', 'mad', 'linear', 'percentile'])
def test_every_path_is_exact_on_tie_heavy_stacks(kind, stack, data):
    values, ok = stack
    reject, _, center = kind.partition('-')
    if reject == 'percentile':
        fractions = st.sampled_from([0.0, 0.25, 0.5, 0.75])
        method = imgstack.Method(reject=reject, percentile=(data.draw(fractions),
                                                            data.draw(fractions)))
    else:
        factor = st.sampled_from(FACTORS[reject])
        method = imgstack.Method(
            reject=reject, center=center or 'mean', sigma_low=data.draw(factor),
            sigma_high=data.draw(factor), iterations=data.draw(st.integers(1, 4)))
    check_points(values, ok, method)
