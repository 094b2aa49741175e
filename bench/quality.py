# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Quality bench (issue 27): how good is each rejection's image, on generated
frames whose truth is known, and which default factors make a good image
without expert knowledge.

Usage::

    python bench/quality.py                 # every table and the calibration
    python bench/quality.py --quick         # smaller sets, no calibration search
    python bench/quality.py --only noise    # one part: sets, select, noise, guide or calibrate
    python bench/quality.py --write DIR     # write the sets as TIFF files and stop
    python bench/quality.py --cli           # stack through the command, not stack_array

The sets
--------
Deterministic (seeded numpy generators).  Each keeps its *clean* frames (the
same frames, same noise, without the outliers), the noiseless truth and, per
outlier kind and frame, the outlier's size in sigmas of the frame's noise.

``night`` (uint16, gray)
    A drifting sky (level rising with the moon, a gradient that turns),
    thin clouds on a quarter of the frames (signal x0.55-0.8, background
    raised), Gaussian stars of which a few saturate at 65535 in every frame,
    Poisson-like noise (about 33 ADU on the sky).  Outlier kinds: ``hot``
    pixels (fixed on the sensor, so they move with each frame's registration
    shift), ``cosmic`` rays (1-4 pixel streaks), a ``trail+`` (bright
    satellite, 4000 ADU) and a ``trail-`` (faint, 6 sky sigma) in one frame
    each, and ``border``: the columns and rows of 0 that each frame's shift
    leaves on its own edges.
``tripod`` (uint8 RGB)
    A still scene with multiplicative exposure flicker; ``people`` (blobs
    of various colours, darker and brighter than the scene) walk through,
    one stands still for a while: at any pixel people are in at most 40% of
    the frames.
``micro`` (float32, gray)
    Cells at low counts (Poisson), NaN outside the cells, photobleaching
    (the signal decays to 40%), ``spots``: transient bright spots in one or
    two frames.
``noise``
    Pure Gaussian noise, 1000 +- 30, float64, at 8, 15, 30 and 100 frames.
``select`` (uint16, gray: a night with clouds and smeared frames)
    For ``--select`` and the frame weights, which work on files: always
    stacked through the command (TIFF copies), every run with ``--normalize
    additive`` and the default rejection.  30 frames of 384x384, registered
    (no borders), the night's drifting sky; about 590 stars (Gaussian PSF
    integrated over the pixels, FWHM 2.5-3.0 px, its own in each frame:
    the seeing; peaks of 40 to 20000 ADU, a few saturated even through
    clouds and smeared).  5 ``cloudy`` frames (c): the stars x0.5-0.7, the
    background 500-1200 ADU higher, so noisier; 2 ``smeared`` frames (s):
    the stars trailed evenly over 5-8 px in one direction (imgstack
    measures FWHM ~4); the 23 others ``clear``; frame 0, imgstack's
    reference of transparency, clear.  Hot pixels, cosmic rays as on the
    night, a bright trail in a clear frame.
``flats`` (uint16, gray; the ``guide`` part)
    15 flat frames: a smooth vignetting (1 at the centre, ~0.66 in the
    corners) times a pixel response non-uniformity of 1% (fixed across the
    frames) times a few soft dust-mote shadows (3-15% deep, fixed): the
    signal to keep; at a lamp level of 30000 ADU +-10% between frames,
    photon noise (about 170 ADU).  Outlier kinds: ``hot`` pixels that blink
    (on in 1 or 2 frames each: one on in every flat is no stack's to
    reject) and ``cosmic`` rays as on the night.  The truth is the pattern
    at the mean level, the ideal average the mean of the clean frames each
    scaled to the mean level.

The guide part
--------------
README's "What to use for what you have", the rows not measured by the
sets: "few lights (3 to 7)", the night's generator at 3, 5 and 7 frames
with ``--normalize additive --valid-range 1:`` and each rejection a user
might pick (a summary gives each run's noise at each count and the worst
of each kind over the counts; at 3 frames an outlier in 2 frames, or a
pixel that 2 frames only cover, is no rejection's to remove); "flats", the
flats set with ``--normalize multiplicative`` and each rejection, and
without normalization.  The columns are the sets' (the ideal as there).

The metrics
-----------
``noise``
    The result's noise over the ideal average's: noise is the robust
    standard deviation (1.4826 MAD) of the residual of the image against the
    noiseless truth, in flat, clean regions, after a least-squares fit of
    ``a*truth + b + c*x + d*y`` (normalization may rescale and tilt the
    background legitimately); the ideal average is the plain mean of the
    clean frames (registration borders left out).  On pure noise: the
    standard deviation of the result over that of the plain mean (a uniform
    offset, as asymmetric factors give, is not counted).
outlier columns (``hot``, ``cosmic``, ``trail+``, ``trail-``, ``border``,
``people``, ``spots``)
    ``mean/share``: over the pixels where that kind exceeds 3 sigmas of its
    frame's noise in some frame (and no other kind exceeds 1 sigma in any
    frame; star pixels left out on the night), the mean of ``|result -
    ideal|`` in units of the result's noise, and the share of those pixels
    more than 1 result sigma off.  Here the ideal is the clean frames
    stacked with no rejection and the run's normalization and weights (what
    the run would give without outliers).  A kind is *left* (``!``) when its
    mean is 1 or more.  ``border`` counts every pixel that some frame's
    shift left at 0; at the outermost columns that is up to 5 frames in 11,
    more than a rejection can be asked to remove (``--valid-range 1:`` is
    the cure), so it is reported, not a calibration criterion.
``clean`` and ``stars`` (night)
    The same on pixels that no outlier touches: the flat sky (the floor that
    a rejection's own noise sets) and the unsaturated stars, whose values
    differ between clear and cloudy frames by more than the noise unless the
    normalization rescales (additive-scale): a rejection then removes the
    cloudy frames' stars, which is signal, not an outlier.
``core``
    Saturated star cores: the share of their pixels whose result is still
    saturated (rounds to 65535), and the lowest result there.
``rej%``
    Share of values rejected (valid or not: the night's zeros count).

The runs: each method at its current defaults (read by the command's own
parser, so a change of defaults shows here), the same with the set's
normalization (``+norm``: additive for the night, multiplicative for the
others), every setting README.rst recommends, and the PROPOSED defaults.

The select part's metrics
    The ideal is what a careful user stacks: the mean of the clear (and
    sharp) frames' clean versions.  ``noise``: as above, over the ideal's
    (a run's rejection costs its own few percent; more frames than the
    ideal's 23 may give less).  ``fwhm`` and ``transp``:
    `imgstack.frame_metrics` of the result's central 256x256 pixels
    (saturated ones not valid), as the command measures a frame; the
    transparency against the ideal's stars (1: their flux; the cloudy
    frames lower it).  ``psnr`` = transp / noise x FWHM(ideal) / FWHM: the
    SNR of a faint star's PSF-fitted flux on the sky noise over the ideal's,
    the figure to rank by.  ``hot``, ``cosmic``, ``trail``: mean
    ``|result - ideal|`` / result sigma as the outlier columns above, the
    ideal here being the run's own frames (those it kept) clean, with its
    weights (read from its ``--frame-stats``), no rejection.  ``bad w``:
    the share of the weight on cloudy and smeared frames.  ``c/s/clear``
    and ``dropped``: how many of each, and which, ``--select`` dropped.
    Two reference rows: the ideal, and the plain mean of all 30 clean
    frames.

Calibration
-----------
For each method, the factors that keep the result's noise on pure Gaussian
noise at 8, 15, 30 and 100 frames at most 1.03 times a plain mean's (minmax
1:1: 1.05), searched by bisection on a 0.05 grid (gesd: alpha), then checked
on the sets (night at 8, 15 and 30 frames with ``--normalize additive``,
tripod and micro with ``--normalize multiplicative``): the worst mean of
each kind.  ``linear*`` is linear fit with its spread d multiplied by
sqrt(pi/2) = 1.2533 (the mean absolute deviation of Gaussian data is
0.7979 sigma), emulated through the library with factors x 1.2533; its
factors are given in the proposed units.  The hot pixels of the night are
more than 10 px apart on the sensor and every frame has its own dither
shift, so each evaluated hot pixel is one outlier in one frame.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import imgstack  # noqa: E402  (the repository's, beside bench/)

LINEAR_CONSTANT = math.sqrt(math.pi / 2)
"""What makes linear fit's spread (a mean absolute residual) a Gaussian sigma."""

NOISE_TARGET = 1.03
MINMAX_TARGET = 1.05
NOISE_FRAMES = (8, 15, 30, 100)
DETECTABLE = 3.0
"""An outlier pixel is evaluated where it exceeds this many sigmas of its frame's noise."""

MAD = imgstack.MAD_SCALE


# --------------------------------------------------------------------------
# the sets


@dataclasses.dataclass
class Scene:
    """Generated frames and what is known about them."""

    name: str
    frames: np.ndarray            # (n, H, W[, C]) as stacked
    clean: np.ndarray             # the same without outliers, data everywhere
    present: np.ndarray | None    # (n, H, W[, 1]) False on registration borders
    truth: np.ndarray             # float64 (H, W[, C]): mean of the noiseless clean frames
    kinds: dict[str, np.ndarray]  # kind -> (n, H, W) float32: |added| / the frame's noise
    flat: np.ndarray              # (H, W) bool: where noise is measured
    cores: np.ndarray | None      # (H, W) bool: saturated in every frame
    channel_axis: int | None
    normalize: str                # the set's natural normalization
    limit: float | None = None    # saturation
    stars: np.ndarray | None = None  # (H, W) bool: star pixels (outlier kinds skip them)
    levels: np.ndarray | None = None  # (n,) the frames' known levels: the ideal is normalized

    @property
    def n(self) -> int:
        return self.frames.shape[0]

    def touched(self) -> np.ndarray:
        """(H, W): pixels where any kind exceeds 1 noise sigma in some frame."""
        out = np.zeros(self.flat.shape, bool)
        for m in self.kinds.values():
            out |= (m > 1).any(axis=0)
        return out

    def exclusive(self) -> dict[str, np.ndarray]:
        """Per kind, the output pixels where that kind exceeds `DETECTABLE`
        frame sigmas in some frame and no other kind exceeds 1."""
        anys = {k: (m > 1).any(axis=0) for k, m in self.kinds.items()}
        inside = np.isfinite(self.truth)
        if inside.ndim == 3:
            inside = inside.all(axis=-1)
        out = {}
        for k, m in anys.items():
            others = np.zeros_like(m)
            for j, o in anys.items():
                if j != k:
                    others |= o
            sel = (self.kinds[k] > DETECTABLE).any(axis=0) & ~others & inside
            if self.cores is not None:
                sel &= ~self.cores
            if self.stars is not None:
                sel &= ~self.stars
            out[k] = sel
        return out


def _rng(name: str, n: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, sum(map(ord, name)), n])


def _gauss_line(h: int, w: int, rng: np.random.Generator, width: float) -> np.ndarray:
    """Profile (peak 1) of a straight trail across an h x w image."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = rng.uniform(0.15, 1.4) * rng.choice([-1, 1])
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    dist = (xx - cx) * math.sin(angle) - (yy - cy) * math.cos(angle)
    return np.exp(-0.5 * (dist / width) ** 2)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, axis=-2), dx, axis=-1)
    return out


def _hot_spots(rng: np.random.Generator, h: int, w: int,
               size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hot pixels fixed on the sensor, more than 10 px apart (so that two
    never meet at one place of the registered frames), and their values."""
    nhot = size * size // 700
    spots: list[tuple[int, int]] = []
    for _ in range(50 * nhot):
        if len(spots) == nhot:
            break
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        if all(max(abs(y - a), abs(x - b)) > 10 for a, b in spots):
            spots.append((y, x))
    hot_y, hot_x = np.array(spots).T
    return hot_y, hot_x, np.exp(rng.uniform(math.log(2000), math.log(40000), len(spots)))


def _hot_and_cosmic(rng: np.random.Generator, shape: tuple[int, int], size: int,
                    shift: tuple[int, int], hot_y: np.ndarray, hot_x: np.ndarray,
                    hot_amp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame's hot pixels (the sensor's, moved by the frame's
    registration shift) and cosmic rays (short streaks), as added values."""
    h, w = shape
    hot = np.zeros((h, w))
    dy, dx = shift
    y, x = hot_y + dy, hot_x + dx
    ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    np.add.at(hot, (y[ok], x[ok]), hot_amp[ok])
    cos = np.zeros((h, w))
    for _ in range(rng.poisson(size * size / 2000)):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        length = rng.integers(1, 5)
        step = rng.choice([(0, 1), (1, 0), (1, 1), (1, -1)])
        amp = math.exp(rng.uniform(math.log(300), math.log(30000)))
        for t in range(length):
            py, px = cy + t * step[0], cx + t * step[1]
            if 0 <= py < h and 0 <= px < w:
                cos[py, px] += amp * rng.uniform(0.5, 1.0)
    return hot, cos


def night(n: int = 16, size: int = 256, seed: int = 27) -> Scene:
    """uint16 frames of a drifting night (see the module's docstring)."""
    rng = _rng('night', n, seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # stars, registered: the same in every frame
    stars = np.zeros((h, w))
    count = size * size // 400
    peaks = np.exp(rng.uniform(math.log(40), math.log(20000), count))
    bright = max(4, size // 48)
    peaks[:bright] = rng.uniform(2.5e5, 8e5, bright)
    for peak in peaks:
        sy, sx = rng.uniform(8, h - 8), rng.uniform(8, w - 8)
        s = rng.uniform(1.3, 2.0)
        r = int(5 * s) + 1
        y0, y1 = max(int(sy) - r, 0), min(int(sy) + r + 1, h)
        x0, x1 = max(int(sx) - r, 0), min(int(sx) + r + 1, w)
        py, px = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        stars[y0:y1, x0:x1] += peak * np.exp(-((py - sy) ** 2 + (px - sx) ** 2) / (2 * s * s))
    # per frame: sky, gradient, clouds, registration shift
    level = 800 + 700 * (np.arange(n) / max(n - 1, 1)) ** 2 + rng.normal(0, 20, n)
    theta = rng.uniform(0, 2 * math.pi) + np.linspace(0, 1.2, n)
    slope = rng.uniform(20, 120, n)
    cloudy = np.zeros(n, bool)
    cloudy[rng.choice(np.arange(1, n), max(1, n // 4), replace=False)] = True
    transparency = np.where(cloudy, rng.uniform(0.55, 0.8, n), 1.0)
    haze = np.where(cloudy, rng.uniform(200, 500, n), 0.0)
    # dithered: every frame at its own position (0, 0 for the reference), so
    # that a hot pixel is in one frame at each place (up to 121 frames)
    grid = np.array([(y, x) for y in range(-5, 6) for x in range(-5, 6) if (y, x) != (0, 0)])
    shifts = np.vstack([[0, 0], grid[rng.permutation(len(grid))[:n - 1]]]) if n <= 121 \
        else rng.integers(-5, 6, (n, 2))
    # hot pixels: fixed on the sensor
    # hot pixels: fixed on the sensor, more than 10 px apart, so that two
    # never meet at one place of the registered frames
    hot_y, hot_x, hot_amp = _hot_spots(rng, h, w, size)
    k_bright, k_faint = rng.choice(n, 2, replace=False)
    limit = 65535.0
    frames = np.empty((n, h, w), np.uint16)
    clean = np.empty((n, h, w), np.uint16)
    present = np.ones((n, h, w), bool)
    kinds = {k: np.zeros((n, h, w), np.float32) for k in ('hot', 'cosmic', 'trail+', 'trail-',
                                                         'border')}
    ideal_sum = np.zeros((h, w))
    noiseless_all = np.empty((n, h, w), bool)
    for i in range(n):
        grad = slope[i] * ((xx - w / 2) * math.cos(theta[i])
                           + (yy - h / 2) * math.sin(theta[i])) / w
        model = level[i] + haze[i] + grad + transparency[i] * stars
        sd = np.sqrt(model + 25.0)
        noisy = model + rng.standard_normal((h, w)) * sd
        ideal_sum += np.minimum(model, limit)
        noiseless_all[i] = model >= limit + 5 * math.sqrt(limit)
        clean[i] = np.rint(np.clip(noisy, 0, limit))
        hot, cos = _hot_and_cosmic(rng, (h, w), size, shifts[i], hot_y, hot_x, hot_amp)
        kinds['hot'][i], kinds['cosmic'][i] = hot / sd, cos / sd
        add = hot + cos
        dy, dx = shifts[i]  # the registration shift: borders below
        if i == k_bright:
            trail = 4000 * _gauss_line(h, w, rng, 1.2)
            kinds['trail+'][i] = trail / sd
            add += trail
        if i == k_faint:
            trail = 6 * math.sqrt(level[i] + haze[i] + 25) * _gauss_line(h, w, rng, 1.0)
            kinds['trail-'][i] = trail / sd
            add += trail
        dirty = np.rint(np.clip(noisy + add, 0, limit))
        # registration border: the frame's content moved by (dy, dx)
        border = np.zeros((h, w), bool)
        if dy > 0:
            border[:dy] = True
        elif dy < 0:
            border[dy:] = True
        if dx > 0:
            border[:, :dx] = True
        elif dx < 0:
            border[:, dx:] = True
        dirty[border] = 0
        present[i] = ~border
        kinds['border'][i] = np.where(border, np.inf, 0)
        frames[i] = dirty
    for k in ('hot', 'cosmic', 'trail+', 'trail-'):
        kinds[k][~present] = 0
    cores = noiseless_all.all(axis=0)
    anything = np.zeros((h, w), bool)
    for m in kinds.values():
        anything |= (m > 1).any(axis=0)
    flat = (stars < 2) & ~_dilate(anything, 1)
    flat[:6] = flat[-6:] = False
    flat[:, :6] = flat[:, -6:] = False
    on_star = transparency.min() * stars > math.sqrt(level.min() + 25)
    return Scene('night', frames, clean, present, ideal_sum / n, kinds, flat, cores, None,
                 'additive', limit, on_star)


PALETTE = np.array([
    (200, 40, 40), (25, 25, 35), (40, 60, 180), (235, 235, 230), (200, 150, 120),
    (50, 140, 60), (230, 200, 40), (120, 60, 140), (90, 90, 90),
], float)


def tripod(n: int = 10, height: int = 144, width: int = 192, seed: int = 27) -> Scene:
    """uint8 RGB burst from a tripod with people walking through."""
    rng = _rng('tripod', n, seed)
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # the scene: a smooth sky-to-ground gradient and soft blocks
    scene = np.empty((h, w, 3))
    scene[..., 0] = 90 + 60 * yy / h
    scene[..., 1] = 110 + 40 * xx / w
    scene[..., 2] = 170 - 90 * yy / h
    for _ in range(5):
        y0, x0 = rng.uniform(0, h * 0.8), rng.uniform(0, w * 0.8)
        bh, bw = rng.uniform(20, 60), rng.uniform(20, 70)
        colour = rng.uniform(30, 220, 3)
        a = (1 / (1 + np.exp(-(yy - y0) / 1.5)) * 1 / (1 + np.exp((yy - y0 - bh) / 1.5))
             * 1 / (1 + np.exp(-(xx - x0) / 1.5)) * 1 / (1 + np.exp((xx - x0 - bw) / 1.5)))
        scene = scene * (1 - a[..., None]) + colour * a[..., None]
    flicker = np.clip(1 + rng.normal(0, 0.04, n), 0.9, 1.1)
    cap = int(0.4 * n)

    def body(cy: float, cx: float, bh: float, bw: float) -> np.ndarray:
        torso = ((yy - cy) / (bh / 2)) ** 2 + ((xx - cx) / (bw / 2)) ** 2
        head = ((yy - (cy - bh / 2 - bw * 0.3)) ** 2 + (xx - cx) ** 2) / (bw * 0.32) ** 2
        return np.clip((1.0 - np.minimum(torso, head)) * 6, 0, 1)

    # walkers: (row, speed, size, colour, first frame); one who stands still
    people = []
    for j in range(max(4, n // 2)):
        bh = rng.uniform(40, 55)
        bw = rng.uniform(14, 20)
        speed = rng.uniform(0.8, 1.3) * bw * rng.choice([-1, 1])
        start = rng.uniform(-0.1, 1.1) * w
        people.append(dict(cy=rng.uniform(bh / 2 + 12, h - bh / 2), x0=start, v=speed, bh=bh,
                           bw=bw, colour=PALETTE[j % len(PALETTE)] + rng.normal(0, 8, 3)))
    stand = dict(cy=h * 0.55, x0=w * 0.6, v=0.0, bh=50.0, bw=18.0, colour=PALETTE[1].copy())
    stand_frames = set(range(1, 1 + cap))
    cover = np.zeros((h, w), int)
    alphas = np.zeros((n, h, w))
    colours = np.zeros((n, h, w, 3))
    for i in range(n):
        plan = [(p, i) for p in people]
        if i in stand_frames:
            plan.insert(0, (stand, 0))
        for p, t in plan:
            a = body(p['cy'], p['x0'] + p['v'] * t, p['bh'], p['bw'])
            touched = a > 0
            if not touched.any():
                continue
            new = touched & (alphas[i] == 0)
            if (cover[new] + 1 > cap).any():
                continue
            cover += new
            take = a > alphas[i]
            colours[i][take] = p['colour']
            alphas[i] = np.maximum(alphas[i], a)
    frames = np.empty((n, h, w, 3), np.uint8)
    clean = np.empty_like(frames)
    kinds = {'people': np.zeros((n, h, w), np.float32)}
    for i in range(n):
        model = flicker[i] * scene
        sd = np.sqrt(4.0 + 0.03 * model)
        noise = rng.standard_normal(model.shape) * sd
        clean[i] = np.rint(np.clip(model + noise, 0, 255))
        a = alphas[i][..., None]
        dirty_model = flicker[i] * (scene * (1 - a) + colours[i] * a)
        frames[i] = np.rint(np.clip(dirty_model + noise, 0, 255))
        kinds['people'][i] = (np.abs(dirty_model - model) / sd).max(axis=-1)
    truth = scene * flicker.mean()
    flat = ~_dilate(cover > 0, 2)
    flat[:4] = flat[-4:] = False
    flat[:, :4] = flat[:, -4:] = False
    return Scene('tripod', frames, clean, None, truth, kinds, flat, None, 3, 'multiplicative')


def micro(n: int = 24, size: int = 160, seed: int = 27) -> Scene:
    """float32 microscope series: low counts, NaN outside the cells."""
    rng = _rng('micro', n, seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = np.zeros((h, w), bool)
    signal = np.zeros((h, w))
    for _ in range(max(4, size * size // 3600)):
        cy, cx = rng.uniform(20, h - 20), rng.uniform(20, w - 20)
        ry, rx = rng.uniform(14, 28), rng.uniform(14, 28)
        r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        cell = r2 <= 1
        inside |= cell
        nucleus = np.exp(-4 * (((yy - cy) / (0.45 * ry)) ** 2 + ((xx - cx) / (0.45 * rx)) ** 2))
        level = rng.uniform(8, 16)
        signal = np.where(cell, np.maximum(signal, level * (1 + 1.5 * nucleus)), signal)
    tau = n / math.log(2.5)
    bleach = np.exp(-np.arange(n) / tau)
    frames = np.empty((n, h, w), np.float32)
    clean = np.empty_like(frames)
    kinds = {'spots': np.zeros((n, h, w), np.float32)}
    iy, ix = np.nonzero(inside)
    carry: list[tuple[float, float, float, float]] = []
    for i in range(n):
        model = bleach[i] * signal
        sd = np.sqrt(model + 1.0)
        counts = rng.poisson(model) + rng.normal(0, 1.0, (h, w))
        clean[i] = np.where(inside, counts, np.nan)
        spots = np.zeros((h, w))
        todo = carry
        carry = []
        for _ in range(rng.poisson(3)):
            k = rng.integers(0, iy.size)
            spot = (float(iy[k]), float(ix[k]), rng.uniform(1.0, 1.6),
                    math.exp(rng.uniform(math.log(20), math.log(150))))
            todo.append(spot)
            if rng.random() < 0.2:  # some stay for a second frame
                carry.append(spot)
        for sy, sx, width, amp in todo:
            spots += amp * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * width * width))
        kinds['spots'][i] = np.where(inside, spots / sd, 0)
        frames[i] = np.where(inside, counts + rng.poisson(spots), np.nan)
    truth = np.where(inside, bleach.mean() * signal, np.nan)
    anything = (kinds['spots'] > 1).any(axis=0)
    flat = inside & ~_dilate(~inside, 2) & ~_dilate(anything, 1)
    return Scene('micro', frames, clean, None, truth, kinds, flat, None, None, 'multiplicative')


def flats(n: int = 15, size: int = 256, seed: int = 27) -> Scene:
    """uint16 flat frames: vignetting x PRNU x dust at a varying lamp level."""
    rng = _rng('flats', n, seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (0.5 * size) ** 2
    vignetting = 1 - 0.25 * r2 + 0.04 * r2 * r2          # 1 at the centre, ~0.66 at corners
    prnu = 1 + 0.01 * rng.standard_normal((h, w))       # fixed: signal
    dust = np.ones((h, w))
    for _ in range(max(3, size * size // 12000)):       # soft dust-mote shadows, fixed
        dy, dx = rng.uniform(0.1, 0.9, 2) * (h, w)
        radius, depth = rng.uniform(4, 12), rng.uniform(0.03, 0.15)
        rr = np.sqrt((yy - dy) ** 2 + (xx - dx) ** 2)
        dust *= 1 - depth / (1 + np.exp((rr - radius) / 1.0))
    pattern = vignetting * prnu * dust
    levels = 30000 * (1 + rng.uniform(-0.1, 0.1, n))   # the lamp
    # blinking (random-telegraph) hot pixels: on in 1 or 2 frames each; a hot
    # pixel on in every flat is the same in all of them, no stack can (or
    # should) reject it, the master dark's job
    nhot = size * size // 700
    hot_y, hot_x = rng.integers(0, h, nhot), rng.integers(0, w, nhot)
    hot_amp = np.exp(rng.uniform(math.log(2000), math.log(40000), nhot))
    on = np.zeros((n, nhot), bool)
    for j in range(nhot):
        on[rng.choice(n, rng.integers(1, 3), replace=False), j] = True
    limit = 65535.0
    frames = np.empty((n, h, w), np.uint16)
    clean = np.empty_like(frames)
    kinds = {k: np.zeros((n, h, w), np.float32) for k in ('hot', 'cosmic')}
    for i in range(n):
        model = levels[i] * pattern
        sd = np.sqrt(model + 25.0)
        noisy = model + rng.standard_normal((h, w)) * sd
        clean[i] = np.rint(np.clip(noisy, 0, limit))
        hot, cos = _hot_and_cosmic(rng, (h, w), size, (0, 0), hot_y[on[i]], hot_x[on[i]],
                                   hot_amp[on[i]])
        kinds['hot'][i], kinds['cosmic'][i] = hot / sd, cos / sd
        frames[i] = np.rint(np.clip(noisy + hot + cos, 0, limit))
    anything = np.zeros((h, w), bool)
    for m in kinds.values():
        anything |= (m > 1).any(axis=0)
    flat = ~_dilate(anything, 1)
    flat[:4] = flat[-4:] = False
    flat[:, :4] = flat[:, -4:] = False
    return Scene('flats', frames, clean, None, levels.mean() * pattern, kinds, flat, None, None,
                 'multiplicative', limit, None, levels)


def pure_noise(n: int, size: int = 200, seed: int = 27) -> np.ndarray:
    """n frames of Gaussian noise, 1000 +- 30, float64."""
    return _rng('noise', n, seed).normal(1000.0, 30.0, (n, size, size))


# --------------------------------------------------------------------------
# runs


@dataclasses.dataclass(frozen=True)
class Run:
    """A setting: command-line options, and the factor scale of linear*."""

    options: tuple[str, ...]
    label: str = ''
    linear_constant: bool = False

    @property
    def name(self) -> str:
        return self.label or (' '.join(self.options) or '(defaults)')

    def kwargs(self) -> dict:
        """`imgstack.stack_array`'s arguments, read by the command's parser."""
        args = imgstack._build_parser().parse_args([*self.options, 'out.tif', 'in.tif'])
        kw = {name: getattr(args, name) for name in (
            'reject', 'combine', 'sigma', 'sigma_low', 'sigma_high', 'iterations', 'center',
            'percentile', 'minmax', 'gesd', 'normalize', 'weights', 'valid_range')}
        kw = {k: v for k, v in kw.items() if v is not None}
        if self.linear_constant:
            for k in ('sigma', 'sigma_low', 'sigma_high'):
                if k in kw:
                    kw[k] *= LINEAR_CONSTANT
            kw.setdefault('sigma', 2.5 * LINEAR_CONSTANT)
        return kw

    def cli(self) -> list[str]:
        """The options as the command takes them today (linear* scaled)."""
        if not self.linear_constant:
            return list(self.options)
        kw = self.kwargs()
        out = []
        skip = False
        for o in self.options:
            if skip:
                skip = False
                continue
            if o in ('-s', '--sigma', '--sigma-low', '--sigma-high'):
                skip = True
                continue
            out.append(o)
        out += ['-s', f'{kw["sigma"]:.6g}']
        for k, flag in (('sigma_low', '--sigma-low'), ('sigma_high', '--sigma-high')):
            if k in kw:
                out += [flag, f'{kw[k]:.6g}']
        return out

    def plus(self, *options: str, label: str = '') -> Run:
        return Run(self.options + tuple(options),
                   label=label or f'{self.name} {" ".join(options)}',
                   linear_constant=self.linear_constant)


def R(text: str, label: str = '', linear_constant: bool = False) -> Run:
    return Run(tuple(text.split()), label, linear_constant)


CURRENT = [
    R('', 'sigma'), R('--center median', 'sigma --center median'), R('--reject mad'),
    R('--reject winsorized'), R('--reject linear'), R('--reject percentile'),
    R('--reject minmax'), R('--reject gesd'), R('--reject none'),
    R('--reject none --combine median'),
]
"""Every method at the command's current defaults."""

README = [
    R('-s 2.5 -i 3'),
    R('--reject percentile'),
    R('--reject winsorized -s 3'),
    R('--reject linear -s 2.5 --normalize additive'),
    R('--reject gesd --gesd 0.05:0.3'),
    R('--reject none --combine median'),
    R('--center median'),
    R('--normalize additive'),
    R('--normalize additive-scale --reject winsorized -s 3'),
    R('--normalize additive --weights noise'),
    R('--valid-range 1:65000'),
    R('--normalize additive --weights noise --valid-range 1:'),
]
"""The settings README.rst recommends (Use, Which rejection?, A night)."""

PROPOSED = [
    R('-s 2.5 -i 1', 'sigma -s 2.5 -i 1'),
    R('--sigma-low 3 --sigma-high 2.5 -i 1', 'sigma -L 3 -H 2.5 -i 1'),
    R('--center median -s 2.9 -i 5', 'sigma --center median -s 2.9'),
    R('--reject mad -s 4.4 -i 1'),
    R('--reject mad --sigma-low 5.6 --sigma-high 3.8 -i 1'),
    R('--reject winsorized -s 3.7 -i 1'),
    R('--reject linear -s 6.5 -i 1'),
    R('--reject linear -s 5.2 -i 1', 'linear* -s 5.2 -i 1', linear_constant=True),
    R('--reject percentile --percentile 0.2:0.1'),
    R('--reject minmax --minmax 1:1'),
    R('--reject gesd --gesd 0.03:0.3'),
    R('--reject gesd --gesd 0.03:0.4'),
]
"""The calibrated defaults, from `calibrate`'s output (noise pooled over 4
sets of 200x200 per frame count, seed 27), with a little margin:

- sigma: at the seed's -s 2.5 no number of passes meets 1.03 at 30 and 100
  frames (one pass costs 1.045 for many frames, `one_pass_cost`); -i 1 comes
  closest (1.036, 1.043); -L 3 -H 2.5 -i 1 meets it, but at 10 frames or
  fewer a lone low outlier is never rejected (sqrt(n-1) <= 3).
- sigma --center median: -s 2.9 (1.021 at 100); passes barely matter.
- mad, winsorized: one pass, -s 4.4 and -s 3.7 (1.028, 1.027 at 8 frames);
  more passes only add false rejections, so need larger factors.
- linear: the noise target needs -s 6.5 -i 1 (5.2 with d x sqrt(pi/2)), at
  which a lone outlier is never rejected below about 18 frames: no factor
  meets both targets.
- percentile: fractions of the level, not of the noise; unchanged.
- minmax 1:1 unchanged (1.035 at 8); gesd alpha 0.03 (1.024 at 8); a
  fraction of 0.4 would cost 1.042 at 8 frames.
"""


def stack(scene_frames: np.ndarray, run: Run, *, channel_axis: int | None,
          valid: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    r, rejected = imgstack.stack_array(scene_frames, channel_axis=channel_axis, valid=valid,
                                       **run.kwargs())
    return r, rejected


class CliStacker:
    """Stacks through the command on TIFF copies of the frames."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.written: dict[int, list[str]] = {}

    def __call__(self, frames: np.ndarray, run: Run, *, channel_axis: int | None,
                 valid: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        assert valid is None
        key = id(frames)
        if key not in self.written:
            d = self.workdir / f'set{len(self.written)}'
            self.written[key] = write_frames(frames, d, channel_axis)
        out = self.workdir / 'out.tif'
        stats = self.workdir / 'stats.csv'
        cmd = [sys.executable, str(REPO / 'imgstack.py'), '-q', '-f', '--frame-stats', str(stats),
               *run.cli(), str(out), *self.written[key]]
        subprocess.run(cmd, check=True)
        result = tifffile.imread(out).astype(np.float64)
        rejected = 0
        with open(stats, newline='') as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k.startswith(('rejected_low_', 'rejected_high_')) and '_pct_' not in k:
                        rejected += int(v)
        return result, rejected


Stacker = Callable[..., tuple[np.ndarray, int]]


def write_frames(frames: np.ndarray, folder: Path, channel_axis: int | None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f'frame_{i:03d}.tif'
        tifffile.imwrite(p, f, photometric='rgb' if channel_axis is not None else 'minisblack')
        paths.append(str(p))
    return paths


# --------------------------------------------------------------------------
# metrics


def robust_std(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(MAD * np.median(np.abs(v - np.median(v))))


def noise_of(scene: Scene, image: np.ndarray) -> float:
    """Robust std of the image against the truth in the flat region, after a
    fit of a*truth + b + c*x + d*y (per channel; RMS over channels)."""
    ys, xs = np.nonzero(scene.flat)
    image = image if image.ndim == 3 else image[..., None]
    truth = scene.truth if scene.truth.ndim == 3 else scene.truth[..., None]
    var = []
    for c in range(image.shape[-1]):
        t = truth[ys, xs, c]
        v = image[ys, xs, c]
        a = np.column_stack([t, np.ones_like(t), xs / 100.0, ys / 100.0])
        coef, *_ = np.linalg.lstsq(a, v, rcond=None)
        var.append(robust_std(v - a @ coef) ** 2)
    return math.sqrt(float(np.mean(var)))


@dataclasses.dataclass
class Row:
    name: str
    noise: float
    left: dict[str, tuple[float, float]]
    core: tuple[float, float] | None
    rejected: float
    seconds: float


def ideal(scene: Scene, run: Run | None) -> np.ndarray:
    """The clean frames stacked without rejection, with the run's
    normalization and weights (the plain mean for None; for a set of known
    levels, the flats, the mean of the clean frames each scaled to the mean
    level)."""
    if run is None and scene.levels is not None:
        scale = scene.levels.mean() / scene.levels
        return (scene.clean * scale.reshape((-1,) + (1,) * (scene.clean.ndim - 1))).mean(axis=0)
    kw = {} if run is None else {k: v for k, v in run.kwargs().items()
                                 if k in ('normalize', 'weights')}
    r, _ = imgstack.stack_array(scene.clean, reject='none', valid=scene.present,
                                channel_axis=scene.channel_axis, **kw)
    return r


def baselines(scene: Scene) -> list[tuple[str, np.ndarray]]:
    """The outlier-free regions whose deviation is reported: the flat sky
    and, on the night, the star pixels (no outlier, not saturated)."""
    out = [('clean', scene.flat)]
    if scene.stars is not None:
        sel = scene.stars & ~scene.touched()
        if scene.cores is not None:
            sel &= ~_dilate(scene.cores, 1)
        out.append(('stars', sel))
    return out


def evaluate(scene: Scene, run: Run, stacker: Stacker, cache: dict) -> Row:
    if 'noise' not in cache:
        cache['noise'] = noise_of(scene, ideal(scene, None))
        cache['exclusive'] = scene.exclusive()
    key = tuple(sorted((k, v) for k, v in run.kwargs().items() if k in ('normalize', 'weights')))
    if key not in cache:
        cache[key] = ideal(scene, run)
    target = cache[key]
    t = time.perf_counter()
    result, rejected = stacker(scene.frames, run, channel_axis=scene.channel_axis)
    seconds = time.perf_counter() - t
    sigma = noise_of(scene, result)
    dev = np.abs(result - target) / sigma
    left = {}
    for kind, sel in [*baselines(scene), *cache['exclusive'].items()]:
        d = dev[sel].ravel()
        d = d[np.isfinite(d)]
        left[kind] = (float(d.mean()), float((d > 1).mean())) if d.size else (math.nan, math.nan)
    core = None
    if scene.cores is not None and scene.cores.any() and scene.limit is not None:
        c = result[scene.cores]
        core = (float((c >= scene.limit - 0.5).mean()), float(c.min()))
    valid = np.isfinite(scene.frames.astype(np.float64)).sum()
    return Row(run.name, sigma / cache['noise'], left, core, rejected / valid, seconds)


def fmt_left(v: tuple[float, float]) -> str:
    mean, share = v
    if math.isnan(mean):
        return '-'
    flag = '!' if mean >= 1 else ' '
    return f'{mean:5.2f}/{share * 100:3.0f}%{flag}'


def print_set_table(scene: Scene, rows: Sequence[Row], out=sys.stdout) -> None:
    kinds = [*(k for k, _ in baselines(scene)), *scene.kinds]
    width = max(len(r.name) for r in rows)
    head = f'{"run":<{width}}  noise ' + ' '.join(f'{k:>11}' for k in kinds)
    if scene.cores is not None:
        head += '  core sat/min'
    head += '   rej%'
    print(f'\n{scene.name}: {scene.n} frames {scene.frames.shape[1:]} {scene.frames.dtype};'
          ' outlier columns: mean |result-ideal| / result sigma, share > 1 sigma'
          ' (! = left: mean >= 1)', file=out)
    print(head, file=out)
    for r in rows:
        line = f'{r.name:<{width}}  {r.noise:5.3f} ' + ' '.join(f'{fmt_left(r.left[k]):>11}'
                                                              for k in kinds)
        if scene.cores is not None:
            sat, lo = r.core if r.core else (math.nan, math.nan)
            line += f'  {sat * 100:4.0f}%/{lo:6.0f}'
        line += f'  {r.rejected * 100:5.2f}'
        print(line, file=out, flush=True)


# --------------------------------------------------------------------------
# a night with clouds and smeared frames (--select, --weights snr)


SELECT_RUNS = [
    R('--normalize additive', 'plain (--normalize additive)'),
    *(R(f'--normalize additive {o}', o) for o in (
        '--select transparency:80%',
        '--weights snr',
        '--select transparency:80% --weights snr',
        '--weights noise',
        '--select fwhm:2.5s',
        '--select transparency:2.5s',
        '--select transparency:80% --weights noise',
    )),
]
"""The runs of the ``select`` part, each with ``--normalize additive`` and
the default rejection, through the command (selection and the metric
weights work on files, not in `imgstack.stack_array`)."""


@dataclasses.dataclass
class CloudyNight:
    """The ``select`` set: a `Scene` whose truth is the clear, sharp
    frames' mean, and what each frame is."""

    scene: Scene
    role: list[str]             # per frame: 'clear', 'cloudy' or 'smeared'
    transparency: np.ndarray    # per frame: the stars' flux factor
    fwhm: np.ndarray            # per frame: the PSF's FWHM (px), before smearing
    smear: dict[int, tuple[float, float]]  # smeared frame -> (length px, angle rad)
    ideal: np.ndarray           # mean of the clear frames' clean versions

    @property
    def good(self) -> np.ndarray:
        return np.array([r == 'clear' for r in self.role])


FWHM = 2 * math.sqrt(2 * math.log(2))
"""FWHM over sigma of a Gaussian."""


def _render_stars(h: int, w: int, ys: np.ndarray, xs: np.ndarray, flux: np.ndarray,
                  fwhm: float, smear: tuple[float, float] | None = None) -> np.ndarray:
    """Stars of total flux ``flux`` at ``(ys, xs)``: Gaussians of ``fwhm``
    integrated over square pixels (approximated by a variance 1/12 px^2
    larger), smeared uniformly over ``length`` px at ``angle`` if given."""
    s2 = (fwhm / FWHM) ** 2 + 1 / 12
    length, angle = smear if smear else (0.0, 0.0)
    steps = max(1, math.ceil(3 * length))
    t = np.linspace(-length / 2, length / 2, steps) if steps > 1 else np.zeros(1)
    oy, ox = t * math.sin(angle), t * math.cos(angle)
    r = int(5 * math.sqrt(s2) + length / 2) + 2
    grid = np.arange(-r, r + 1, dtype=np.float64)
    out = np.zeros((h + 2 * r, w + 2 * r))
    for y, x, f in zip(ys, xs, flux):
        iy, ix = int(round(y)), int(round(x))
        dy = grid[None, :] + iy - y - oy[:, None]  # (steps, box)
        dx = grid[None, :] + ix - x - ox[:, None]
        gy, gx = np.exp(-dy * dy / (2 * s2)), np.exp(-dx * dx / (2 * s2))
        box = np.einsum('ki,kj->ij', gy, gx) * (f / (2 * math.pi * s2 * steps))
        out[iy:iy + 2 * r + 1, ix:ix + 2 * r + 1] += box
    return out[r:r + h, r:r + w]


def cloudy_night(n: int = 30, size: int = 384, seed: int = 27, cloudy: int = 5,
                 smeared: int = 2) -> CloudyNight:
    """uint16 frames of a night with clouds and smeared frames (see the
    module's docstring, ``select``)."""
    rng = _rng('select', n, seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    count = size * size // 250
    ys, xs = rng.uniform(4, h - 4, count), rng.uniform(4, w - 4, count)
    # flux: peaks of 40 to 20000 ADU at FWHM 2.75, a few saturating (peaks
    # of 2.5e5 to 8e5 ADU, saturated even through clouds and smeared)
    unit = 2 * math.pi * (2.75 / FWHM) ** 2
    flux = unit * np.exp(rng.uniform(math.log(40), math.log(20000), count))
    bright = max(4, size // 48)
    flux[:bright] = unit * rng.uniform(2.5e5, 8e5, bright)
    role = ['clear'] * n
    bad = rng.permutation(np.arange(1, n))  # frame 0 (imgstack's reference) is clear
    for i in bad[:cloudy]:
        role[i] = 'cloudy'
    smear: dict[int, tuple[float, float]] = {}
    for i in bad[cloudy:cloudy + smeared]:
        role[i] = 'smeared'
        smear[int(i)] = (float(rng.uniform(5, 8)), float(rng.uniform(0, math.pi)))
    is_cloudy = np.array([r == 'cloudy' for r in role])
    fwhm = rng.uniform(2.5, 3.0, n)  # the seeing of each frame
    transparency = np.where(is_cloudy, rng.uniform(0.5, 0.7, n), 1.0)
    haze = np.where(is_cloudy, rng.uniform(500, 1200, n), 0.0)
    level = 800 + 700 * (np.arange(n) / max(n - 1, 1)) ** 2 + rng.normal(0, 20, n)
    theta = rng.uniform(0, 2 * math.pi) + np.linspace(0, 1.2, n)
    slope = rng.uniform(20, 120, n)
    # dithered and registered (cropped to the common area: no borders); hot
    # pixels are fixed on the sensor, so they move with each frame's shift
    grid = np.array([(y, x) for y in range(-5, 6) for x in range(-5, 6) if (y, x) != (0, 0)])
    shifts = np.vstack([[0, 0], grid[rng.permutation(len(grid))[:n - 1]]])
    hot_y, hot_x, hot_amp = _hot_spots(rng, h, w, size)
    k_trail = int(rng.choice(np.flatnonzero(np.array(role) == 'clear')[1:]))
    limit = 65535.0
    frames = np.empty((n, h, w), np.uint16)
    clean = np.empty((n, h, w), np.uint16)
    kinds = {k: np.zeros((n, h, w), np.float32) for k in ('hot', 'cosmic', 'trail')}
    truth = np.zeros((h, w))
    starry = np.zeros((h, w), bool)
    for i in range(n):
        field = _render_stars(h, w, ys, xs, flux, float(fwhm[i]), smear.get(i))
        grad = slope[i] * ((xx - w / 2) * math.cos(theta[i])
                           + (yy - h / 2) * math.sin(theta[i])) / w
        sky = level[i] + haze[i] + grad
        model = sky + transparency[i] * field
        sd = np.sqrt(model + 25.0)
        noisy = model + rng.standard_normal((h, w)) * sd
        if role[i] == 'clear':
            truth += np.minimum(model, limit)
        starry |= transparency[i] * field > 0.5 * np.sqrt(sky + 25)
        clean[i] = np.rint(np.clip(noisy, 0, limit))
        hot, cos = _hot_and_cosmic(rng, (h, w), size, shifts[i], hot_y, hot_x, hot_amp)
        kinds['hot'][i], kinds['cosmic'][i] = hot / sd, cos / sd
        add = hot + cos
        if i == k_trail:
            trail = 4000 * _gauss_line(h, w, rng, 1.2)
            kinds['trail'][i] = trail / sd
            add += trail
        frames[i] = np.rint(np.clip(noisy + add, 0, limit))
    good = np.array([r == 'clear' for r in role])
    anything = np.zeros((h, w), bool)
    for m in kinds.values():
        anything |= (m > 1).any(axis=0)
    flat = ~_dilate(starry, 2) & ~_dilate(anything, 1)
    flat[:6] = flat[-6:] = False
    flat[:, :6] = flat[:, -6:] = False
    scene = Scene('select', frames, clean, None, truth / good.sum(), kinds, flat, None, None,
                  'additive', limit, starry)
    return CloudyNight(scene, role, transparency, fwhm, smear,
                       clean[good].astype(np.float64).mean(axis=0))


@dataclasses.dataclass
class SelectRow:
    name: str
    noise: float          # over the ideal's
    fwhm: float           # px, of the result's stars
    transparency: float   # the result's star flux over the ideal's
    left: dict[str, float]  # outlier kind -> mean |result - run's ideal| / result sigma
    bad_weight: float     # share of the weight on cloudy and smeared frames
    dropped: list[int]
    seconds: float

    def psnr(self, ideal_fwhm: float) -> float:
        """A faint star's SNR over the ideal's: flux / (noise x FWHM)."""
        return self.transparency / self.noise * ideal_fwhm / self.fwhm


def star_metrics(image: np.ndarray, limit: float,
                 reference: imgstack.FrameMetrics | None = None) -> imgstack.FrameMetrics:
    """`imgstack.frame_metrics` of the central `imgstack.CROP` pixels of a
    stacked image (saturated pixels not valid), as the command measures a
    frame."""
    h, w = image.shape
    side = min(imgstack.CROP, h, w)
    r0, c0 = (h - side) // 2, (w - side) // 2
    crop = np.asarray(image, np.float64)[r0:r0 + side, c0:c0 + side]
    return imgstack.frame_metrics(crop, crop < limit - 0.5, reference=reference)


class SelectBench:
    """Stacks the ``select`` set through the command and measures each run."""

    def __init__(self, cn: CloudyNight, workdir: Path) -> None:
        self.cn = cn
        sc = cn.scene
        self.workdir = workdir
        self.paths = write_frames(sc.frames, workdir / 'frames', None)
        self.ideal_noise = noise_of(sc, cn.ideal)
        self.reference = star_metrics(cn.ideal, sc.limit or math.inf)
        self.exclusive = sc.exclusive()
        self.table: list[dict[str, str]] = []  # the last run's --frame-stats rows

    def row_of(self, name: str, result: np.ndarray, weights: np.ndarray,
               seconds: float = math.nan) -> SelectRow:
        """Measure a result whose frames had ``weights`` (0: dropped)."""
        cn, sc = self.cn, self.cn.scene
        sigma = noise_of(sc, result)
        m = star_metrics(result, sc.limit or math.inf, self.reference)
        kept = np.flatnonzero(weights > 0)
        # what the run would give without outliers: its frames and weights,
        # clean, with no rejection
        target, _ = imgstack.stack_array(sc.clean[kept], reject='none', normalize=sc.normalize,
                                         weights=weights[kept])
        dev = np.abs(result - target) / sigma
        left = {k: float(dev[sel].mean()) if sel.any() else math.nan
                for k, sel in self.exclusive.items()}
        bad = ~cn.good
        return SelectRow(name, sigma / self.ideal_noise, m.fwhm, m.transparency, left,
                         float(weights[bad].sum() / weights.sum()),
                         [int(i) for i in np.flatnonzero(weights == 0)], seconds)

    def run(self, run: Run) -> SelectRow:
        out = self.workdir / 'out.tif'
        stats = self.workdir / 'stats.csv'
        cmd = [sys.executable, str(REPO / 'imgstack.py'), '-q', '-f', '--frame-stats', str(stats),
               *run.cli(), str(out), *self.paths]
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        seconds = time.perf_counter() - t
        with open(stats, newline='') as f:
            self.table = list(csv.DictReader(f))
        weights = np.array([float(r['weight_0']) for r in self.table])
        for i, r in enumerate(self.table):
            assert (float(r['weight_0']) == 0) == bool(r.get('dropped')), (i, r)
        return self.row_of(run.name, tifffile.imread(out).astype(np.float64), weights, seconds)


def print_select_table(bench: SelectBench, runs: Sequence[Run], out=sys.stdout) -> None:
    cn, sc = bench.cn, bench.cn.scene
    letter = {'clear': '', 'cloudy': 'c', 'smeared': 's'}
    cloudy = [i for i, r in enumerate(cn.role) if r == 'cloudy']
    print(f'\nselect: a night with clouds and smeared frames, {sc.n} frames'
          f' {sc.frames.shape[1:]} {sc.frames.dtype}: {int(cn.good.sum())} clear (FWHM'
          f' {cn.fwhm[cn.good].min():.2f}-{cn.fwhm[cn.good].max():.2f} px), cloudy (c) '
          + ', '.join(f'{i} x{cn.transparency[i]:.2f}' for i in cloudy) + ', smeared (s) '
          + ', '.join(f'{i} by {length:.1f} px' for i, (length, _) in sorted(cn.smear.items()))
          + '; hot pixels, cosmic rays, a trail', file=out)
    rows = [bench.run(r) for r in runs]
    # what the command measured on the frames (the last run's --frame-stats)
    got = {k: [(float(r['fwhm']), float(r['transparency'])) for r, role in
               zip(bench.table, cn.role) if role == k] for k in letter}
    print('imgstack measures: ' + '; '.join(
        f'{k} FWHM {min(f for f, _ in v):.2f}-{max(f for f, _ in v):.2f} px, transparency '
        f'{min(t for _, t in v):.2f}-{max(t for _, t in v):.2f}' for k, v in got.items()),
        file=out)
    ideal_fwhm = bench.reference.fwhm
    print(f'ideal: the mean of the clear frames\' clean versions (star FWHM {ideal_fwhm:.2f}'
          ' px).  Every run: --normalize additive, default rejection, through the command.'
          '\nnoise, transp(arency) and psnr over the ideal\'s; psnr = transp / noise x'
          ' FWHM ideal / FWHM (a faint star\'s SNR); hot, cosmic, trail: mean |result - the'
          ' run\'s ideal| / result sigma (! = left: >= 1); bad w: the weight on cloudy and'
          ' smeared frames; dropped: how many cloudy, smeared and clear frames, and which;'
          ' s: seconds', file=out)
    every = np.ones(sc.n)
    references = [
        bench.row_of('(ideal: clear frames, clean)', cn.ideal, cn.good.astype(float)),
        bench.row_of('(all frames, clean, plain mean)',
                     sc.clean.astype(np.float64).mean(axis=0), every)]
    width = max(len(r.name) for r in [*references, *rows])
    which = {r.name: ' '.join(f'{i}{letter[cn.role[i]]}' for i in r.dropped)
             for r in [*references, *rows]}
    wide = max(len(w) for w in which.values())
    kinds = list(sc.kinds)
    print(f'{"run":<{width}}  noise   fwhm  transp   psnr  ' + ' '.join(f'{k:>6}' for k in kinds)
          + f'  bad w  c/s/clear  {"dropped":<{wide}}     s', file=out)
    for r in [*references, *rows]:
        roles = [cn.role[i] for i in r.dropped]
        line = (f'{r.name:<{width}}  {r.noise:5.3f}  {r.fwhm:5.2f}  {r.transparency:6.3f}'
              f'  {r.psnr(ideal_fwhm):5.3f}  '
              + ' '.join(f'{r.left[k]:5.2f}' + ('!' if r.left[k] >= 1 else ' ') for k in kinds)
              + f'  {r.bad_weight * 100:4.1f}%  {roles.count("cloudy")}/{len(cloudy)}'
              f' {roles.count("smeared")}/{len(cn.smear)} {roles.count("clear"):>2}'
              f'  {which[r.name]:<{wide}}'
              + (f'  {r.seconds:4.1f}' if math.isfinite(r.seconds) else ''))
        print(line.rstrip(), file=out, flush=True)


# --------------------------------------------------------------------------
# pure noise


class NoiseBench:
    """Noise ratios on pure Gaussian noise at several frame counts, pooled
    over ``repeats`` independent sets per count."""

    def __init__(self, counts: Sequence[int], size: int, seed: int, repeats: int = 1) -> None:
        self.counts = tuple(counts)
        self.size = size
        self.data = {n: [pure_noise(n, size, seed + 1000 * k) for k in range(repeats)]
                     for n in self.counts}
        self.plain = {n: math.sqrt(sum(float(np.var(x.mean(axis=0)))
                                       for x in xs) / len(xs))
                      for n, xs in self.data.items()}

    def ratios(self, run: Run) -> dict[int, tuple[float, float]]:
        """Per frame count: noise over the plain mean's, share rejected."""
        out = {}
        kw = run.kwargs()
        for n, xs in self.data.items():
            square = 0.0
            rejected = 0
            for x in xs:
                r, rej = imgstack.stack_array(x, **kw)
                square += float(np.var(r))
                rejected += rej
            out[n] = (math.sqrt(square / len(xs)) / self.plain[n],
                      rejected / (len(xs) * xs[0].size))
        return out

    def worst(self, run: Run) -> float:
        return max(v for v, _ in self.ratios(run).values())


def target_of(run: Run) -> float:
    """The noise target: minmax 1:1 may reach 1.05; a median has none."""
    kw = run.kwargs()
    if kw.get('combine', 'mean') != 'mean':
        return math.inf
    return MINMAX_TARGET if kw.get('reject') == 'minmax' else NOISE_TARGET


def print_noise_table(bench: NoiseBench, runs: Sequence[Run], out=sys.stdout) -> None:
    width = max(len(r.name) for r in runs)
    repeats = len(bench.data[bench.counts[0]])
    print(f'\npure noise (1000 +- 30, float64, {bench.size}x{bench.size}, {repeats} set(s) per'
          ' count): std of the result over the plain mean\'s, and share of values'
          ' rejected (! = over the target)', file=out)
    print(f'{"run":<{width}}  ' + '  '.join(f'{f"{n} frames":>15}' for n in bench.counts),
          file=out)
    for run in runs:
        r = bench.ratios(run)
        limit = target_of(run)
        print(f'{run.name:<{width}}  ' + '  '.join(
            f'{r[n][0]:6.3f} {r[n][1] * 100:5.2f}% ' + ('!' if r[n][0] > limit else ' ')
            for n in bench.counts), file=out, flush=True)


# --------------------------------------------------------------------------
# README's guide ("What to use for what you have"): few lights, flats


FEW_COUNTS = (3, 5, 7)
GUIDE_FEW = [
    R('--reject minmax --normalize additive --valid-range 1:'),
    R('--normalize additive --valid-range 1:', 'sigma --normalize additive --valid-range 1:'),
    R('--reject mad --normalize additive --valid-range 1:'),
    R('--reject percentile --normalize additive --valid-range 1:'),
    R('--reject none --combine median --normalize additive --valid-range 1:'),
    R('--reject percentile --normalize additive-scale --valid-range 1:'),
    R('--reject minmax --normalize additive-scale --valid-range 1:'),
    R('--reject none --normalize additive --valid-range 1:',
      'mean, no rejection (reference) --normalize additive --valid-range 1:'),
]
"""The guide's "few lights" row (first) and what a user might pick instead."""

GUIDE_FLATS = [
    R('--normalize multiplicative --reject winsorized'),
    R('--normalize multiplicative', 'sigma --normalize multiplicative'),
    R('--normalize multiplicative --reject mad'),
    R('--reject none --combine median --normalize multiplicative'),
    R('', 'sigma, no normalization'),
    R('--reject winsorized', '--reject winsorized (the darks row), no normalization'),
    R('--reject none --normalize multiplicative',
      'mean, no rejection (reference) --normalize multiplicative'),
]
"""The guide's "flats" row (first) and what a user might pick instead."""


def guide(stacker: Stacker, quick: bool, seed: int, out=sys.stdout) -> None:
    """The night at 3, 5 and 7 frames with the few-lights runs, then the
    flats, each as a set table; then the few lights' worst over the counts."""
    size = 160 if quick else 256
    worst: dict[str, list[Row]] = {}
    kinds: list[str] = []
    for n in FEW_COUNTS:
        sc = night(n, size, seed)
        sc.name = 'few lights (night)'
        cache: dict = {}
        rows = [evaluate(sc, run, stacker, cache) for run in GUIDE_FEW]
        print_set_table(sc, rows, out)
        for r in rows:
            worst.setdefault(r.name, []).append(r)
        kinds = [*(k for k, _ in baselines(sc)), *sc.kinds]
    width = max(len(k) for k in worst)
    print(f'\nfew lights, over {"/".join(map(str, FEW_COUNTS))} frames: noise at each, and'
          ' the worst mean |result-ideal| / result sigma of each kind (! = left)', file=out)
    print(f'{"run":<{width}}  {"noise":>17}  ' + ' '.join(f'{k:>6}' for k in kinds), file=out)
    for name, rows in worst.items():
        means = [max(r.left[k][0] for r in rows) for k in kinds]
        print(f'{name:<{width}}  ' + '/'.join(f'{r.noise:5.3f}' for r in rows) + '  '
              + ' '.join(f'{m:5.2f}' + ('!' if m >= 1 else ' ') for m in means), file=out,
              flush=True)
    sc = flats(15, size, seed)
    cache = {}
    print_set_table(sc, [evaluate(sc, run, stacker, cache) for run in GUIDE_FLATS], out)


# --------------------------------------------------------------------------
# calibration


def smallest_factor(meets: Callable[[float], bool], lo: float, hi: float,
                    step: float = 0.05) -> float | None:
    """The smallest factor on a ``step`` grid in [lo, hi] that meets, by
    bisection (the noise falls as the factor grows)."""
    grid = np.round(np.arange(lo, hi + step / 2, step), 4)
    if not meets(float(grid[-1])):
        return None
    a, b = -1, len(grid) - 1  # grid[a] fails (or is before the grid), grid[b] meets
    if meets(float(grid[0])):
        return float(grid[0])
    a = 0
    while b - a > 1:
        m = (a + b) // 2
        if meets(float(grid[m])):
            b = m
        else:
            a = m
    return float(grid[b])


def one_pass_cost(s: float) -> float:
    """Large-sample noise ratio of one pass of clipping at +-s standard
    deviations around the mean of Gaussian data: the influence function of
    the kept values' mean is (x 1[|x| <= s] + a x) / p, with p = 2 Phi(s) - 1
    the share kept and a = 2 s phi(s) (the window follows the mean)."""
    p = math.erf(s / math.sqrt(2))
    a = 2 * s * math.exp(-s * s / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(((p - a) * (1 + 2 * a) + a * a) / (p * p))


def candidates(noise: NoiseBench) -> list[tuple[Run, str]]:
    """The settings the calibration compares: for each method the smallest
    factors that meet the noise target, and the seed default's passes."""
    found: list[tuple[Run, str]] = []

    def smallest(build: Callable[[float], Run], lo: float, hi: float,
                 step: float = 0.05) -> float | None:
        return smallest_factor(lambda s: noise.worst(build(s)) <= target_of(build(s)),
                               lo, hi, step)

    for i in (1, 2, 3, 5):
        found.append((R(f'-s 2.5 -i {i}', f'sigma -s 2.5 -i {i}'), 'seed -s 2.5'))
    for i in (1, 5):
        s = smallest(lambda s, i=i: R(f'--sigma-high 2.5 --sigma-low {s} -i {i}'), 2.5, 6.0)
        if s is not None:
            found.append((R(f'--sigma-low {s} --sigma-high 2.5 -i {i}',
                            f'sigma -L {s} -H 2.5 -i {i}'), 'smallest low, high 2.5'))
    for i in (1, 5):
        s = smallest(lambda s, i=i: R(f'-s {s} -i {i}'), 2.0, 4.0)
        if s is not None:
            found.append((R(f'-s {s} -i {i}', f'sigma -s {s} -i {i}'), 'smallest s'))
    for i in (1, 5):
        s = smallest(lambda s, i=i: R(f'--center median -s {s} -i {i}'), 2.0, 5.0)
        if s is not None:
            found.append((R(f'--center median -s {s} -i {i}',
                            f'sigma --center median -s {s} -i {i}'), 'smallest s'))
    for method in ('mad', 'winsorized'):
        for i in (1, 5):
            s = smallest(lambda s, i=i, m=method: R(f'--reject {m} -s {s} -i {i}'), 2.0, 8.0)
            if s is not None:
                found.append((R(f'--reject {method} -s {s} -i {i}'), 'smallest s'))
        # high outliers (cosmic rays, hot pixels, trails) are the common ones
        s = smallest(lambda s, m=method: R(
            f'--reject {m} --sigma-low {round(1.5 * s, 2)} --sigma-high {s} -i 1'), 2.0, 8.0)
        if s is not None:
            found.append((R(f'--reject {method} --sigma-low {round(1.5 * s, 2)} '
                            f'--sigma-high {s} -i 1'), 'smallest high, low = 1.5 high'))
    for constant in (False, True):
        scale = LINEAR_CONSTANT if constant else 1.0
        for i in (1, 5):
            s = smallest(lambda s, i=i, c=constant: R(
                f'--reject linear -s {s} -i {i}', linear_constant=c), 2.0, 20.0 / scale, 0.1)
            if s is not None:
                name = f'linear* -s {s} -i {i}' if constant else f'linear -s {s} -i {i}'
                found.append((R(f'--reject linear -s {s} -i {i}', name, constant), 'smallest s'))
    found.append((R('--reject linear -s 4 -i 1'), 'rejects a lone outlier from 12 frames'))
    found.append((R('--reject percentile'), 'default; level-relative, not a sigma'))
    for low, high in ((1, 1), (0, 1)):
        found.append((R(f'--reject minmax --minmax {low}:{high}'), 'fixed counts'))
    for a in (0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01, 0.005):
        if noise.worst(R(f'--reject gesd --gesd {a}:0.3')) <= NOISE_TARGET:
            found.append((R(f'--reject gesd --gesd {a}:0.3'), 'largest alpha (0.3 fixed)'))
            break
    return found


def calibrate(noise: NoiseBench, checks: Sequence[tuple[str, Scene]],
              runs: Sequence[tuple[Run, str]] | None = None, out=sys.stdout) -> None:
    """Search the factors that meet the noise target (unless ``runs`` are
    given), then show the outliers they leave on the check sets."""
    t0 = time.perf_counter()
    if runs is None:
        print('\ncalibration: the smallest factor (0.05 grid) whose noise on pure noise is at'
              f' most {NOISE_TARGET} (minmax {MINMAX_TARGET}) at'
              f' {", ".join(map(str, noise.counts))} frames', file=out)
        runs = candidates(noise) + [(r, 'PROPOSED') for r in PROPOSED]
        print(f'(search: {time.perf_counter() - t0:.0f} s)', file=out)
        print('one pass of mean-centred clipping costs, for many frames, '
              + ', '.join(f'{one_pass_cost(f):.3f} at -s {f}' for f in (2.5, 2.7, 3.0))
              + ' (the mean that centres the window moves with the noise)', file=out)
    # per kind, the checks that hold it (night at several counts: "a/b/c")
    kinds: dict[str, list[str]] = {}
    for name, sc in checks:
        for k in sc.kinds:
            kinds.setdefault(k, []).append(name)
    width = max(len(r.name) for r, _ in runs)
    cols = {k: max(7, 6 * len(v) + 1) for k, v in kinds.items()}
    print('outliers: mean |result-ideal| / result sigma on each check set, with its'
          ' normalization (' + ', '.join(f'{n}: {sc.normalize}' for n, sc in checks) + ');'
          ' "a/b/c" = ' + ', '.join(f'{k}: {"/".join(v)}' for k, v in kinds.items()
                                    if len(v) > 1) + '; ! = left (>= 1) or over the target',
          file=out)
    print(f'{"run":<{width}}  ' + ' '.join(f'{n:>6}' for n in noise.counts)
          + f' {"rej%":>6}  ' + ' '.join(f'{k:>{cols[k]}}' for k in kinds) + '  why', file=out)
    for run, why in runs:
        r = noise.ratios(run)
        got: dict[str, list[str]] = {k: [] for k in kinds}
        for _, sc in checks:
            row = evaluate(sc, run.plus('--normalize', sc.normalize, label=run.name),
                           stack, sc.__dict__.setdefault('_cache', {}))
            for k in sc.kinds:
                v = row.left[k][0]
                got[k].append(f'{v:.2f}' + ('!' if v >= 1 else '') if v < 99.5 else '>99!')
        limit = target_of(run)
        print(f'{run.name:<{width}}  ' + ' '.join(
            f'{r[n][0]:5.3f}' + ('!' if r[n][0] > limit else ' ') for n in noise.counts)
            + f' {r[noise.counts[-1]][1] * 100:5.2f}%  '
            + ' '.join(f'{"/".join(got[k]):>{cols[k]}}' for k in kinds)
            + f'  {why}', file=out, flush=True)


# --------------------------------------------------------------------------


def build_sets(quick: bool, seed: int) -> list[Scene]:
    if quick:
        return [night(12, 160, seed), tripod(10, 96, 128, seed), micro(16, 128, seed)]
    return [night(16, 256, seed), tripod(10, 144, 192, seed), micro(24, 192, seed)]


def set_runs(scene: Scene, quick: bool) -> list[Run]:
    norm = ('--normalize', scene.normalize)
    runs = list(CURRENT)
    runs += [r.plus(*norm, label=f'{r.name} +norm') for r in CURRENT
             if r.options[:2] != ('--reject', 'none')]
    if not quick:
        runs += README
    runs += PROPOSED
    runs += [r.plus(*norm, label=f'{r.name} +norm') for r in PROPOSED]
    seen: set = set()
    out = []
    for r in runs:
        key = (tuple(r.cli()), r.linear_constant)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def write_sets(folder: Path, scenes: Sequence[Scene], noise_counts: Sequence[int],
               seed: int, size: int, select: CloudyNight | None = None) -> None:
    for sc in scenes:
        d = folder / sc.name
        paths = write_frames(sc.frames, d, sc.channel_axis)
        write_frames(sc.clean, d / 'clean', sc.channel_axis)
        tifffile.imwrite(d / 'truth.tif', sc.truth.astype(np.float32))
        tifffile.imwrite(d / 'ideal.tif', ideal(sc, None).astype(np.float32))
        np.savez_compressed(d / 'masks.npz', flat=sc.flat,
                            cores=np.zeros(sc.flat.shape, bool) if sc.cores is None else sc.cores,
                            **{f'kind_{k}': m for k, m in sc.kinds.items()},
                            present=np.ones(sc.frames.shape[:3], bool) if sc.present is None
                            else sc.present)
        print(f'{d}: {len(paths)} frames; e.g. python imgstack.py --normalize {sc.normalize}'
              f' {d}/stacked.tif {d}/frame_*.tif')
    for n in noise_counts:
        d = folder / f'noise{n}'
        write_frames(pure_noise(n, size, seed).astype(np.float32), d, None)
        print(f'{d}: {n} frames of pure noise (float32)')
    if select is not None:
        sc = select.scene
        d = folder / 'select'
        write_frames(sc.frames, d, None)
        write_frames(sc.clean, d / 'clean', None)
        tifffile.imwrite(d / 'truth.tif', sc.truth.astype(np.float32))
        tifffile.imwrite(d / 'ideal.tif', select.ideal.astype(np.float32))
        with open(d / 'frames.csv', 'w', newline='') as f:
            out = csv.writer(f)
            out.writerow(['file', 'role', 'transparency', 'fwhm', 'smear_px', 'smear_deg'])
            for i, role in enumerate(select.role):
                length, angle = select.smear.get(i, (0.0, 0.0))
                out.writerow([f'frame_{i:03d}.tif', role, f'{select.transparency[i]:.4f}',
                              f'{select.fwhm[i]:.4f}', f'{length:.2f}',
                              f'{math.degrees(angle):.1f}'])
        print(f'{d}: {sc.n} frames (frames.csv: which are cloudy or smeared; ideal.tif: the'
              f' clear frames\' clean mean); e.g. python imgstack.py --normalize additive'
              f' --weights noise {d}/stacked.tif {d}/frame_*.tif')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='quality.py', description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('The sets\n--------\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='smaller sets, noise at 8 and 30 frames, no calibration search')
    parser.add_argument('--only', action='append',
                        choices=('sets', 'select', 'noise', 'guide', 'calibrate'),
                        help='run only this part (repeatable); default: all (--quick: all but'
                        ' calibrate)')
    parser.add_argument('--seed', type=int, default=27, help='generator seed (default 27)')
    parser.add_argument('--noise-size', type=int, default=200, metavar='PX',
                        help='side of the pure-noise frames (default 200; 120 with --quick)')
    parser.add_argument('--noise-repeats', type=int, default=None, metavar='K',
                        help='independent pure-noise sets per frame count, pooled'
                        ' (default 4; 1 with --quick)')
    parser.add_argument('--write', metavar='DIR', help='write the sets as TIFF files into DIR'
                        ' (frames, clean/, truth.tif, ideal.tif, masks.npz) and stop')
    parser.add_argument('--cli', action='store_true',
                        help='stack the sets through the command on TIFF copies (results'
                        ' rounded to the input type) instead of stack_array (the select part'
                        ' always does)')
    args = parser.parse_args(argv)
    parts = set(args.only or (('sets', 'select', 'noise', 'guide') if args.quick
                              else ('sets', 'select', 'noise', 'guide', 'calibrate')))
    counts = (8, 30) if args.quick else NOISE_FRAMES
    noise_size = min(args.noise_size, 120) if args.quick and args.noise_size == 200 \
        else args.noise_size
    t0 = time.perf_counter()
    if args.write:
        write_sets(Path(args.write), build_sets(args.quick, args.seed), counts, args.seed,
                   noise_size, cloudy_night(seed=args.seed))
        return 0
    scenes = build_sets(args.quick, args.seed) if parts & {'sets', 'calibrate'} else []
    if 'sets' in parts:
        with tempfile.TemporaryDirectory() as tmp:
            stacker: Stacker = CliStacker(Path(tmp)) if args.cli else stack
            for sc in scenes:
                cache: dict = {}
                rows = [evaluate(sc, run, stacker, cache) for run in set_runs(sc, args.quick)]
                print_set_table(sc, rows)
    if 'guide' in parts:
        with tempfile.TemporaryDirectory() as tmp:
            guide(CliStacker(Path(tmp)) if args.cli else stack, args.quick, args.seed)
    if 'select' in parts:
        with tempfile.TemporaryDirectory() as tmp:
            print_select_table(SelectBench(cloudy_night(seed=args.seed), Path(tmp)), SELECT_RUNS)
    bench = None
    if parts & {'noise', 'calibrate'}:
        repeats = args.noise_repeats or (1 if args.quick else 4)
        bench = NoiseBench(counts, noise_size, args.seed, repeats)
    if 'noise' in parts:
        assert bench is not None
        runs = list(CURRENT) + [r for r in README if r.kwargs().get('normalize', 'none') == 'none'
                                and 'valid_range' not in r.kwargs()] + PROPOSED
        seen: set = set()
        uniq = []
        for r in runs:
            key = (tuple(r.cli()), r.linear_constant)
            if key not in seen:
                seen.add(key)
                uniq.append(r)
        print_noise_table(bench, uniq)
    if 'calibrate' in parts:
        assert bench is not None
        checks = [(f'night{n}', night(n, 192, args.seed)) for n in (8, 15, 30)]
        checks += [('tripod', scenes[1]), ('micro', scenes[2])]
        calibrate(bench, checks)
    print(f'\n({time.perf_counter() - t0:.0f} s)', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
