# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Benchmark imgstack.py: wall time and peak memory against a plain floor,
another imgstack.py in the same rounds (``--against``) and, on a drifting
night, Siril.

What is measured
----------------
Every run is a child process of this script; its wall time is taken around
the whole child (interpreter start-up included) and its peak resident memory
is the ``ru_maxrss`` that ``os.wait4`` returns for that child alone.  Each
row is a ratio to the floor measured in the same run:

``floor``
    A plain average with numpy and tifffile: every input read once with
    ``tifffile.imread`` into a float64 sum, the mean rounded and written with
    ``tifffile.imwrite`` (``bench_imgstack.py --floor OUT IN ...``).  This is
    the least work any stacker must do; its memory is not bounded.
imgstack cases
    ``imgstack.py -q -f -m BUDGET OPTIONS OUT IN ...``.  Without ``--night``:
    ``i0`` (``-i 0``, a plain average), ``clip`` (``-s 2.5 -i 3``) and
    ``median`` (``-s 2.5 -i 3 --center median``), at ``-m 1G`` and
    ``-m 256M``, on three variants of the same frames: uncompressed
    (``raw``), LZW with 16 rows per strip (``lzw16``) and LZW in one strip
    (``lzw1``).  With ``--night``, on uncompressed frames of a drifting
    night (below): the main rows ``i0``, ``clip``, ``median10``
    (``--center median -s 2.5 -i 10``) and ``wins-as`` (``--reject
    winsorized -s 3 --normalize additive-scale``) at every budget; one row
    per ``--reject`` method (``rej-*``, the iterative ones with ``-i 10``,
    to convergence as Siril goes), one per ``--combine`` (``comb-*``,
    with ``--reject none``, except ``comb-mean``, which keeps the default
    rejection: the mean without rejection is ``rej-none``), and the
    ``--normalize``, ``--weights noise``, ``--valid-range 1:`` and
    ``--dtype float32`` rows, at the first budget only (all budgets with
    ``--every-budget``).  ``--cases`` selects rows by name or group.
``siril`` (with ``--night``, when ``siril-cli`` is on PATH)
    Siril's equivalent of an imgstack row, side by side, with the ratio
    imgstack / Siril (`SIRIL_CASES`): ``stack rej s 2.5 2.5 -nonorm``
    (median centre, to convergence) against ``median10``, ``rej w 3 3
    -norm=addscale`` against ``wins-as``, ``rej l``, ``rej p 0.2 0.1``,
    ``rej g 0.3 0.05`` and ``rej n`` against the ``rej-*`` rows, ``med``,
    ``min`` and ``max`` against the ``comb-*`` rows; ``rej a`` (MAD) only
    on request, as Siril 1.0.6 takes some 200 times the floor for it.  By
    default the Siril rows of the selected imgstack cases run; ``--siril``
    chooses.  Siril stacks only its own sequences (FITS, SER), so
    the TIFF frames are converted once, untimed, with a script that runs
    ``cd TIFFDIR`` and ``convert frame -out=SIRILDIR`` (16-bit FITS, one per
    frame), then ``setref frame_ 1`` (which writes the sequence file).
    Each timed run is ``siril-cli -s SCRIPT`` with the script ``requires
    1.0.0``, ``cd SIRILDIR``, ``stack frame_ ARGS -out=OUT``: Siril's
    start-up, reading every FITS frame, the stacking and writing its result
    (32-bit float FITS, Siril's default) are timed; the conversion is not.
    Siril caches image statistics in its sequence file, so the file is put
    back as ``setref`` wrote it before every run: each run starts as a
    user's first stack of the sequence.  Siril runs with its own empty
    configuration (``XDG_CONFIG_HOME``), on all cores, as imgstack does.
``CASE@against`` (with ``--against FILE``)
    Every imgstack case run again by another imgstack.py (an older version,
    say), with the same options, budget and inputs, in the same rounds,
    shuffled with the others: a change is judged against the code without
    it under the same machine conditions, never against a run made at
    another time (bench/README.rst, How the figures are measured).  A
    table after the main one sets each case beside its ``@against`` row:
    both medians, spreads and ratios to the floor, the ratio of medians
    new / against and of minimums, and the median and range of the ratios
    of the runs paired round by round (each round runs both once; a range
    that does not hold 1 says every round saw the same side win).  A case
    whose options the against version's ``-h`` does not list is not run
    for it.  The frames, Siril and the scaling lines are the ``--imgstack``
    version's alone.
``startup``
    The bare interpreter (``python -c pass``), ``import numpy, tifffile``,
    ``imgstack.py --version`` and a two-frame stack of 64x64 RGB frames
    (default options), each run three times per round, the last two for
    the ``--against`` version too; with Siril, a script of ``requires
    1.0.0`` alone.  ``--version`` is subtracted from the scaling times
    below.
``scaling``
    The time per frame of ``-s 2.5 -i 3`` on 25, 50, 100 and 200 small
    uncompressed frames (gross, net of the start-up, and per frame added:
    it should stay flat), and the time of ``--center median`` over
    ``--center mean`` at each count; night frames with ``--night``.

The frames are ``imgstack.make_frames`` ones (a fixed star field, sky
gradient, Poisson and read noise, hot pixels, cosmic rays, a satellite
trail in one frame of six).  With ``--night`` the frame-writing process
turns them into a night whose sky drifts (`night_frames`): per frame, a sky
level offset within +-5% of the sky (a smooth trend over the night plus
jitter), a sky gradient whose direction turns and whose strength grows,
and a transparency factor 0.85..1.0 on the whole frame (thin cloud passing),
all drawn from the seed, so the same seed gives the same files.  Frames are
written once into ``--data`` and reused while every file is whole and its
header matches; the night's label carries `NIGHT_VERSION`.  A line under the
set's description gives its character (`set_character`, on a sample of
rows): the values and points that pass 1 of ``-s 2.5`` rejects, and the
span of the frames' backgrounds against the sky and the noise.  The frames
come from the ``make_frames`` of the imgstack.py measured (``--imgstack``,
default the repository's), a copy of another version for instance.

How the runs are made comparable (issue 14: this machine reclaims idle page
cache within seconds, and the first run after a heavy program is slow):

- before each timed run, its inputs are read once by this process, in
  1 MiB chunks into one buffer, so that they are in the page cache; the
  numbers are CPU and memory numbers, not disk numbers;
- an untimed warm-up (``--version`` and one floor) precedes the rounds;
- all cases run ``--repeat`` times, round-robin (every round runs each case
  once, in a seeded shuffled order), so that a slow spell of a shared
  machine spreads over all cases;
- the tables give the median and the minimum wall time, the spread
  ((max - min) / median), the medians of the child's CPU time (user and
  system, from ``os.wait4``: over the wall time, the cores it kept busy) and
  of its system time alone (reads, and the page faults of fresh memory:
  on this machine it varies from run to run with the kernel's reclaim),
  the largest peak RSS over the repeats, the ratios to the floor of
  medians and of minimums (the least disturbed runs), and whether the peak
  RSS stays within the budget plus 64 MiB (README, Memory and speed).

A run that fails (for example an option that imgstack does not have yet)
is a row marked ``failed`` with the first line of its error output that
says ``error`` (or its first line); it is not run again in later rounds,
and the benchmark then exits with status 1 after printing everything.  A
case whose long options ``imgstack.py -h`` does not list is not run at all
(a failed row that says so): argparse would take ``--reject`` for a prefix
of ``--rejection-map`` and measure something else.

Note on memory: on Linux a child started with vfork (as ``subprocess``
does) inherits the parent's peak RSS in its ``ru_maxrss``.  This script
therefore keeps its own process small: it imports neither numpy nor
tifffile, and writes the frames in separate processes.  Its own peak is
printed; no child can report less.

Usage
-----
::

    python bench/bench_imgstack.py                 # quick set, one to two minutes
    python bench/bench_imgstack.py --large         # 24 frames of 4000x3000
    python bench/bench_imgstack.py --night         # drifting night, with Siril
    python bench/bench_imgstack.py --night --large # the table of issue 14
    python bench/bench_imgstack.py --night --cases main --no-scaling
    python bench/bench_imgstack.py --night --siril none --no-scaling --against OLD.py
    python bench/bench_imgstack.py --cases clip --variants raw,lzw1 --budgets 256M
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root, which holds imgstack.py."""

IMGSTACK = REPO / 'imgstack.py'
"""The imgstack.py measured unless ``--imgstack`` names another."""

AGAINST = '@against'
"""Suffix of the case names of the ``--against`` version's runs."""

MIB = 1 << 20

SLACK_MIB = 64
"""Interpreter footprint allowed above the budget (README, Memory and speed)."""

TRAIL_EVERY = 6
"""One frame in this many gets a satellite trail."""

READ_CHUNK = MIB
"""Bytes read at a time when the inputs of a run are read beforehand."""

VARIANTS = {
    'raw': 'uncompressed, one strip',
    'lzw16': 'LZW, 16 rows per strip',
    'lzw1': 'LZW, one strip',
}
"""Input variants: how the same frames are written."""

CASES = {
    'i0': ('-i', '0'),
    'clip': ('-s', '2.5', '-i', '3'),
    'median': ('-s', '2.5', '-i', '3', '--center', 'median'),
}
"""imgstack.py runs on the default frame set, by name: their options."""

ITERATIVE = ('sigma', 'mad', 'winsorized', 'linear')
"""The rejections that `-i` caps; their rows run to convergence (-i 10)."""

NIGHT_CASES: dict[str, tuple[str, ...]] = {
    'i0': ('-i', '0'),
    'clip': ('-s', '2.5', '-i', '3'),
    'median10': ('--center', 'median', '-s', '2.5', '-i', '10'),
    'wins-as': ('--reject', 'winsorized', '-s', '3', '--normalize', 'additive-scale'),
    **{f'rej-{m}': ('--reject', m) + (('-i', '10') if m in ITERATIVE else ())
       for m in ('sigma', 'mad', 'winsorized', 'linear', 'percentile', 'minmax', 'gesd',
                 'none')},
    'comb-mean': ('--combine', 'mean'),
    **{f'comb-{c}': ('--reject', 'none', '--combine', c) for c in ('median', 'min', 'max')},
    'norm-add': ('--normalize', 'additive'),
    'norm-as': ('--normalize', 'additive-scale'),
    'weights': ('--weights', 'noise'),
    'valid': ('--valid-range', '1:'),
    'float32': ('--dtype', 'float32'),
}
"""imgstack.py runs on the night set, by name: their options."""

NIGHT_GROUPS = {
    'main': ('i0', 'clip', 'median10', 'wins-as'),
    'reject': tuple(c for c in NIGHT_CASES if c.startswith('rej-')),
    'combine': tuple(c for c in NIGHT_CASES if c.startswith('comb-')),
    'options': ('norm-add', 'norm-as', 'weights', 'valid', 'float32'),
}
"""Groups of night cases that ``--cases`` accepts; ``main`` runs at every
budget, the others at the first one (unless ``--every-budget``)."""

SIRIL_CASES = {
    'rej-s': ('rej s 2.5 2.5 -nonorm', 'median10'),
    'rej-w': ('rej w 3 3 -norm=addscale', 'wins-as'),
    'rej-l': ('rej l 2.5 2.5 -nonorm', 'rej-linear'),
    'rej-a': ('rej a 2.5 2.5 -nonorm', 'rej-mad'),
    'rej-p': ('rej p 0.2 0.1 -nonorm', 'rej-percentile'),
    'rej-g': ('rej g 0.3 0.05 -nonorm', 'rej-gesd'),
    'rej-n': ('rej n -nonorm', 'rej-none'),
    'med': ('med -nonorm', 'comb-median'),
    'min': ('min', 'comb-min'),
    'max': ('max', 'comb-max'),
}
"""Siril's ``stack`` arguments and the night case each is compared with.
Siril's sigma clipping is centred on the median and iterates until nothing
changes; its MAD is not scaled by 1.4826 (README, Which rejection?); its GESD
takes the outlier fraction, then the significance."""

SIRIL_OPT_IN = ('rej-a',)
"""Siril commands run only when ``--siril`` names them (or says ``all``):
Siril 1.0.6's MAD clipping takes about 200 times the floor."""

SIRIL = 'siril-cli'

SIRIL_BASENAME = 'frame'
"""Basename of the converted sequence; Siril names its files frame_00001.fit
and its sequence frame_."""

BUDGETS = ('1G', '256M')
"""Memory budgets (``-m``) every main case runs at."""

SCALING_COUNTS = (25, 50, 100, 200)
"""Frame counts of the scaling line (the first frames of one set)."""

SCALING_CASES = ('clip', 'median')
"""Cases of the scaling lines: the first gives the time per frame, the
second the cost of the median center relative to it."""

SCALING_BUDGET = '1G'

CHARACTER_VALUES = 1_000_000
"""Values a frame sampled (every k-th row) to describe a set's character."""

STARTUP_RUNS = 3
"""Runs of each start-up case per round: they are short, so more of them."""

NIGHT_VERSION = 2

NIGHT_ELECTRONS = 80_000.0
"""Electrons at full scale of the night's frames (make_frames' default,
4000, gives a noise of 10% of the sky: no night is that noisy)."""

NIGHT_READ_NOISE = 0.0003
"""Read noise of the night's frames, a fraction of full scale (20 ADU)."""
"""Version of `night_frames`, part of the night set's label: a change of the
transformation must change it, so that cached frames are written again."""

NIGHT_SEED = 0x6E16
"""Mixed into the seed of the night's drift, apart from make_frames' seed."""


@dataclasses.dataclass(frozen=True)
class FrameSet:
    """A set of synthetic frames: what `imgstack.make_frames` is given, and
    whether `night_frames` makes a drifting night of them."""

    count: int
    height: int
    width: int
    channels: int = 3
    dtype: str = 'uint16'
    seed: int = 1
    night: bool = False

    @property
    def label(self) -> str:
        """``1000x800x3-uint16-seed1``: width first, as people say it."""
        night = f'-night{NIGHT_VERSION}' if self.night else ''
        return f'{self.width}x{self.height}x{self.channels}-{self.dtype}-seed{self.seed}{night}'

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one frame as tifffile reads it."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    def paths(self, data: str, variant: str, count: int | None = None) -> list[str]:
        """Return the files of the first count frames (default all) of a variant."""
        directory = os.path.join(data, self.label, variant)
        n = self.count if count is None else count
        return [os.path.join(directory, f'frame{i:03d}.tif') for i in range(n)]


QUICK = (FrameSet(12, 800, 1000), FrameSet(200, 300, 400))
"""The main and the scaling frame sets of the default run."""

LARGE = (FrameSet(24, 3000, 4000), FrameSet(200, 750, 1000))
"""The main and the scaling frame sets of ``--large``."""

NIGHT_QUICK = FrameSet(24, 600, 800, night=True)
"""The main set of ``--night``: as many frames as the large night, smaller."""

NIGHT_LARGE = FrameSet(24, 3000, 4000, night=True)
"""The main set of ``--night --large``: the table of issue 14."""

TINY = FrameSet(2, 64, 64)
"""The two small frames of the start-up case."""


Key = tuple[str, str, str]
"""Key of a measured case: (case, variant or sub-case, budget or count)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One measured command: its key in the results, its argv, the files it
    reads (read once beforehand), files put back before it runs (pairs of
    destination and source), its environment, its runs per round, and why
    it is not run at all (empty if it is)."""

    key: Key
    argv: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    restore: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    runs: int = 1
    skip: str = ''


NOT_RUN = -1000
"""The status of a job that was not run (`Job.skip`)."""


@dataclasses.dataclass(frozen=True)
class Result:
    """What one child run took."""

    seconds: float
    maxrss_mib: float
    status: int
    error: str
    cpu: float = 0.0  # user and system CPU seconds of the child alone
    system: float = 0.0  # its system CPU seconds


# -- the floor: a plain average, run as a child (--floor) ---------------------


def floor_average(output: str, inputs: Sequence[str]) -> None:
    """Write the plain average of TIFF files, reading each file once.

    The sum is float64 (exact for integer samples); integer results are
    rounded half to even, as imgstack does.
    """
    import numpy as np
    import tifffile

    total = None
    dtype = None
    for path in inputs:
        image = tifffile.imread(path)
        if total is None:
            total, dtype = np.zeros(image.shape, np.float64), image.dtype
        np.add(total, image, out=total)
        del image
    assert total is not None and dtype is not None
    total /= len(inputs)
    if dtype.kind != 'f':
        np.rint(total, out=total)
    result = total.astype(dtype)
    del total
    rgb = result.ndim == 3 and result.shape[-1] in (3, 4)
    tifffile.imwrite(output, result, photometric='rgb' if rgb else 'minisblack', metadata=None)


# -- the frames: written in a separate process --------------------------------


def night_frames(images: Iterable[object], count: int, seed: int) -> Iterator[object]:
    """Yield the frames of a drifting night made from make_frames' frames.

    Frame i of n, at time t = i / (n - 1) of the night, becomes
    ``x * f_i + sky * (level_i + g_i * plane_i)``: ``sky`` is the per-channel
    median of the first frame; ``level_i`` (within +-5%) rises smoothly over
    the night with a wave and jitter; ``plane_i`` is a zero-mean plane whose
    direction turns by a quarter turn over the night, and ``g_i`` its
    strength (2% to 6% of the sky from corner to corner); ``f_i`` in
    0.85..1.0 is the transparency, a thin cloud passing around t = 0.65
    plus jitter.  Hot pixels, cosmic rays and trails come from make_frames
    and are dimmed by the cloud with the rest.  Values are clipped to the
    type's range and rounded for integer types.

    The drift is drawn from ``(seed, NIGHT_SEED)`` for all frames at once,
    so the frames depend only on the seed and the count.
    """
    import numpy as np

    rng = np.random.default_rng([seed, NIGHT_SEED])
    t = np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1)
    level = np.clip(0.035 * (2 * t - 1) + 0.01 * np.sin(2 * np.pi * t)
                    + rng.normal(0, 0.008, count), -0.05, 0.05)
    strength = np.clip(0.02 + 0.04 * t + rng.normal(0, 0.005, count), 0.0, None)
    angle = rng.uniform(0, 2 * np.pi) + 0.5 * np.pi * t + rng.normal(0, 0.1, count)
    cloud = 0.8 * np.exp(-(((t - 0.65) / 0.15) ** 2)) + rng.uniform(0, 0.25, count)
    transparency = 1.0 - 0.15 * np.clip(cloud, 0.0, 1.0)
    sky = None
    for i, image in enumerate(images):
        image = np.asarray(image)
        dtype = image.dtype
        top = 1.0 if dtype.kind == 'f' else float(np.iinfo(dtype).max)
        height, width = image.shape[:2]
        if sky is None:  # per channel, from a subsample of the first frame
            step = max(1, min(height, width) // 256)
            sample = image[::step, ::step].reshape(-1, 1 if image.ndim == 2 else image.shape[2])
            sky = np.median(sample, axis=0).astype(np.float32)
        x = (np.arange(width, dtype=np.float32) / width - 0.5) * np.float32(np.cos(angle[i]))
        y = (np.arange(height, dtype=np.float32) / height - 0.5) * np.float32(np.sin(angle[i]))
        base = np.float32(strength[i]) * (y[:, None] + x[None, :]) + np.float32(level[i])
        out = image.astype(np.float32)
        out *= np.float32(transparency[i])
        if out.ndim == 2:
            out += base * sky[0]
        else:
            out += base[..., None] * sky
        del base
        np.clip(out, 0, top, out=out)
        if dtype.kind != 'f':
            np.rint(out, out=out)
        yield out.astype(dtype)


def write_options(variant: str, height: int) -> dict[str, object]:
    """Return the ``tifffile.imwrite`` arguments of an input variant."""
    if variant == 'raw':
        return {}
    if variant == 'lzw16':
        return {'compression': 'lzw', 'rowsperstrip': 16}
    if variant == 'lzw1':
        return {'compression': 'lzw', 'rowsperstrip': height}
    msg = f'unknown variant {variant!r}'
    raise ValueError(msg)


def is_cached(frames: FrameSet, data: str, variant: str) -> bool:
    """Return whether every file of a variant exists, with the right header
    and all its data."""
    import tifffile

    options = write_options(variant, frames.height)
    compression = 5 if options.get('compression') == 'lzw' else 1
    for path in frames.paths(data, variant):
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                end = max(o + c for o, c in zip(page.dataoffsets, page.databytecounts))
                ok = (
                    end <= os.path.getsize(path)
                    and page.shape == frames.shape
                    and page.dtype.name == frames.dtype
                    and page.compression == compression
                    and ('rowsperstrip' not in options
                         or page.rowsperstrip == options['rowsperstrip'])
                )
        except Exception:  # missing, truncated or foreign: write it again
            return False
        if not ok:
            return False
    return True


def load_module(path: str) -> object:
    """Import the imgstack.py at path as a module of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location('imgstack', path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules['imgstack'] = module  # as an import does: dataclasses look it up
    spec.loader.exec_module(module)
    return module


def prepare_frames(
    frames: FrameSet, data: str, variants: Sequence[str], imgstack_path: str
) -> list[str]:
    """Write the variants of a frame set that are not cached; return those written.

    The frames come from the ``make_frames`` of the imgstack.py at
    imgstack_path.  Each file is written beside its name and renamed into
    place, so an interrupted run leaves no file that looks complete.
    """
    import tifffile

    missing = [v for v in variants if not is_cached(frames, data, v)]
    if not missing:
        return []
    for variant in missing:
        os.makedirs(os.path.dirname(frames.paths(data, variant, 1)[0]), exist_ok=True)
    imgstack = load_module(imgstack_path)
    # a night's frames have a sky far brighter than their noise (about 40
    # ADU of noise on a sky of 1300 to 3300 ADU): its drift then shows
    night = {'electrons': NIGHT_ELECTRONS, 'read_noise': NIGHT_READ_NOISE} if frames.night else {}
    images = imgstack.make_frames(
        frames.count, frames.height, frames.width, channels=frames.channels,
        dtype=frames.dtype, trails=range(0, frames.count, TRAIL_EVERY), seed=frames.seed,
        **night,
    )
    if frames.night:
        images = night_frames(images, frames.count, frames.seed)
    photometric = 'rgb' if frames.channels == 3 else 'minisblack'
    for i, image in enumerate(images):
        for variant in missing:
            path = frames.paths(data, variant)[i]
            part = path + '.part'
            tifffile.imwrite(part, image, photometric=photometric, metadata=None,
                             **write_options(variant, frames.height))
            os.replace(part, path)
    return missing


def files_stamp(paths: Sequence[str]) -> list[list[object]]:
    """Return the name, size and mtime of files: what a cache depends on."""
    return [[os.path.basename(p), os.path.getsize(p), os.stat(p).st_mtime_ns] for p in paths]


def set_character(frames: FrameSet, data: str, variant: str) -> dict[str, float]:
    """Return what the first pass of ``-s 2.5`` sees on a sample of a set:
    the percent of values it rejects and of points that lose one, and the
    span of the frames' backgrounds (medians of channel 0) against the sky
    and the noise (the MAD of neighbour differences, / sqrt(2), scaled to
    an SD).  The sample is every ``step``-th row, about `CHARACTER_VALUES`
    values a frame.  Cached beside the frames while they do not change."""
    import numpy as np
    import tifffile

    paths = frames.paths(data, variant)
    stamp = files_stamp(paths)
    cache = os.path.join(data, frames.label, f'character-{variant}.json')
    try:
        with open(cache, encoding='utf-8') as f:
            saved = json.load(f)
        if saved['stamp'] == stamp:
            return saved['character']
    except (OSError, ValueError, KeyError):
        pass
    step = -(-frames.height * frames.width * frames.channels // CHARACTER_VALUES)
    sample = []
    for path in paths:
        image = tifffile.imread(path)
        sample.append(image[::step].copy())
        del image
    stack = np.stack(sample).astype(np.float64)
    del sample
    deviation = np.abs(stack - stack.mean(axis=0))
    rejected = deviation > 2.5 * stack.std(axis=0)
    del deviation
    first = (stack[..., 0] if stack.ndim == 4 else stack).reshape(len(paths), -1)
    backgrounds = np.median(first, axis=1)
    steps = np.diff(stack[..., 0] if stack.ndim == 4 else stack, axis=-1).reshape(len(paths), -1)
    mad = np.median(np.abs(steps - np.median(steps, axis=1)[:, None]), axis=1)
    character = {
        'step': step,
        'values': 100 * float(rejected.mean()),
        'points': 100 * float(rejected.any(axis=0).mean()),
        'span': float(np.ptp(backgrounds)),
        'sky': float(np.mean(backgrounds)),
        'noise': float(np.median(1.482602218505602 * mad / np.sqrt(2))),
    }
    with open(cache, 'w', encoding='utf-8') as f:
        json.dump({'stamp': stamp, 'character': character}, f)
    return character


def character_line(c: dict[str, float]) -> str:
    """Return the line that describes a set's character."""
    return (f'pass 1 of -s 2.5 on one row in {c["step"]:.0f}: {c["values"]:.2f}% of values '
            f'rejected, {c["points"]:.0f}% of points lose one; backgrounds (channel 0) span '
            f'{c["span"]:.0f} ADU, {100 * c["span"] / c["sky"]:.1f}% of the sky, '
            f'{c["span"] / c["noise"]:.1f}x the noise ({c["noise"]:.0f} ADU)')


def prepare_all(
    wanted: Sequence[tuple[FrameSet, Sequence[str]]], data: str, imgstack_path: str
) -> list[tuple[FrameSet, list[str]]]:
    """Run `prepare_frames` for each set in fresh processes (see the module
    docstring on memory); return what each wrote."""
    context = multiprocessing.get_context('spawn')
    workers = min(len(wanted), os.cpu_count() or 1)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(prepare_frames, frames, data, variants, imgstack_path)
                   for frames, variants in wanted]
        return [(frames, future.result()) for (frames, _), future in zip(wanted, futures)]


# -- Siril: a sequence converted once, stacked by scripts ---------------------


def siril_env(data: str) -> tuple[tuple[str, str], ...]:
    """Return the environment entries that give Siril its own empty
    configuration directory under data."""
    return (('XDG_CONFIG_HOME', os.path.join(data, 'siril-config')),)


def siril_quote(argument: str) -> str:
    """Quote a whole Siril script argument if it holds a space (Siril's rule)."""
    return f'"{argument}"' if any(c.isspace() for c in argument) else argument


def siril_dir(frames: FrameSet, data: str) -> str:
    """Return the directory of a frame set's Siril sequence."""
    return os.path.join(data, frames.label, 'siril')


def siril_fits(frames: FrameSet, data: str) -> list[str]:
    """Return the FITS files of a frame set's Siril sequence."""
    directory = siril_dir(frames, data)
    return [os.path.join(directory, f'{SIRIL_BASENAME}_{i:05d}.fit')
            for i in range(1, frames.count + 1)]


def siril_seq(frames: FrameSet, data: str) -> tuple[str, str]:
    """Return the sequence file Siril uses and the pristine copy put back."""
    seq = os.path.join(siril_dir(frames, data), f'{SIRIL_BASENAME}_.seq')
    return seq, os.path.join(data, frames.label, f'{SIRIL_BASENAME}_.seq.pristine')


def run_siril_script(lines: Sequence[str], data: str, script: str) -> tuple[int, str]:
    """Write a Siril script and run it; return the exit status and the first
    error line of its log (empty on success)."""
    with open(script, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    env = dict(os.environ, **dict(siril_env(data)))
    done = subprocess.run([SIRIL, '-s', script], capture_output=True, text=True,
                          errors='replace', env=env, check=False)
    return done.returncode, first_error(done.stdout + '\n' + done.stderr)


def prepare_siril(frames: FrameSet, data: str) -> tuple[str, float]:
    """Convert the raw TIFF frames of a set into a Siril sequence, unless the
    conversion of these very files is cached; return what was done and its
    time.  The sequence file that ``setref`` writes is kept as the pristine
    copy that every Siril run starts from."""
    directory = siril_dir(frames, data)
    tiffs = frames.paths(data, 'raw')
    stamp_path = os.path.join(directory, 'converted.json')
    stamp = files_stamp(tiffs)
    seq, pristine = siril_seq(frames, data)
    try:
        with open(stamp_path, encoding='utf-8') as f:
            if (json.load(f) == stamp and os.path.exists(pristine)
                    and all(os.path.exists(p) for p in siril_fits(frames, data))):
                return 'cached', 0.0
    except (OSError, ValueError):
        pass
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    started = time.perf_counter()
    status, error = run_siril_script([
        'requires 1.0.0',
        f'cd {siril_quote(os.path.dirname(tiffs[0]))}',
        f'convert {SIRIL_BASENAME} {siril_quote("-out=" + directory)}',
        f'cd {siril_quote(directory)}',
        f'setref {SIRIL_BASENAME}_ 1',
    ], data, os.path.join(data, frames.label, 'convert.ssf'))
    seconds = time.perf_counter() - started
    missing = [p for p in siril_fits(frames, data) if not os.path.exists(p)]
    if status != 0 or missing or not os.path.exists(seq):
        msg = f'Siril conversion failed (exit {status}): {error or "files missing"}'
        raise RuntimeError(msg)
    shutil.copyfile(seq, pristine)
    with open(stamp_path, 'w', encoding='utf-8') as f:
        json.dump(stamp, f)
    return 'converted', seconds


def siril_version() -> str:
    """Return ``siril 1.0.6`` or the like."""
    done = subprocess.run([SIRIL, '--version'], capture_output=True, text=True,
                          errors='replace', check=False)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else 'siril ?'


# -- running and measuring ----------------------------------------------------


def first_error(text: str) -> str:
    """Return the first line of a run's output that mentions an error, or
    its first line; Siril's ``Error in line N`` comes after the line that
    gives the cause, so both are returned."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = next((i for i, line in enumerate(lines) if 'error' in line.lower()), None)
    if found is None:
        return lines[0] if lines else ''
    if lines[found].startswith('log: Error in line') and found > 0:
        return f'{lines[found - 1]} ({lines[found]})'
    return lines[found]


def read_inputs(paths: Iterable[str], buffer: bytearray) -> None:
    """Read files once, chunk by chunk into buffer, to have them in the page
    cache; this process keeps nothing of them."""
    view = memoryview(buffer)
    for path in paths:
        with open(path, 'rb', buffering=0) as f:
            while f.readinto(view):
                pass


def measure(job: Job, buffer: bytearray, cwd: str) -> Result:
    """Read a job's inputs, put back its files, run it as a child in cwd;
    return its wall time and peak RSS."""
    read_inputs(job.inputs, buffer)
    for destination, source in job.restore:
        shutil.copyfile(source, destination)
    env = dict(os.environ, **dict(job.env)) if job.env else None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        try:
            child = subprocess.Popen(job.argv, stdout=out, stderr=err, env=env, cwd=cwd)
        except OSError as exc:
            return Result(0.0, 0.0, 127, f'{job.argv[0]}: {exc.strerror}')
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        error = ''
        if child.returncode != 0:
            err.seek(0)
            error = first_error(err.read().decode(errors='replace'))
            if not error or 'error' not in error.lower():  # Siril logs on stdout
                out.seek(0)
                error = first_error(out.read().decode(errors='replace')) or error
    return Result(seconds, usage.ru_maxrss / 1024, child.returncode, error,
                  usage.ru_utime + usage.ru_stime, usage.ru_stime)


def run_rounds(
    jobs: Sequence[Job], repeat: int, seed: int, cwd: str
) -> dict[Key, list[Result]]:
    """Run every job once per round (its runs times), repeat rounds, in a
    seeded shuffled order, in cwd; a job that failed is not run again, and
    one with a reason to skip it is not run at all."""
    order = random.Random(seed)
    buffer = bytearray(READ_CHUNK)
    results: dict[Key, list[Result]] = {
        job.key: [Result(0.0, 0.0, NOT_RUN, job.skip)] if job.skip else [] for job in jobs
    }
    for r in range(repeat):
        started = time.perf_counter()
        shuffled = [job for job in jobs for _ in range(job.runs)
                    if not any(x.status for x in results[job.key])]
        order.shuffle(shuffled)
        for job in shuffled:
            if not any(x.status for x in results[job.key]):
                results[job.key].append(measure(job, buffer, cwd))
        print(f'round {r + 1}/{repeat}: {len(shuffled)} runs, '
              f'{time.perf_counter() - started:.1f} s', file=sys.stderr, flush=True)
    return results


def imgstack_options(program: str) -> set[str] | None:
    """Return the long options that ``imgstack.py -h`` lists, or None if it
    fails.  argparse takes a prefix of an option for the option (``--reject``
    for ``--rejection-map``), so a case whose options are not all listed is
    not run: it would measure something else."""
    done = subprocess.run([sys.executable, program, '-h'], capture_output=True, text=True,
                          errors='replace', check=False)
    if done.returncode != 0:
        return None
    return set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', done.stdout))


def missing_options(options: Sequence[str], known: set[str] | None) -> str:
    """Return why a case cannot run with the known options, or ''."""
    if known is None:
        return ''
    missing = [o for o in options if o.startswith('--') and o.split('=')[0] not in known]
    return f'imgstack.py -h lists no {", ".join(missing)}; not run' if missing else ''


def imgstack_argv(
    program: str, options: Sequence[str], budget: str, output: str, inputs: Sequence[str]
) -> tuple[str, ...]:
    """Return the command line of one run of the imgstack.py at program."""
    return (sys.executable, program, '-q', '-f', '-m', budget, *options, output, *inputs)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one benchmark runs: the imgstack.py and the one it is compared
    with (if any), the sets, the cases with their options and budgets, and
    the Siril comparisons."""

    imgstack: str
    main_set: FrameSet
    scaling_set: FrameSet | None
    variants: tuple[str, ...]
    cases: dict[str, tuple[str, ...]]
    budgets: dict[str, tuple[str, ...]]
    siril: dict[str, tuple[str, str]]
    against: str | None = None

    @property
    def versions(self) -> tuple[tuple[str, str], ...]:
        """Return each imgstack.py that runs the cases and the suffix of its
        case names: none for ``--imgstack``, `AGAINST` for ``--against``."""
        if self.against is None:
            return ((self.imgstack, ''),)
        return ((self.imgstack, ''), (self.against, AGAINST))


def build_jobs(
    plan: Plan, data: str, out: str, known: dict[str, set[str] | None]
) -> list[Job]:
    """Return the jobs of one benchmark: start-up, floors, cases (of each
    version), Siril and scaling, in the order of the report; a version's
    cases with options that its imgstack.py does not list (known, by path)
    are skipped."""
    this = str(Path(__file__).resolve())
    tiny = TINY.paths(data, 'raw')
    jobs = [
        Job(('startup', 'python', ''), (sys.executable, '-c', 'pass'), runs=STARTUP_RUNS),
        Job(('startup', 'imports', ''), (sys.executable, '-c', 'import numpy, tifffile'),
            runs=STARTUP_RUNS),
    ]
    for program, suffix in plan.versions:
        jobs += [
            Job(('startup', 'version' + suffix, ''), (sys.executable, program, '--version'),
                runs=STARTUP_RUNS),
            Job(('startup', 'two' + suffix, ''),
                imgstack_argv(program, (), '1G', os.path.join(out, f'two{suffix}.tif'), tiny),
                inputs=tuple(tiny), runs=STARTUP_RUNS),
        ]
    main_set = plan.main_set
    for variant in plan.variants:
        inputs = tuple(main_set.paths(data, variant))
        output = os.path.join(out, f'floor-{variant}.tif')
        jobs.append(Job(('floor', variant, ''), (sys.executable, this, '--floor', output, *inputs),
                        inputs=inputs))
        for case, options in plan.cases.items():
            for budget in plan.budgets[case]:
                for program, suffix in plan.versions:
                    output = os.path.join(out, f'{case}{suffix}-{variant}-{budget}.tif')
                    jobs.append(Job((case + suffix, variant, budget),
                                    imgstack_argv(program, options, budget, output, inputs),
                                    inputs=inputs, skip=missing_options(options, known[program])))
    if plan.siril:
        script = os.path.join(out, 'startup.ssf')
        with open(script, 'w', encoding='utf-8') as f:
            f.write('requires 1.0.0\n')
        env = siril_env(data)
        jobs.append(Job(('startup', 'siril', ''), (SIRIL, '-s', script), env=env,
                        runs=STARTUP_RUNS))
        fits = siril_fits(main_set, data)
        seq, pristine = siril_seq(main_set, data)
        for name, (arguments, _) in plan.siril.items():
            script = os.path.join(out, f'siril-{name}.ssf')
            result = os.path.join(out, f'siril-{name}')
            with open(script, 'w', encoding='utf-8') as f:
                f.write('\n'.join([
                    'requires 1.0.0',
                    f'cd {siril_quote(siril_dir(main_set, data))}',
                    f'stack {SIRIL_BASENAME}_ {arguments} {siril_quote("-out=" + result)}',
                ]) + '\n')
            jobs.append(Job(('siril', name, ''), (SIRIL, '-s', script),
                            inputs=(*fits, pristine), restore=((seq, pristine),), env=env))
    if plan.scaling_set is not None:
        for case in SCALING_CASES:
            for n in SCALING_COUNTS:
                output = os.path.join(out, f'scaling-{case}-{n}.tif')
                inputs = tuple(plan.scaling_set.paths(data, 'raw', n))
                jobs.append(Job(('scaling', case, str(n)),
                                imgstack_argv(plan.imgstack, CASES[case], SCALING_BUDGET,
                                              output, inputs),
                                inputs=inputs))
    return jobs


# -- the report ---------------------------------------------------------------


def budget_mib(budget: str) -> float:
    """Return a budget such as ``256M`` or ``1G`` in MiB."""
    units = {'K': 1 / 1024, 'M': 1, 'G': 1024}
    return float(budget[:-1]) * units[budget[-1].upper()]


def describe_set(frames: FrameSet, data: str, variants: Sequence[str]) -> str:
    """Return one line on a frame set: shape, count and size on disk."""
    itemsize = int(''.join(c for c in frames.dtype if c.isdigit())) // 8
    frame_mib = frames.height * frames.width * frames.channels * itemsize / MIB
    sizes = ', '.join(
        f'{v} {sum(os.path.getsize(p) for p in frames.paths(data, v)) / MIB:.0f} MiB'
        for v in variants
    )
    night = ('; a drifting night (sky level +-5%, turning gradient, '
             'transparency 0.85..1)' if frames.night else '')
    return (f'{frames.count} frames of {frames.width}x{frames.height}x{frames.channels} '
            f'{frames.dtype} ({frame_mib:.1f} MiB each, seed {frames.seed}{night}); '
            f'on disk: {sizes}')


@dataclasses.dataclass(frozen=True)
class Summary:
    """The statistics of one case's runs, or the error of its failure."""

    median: float = 0.0
    least: float = 0.0
    spread: float = 0.0
    peak: float = 0.0
    runs: int = 0
    error: str = ''
    cpu: float = 0.0
    system: float = 0.0

    @classmethod
    def of(cls, runs: Sequence[Result]) -> Summary:
        """Summarize the runs of one case."""
        failed = [r for r in runs if r.status != 0]
        if failed and failed[0].status == NOT_RUN:
            return cls(error=failed[0].error)
        if failed:
            return cls(runs=len(runs), error=f'exit {failed[0].status}: {failed[0].error}')
        if not runs:
            return cls(error='not run')
        seconds = [r.seconds for r in runs]
        median = statistics.median(seconds)
        return cls(median, min(seconds), (max(seconds) - min(seconds)) / median,
                   max(r.maxrss_mib for r in runs), len(runs),
                   cpu=statistics.median(r.cpu for r in runs),
                   system=statistics.median(r.system for r in runs))

    @property
    def ok(self) -> bool:
        return not self.error


def ratio(a: float, b: float) -> str:
    """Return a / b to two decimals."""
    return f'{a / b:.2f}'


def short(text: str, width: int = 72) -> str:
    """Return text cut to width characters."""
    return text if len(text) <= width else text[:width - 3] + '...'


def table_rows(
    results: dict[Key, list[Result]], plan: Plan
) -> tuple[list[list[str]], list[str]]:
    """Return the rows of the main table (each case's ``@against`` row
    under its own) and the problems worth a remark."""
    rows = []
    problems = []
    for variant in plan.variants:
        floor = Summary.of(results[('floor', variant, '')])
        keys = [('floor', 'numpy+tifffile', '')] + [
            (c + suffix, ' '.join(options), b) for c, options in plan.cases.items()
            for b in plan.budgets[c] for _, suffix in plan.versions]
        for case, args, budget in keys:
            s = Summary.of(results[(case, variant, budget)])
            if not s.ok:
                rows.append([case, args, variant, budget or '-', 'failed', '', '', '', '', '',
                             '', '', '', short(s.error)])
                problems.append(f'{case} {variant} {budget or "-"}: {s.error}')
                continue
            within = '-'
            if budget:
                bound = budget_mib(budget) + SLACK_MIB
                within = 'yes' if s.peak <= bound else 'NO'
                if s.peak > bound:
                    problems.append(f'{case} {variant} -m {budget}: peak RSS {s.peak:.0f} MiB '
                                    f'> {bound:.0f} MiB')
            rows.append([
                case, args, variant, budget or '-', f'{s.median:.2f}', f'{s.least:.2f}',
                f'{100 * s.spread:.0f}%', f'{s.cpu:.2f}', f'{s.system:.2f}', f'{s.peak:.0f}',
                ratio(s.median, floor.median) if floor.ok else '-',
                ratio(s.least, floor.least) if floor.ok else '-', within, '',
            ])
    return rows, problems


def against_rows(results: dict[Key, list[Result]], plan: Plan) -> list[list[str]]:
    """Return the rows of the table that sets each case (new) beside its
    ``@against`` run: medians, spreads, ratios to the floor, the ratios
    new / against of medians and of minimums, and the median and range of
    the ratios of runs paired by round (`run_rounds` appends one run of
    each case per round, so a case's n-th run and its ``@against`` one's
    ran in the same round)."""
    rows = []
    for variant in plan.variants:
        floor = Summary.of(results[('floor', variant, '')])
        for case in plan.cases:
            for budget in plan.budgets[case]:
                new_runs = results[(case, variant, budget)]
                old_runs = results[(case + AGAINST, variant, budget)]
                new, old = Summary.of(new_runs), Summary.of(old_runs)
                if not (new.ok and old.ok):
                    rows.append([case, variant, budget, *[''] * 9,
                                 short(new.error or f'against: {old.error}', 40)])
                    continue
                pairs = sorted(a.seconds / b.seconds for a, b in zip(new_runs, old_runs))
                rows.append([
                    case, variant, budget, f'{new.median:.2f}', f'{old.median:.2f}',
                    f'{100 * new.spread:.0f}%', f'{100 * old.spread:.0f}%',
                    ratio(new.median, floor.median) if floor.ok else '-',
                    ratio(old.median, floor.median) if floor.ok else '-',
                    ratio(new.median, old.median), ratio(new.least, old.least),
                    f'{statistics.median(pairs):.2f} ({pairs[0]:.2f}-{pairs[-1]:.2f})', '',
                ])
    return rows


def siril_rows(
    results: dict[Key, list[Result]], plan: Plan
) -> tuple[list[list[str]], list[str]]:
    """Return the rows of the Siril table (each Siril command beside the
    imgstack case it is compared with) and the problems worth a remark."""
    variant = 'raw' if 'raw' in plan.variants else plan.variants[0]
    floor = Summary.of(results[('floor', variant, '')])
    rows = []
    problems = []
    for name, (arguments, case) in plan.siril.items():
        s = Summary.of(results[('siril', name, '')])
        budget = plan.budgets[case][0]
        mine = Summary.of(results[(case, variant, budget)])
        command = f'stack {arguments}'
        if not s.ok:
            rows.append([command, 'failed', '', '', '', '', '', case, '', '', '',
                         short(s.error)])
            problems.append(f'siril {command}: {s.error}')
            continue
        vs = [ratio(mine.median, s.median), ratio(mine.least, s.least)] if mine.ok else ['-', '-']
        rows.append([
            command, f'{s.median:.2f}', f'{s.least:.2f}', f'{100 * s.spread:.0f}%',
            f'{s.cpu:.2f}', f'{s.peak:.0f}', ratio(s.median, floor.median) if floor.ok else '-',
            f'{case} -m {budget}', f'{mine.median:.2f}' if mine.ok else 'failed',
            *vs, '' if mine.ok else short(mine.error, 40),
        ])
    return rows, problems


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: set[int]) -> str:
    """Return rows as an aligned text table (the left columns' text left,
    the others right)."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return '  '.join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return '\n'.join([line(header), line(['-' * w for w in widths])] + [line(r) for r in rows])


def startup_lines(results: dict[Key, list[Result]]) -> list[str]:
    """Return the start-up lines: median, minimum and spread of each case
    (those of the ``--against`` version after the measured one's)."""
    two = f'2 frames of {TINY.width}x{TINY.height}x{TINY.channels}'
    names = {
        'python': 'python -c pass',
        'imports': 'import numpy, tifffile',
        'version': 'imgstack.py --version',
        'two': f'imgstack.py on {two}',
        'version' + AGAINST: f'imgstack.py{AGAINST} --version',
        'two' + AGAINST: f'imgstack.py{AGAINST} on {two}',
        'siril': 'siril-cli, script of "requires" alone',
    }
    names = {name: text for name, text in names.items() if ('startup', name, '') in results}
    width = max(40, *map(len, names.values()))
    lines = []
    for name, text in names.items():
        s = Summary.of(results[('startup', name, '')])
        if not s.ok:
            lines.append(f'  {text:<{width}} failed: {s.error}')
            continue
        lines.append(f'  {text:<{width}} {1000 * s.median:5.0f} ms median, '
                     f'{1000 * s.least:5.0f} ms min, spread {100 * s.spread:3.0f}%, '
                     f'{s.peak:4.0f} MiB ({s.runs} runs)')
    return lines


def scaling_lines(results: dict[Key, list[Result]], frames: FrameSet) -> list[str]:
    """Return the scaling lines: time per frame at each count (gross, net
    of the interpreter start-up, and per frame added), and the median/mean
    center time ratio at each count."""
    startup = Summary.of(results[('startup', 'version', '')])
    walls: dict[str, list[float]] = {}
    least: dict[str, list[float]] = {}
    for case in SCALING_CASES:
        walls[case], least[case] = [], []
        for n in SCALING_COUNTS:
            s = Summary.of(results[('scaling', case, str(n))])
            if not s.ok:
                return [f'scaling: {case} failed at {n} frames: {s.error}']
            walls[case].append(s.median)
            least[case].append(s.least)
    counts = SCALING_COUNTS
    wall = walls[SCALING_CASES[0]]
    base = startup.median if startup.ok else 0.0
    gross = [1000 * w / n for w, n in zip(wall, counts)]
    net = [1000 * (w - base) / n for w, n in zip(wall, counts)]
    net_least = [1000 * (w - (startup.least if startup.ok else 0.0)) / n
                 for w, n in zip(least[SCALING_CASES[0]], counts)]
    added = [1000 * (wall[i + 1] - wall[i]) / (counts[i + 1] - counts[i])
             for i in range(len(counts) - 1)]
    steps = ', '.join(f'{counts[i]}->{counts[i + 1]} {x:.1f}' for i, x in enumerate(added))
    ratios = [m / c for m, c in zip(walls['median'], walls['clip'])]
    kind = 'night ' if frames.night else ''
    return [
        f'scaling: {" ".join(CASES[SCALING_CASES[0]])} -m {SCALING_BUDGET} on '
        f'{"/".join(map(str, counts))} raw {kind}frames of '
        f'{frames.width}x{frames.height}x{frames.channels} {frames.dtype}',
        '  ms per frame:                 ' + ' / '.join(f'{x:.1f}' for x in gross),
        f'  net of {1000 * base:.0f} ms start-up:      '
        + ' / '.join(f'{x:.1f}' for x in net) + f'  (last/first {net[-1] / net[0]:.2f})',
        '  net, minimum runs:            '
        + ' / '.join(f'{x:.1f}' for x in net_least)
        + f'  (last/first {net_least[-1] / net_least[0]:.2f})',
        f'  ms per frame added:           {steps}',
        '  --center median / mean time:  ' + ' / '.join(f'{x:.2f}' for x in ratios),
    ]


def center_line(results: dict[Key, list[Result]], plan: Plan) -> str | None:
    """Return the median/mean time ratio (``median`` over ``clip``) per
    variant and budget, or None when either case was not run."""
    if 'median' not in plan.cases or 'clip' not in plan.cases:
        return None
    ratios = []
    for variant in plan.variants:
        for budget in plan.budgets['median']:
            a = Summary.of(results.get(('median', variant, budget), []))
            b = Summary.of(results.get(('clip', variant, budget), []))
            if a.ok and b.ok:
                ratios.append(f'{variant} {budget} {a.median / b.median:.2f}')
    if not ratios:
        return None
    return '--center median / mean time (table): ' + ', '.join(ratios)


def environment_line(siril: bool) -> str:
    """Return the interpreter, library versions and machine of the run."""
    versions = subprocess.run(
        [sys.executable, '-c',
         'import numpy, tifffile, imagecodecs; '
         'print(numpy.__version__, tifffile.__version__, imagecodecs.__version__)'],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    libs = ' '.join(f'{name} {v}' for name, v in
                    zip(('numpy', 'tifffile', 'imagecodecs'), versions))
    other = f', {siril_version()}' if siril else ''
    return (f'python {platform.python_version()} ({sys.executable}), {libs}{other}; '
            f'{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs')


# -- the command line ---------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f'must be an integer >= 1, not {text!r}'
        raise argparse.ArgumentTypeError(msg)
    return value


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """Return an argparse type: a comma-separated list of allowed names."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(',') if t.strip())
        wrong = [t for t in items if t not in allowed]
        if wrong or not items:
            msg = f'choose from {",".join(allowed)}, not {text!r}'
            raise argparse.ArgumentTypeError(msg)
        return items

    return parse


def _names(text: str) -> tuple[str, ...]:
    """Return a comma-separated list of names as a tuple (checked later,
    against the cases of the chosen set)."""
    items = tuple(t.strip() for t in text.split(',') if t.strip())
    if not items:
        msg = f'a comma-separated list of case names, not {text!r}'
        raise argparse.ArgumentTypeError(msg)
    return items


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the command line."""
    parser = argparse.ArgumentParser(
        prog='bench_imgstack.py',
        description='Benchmark imgstack.py: wall time and peak RSS against a plain average, '
                    'another imgstack.py in the same rounds (--against) and, on a drifting '
                    'night, Siril.',
        epilog=(
            'night cases (--night): ' + ', '.join(NIGHT_CASES) + '\n'
            'night groups: ' + ', '.join(f'{g} ({",".join(c)})'
                                         for g, c in NIGHT_GROUPS.items()) + '\n'
            'Siril commands: ' + ', '.join(f'{n} (stack {a}; vs {c})'
                                           for n, (a, c) in SIRIL_CASES.items()) + '\n\n'
            'examples:\n'
            '  python bench/bench_imgstack.py\n'
            '  python bench/bench_imgstack.py --large --repeat 5\n'
            '  python bench/bench_imgstack.py --cases clip --variants lzw1 --no-scaling\n'
            '  python bench/bench_imgstack.py --night --large\n'
            '  python bench/bench_imgstack.py --night --cases main,rej-gesd --siril rej-s,rej-g\n'
            '  python bench/bench_imgstack.py --night --siril none --no-scaling --against OLD.py'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('--data', metavar='DIR', default=str(REPO / 'bench' / 'data'),
                        help='where the frames are written and cached (default bench/data)')
    parser.add_argument('--repeat', type=_positive, default=3, metavar='N',
                        help='runs of each case; the median is reported (default %(default)s)')
    parser.add_argument('--large', action='store_true',
                        help='24 frames of 4000x3000 RGB uint16 (scaling at 1000x750)')
    parser.add_argument('--night', action='store_true',
                        help='a drifting night (24 frames of 800x600, or 4000x3000 with '
                             '--large), the night cases and Siril')
    parser.add_argument('--imgstack', metavar='FILE', default=str(IMGSTACK),
                        help='the imgstack.py to measure, whose make_frames also makes the '
                             'frames (default the repository\'s)')
    parser.add_argument('--against', metavar='FILE',
                        help='another imgstack.py (an older version, say) that runs every '
                             'imgstack case too, in the same shuffled rounds; its rows are '
                             f'CASE{AGAINST}, and a table gives the ratios new / against')
    parser.add_argument('--seed', type=int, default=1,
                        help='seed of the frames and of the run order (default %(default)s)')
    only = parser.add_argument_group('filters')
    only.add_argument('--cases', type=_names, metavar='LIST',
                      help=f'imgstack cases: {",".join(CASES)}; with --night, night cases and '
                           'groups (see below); the floor always runs (default all)')
    only.add_argument('--variants', type=_choices(tuple(VARIANTS)), metavar='LIST',
                      help=f'input variants, from {",".join(VARIANTS)} '
                           '(default all; raw with --night)')
    only.add_argument('--budgets', type=_choices(BUDGETS), default=BUDGETS,
                      metavar='LIST', help=f'memory budgets, from {",".join(BUDGETS)}')
    only.add_argument('--every-budget', action='store_true',
                      help='run every night case at every budget, not only the main ones')
    only.add_argument('--siril', type=_names, metavar='LIST',
                      help='Siril commands to compare (--night only): names from '
                           f'{",".join(SIRIL_CASES)}, all, or none (default: those whose '
                           f'imgstack case runs, but {",".join(SIRIL_OPT_IN)}, when '
                           'siril-cli is on PATH)')
    only.add_argument('--no-scaling', action='store_true', help='skip the scaling lines')
    parser.add_argument('--floor', nargs='+', metavar=('OUT', 'IN'),
                        help='internal: write the plain average of IN... to OUT and exit')
    return parser


def make_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Plan:
    """Return the plan of the benchmark the arguments ask for; a name that
    the chosen set does not have is a usage error."""
    if args.night:
        main_set = NIGHT_LARGE if args.large else NIGHT_QUICK
        scaling_set = dataclasses.replace((LARGE if args.large else QUICK)[1], night=True)
        table, groups = NIGHT_CASES, NIGHT_GROUPS
        variants = args.variants or ('raw',)
    else:
        main_set, scaling_set = LARGE if args.large else QUICK
        table, groups = CASES, {}
        variants = args.variants or tuple(VARIANTS)
    names = []
    for name in args.cases or tuple(table):
        members = groups.get(name, (name,))
        wrong = [m for m in members if m not in table]
        if wrong:
            parser.error(f'argument --cases: no case {name!r} '
                         f'{"with" if args.night else "without"} --night; choose from '
                         f'{",".join((*table, *groups))}')
        names += [m for m in members if m not in names]
    cases = {name: table[name] for name in table if name in names}
    main = set(NIGHT_GROUPS['main']) if args.night and not args.every_budget else set(table)
    budgets = {name: tuple(args.budgets) if name in main else tuple(args.budgets[:1])
               for name in cases}
    siril: dict[str, tuple[str, str]] = {}
    if args.siril is not None and not args.night:
        parser.error('argument --siril: Siril is compared on the --night set only')
    if args.night:
        if args.siril is None:
            wanted = [n for n, (_, case) in SIRIL_CASES.items()
                      if case in cases and n not in SIRIL_OPT_IN]
            wanted = wanted if shutil.which(SIRIL) else []
        elif args.siril == ('none',):
            wanted = []
        else:
            wanted = list(SIRIL_CASES) if args.siril == ('all',) else list(args.siril)
            wrong = [n for n in wanted if n not in SIRIL_CASES]
            if wrong:
                parser.error(f'argument --siril: choose from {",".join(SIRIL_CASES)}, all or '
                             f'none, not {",".join(wrong)}')
            if not shutil.which(SIRIL):
                parser.error(f'argument --siril: {SIRIL} is not on PATH')
            for name in wanted:  # its imgstack case runs too, for the ratio
                case = SIRIL_CASES[name][1]
                if case not in cases:
                    cases[case] = table[case]
                    budgets[case] = tuple(args.budgets[:1])
        siril = {n: SIRIL_CASES[n] for n in SIRIL_CASES if n in wanted}
        cases = {name: table[name] for name in table if name in cases}  # in table order
    if args.against is not None and not os.path.isfile(args.against):
        parser.error(f'argument --against: no file {args.against!r}')
    seed = args.seed
    return Plan(
        imgstack=os.path.abspath(args.imgstack),
        main_set=dataclasses.replace(main_set, seed=seed),
        scaling_set=None if args.no_scaling else dataclasses.replace(scaling_set, seed=seed),
        variants=tuple(variants), cases=cases, budgets=budgets, siril=siril,
        against=None if args.against is None else os.path.abspath(args.against),
    )


def run_benchmark(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Prepare the frames, run all rounds and print the report."""
    plan = make_plan(args, parser)
    main_set, scaling_set = plan.main_set, plan.scaling_set
    data = os.path.abspath(args.data)
    os.makedirs(data, exist_ok=True)
    print('$ python ' + shlex.join(sys.argv))
    print(environment_line(bool(plan.siril)))
    started = time.perf_counter()
    variants = list(plan.variants)
    if plan.siril and 'raw' not in variants:
        variants.append('raw')  # Siril converts the uncompressed frames
    wanted = [(main_set, variants), (TINY, ['raw'])]
    if scaling_set is not None:
        wanted.append((scaling_set, ['raw']))
    for frames, written in prepare_all(wanted, data, plan.imgstack):
        state = f'wrote {",".join(written)}' if written else 'cached'
        print(f'frames {frames.label} in {data}: {state}', file=sys.stderr)
    print(f'frames ready in {time.perf_counter() - started:.1f} s', file=sys.stderr)
    print(describe_set(main_set, data, plan.variants))
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        print('  ' + character_line(pool.submit(set_character, main_set, data,
                                                plan.variants[0]).result()))
    if plan.siril:
        state, seconds = prepare_siril(main_set, data)
        converted = f'converted in {seconds:.1f} s' if state == 'converted' else 'cached'
        print(f'Siril sequence (convert, untimed): {siril_dir(main_set, data)}, {converted}')
    with tempfile.TemporaryDirectory(prefix='out-', dir=data) as out:
        known = {program: imgstack_options(program) for program, _ in plan.versions}
        jobs = build_jobs(plan, data, out, known)
        buffer = bytearray(READ_CHUNK)
        warm = [('startup', 'version' + suffix, '') for _, suffix in plan.versions]
        for job in jobs:  # warm-up, not counted: the interpreter(s) and one floor
            if job.key in (*warm, ('floor', plan.variants[0], '')):
                measure(job, buffer, out)
        del buffer
        results = run_rounds(jobs, args.repeat, args.seed, out)
    rows, problems = table_rows(results, plan)
    header = ['case', 'options', 'input', '-m', 'median s', 'min s', 'spread', 'cpu s',
              'sys s', 'peak MiB', 'x floor', 'x floor min', f'RSS<=m+{SLACK_MIB}M', 'note']
    print(f'\nmedian and minimum of {args.repeat} runs each, interleaved, inputs read just '
          'before each run; cpu s and sys s are medians of the child\'s CPU time (user and '
          'system) and of its system time; peak RSS is the largest over the runs; x floor is '
          'the ratio of medians, x floor min that of minimums')
    print(format_table(header, rows, {0, 1, 2, 13}))
    if plan.against is not None:
        print(f'\neach case (new, {plan.imgstack}) beside its {AGAINST} row ({plan.against}), '
              'in the same rounds: medians, spreads and x floor of each; new/against is the '
              'ratio of medians, min that of minimums, pairs the median (and range) of the '
              'ratios of the runs made in the same round')
        aheader = ['case', 'input', '-m', 'median s', f'{AGAINST} s', 'spread', AGAINST,
                   'x floor', AGAINST, 'new/against', 'min', 'pairs (range)', 'note']
        print(format_table(aheader, against_rows(results, plan), {0, 1, 11, 12}))
    if plan.siril:
        srows, sproblems = siril_rows(results, plan)
        problems += sproblems
        print(f'\nSiril (timed: siril-cli start-up, reading the {main_set.count} FITS frames '
              'converted beforehand, stacking, writing a float FITS; not timed: the TIFF to '
              'FITS conversion); imgstack / Siril is the ratio of medians and of minimums')
        sheader = ['siril command', 'median s', 'min s', 'spread', 'cpu s', 'peak MiB',
                   'x floor', 'imgstack case', 'median s', 'imgstack/siril', 'min', 'note']
        print(format_table(sheader, srows, {0, 7, 11}))
    print('\nstart-up (each run in every round):')
    print('\n'.join(startup_lines(results)))
    if scaling_set is not None:
        print('\n'.join(scaling_lines(results, scaling_set)))
    line = center_line(results, plan)
    if line:
        print(line)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'this process peaked at {own:.0f} MiB (a lower bound of every child\'s peak RSS)')
    for problem in problems:
        print(f'problem: {problem}')
    failed = any(r.status != 0 for runs in results.values() for r in runs)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with --floor, one floor average); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.floor is not None:
        if len(args.floor) < 2:
            raise SystemExit('bench_imgstack.py: --floor needs OUT and at least one IN')
        floor_average(args.floor[0], args.floor[1:])
        return 0
    return run_benchmark(args, parser)


if __name__ == '__main__':
    sys.exit(main())
