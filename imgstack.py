#!/usr/bin/env python3
# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "numpy>=1.24",
#     "tifffile>=2024.8.10",
#     "imagecodecs>=2024.6.1",
# ]
# ///
# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Stack aligned TIFF frames into their sigma-clipped average.

For every point (one sample of one pixel) the values of that point in all
input frames are compared with their center (mean or median); values that
lie more than a given number of standard deviations away are rejected, the
comparison is repeated for a number of passes, and the mean of the values
that remain is written.  Satellite and airplane trails, cosmic-ray hits, hot
pixels and noise spikes disappear while the signal keeps its full depth.
Seven other rejections (mad, winsorized, linear, percentile, minmax, gesd,
none) and three other combinations (median, min, max) are offered, and the
frames of a night can be normalized and weighted first.

The frames are streamed band by band (a few rows of every input at a time)
under a memory budget, so a night of frames that does not fit in memory can
be stacked on a laptop.

The data flow, in the order of this file's sections:

- the computation, pure functions of arrays (no I/O): `Method` holds the
  rejection and combination, with each method's defaults
  (`DEFAULT_FACTORS`, `DEFAULT_PASSES`); `stack_array` and
  `sigma_clipped_mean` serve arrays in memory; `_clip_points` is the core
  that the file job calls band by band (its docstring tables which path
  computes what).  It cuts a band into chunks: the default method takes
  the fast path `_clip_chunk` (thresholds, no sort); every other method a
  `_Chunk`, which sorts each point's values once and moves a window of
  kept values with one small step function per method (`_STEPS`:
  `_Chunk._sigma`, `_mad`, `_winsorized`, `_linear`, `_percentile`,
  `_minmax`, `_gesd`, `_none`), and `_combine` makes the result from the
  values kept, one way for each combination; a point with no valid value
  keeps its plain mean (`_plain_where_none_valid`).  `_t_quantile` and
  `_gesd_critical` serve GESD; `frame_statistics`, `_normalization` and
  `_noise_weights` serve a night's frames, `frame_metrics` measures each
  frame's stars, sharpness and transparency (`FrameMetrics`) for
  `_select_frames` (``--select``) and the weights of `_csv_weights` and its
  kind, and `_zero_borders`, `_drift_advice` and `_border_advice` give its
  warnings;
- reading: `_open_source` reads each file's header and gives its frames (a
  page each, or a step along T or Z of a hyperstack: `_Source`),
  `_check_frames` compares them, `_read_rows` reads the rows of one band of
  one frame;
- the memory budget: `plan_bands` picks the band height and says where
  every byte goes;
- writing: `_strip_encoder` and `_writer_args` for tifffile's writer;
- the file job: `stack_files` takes every setting checked once
  (`Settings.from_options`) and checks every input and output
  (`_check_inputs`, `_check_output`), then a `_Job` per output page (one, or
  one per ``--group``) estimates the frames' statistics (`Job.statistics`,
  from `_sample_rows`), `_stream_bands` reads band after band (the next one
  while the current one is stacked), `Job._strips` stacks each band and
  yields the output's strips to the writer (`_write_stack`), and `_publish`
  names the finished files (`_temporary_file`), all or none;
- the command line: `_build_parser` and `main`, which turns every error into
  one line on stderr and an exit status and leaves the process as it found
  it; `_cli`, the entry point of ``python imgstack.py`` and the console
  script, sets up the process (standard streams, signals, the thread switch
  interval and the allocator, `_tune_allocator`) and calls `main`.

Example::

    python imgstack.py -s 2.5 -i 3 out.tif in*.tif

Exit status: 0 on success, 1 for any error in the inputs, the output or the
environment, 2 for a usage error, 128 + N when ended by signal N (130 for
Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

__version__ = '0.2.0'

__all__ = [
    'Frame',
    'FrameMetrics',
    'FrameStats',
    'ImgstackError',
    'ImgstackWarning',
    'Method',
    'Plan',
    'Reporter',
    'Settings',
    'Stats',
    'frame_metrics',
    'frame_statistics',
    'main',
    'make_frames',
    'open_frame',
    'parse_size',
    'plan_bands',
    'sigma_clipped_mean',
    'stack_array',
    'stack_files',
]
"""The public API: these and what they take and return.  Every other name
is the module's own, free to change."""

import os
import signal
import sys

SIGNALS = {
    signal.SIGINT: 'interrupted',
    signal.SIGTERM: 'terminated',
    **{getattr(signal, name): text for name, text in (
        ('SIGHUP', 'hung up'), ('SIGQUIT', 'quit'), ('SIGUSR1', 'stopped by SIGUSR1'),
        ('SIGUSR2', 'stopped by SIGUSR2')) if hasattr(signal, name)},
}
"""Signals that end a run cleanly (exit status 128 + signal), and what the
message says: Ctrl-C, SIGTERM, SIGHUP, and SIGQUIT, SIGUSR1 and SIGUSR2,
whose default action would kill the run and leave its temporary files."""

if __name__ == '__main__':  # a signal while the modules load: no traceback

    def _interrupted_early(signum: int, frame: object) -> None:
        sys.stderr.write(f'imgstack: {SIGNALS.get(signum, "interrupted")}; nothing written\n')
        os._exit(128 + signum)

    for _signum in SIGNALS:
        signal.signal(_signum, _interrupted_early)

import argparse
import concurrent.futures
import contextlib
import dataclasses
import difflib
import errno
import functools
import gc
import glob
import inspect
import io
import logging
import lzma
import math
import re
import secrets
import shutil
import stat
import threading
import time
import types
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any, cast

REQUIREMENTS = {'numpy': '1.24', 'tifffile': '2024.8.10', 'imagecodecs': '2024.6.1'}
"""Run-time dependencies and their minimum versions (as requirements.txt)."""

try:
    import imagecodecs  # noqa: F401  (tifffile's codecs: LZW, zstd, JPEG, PNG)
    import numpy as np
    import tifffile
except ImportError as _exc:  # one line, even for -h, when a dependency is missing
    if __name__ != '__main__':
        raise
    _missing = [name for name in REQUIREMENTS if _exc.name == name] or [str(_exc.name)]
    sys.stderr.write(
        f'imgstack: error: needs {", ".join(_missing)} (install: '
        f'pip install {" ".join(f"{k}>={v}" for k, v in REQUIREMENTS.items())})\n'
    )
    sys.exit(1)

MIB = 1 << 20

BINARY = getattr(os, 'O_BINARY', 0)
"""Flag that os.open needs on Windows for binary files (0 elsewhere)."""

NATIVE = '<' if sys.byteorder == 'little' else '>'
"""This machine's byte order, as tifffile writes it."""

DEFAULT_MEMORY = 1 << 30
"""Default memory budget for a whole run, in bytes (``-m``)."""

WORKERS = 2
"""Threads that decode inputs, and threads that clip, at the same time."""

SWITCH_SECONDS = 0.0005
"""Python's thread switch interval of the command (the default is 5 ms):
a stacking thread that waits for the interpreter lock held by the other
asks for it sooner, and the two threads overlap more (bench/README.rst
has the figures; shorter intervals gain nothing).  Set by `_cli` only: a
program that imports imgstack keeps its own."""

ALLOCATOR_BUDGET = 1 << 30
"""The budget from which the command asks glibc's malloc to keep the
memory that the stacking threads free (`KEEP_FREED`); below it, for two
heaps shared by every thread (`TWO_HEAPS`).  See `_tune_allocator`."""

KEEP_FREED = ((-3, 32 * MIB), (-1, 256 * MIB))
"""glibc's ``mallopt`` settings of `_tune_allocator` from `ALLOCATOR_BUDGET`:
``M_MMAP_THRESHOLD`` 32 MiB (blocks below it come from the heaps, not from
fresh mappings) and ``M_TRIM_THRESHOLD`` 256 MiB (a heap keeps up to that
much free memory at its top instead of giving it back).  By default glibc moves the first
between 128 KiB and 32 MiB as blocks come and go, and keeps the second at
twice it: a chunk's working arrays are then returned to the system and
faulted in again, page by page, by the next chunk."""

TWO_HEAPS = ((-8, 2),)
"""glibc's ``mallopt`` setting of `_tune_allocator` below `ALLOCATOR_BUDGET`:
``M_ARENA_MAX`` 2, so that the five threads of a run (the main one, two
reading, two stacking) share two heaps.  By default each thread takes a
heap of its own, and each keeps its own free memory: what one thread has
freed cannot serve another, and what the heaps keep adds up past a small
budget.  Two heaps keep as little as one, without the threads waiting
for each other's allocations (bench/README.rst, the allocator)."""

CHUNK_BYTES = 16 * MIB
"""Scratch memory of one stacking thread, at least: the points of a band
are stacked in column chunks this large, so that the working arrays stay
small whatever the band height."""

CHUNK_SHARE = 8
"""A budget of 8 times `CHUNK_BYTES` or more gives each thread an 8th of
it as scratch, up to 4 x `CHUNK_BYTES`: larger chunks cost fewer numpy
calls per value."""

WINSOR_SHARE, WINSOR_MOST = 4, 8 * CHUNK_BYTES
"""Winsorized gives each thread a 4th of the budget instead, up to 128 MiB:
its rounds make many numpy calls per chunk, which larger chunks amortize
(larger still gain nothing).  The other methods gain nothing from the
smaller bands that leaves, and GESD loses."""

LINEAR_BYTES = 8 * MIB
"""Scratch of one block of linear fit's passes, whatever the budget: they
work on every kept value, and smaller blocks stay in the processor's
cache.  Its chunks are sorted whole, at the budget's size less this: the
sorting network's two numpy calls per comparator cost more on blocks."""

RESERVE_BYTES = 12 * MIB
"""Memory kept aside in every budget for Python objects, the TIFF writer's
buffers, the per-input bookkeeping and numpy's small temporaries."""

STREAM_BYTES = 8 * MIB
"""Memory that decoding one strip in pieces takes: compressed data read 1 MiB
at a time, decoded rows written about 2 MiB at a time, and their copies."""

LZW_CODES = 4096
"""Codes of a TIFF LZW table (12 bits): a decoder adds no entry past them."""

LZW_TABLE_BYTES = 8 * MIB
"""Memory of a full LZW table of our piecewise decoder: entries of 1 to
3,839 bytes (each one byte longer than an earlier one at most), 7.4 MB of
data and their objects."""

STREAM_CODECS = {8: 'deflate', 32946: 'deflate', 34925: 'lzma', 5: 'lzw'}
"""Codecs whose strips can be decoded in pieces: deflate and LZMA with the
standard library, LZW with a slow decoder of our own (`_lzw_pieces`)."""

TABLE_LIMIT = 4096
"""Inputs with more strips or tiles than this keep no offset tables in
memory: each band reads the entries it needs from the file."""

MAX_STRIP_ROWS = 64
"""Largest number of rows in one strip of the output."""

READ_MOST = 1 << 30
"""Bytes asked of one read call: Linux returns at most 2,147,479,552 bytes
from one, so larger reads are made in parts; any read may return less,
and is then continued until the count is met or the file ends."""

MAX_RATIO = 100_000
"""Largest plausible ratio of decoded to stored bytes of a compressed file;
a header that claims more is refused rather than believed."""

CODECS = {
    'zlib': 8,  # ADOBE_DEFLATE
    'deflate': 8,
    'lzw': 5,
    'zstd': 50000,
    'lzma': 34925,
    'packbits': 32773,
}
"""Output codecs of ``-c`` and their TIFF compression tag values."""

LEVELS = {'zlib': (0, 9), 'deflate': (0, 9), 'zstd': (1, 22), 'lzma': (0, 9)}
"""Codecs that take a level, and its range."""

DTYPES = frozenset(['uint8', 'uint16', 'uint32', 'int8', 'int16', 'int32', 'float32', 'float64'])
"""Sample types that can be stacked."""

PHOTOMETRICS = {0: 'miniswhite', 1: 'minisblack', 2: 'rgb', 5: 'separated', 6: 'rgb'}
"""Photometric interpretations read, and what the output is written as
(JPEG's YCbCr is decoded to RGB)."""


class ImgstackError(Exception):
    """An error in one file (or the command line), reported as one line.

    Parameters
    ----------
    file : str or None
        The file the error is about, or None.
    cause : str
        What is wrong, in words for the user.
    """

    usage = False
    """A usage error (exit status 2): a choice of options the file asks for."""

    def __init__(self, file: str | None, cause: str) -> None:
        self.file = file
        self.cause = cause
        shown = file if file is None or file.isprintable() else repr(file)
        super().__init__(_printable(f'{shown}: {cause}' if file else cause))


def _printable(text: str) -> str:
    """Text with its control and unprintable characters escaped (``\\x1b``,
    ``\\r``, ``\\udcff`` for a byte of a name that is not UTF-8), so that no
    file name can move the cursor, set a terminal's title or split a line."""
    if text.isprintable():
        return text
    return ''.join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: the run stops, nothing is written."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


class _Interrupts:
    """The handler of SIGINT, SIGTERM and SIGHUP of the command line.

    A signal raises `_Interrupted` (a KeyboardInterrupt), except inside
    `_critical` sections (creating and registering a temporary file, moving
    outputs into place), where it waits for the end of the section; while
    the main thread is inside the standard library's thread code (waiting
    for a worker, starting or stopping one), where it waits for the next
    `_checkpoint` (an exception raised there can leave a lock held or
    released twice: a hang, or a RuntimeError instead of the interruption);
    and after the outputs are in place, where it is ignored: the run is done.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.done = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.done:
            return
        if self.depth or _in_thread_code(frame):
            self.pending = signum
            return
        raise _Interrupted(signum)

    def check(self) -> None:
        """Raise the signal held back, outside critical sections."""
        if not self.depth and self.pending is not None and not self.done:
            signum, self.pending = self.pending, None
            raise _Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold Ctrl-C back until the end of the block."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        self.check()


THREAD_CODE = (threading.__file__, os.path.dirname(concurrent.futures.__file__) + os.sep)
"""Where the standard library's locks are taken and released."""


def _in_thread_code(frame: Any) -> bool:
    """Whether frame, or a frame that called it, runs THREAD_CODE."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(THREAD_CODE):
            return True
        frame = frame.f_back
    return False


def _critical() -> contextlib.AbstractContextManager[None]:
    """Return a context in which Ctrl-C waits (when `_Interrupts` handles it)."""
    handler = signal.getsignal(signal.SIGINT)
    return handler.deferred() if isinstance(handler, _Interrupts) else contextlib.nullcontext()


def _checkpoint() -> None:
    """Raise a Ctrl-C that came while the main thread was in thread code."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, _Interrupts):
        handler.check()


WAIT_SECONDS = 0.1
"""How often a wait for a worker looks for a Ctrl-C held back."""


def _wait_for(future: concurrent.futures.Future[Any]) -> Any:
    """The future's result; a Ctrl-C meanwhile takes effect within WAIT_SECONDS."""
    # not future.result(WAIT_SECONDS): the TimeoutError of a wait that ran
    # out looks like the TimeoutError (ETIMEDOUT) of a read that failed
    while not concurrent.futures.wait((future,), WAIT_SECONDS).done:
        _checkpoint()
    _checkpoint()
    return future.result()


def _pool_map(pool: concurrent.futures.Executor, fn: Callable[..., Any],
             *iterables: Any) -> Iterator[Any]:
    """``pool.map(fn, *iterables)``, whose waits answer Ctrl-C (`_wait_for`)."""
    futures = [pool.submit(fn, *args) for args in zip(*iterables)]
    try:
        for future in futures:
            yield _wait_for(future)
    finally:
        for future in futures:
            future.cancel()


# -- the computation ---------------------------------------------------------


REJECTIONS = ('sigma', 'mad', 'winsorized', 'linear', 'percentile', 'minmax', 'gesd', 'none')
"""Rejection methods (``--reject``); section "which rejection?" of README."""

COMBINATIONS = ('mean', 'median', 'min', 'max')
"""How the kept values of a point are combined (``--combine``)."""

ITERATIVE = frozenset({'sigma', 'mad', 'winsorized', 'linear'})
"""Methods that repeat passes (``-i N``); the others make one pass."""

DEFAULT_FACTORS = {('sigma', 'mean'): 2.5, ('sigma', 'median'): 2.9, 'mad': 4.4,
                   'winsorized': 3.7, 'linear': 6.5}
"""Each method's factor (``-s``) when none is given, chosen with
``bench/quality.py`` so that on pure Gaussian noise its result's noise
stays near a plain mean's (at most 1.03 times it from 8 to 100 frames,
but for sigma clipping around the mean: the seed's 2.5 costs 1.04 at 30
frames and more, whatever the passes) while hot pixels, cosmic rays,
trails and passers-by are still rejected.  Linear fit's spread is the
mean absolute residual, about 0.8 sigma: its 6.5 is 5.2 sigma."""

DEFAULT_PASSES = {'sigma': 5, 'mad': 1, 'winsorized': 1, 'linear': 1}
"""Each iterative method's passes (``-i``) when none is given: one pass
for mad, winsorized and linear fit, whose first pass rejects what a
second would (more passes only reject noise, and ask for larger
factors); sigma clipping keeps astropy's 5, which rejects what a first
pass hides behind a wide spread."""

DEFAULT_GESD = (0.03, 0.3)
"""GESD's ALPHA:FRACTION when none is given: 0.05 cost 1.04 times a plain
mean's noise at 8 frames, 0.03 costs 1.024."""

MAD_SCALE = 1.482602218505602
"""1 / Phi^-1(3/4): MAD times this estimates the standard deviation of a
normal distribution (astropy's ``mad_std``)."""

MAD_ROWS = {True: 192, False: 48}
"""MAD's first pass reads whole rows (`_Chunk.mad_rows`) up to this many
frames, for small integers (True) and floats (False); past them, the
binary search of `_Chunk.mad` costs less (where the two cost the same on
chunks of normal values)."""

WINSOR_CLAMP, WINSOR_FACTOR, WINSOR_TOLERANCE = 1.5, 1.134, 0.0005
"""Winsorized sigma clipping: values are clamped at 1.5 d, the clamped
spread is scaled by 1.134, until d changes by at most 0.0005 d."""

WINSOR_MAX_ROUNDS = 100
"""Safety cap of winsorized rounds per pass (they converge in a few)."""

WINSOR_COMPACT = 0.5
"""The winsorized rounds drop the points that converged once this fraction
or less of them is left (compacting them after every round cost more than
the rounds themselves)."""


@dataclasses.dataclass(frozen=True)
class Method:
    """How values are rejected and combined (CONTRACT section 6).

    Built once, checked in ``__post_init__``; read by the core.
    """

    reject: str = 'sigma'
    combine: str = 'mean'
    sigma_low: float = 2.5
    sigma_high: float = 2.5
    iterations: int = 5
    center: str = 'mean'
    percentile: tuple[float, float] = (0.2, 0.1)
    minmax: tuple[int, int] = (1, 1)
    gesd: tuple[float, float] = DEFAULT_GESD

    def __post_init__(self) -> None:
        if self.reject not in REJECTIONS:
            msg = f'reject must be one of {", ".join(REJECTIONS)}, not {self.reject!r}'
            raise ValueError(msg)
        if self.combine not in COMBINATIONS:
            msg = f'combine must be one of {", ".join(COMBINATIONS)}, not {self.combine!r}'
            raise ValueError(msg)
        for name in ('sigma_low', 'sigma_high'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not (math.isfinite(value) and value > 0):
                msg = f'{name} must be finite and > 0, not {value!r}'
                raise ValueError(msg)
        if not _is_int(self.iterations) or self.iterations < 0:
            msg = f'iterations must be an integer >= 0, not {self.iterations!r}'
            raise ValueError(msg)
        if self.center not in ('mean', 'median'):
            msg = f"center must be 'mean' or 'median', not {self.center!r}"
            raise ValueError(msg)
        low, high = _pair(self.percentile, 'percentile')
        object.__setattr__(self, 'percentile', (low, high))
        if not (0 <= low < 1 and 0 <= high < 1):
            msg = (f'percentile must be LOW:HIGH, fractions of the median from 0 to below 1, '
                   f'not {low}:{high}')
            raise ValueError(msg)
        low, high = _pair(self.minmax, 'minmax')
        if not (low == int(low) and high == int(high) and low >= 0 and high >= 0):
            msg = f'minmax must be LOW:HIGH, two integers >= 0, not {low}:{high}'
            raise ValueError(msg)
        object.__setattr__(self, 'minmax', (int(low), int(high)))
        alpha, fraction = _pair(self.gesd, 'gesd')
        object.__setattr__(self, 'gesd', (alpha, fraction))
        if not (0 < alpha < 1 and 0 <= fraction < 1):
            msg = (f'gesd must be ALPHA:FRACTION with 0 < ALPHA < 1 and 0 <= FRACTION < 1, '
                   f'not {alpha}:{fraction}')
            raise ValueError(msg)

    @property
    def passes(self) -> int:
        """The largest number of passes."""
        if self.reject == 'none':
            return 0
        return self.iterations if self.reject in ITERATIVE else 1


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _pair(value: Any, name: str) -> tuple[float, float]:
    try:
        low, high = value
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        msg = f'{name} must be a pair of numbers (LOW, HIGH), not {value!r}'
        raise ValueError(msg) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        msg = f'{name} must be finite, not {value!r}'
        raise ValueError(msg)
    return low, high


def sigma_clipped_mean(
    stack: Any,
    sigma: float = 2.5,
    iterations: int = 5,
    *,
    sigma_low: float | None = None,
    sigma_high: float | None = None,
    center: str = 'mean',
    valid: Any = None,
    return_mask: bool = False,
) -> tuple[Any, ...]:
    """Return the sigma-clipped mean of a stack along its first axis.

    For each point the values ``x`` along the first axis are taken.  A value
    is valid unless it is NaN or ``valid`` is False there.  One pass: the
    center ``c`` is the mean (or median) of the values still kept, ``d``
    their standard deviation about their mean with divisor ``k`` (the number
    of values kept, not ``k - 1``), and a kept value is rejected when
    ``x < c - sigma_low * d`` or ``x > c + sigma_high * d`` (the bounds
    themselves are kept).  Rejection is cumulative.  Passes repeat up to
    ``iterations`` times and stop early after a pass that rejects nothing;
    that pass counts.  The result is the mean of the values kept.  A point
    whose values were all rejected gets the mean of its valid values; a
    point with no valid value gets 0.  All arithmetic is float64.

    This equals ``astropy.stats.sigma_clip(stack, sigma_lower=sigma_low,
    sigma_upper=sigma_high, maxiters=iterations, cenfunc=center,
    stdfunc='std', axis=0).mean(axis=0)`` except where astropy leaves every
    value masked, and where a later pass's bounds widen (astropy restores
    values; here rejection is cumulative).  It is `stack_array` with
    ``reject='sigma'`` and ``combine='mean'``.

    Parameters
    ----------
    stack : array_like
        Values, shape ``(n, ...)``: the first axis is the image index.
    sigma : float
        Clipping factor for both sides, finite and > 0.
    iterations : int
        Largest number of passes, >= 0; 0 gives the plain mean.
    sigma_low, sigma_high : float, optional
        Factors below and above the center; default ``sigma``.
    center : {'mean', 'median'}
        The center values are compared with.
    valid : array_like of bool, optional
        False marks values to ignore (e.g. transparent pixels); broadcast
        to the shape of ``stack``.
    return_mask : bool
        Also return the mask of the values kept.

    Returns
    -------
    result : ndarray of float64
        Shape ``stack.shape[1:]``.
    rejected : int
        Number of values rejected.
    kept : ndarray of bool
        With ``return_mask``: shape ``stack.shape``, True where a value was
        valid and kept.

    Raises
    ------
    ValueError
        A factor that is not finite and > 0, a negative iteration count, an
        unknown center or a stack with no image axis.
    """
    return stack_array(
        stack, sigma=sigma, iterations=iterations, sigma_low=sigma_low,
        sigma_high=sigma_high, center=center, valid=valid, return_mask=return_mask,
    )


# radon D: the checks of a public function's arguments, each with its
# message, then one call of the core.
def stack_array(
    stack: Any,
    *,
    reject: str = 'sigma',
    combine: str = 'mean',
    sigma: float | None = None,
    sigma_low: float | None = None,
    sigma_high: float | None = None,
    iterations: int | None = None,
    center: str = 'mean',
    percentile: tuple[float, float] = (0.2, 0.1),
    minmax: tuple[int, int] = (1, 1),
    gesd: tuple[float, float] = DEFAULT_GESD,
    valid: Any = None,
    valid_range: tuple[float | None, float | None] | None = None,
    normalize: str = 'none',
    weights: Any = 'none',
    channel_axis: int | None = None,
    return_mask: bool = False,
) -> tuple[Any, ...]:
    """Stack an in-memory array along its first axis: any rejection, any
    combination, with normalization and weights (CONTRACT section 6).

    Parameters
    ----------
    stack : array_like
        Values, shape ``(n, ...)``: the first axis is the image index.
    reject : str
        One of `REJECTIONS`.
    combine : str
        One of `COMBINATIONS`.
    sigma, sigma_low, sigma_high, iterations, center
        As in `sigma_clipped_mean` (the factors serve sigma, mad,
        winsorized and linear; ``center`` serves sigma).
    percentile : (float, float)
        LOW and HIGH fractions of the median, for ``reject='percentile'``.
    minmax : (int, int)
        Numbers of lowest and highest values dropped, for ``'minmax'``.
    gesd : (float, float)
        ALPHA and FRACTION of generalized ESD, for ``'gesd'``.
    valid : array_like of bool, optional
        False marks values to ignore; broadcast to the shape of ``stack``.
    valid_range : (float or None, float or None), optional
        Values outside ``[low, high]`` are not valid.
    normalize : {'none', 'additive', 'multiplicative', 'additive-scale'}
        Per-frame normalization before rejection (see `frame_statistics`).
    weights : 'none', 'noise' or array_like
        Per-frame weights of the mean: inverse noise variance with
        ``'noise'``, or given (shape ``(n,)``, or ``(n, channels)`` with
        ``channel_axis``).
    channel_axis : int, optional
        Axis of ``stack`` that holds channels: statistics per channel.
    return_mask : bool
        Also return the mask of the values kept.

    Returns
    -------
    result : ndarray of float64
        Shape ``stack.shape[1:]``.
    rejected : int
        Number of values rejected.
    kept : ndarray of bool
        With ``return_mask``: True where a value was valid and kept.

    Raises
    ------
    ValueError
        An argument out of range, named in the message.
    """
    if isinstance(stack, np.ma.MaskedArray):  # masked values are not valid
        hidden = np.ma.getmaskarray(stack)
        valid = ~hidden if valid is None else np.asarray(valid, bool) & ~hidden
        stack = stack.data
    stack = np.asarray(stack)
    if stack.dtype.kind == 'c':
        msg = 'stack holds complex values: stack the real and imaginary parts apart'
        raise ValueError(msg)
    if stack.ndim < 1 or stack.shape[0] < 1:
        msg = f'stack must have at least one image, not shape {stack.shape!r}'
        raise ValueError(msg)
    method = _method_of(sigma, sigma_low, sigma_high, reject=reject, combine=combine,
                        iterations=iterations, center=center, percentile=percentile,
                        minmax=minmax, gesd=gesd)
    n = stack.shape[0]
    if stack.dtype.kind not in 'iuf' or stack.dtype.itemsize > 8:
        stack = stack.astype(np.float64)
    if channel_axis is None:
        moved = stack[..., np.newaxis]
    else:
        if not _is_int(channel_axis) or not 1 <= channel_axis < stack.ndim:
            msg = f'channel_axis must be an axis of stack other than 0, not {channel_axis!r}'
            raise ValueError(msg)
        moved = np.moveaxis(stack, channel_axis, -1)
    channels = moved.shape[-1]
    values = moved.reshape(n, -1)
    mask = None
    if valid is not None:
        ok = np.broadcast_to(np.asarray(valid, bool), stack.shape)
        ok = ok[..., np.newaxis] if channel_axis is None else np.moveaxis(ok, channel_axis, -1)
        mask = ok.reshape(n, -1)
    mask = _valid_mask(values, mask, _checked_range(valid_range))
    factor = offset = None
    if normalize != 'none' or (isinstance(weights, str) and weights == 'noise'):
        stats = [
            # the frame's own shape: neighbours along its last axis only
            frame_statistics(values[i].reshape(moved.shape[1:]),
                             None if mask is None else mask[i].reshape(moved.shape[1:]))
            for i in range(n)
        ]
        factor, offset = _normalization(stats, normalize)
        if isinstance(weights, str) and weights == 'noise':
            weights = _noise_weights(stats, factor)
    w = _frame_weights(weights, n, channels)
    core = _clip_points(values, mask, method, factor=factor, offset=offset,
                       weights=w, channels=channels, want_mask=return_mask)
    shape = moved.shape[1:]
    result = core.result.reshape(shape)
    result = result[..., 0] if channel_axis is None else np.moveaxis(result, -1, channel_axis - 1)
    rejected = int(core.rejected.sum(dtype=np.int64))
    if not return_mask:
        return result, rejected
    assert core.kept is not None  # want_mask=return_mask: the mask is made
    kept = core.kept.reshape(moved.shape)
    kept = kept[..., 0] if channel_axis is None else np.moveaxis(kept, -1, channel_axis)
    return result, rejected, kept


def _frame_weights(weights: Any, n: int, channels: int) -> np.ndarray | None:
    """Return per-frame weights as float64 ``(n, channels)``, or None."""
    if isinstance(weights, str):
        if weights != 'none':
            msg = f"weights must be 'none', 'noise' or an array of {n} weights, not {weights!r}"
            raise ValueError(msg)
        return None
    w = np.asarray(weights, np.float64)
    if w.ndim == 1:
        w = w[:, np.newaxis]
    try:
        w = np.broadcast_to(w, (n, channels))
    except ValueError:
        msg = f'weights must have shape ({n},) or ({n}, {channels}), not {w.shape}'
        raise ValueError(msg) from None
    if not (np.isfinite(w).all() and (w > 0).all()):
        msg = 'weights must be finite and > 0'
        raise ValueError(msg)
    return w


def _valid_mask(
    values: np.ndarray, valid: np.ndarray | None,
    valid_range: tuple[float | None, float | None] | None,
) -> np.ndarray | None:
    """Return the validity mask of ``values`` with ``valid_range`` applied
    (None while every value is valid; NaN is handled by the core)."""
    if valid_range is None:
        return valid
    low, high = valid_range
    out = None
    with np.errstate(invalid='ignore'):
        if low is not None:
            out = values < low
        if high is not None:
            above = values > high
            out = above if out is None else out | above
    if out is None:
        return valid
    return ~out if valid is None else valid & ~out


@dataclasses.dataclass
class _Clipped:
    """What the core returns for a 2-D array of points ``(n, points)``."""

    result: np.ndarray  # float64 (points,)
    rejected: np.ndarray  # int64 (points,): values rejected
    low: np.ndarray  # int64 (points,): of which below
    passes: int  # passes run (the most over the chunks)
    kept: np.ndarray | None = None  # bool (n, points) with want_mask
    frame_low: np.ndarray | None = None  # int64 (n, channels) with want_mask
    frame_high: np.ndarray | None = None
    unranged: int = 0  # points with no valid value: their plain mean


# radon D: the choice of path tabled in its docstring, and the chunk
# closure that every path shares.
def _clip_points(
    values: np.ndarray,
    valid: np.ndarray | None,
    method: Method,
    *,
    factor: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    channels: int = 1,
    want_mask: bool = False,
    frame_counts: bool = False,
    scratch: int = CHUNK_BYTES,
    map_: Callable[..., Iterator[Any]] = map,
) -> _Clipped:
    """Reject and combine the points of a 2-D array ``(n, points)``.

    The core of imgstack, shared by every method: the points are cut into
    column chunks (`_chunk_points` each) that are processed independently
    (a point never depends on another), optionally in parallel through
    ``map_``.  ``factor``, ``offset`` and ``weights`` are per frame and
    channel, shape ``(n, channels)``; point ``j`` holds channel
    ``j % channels``.  ``want_mask`` returns the mask of
    the values kept and the per-frame counts; ``frame_counts`` the counts
    alone (no mask of the whole array).

    Which path computes a chunk (every path computes README's definitions;
    the tests hold each against the others and the references):

    ============================  =======  =======  ==========  ===========  ==================
    reject                        center   combine  weights     counts [1]_  path
    ============================  =======  =======  ==========  ===========  ==================
    sigma                         mean     mean     any         no           `_clip_chunk`
    sigma, 8/16-bit integers [2]_ median   mean     none        no           `_clip_sorted`
    sigma, other data             median   mean     none        no           `_clip_chunk`
    none                          --       mean     any         no           `_clip_chunk`
    sigma                         median   mean     given       --           `_Chunk` (window)
    sigma, none                   any      not mean any         --           `_Chunk` (window)
    mad, winsorized, linear,      --       any      any         any          `_Chunk` (window)
    percentile, minmax, gesd
    any, with ``want_mask``       any      any      any         --           `_Chunk` (window)
    ============================  =======  =======  ==========  ===========  ==================

    .. [1] ``frame_counts`` (the frame statistics and ``-v``'s frame table
       ask for them) never change the path of the values: a fast chunk's
       counts come from the window core run beside it, so that an option
       that only reports changes no value.
    .. [2] not normalized, every value valid, at least one pass.

    `_Chunk` sorts each point's values once and moves a window of kept
    values with the method's step (`_STEPS`); linear fit keeps a mask of
    sorted rows instead.  `_combine` then computes the combination from
    the window, one way for each.
    """
    n, npoints = values.shape
    # the default method has a fast path: thresholds, no sort.  Frame counts
    # (what -v and --frame-stats report) do not change the path that gives
    # the values: a fast chunk's counts come from the window core beside it
    counts = want_mask or frame_counts
    fast = (method.reject in ('sigma', 'none') and method.combine == 'mean' and not want_mask
            and (weights is None or method.center == 'mean' or method.reject == 'none'))
    small = values.dtype.kind in 'iu' and values.dtype.itemsize <= 2 and factor is None
    if method.reject == 'linear':  # its passes run in blocks of LINEAR_BYTES
        scratch = max(scratch - LINEAR_BYTES, LINEAR_BYTES)
    elif fast and method.center == 'mean':
        scratch = CHUNK_BYTES
    if counts:  # the masks in frame order and their ranks take room too
        scratch //= 2
    # the window core's prefix sums, for window means and spreads
    sums = method.reject in ('sigma', 'winsorized')
    # linear fit's masks of the kept values, when more than their mean is asked
    masks = counts or weights is not None or method.combine != 'mean'
    block = _chunk_points(n, 1, None, 'mean', small, LINEAR_BYTES, False) \
        if method.reject == 'linear' else None
    center = method.center
    if fast and _sorted_path(values.dtype if factor is None else np.dtype(np.float64),
                             valid, weights, center, method.passes):
        center = 'sorted'  # _clip_sorted: small integers stay in their type
    size = _chunk_points(n, channels, values.dtype.itemsize if fast and not counts else None,
                        center, small, scratch, sums, MOST_POINTS.get(method.reject),
                        method.reject)
    # as many chunks of about the same size for each thread: a band waits
    # for its last chunk, and a lone or short last chunk left one idle
    count = -(-npoints // size)
    if count > 1:
        count = -(-count // WORKERS) * WORKERS
        size = -(-npoints // (count * channels)) * channels
    bounds = [(a, min(a + size, npoints)) for a in range(0, npoints, size)]
    result = np.empty(npoints, np.float64)
    rejected = np.empty(npoints, np.int64)
    low = np.empty(npoints, np.int64)
    kept = np.empty((n, npoints), bool) if want_mask else None
    frame_low = np.zeros((n, channels), np.int64) if counts else None
    frame_high = np.zeros((n, channels), np.int64) if counts else None
    lock = threading.Lock()
    unranged: list[int] = []

    # rows of the tables as long as a chunk, shared by the chunks
    width = min(size, npoints)
    if factor is not None:
        assert offset is not None  # normalization gives both or neither
        factor_rows = None if (factor == 1).all() else _rows(factor, width)
        offset_rows = _rows(offset, width)
    weight_rows = None if weights is None else _rows(weights, width)

    def per_point(rows: np.ndarray | None, a: int, b: int) -> np.ndarray | None:
        return None if rows is None else rows[:, :b - a]

    def normalized(a: int, b: int) -> np.ndarray:
        """The values of the chunk a..b normalized, in float64."""
        x = values[:, a:b]
        out = np.empty(x.shape, np.float64)
        if factor_rows is None:  # additive: no products
            return np.add(x, offset_rows[:, :b - a], out=out)
        np.multiply(x, factor_rows[:, :b - a], out=out)
        out += offset_rows[:, :b - a]
        return out

    def work(bound: tuple[int, int]) -> int:
        a, b = bound
        x = values[:, a:b] if factor is None else normalized(a, b)
        scale = _overflow_scale(x)
        if scale != 1.0:  # float64 values near the maximum: exact powers of 2
            x = x * scale
        passes = chunk(x, a, b)
        if scale != 1.0:
            result[a:b] /= scale
        if valid is not None or values.dtype.kind == 'f':
            found = _plain_where_none_valid(
                values[:, a:b], None if valid is None else valid[:, a:b], result[a:b])
            if found:
                with lock:
                    unranged.append(found)
        return passes

    def chunk(x: np.ndarray, a: int, b: int) -> int:
        if fast:
            result[a:b], rejected[a:b], low[a:b], passes = _clip_chunk(
                x, None if valid is None else valid[:, a:b], method.sigma_low,
                method.sigma_high, method.passes, method.center,
                per_point(weight_rows, a, b))
            if not counts:
                return passes
        # NaN compares and empty windows are expected: numpy's warnings are
        # off for the whole chunk, set once (not in each step: 2 us a time)
        with np.errstate(invalid='ignore', divide='ignore'):
            window = _Chunk(
                x, None if valid is None else valid[:, a:b], method, per_point(weight_rows, a, b),
                masks, block,
            )
            if fast:  # the values are the fast path's; the window gives the counts
                window.reject()
            else:
                passes = window.reject()
                result[a:b], rejected[a:b], low[a:b] = _combine(window)
            if counts:
                k, lo, hi = window.kept_in_frame_order()
        if counts:
            # made with want_mask and with counts (once a chunk: cheap)
            assert frame_low is not None and frame_high is not None
            if want_mask:
                assert kept is not None
                kept[:, a:b] = k
            del k
            index = np.arange(a, b) % channels
            with lock:
                for c in range(channels):
                    sel = index == c
                    frame_low[:, c] += lo[:, sel].sum(axis=1)
                    frame_high[:, c] += hi[:, sel].sum(axis=1)
        return passes

    passes = max(map_(work, bounds), default=0)
    return _Clipped(result, rejected, low, passes, kept, frame_low, frame_high, sum(unranged))


def _plain_where_none_valid(x: np.ndarray, valid: np.ndarray | None, result: np.ndarray) -> int:
    """Give the points of a chunk that have no valid value the plain mean
    of their values that are not NaN, as given (before normalization): a
    star saturated in every frame stays saturated, a border zero in every
    frame stays zero; NaN where every value is NaN.  Return how many.

    Every path leaves 0 at such points, so only those are looked at."""
    with np.errstate(invalid='ignore'):
        candidates = np.flatnonzero(~(result != 0))  # 0, or NaN
    if not candidates.size:
        return 0
    values = x[:, candidates]
    ok = ~np.isnan(values) if values.dtype.kind == 'f' else np.ones(values.shape, bool)
    if valid is not None:
        ok &= valid[:, candidates]
    none = ~ok.any(axis=0)
    if not none.any():
        return 0
    plain = values[:, none].astype(np.float64)
    count = (~np.isnan(plain)).sum(axis=0)
    with np.errstate(invalid='ignore', divide='ignore'):
        result[candidates[none]] = np.where(
            count > 0, np.nansum(plain, axis=0) / count, np.nan)
    return int(none.sum())


SAFE_TOP = 2.0 ** 500
"""Largest magnitude of float64 values that the core takes as they are:
their squares and the sums of thousands of them stay finite."""


def _overflow_scale(x: np.ndarray) -> float:
    """1.0, or the power of 2 that brings float64 values larger than
    `SAFE_TOP` below it: multiplying by a power of 2 is exact, so the chunk
    is computed on the scaled values and its result scaled back, the same
    bit for bit (three frames of 1e308 average to 1e308, not inf).  Values
    below about 1e-150 in such a chunk lose bits to the scaling."""
    if x.dtype != np.float64 or not x.size:
        return 1.0
    top = max(float(np.fmax.reduce(x, axis=None)), -float(np.fmin.reduce(x, axis=None)))
    if not SAFE_TOP < top < math.inf:
        return 1.0
    return 2.0 ** (500 - math.frexp(top)[1])


def _rows(table: np.ndarray, width: int) -> np.ndarray:
    """A table ``(n, channels)`` repeated along rows of ``width`` points
    (point j holds channel ``j % channels``): a chunk that starts on a
    whole pixel combines with it row by row, the fastest way numpy has."""
    return np.tile(table, -(-width // table.shape[1]))[:, :width]


def _chunk_points(
    n: int, channels: int = 1, itemsize: int | None = None, center: str = 'mean',
    small: bool = False, scratch: int = CHUNK_BYTES, sums: bool = True,
    most: int | None = None, reject: str | None = None,
) -> int:
    """Return how many points one chunk holds within ``scratch`` bytes, a
    multiple of channels: `SCRATCH_PER_VALUE` bytes per value for the window
    core (`SCRATCH_SMALL` for small integers, 32 and 8 less
    without prefix ``sums``) and `POINT_BYTES` per point for the
    ``reject`` method's arrays of one value per point, or for the fast path (``itemsize`` given) a
    float64 copy, its masked copy and a product (3 x 8), two masks and a
    comparison (3 x 1), a gathered subset of the input (itemsize), and for
    the median a sorted float64 copy and its temporary (2 x 8); for
    `_clip_sorted` (``center='sorted'``) `SCRATCH_SORTED`; at most ``most``
    points."""
    per_value = SCRATCH_PER_VALUE if itemsize is None else (
        27 + itemsize + (16 if center == 'median' else 0))
    if itemsize is not None and center == 'sorted':
        per_value = SCRATCH_SORTED
    if itemsize is None and small:  # small integers: no float64 copies
        per_value = SCRATCH_SMALL
    if itemsize is None and not sums:
        per_value -= 8 if small else 32
    if itemsize is None:  # the window core's arrays of one value per point
        per_value += -(-POINT_BYTES.get(reject, POINT_BYTES[None]) // n)
    size = max(scratch // (n * per_value), 64)
    if itemsize is not None and center == 'sorted':
        size = min(size, SORTED_POINTS)
    if most is not None:
        size = min(size, most)
    return max(size // channels, 1) * channels


def _chunk_scratch(memory: int, method: Method | None = None) -> int:
    """Scratch bytes of one stacking thread under a memory budget, for the
    method when given (`WINSOR_SHARE`)."""
    if method is not None and method.reject == 'winsorized':
        return min(max(memory // WINSOR_SHARE, CHUNK_BYTES), WINSOR_MOST)
    return min(max(memory // CHUNK_SHARE, CHUNK_BYTES), 4 * CHUNK_BYTES)


SCRATCH_PER_VALUE = 72
"""Bytes of scratch per value of a chunk, at most: the sorted values (8),
their transposed copy (8), two prefix sums (2 x 8, for the methods that
ask for them) and the two temporaries that build them (2 x 8), the
frame-order copy with normalization (8), a masked temporary (8) and masks
(8 x 1)."""

POINT_BYTES = {None: 160, 'winsorized': 480}
"""Bytes of scratch per point of the window core, whatever the frame count:
its arrays of one value per point (window ends, centres, spreads, counts
and their temporaries; winsorized's clamps, ranges and polynomials).
Measured with tracemalloc on one chunk of 100,000 points: winsorized
about 360 bytes a point and 40 a value of float data, the others 60 to
130 a point.  Without them, winsorized on 2 to 5 frames took 2 to 5 times
its scratch."""

SCRATCH_SORTED = 16
"""Bytes of scratch per value of `_clip_sorted`: the sorting network's rows
and their sorted copy (2 x 2), the squares in 32 bits (4), and the columns
compared and their masks (4)."""

SORTED_POINTS = 3 << 15
"""At most this many points in a chunk of `_clip_sorted`: larger ones
leave the processor's cache, smaller ones cost more calls."""

MOST_POINTS = {'gesd': 1 << 16, 'mad': 3 << 15}
"""At most this many points in a chunk of these rejections, whose steps
work on a few arrays of one value per point: they stay in the processor's
cache."""

SCRATCH_SMALL = 28
"""The same for 8- and 16-bit integers without normalization, which stay in
their type: two sorted copies (2 x 2), two prefix sums (2 x 8), a frame
order mask and comparisons (8 x 1); without prefix sums, a float64
temporary (GESD's squares) and 32-bit sums of windows (8 + 4) instead."""


class _Chunk:
    """One chunk of points ``(n, c)``: its values sorted once, and the
    window of kept values of each point.

    Every method but linear rejects from the two ends of a point's sorted
    values, so its kept values are the rows ``a <= i < b`` of the sorted
    values (``s``, shifted by the point's median to keep sums exact and
    short); prefix sums of ``s`` and ``s**2`` give any window's mean and
    spread in O(1), and the median is an index.  Linear fit may reject
    inside the window: it keeps a mask of sorted rows instead.

    The steps of each method (`_STEPS`) move the windows; `_combine` then
    makes the result from what they kept.  Its methods run with numpy's
    invalid and divide warnings off, set once by `_clip_points` around the
    whole chunk.
    """

    def __init__(
        self, x: np.ndarray, valid: np.ndarray | None, method: Method,
        weights: np.ndarray | None, masks: bool = True, block: int | None = None,
    ) -> None:
        self.method = method
        self.weights = weights
        self.masks = masks  # linear: keep the masks of the kept values
        self.block = block  # linear: points of a block of its passes (all)
        n, c = x.shape
        self.n = n
        # the values in frame order: small integers in their type, others
        # (and normalized values) in float64
        if x.dtype.kind == 'f' or x.dtype.itemsize > 2:
            work = x.astype(np.float64, copy=False)  # read only
        else:
            work = x
        self.frames: np.ndarray = work
        bad = None
        if work.dtype.kind == 'f':
            bad = np.isnan(work)
            if not bad.any():
                bad = None
        if valid is not None:
            bad = ~valid if bad is None else bad | ~valid
        self.invalid = bad
        # sort each point's values, invalid ones last (NaN, or the type's
        # maximum): sorted is (n, c), each column a point's values in order
        sorted_ = _sort_points(work, bad)
        self.k = np.full(c, n, np.int64) if bad is None else n - bad.sum(axis=0)
        self.sorted_native = sorted_
        rows = np.arange(n)[:, np.newaxis]
        # counts of up to n values: in a byte when they fit (4x faster sums)
        self.counter = np.uint8 if n < 256 else np.int32
        self.exact = work.dtype.kind in 'iu'
        # integer data (not normalized): bounds decided exactly, in whole
        # numbers; floats: within FLOAT_TOLERANCE
        self.integers = x.dtype.kind in 'iu'
        if self.exact:
            # small integers stay in their type: sums of values and squares
            # in float64 are exact integers (below 2**53), and so are the
            # variances' numerators; invalid values (the type's maximum)
            # lie past k, where no window reaches
            self.shift = np.zeros(c)
            self.s = np.ascontiguousarray(sorted_)
            self._z = self.s
        else:
            # floats: shifted by the median of the valid values, so that
            # sums are short (little cancellation); invalid values are NaN
            mid = sorted_[np.maximum((self.k - 1) // 2, 0), np.arange(c)]
            self.shift = np.where(self.k > 0, mid, 0).astype(np.float64)
            # in rows (C order) for the methods that reject: the passes read
            # whole rows (prefix sums, counts), 5-18% faster on a night band;
            # a plain combination reads a few values, and the copy in rows
            # costs it 12%
            s = np.subtract(sorted_, self.shift, order='K' if method.reject == 'none' else 'C')
            self._z = s if bad is None else np.where(rows < self.k, s, 0.0)
            self.s = s
        # the sorted values as one flat run, read by index: np.take is 2-3x
        # faster than indexing with a row and a column array
        self._flat = self.s.ravel(order='K')
        self._rs: int
        self._cs: int
        self._rs, self._cs = (c, 1) if self.s.flags.c_contiguous else (1, n)
        self._sums: tuple[np.ndarray, np.ndarray] | None = None  # prefix sums, made when asked
        self.a = np.zeros(c, np.int64)
        self.b = self.k.copy()
        self.keep: np.ndarray | None = None  # sorted rows kept (linear, masks)
        self.low_rows: np.ndarray | None = None  # sorted rows rejected low (linear, masks)
        # linear without masks: per point, the values kept, their sum and
        # the values rejected low
        self.linear_sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._linear_left: tuple[Any, ...] = ()  # linear's working set
        # kept_in_frame_order's masks
        self._order: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.window_total: np.ndarray | None = None  # exact sums of the final windows (GESD)

    def _prefix(self, z: np.ndarray, rows: np.ndarray, square: bool = False) -> np.ndarray:
        """Prefix sums P of z (or its squares) along the rows, so that
        ``sum(z[a:b]) = P[b] - P[a]``.  For floats they are anchored at the
        median row m: P[m] = 0, sums run up from it and down from it (P[i]
        = -sum(z[i:m]) below), so a window around the median adds only its
        own values, and the others subtract only values between it and the
        median, never an outlier outside it."""
        n, c = z.shape
        out = np.empty((n + 1, c))  # every row is written, from a zero row
        if self.exact:
            out[0] = 0
            if square:
                wide = np.dtype(f'{z.dtype.kind}{2 * z.dtype.itemsize}')
                row = np.empty(c, wide)
                for i in range(n):
                    np.multiply(z[i], z[i], out=row, dtype=wide)
                    np.add(out[i], row, out=out[i + 1])
            else:
                _cumsum_rows(z, out)
            return out
        if square:
            z = np.square(z)
        k = self.k
        m = np.maximum((k - 1) // 2, 0)
        if k.size and k.min() == n:  # every value valid: one median row
            m = int(m[0])
            out[m] = 0
            _cumsum_rows(z[m:], out[m:])
            for i in range(m - 1, -1, -1):
                np.subtract(out[i + 1], z[i], out=out[i])
            return out
        upper = rows >= m
        out[0] = 0
        _cumsum_rows(np.where(upper, z, 0.0), out)
        below = np.where(upper, 0.0, z)
        lo = np.zeros(c)
        for i in range(n - 1, -1, -1):  # rows below m subtract, the others add 0
            np.subtract(lo, below[i], out=lo)
            out[i] += lo
        return out

    @property
    def sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Prefix sums of the values and of their squares (`_prefix`), made
        for the methods that ask for window means and spreads."""
        if self._sums is None:
            rows = np.arange(self.n)[:, np.newaxis]
            self._sums = (self._prefix(self._z, rows), self._prefix(self._z, rows, square=True))
        return self._sums

    def window_sums(self, a: np.ndarray, b: np.ndarray, idx: np.ndarray,
                    sums: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Sums of rows a..b-1 of the points idx, from each prefix sum
        (`_prefix`; both of `sums` by default: values, then squares)."""
        sums = self.sums if sums is None else sums
        width = sums[0].shape[1]
        at_a, at_b = a * width + idx, b * width + idx
        return [p.reshape(-1).take(at_b) - p.reshape(-1).take(at_a) for p in sums]

    def stats(self, a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """Count, mean and variance (divisor count) of windows; NaN where empty."""
        count = b - a
        total, squares = self.window_sums(a, b, idx)
        # exact for small integers: one rounding, in the division
        var = np.maximum(count * squares - total * total, 0.0) / (count * count)
        return count, total / count, var

    def at(self, row: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The sorted (shifted) value at ``row`` of the points idx, float64."""
        # a row outside 0..n-1 reads some other value (clipped): the callers
        # read there only for empty windows, whose values they drop
        return self._flat.take(row * self._rs + idx * self._cs, mode='clip').astype(
            np.float64, copy=False)

    def median(self, a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Median of the windows (mean of the two middle values)."""
        count = b - a
        lo = self.at(a + (np.maximum(count - 1, 0) >> 1), idx)  # >> 1: // 2, 3x faster
        hi = self.at(a + (count >> 1), idx)
        return np.where(count > 0, (lo + hi) / 2, np.nan)

    def count_below(self, bound: np.ndarray, idx: np.ndarray, inclusive: bool) -> np.ndarray:
        """Number of valid values < bound (<= with inclusive) of points idx."""
        s = self.s if idx.size == self.s.shape[1] else self.s[:, idx]
        k = self.k[idx]
        if self.exact:  # x < lo is x <= ceil(lo) - 1, x <= hi is x <= floor(hi)
            info = np.iinfo(s.dtype)
            edge = np.floor(bound) if inclusive else np.ceil(bound) - 1
            none, every = ~(edge >= info.min), edge >= info.max  # NaN: none
            edge = np.where(none | every, 0, edge).astype(s.dtype)
            count = (s <= edge).sum(axis=0, dtype=self.counter).astype(np.int64)
            return np.where(none, 0, np.where(every, k, np.minimum(count, k)))
        hits = (s <= bound) if inclusive else (s < bound)
        return hits.sum(axis=0, dtype=self.counter).astype(np.int64)

    def search(self, idx: np.ndarray, start: np.ndarray, end: np.ndarray, bound: np.ndarray,
               inclusive: bool) -> np.ndarray:
        """The first row in start..end-1 of the points idx whose value is
        not < bound (not <= bound with inclusive), or end: rows are sorted,
        so a binary search, after a first look that settles the windows
        that do not move (at start, or at end - 1 with inclusive: the
        window's upper end).  A NaN bound stops at start (at end with
        inclusive): it rejects nothing."""
        flat, rs = self._flat, self._rs

        def below(row: np.ndarray, base: np.ndarray, bound: np.ndarray) -> np.ndarray:
            v = flat.take(row * rs + base, mode='clip')
            return ~(v > bound) if inclusive else v < bound

        w = (start < end).nonzero()[0]
        if inclusive:  # the last value above the bound: the end moves
            pos = end.copy()
            w = w[~below(end[w] - 1, idx[w] * self._cs, bound[w])]
            lo, hi = start[w], end[w] - 1
        else:  # the first value below it: the start moves
            pos = start.copy()
            w = w[below(start[w], idx[w] * self._cs, bound[w])]
            lo, hi = start[w] + 1, end[w]
        if w.size:
            base, bound = idx[w] * self._cs, bound[w]  # the points searched
            step = 1 << max(int((hi - lo).max()).bit_length() - 1, 0)
            while step:  # lo moves past t while t's value is below the bound
                t = lo + (step - 1)
                more = below(t, base, bound)
                more &= t < hi
                lo += more * step
                step >>= 1
            pos[w] = lo
        return pos

    def move(self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, a: np.ndarray,
             b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window ends after rejecting values < lo and > hi from the
        windows a..b-1 of the points idx (cumulative; a NaN bound rejects
        nothing on its side)."""
        if idx.size < self.s.shape[1]:  # a few points: searched in their windows
            na = self.search(idx, a, b, lo, False)
            return na, self.search(idx, na, b, hi, True)
        na = np.maximum(a, self.count_below(lo, idx, False))
        nb = np.minimum(b, self.count_below(hi, idx, True))
        na = np.where(np.isnan(lo), a, na)
        nb = np.where(np.isnan(hi), b, nb)
        return na, np.maximum(nb, na)

    # -- passes ---------------------------------------------------------------

    def reject(self) -> int:
        """Run the method's passes; return the number run (the most over
        linear fit's blocks)."""
        method = self.method
        step = _STEPS[method.reject]
        idx = (self.k > 0).nonzero()[0]
        blocks = [idx]
        if method.reject == 'linear':
            c = self.s.shape[1]
            if self.masks:
                self.keep = np.arange(self.n)[:, np.newaxis] < self.k
                self.low_rows = np.zeros_like(self.keep)
            else:
                self.linear_sums = (np.zeros(c, np.int64), np.zeros(c), np.zeros(c, np.int64))
            if self.block is not None and idx.size > self.block:
                blocks = np.array_split(idx, -(-idx.size // self.block))
        most = 0
        for idx in blocks:
            passes = 0
            for _ in range(method.passes):
                if not idx.size:
                    break
                passes += 1
                changed = step(self, idx)
                if method.reject not in ITERATIVE:
                    break
                idx = idx[changed]
            self._settle()
            most = max(most, passes)
        return most

    def _sigma(self, idx: np.ndarray) -> np.ndarray:
        a, b = self.a[idx], self.b[idx]
        _, mean, var = self.stats(a, b, idx)
        d = np.sqrt(var)
        c = mean if self.method.center == 'mean' else self.median(a, b, idx)
        return self._apply(idx, c, d, a, b, 'sigma')

    def _apply(self, idx: np.ndarray, c: np.ndarray, d: np.ndarray, a: np.ndarray,
               b: np.ndarray, reject: str | None = None) -> np.ndarray:
        """The sigma test ``c - L d <= x <= c + H d`` on the windows a..b-1
        of the points idx; return where it moved.  ``reject`` names the
        definition of c and d that `_edges` recomputes exactly (None:
        within `FLOAT_TOLERANCE` whatever the data)."""
        m = self.method
        lo, hi = self._edges(idx, c - m.sigma_low * d, c + m.sigma_high * d, c, d, a, b,
                             reject, m.sigma_low, m.sigma_high)
        return self._keep_within(idx, lo, hi, a, b)

    def _edges(self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray,
               d: np.ndarray, a: np.ndarray, b: np.ndarray, reject: str | None, low: float,
               high: float) -> tuple[np.ndarray, np.ndarray]:
        """The bounds lo, hi (shifted units) of the windows a..b-1 decided
        as README says: for integer data whole numbers, exact
        (`_integer_edges` on the definition ``reject``); for floats, or
        without ``reject``, widened by `FLOAT_TOLERANCE`."""
        shift = self.shift[idx]
        if not self.integers or reject is None:
            return _tolerant(lo, hi, c + shift, d)
        s = self.s

        def points(j: int) -> list[int]:  # the kept values of point j, unshifted
            base = int(shift[j])
            return [int(v) + base for v in s[int(a[j]):int(b[j]), int(idx[j])].tolist()]

        lo, hi = _integer_edges(lo + shift, hi + shift, c + shift, d, points, reject,
                                self.method.center, low, high)
        return lo - shift, hi - shift

    def _keep_within(self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, a: np.ndarray,
                     b: np.ndarray) -> np.ndarray:
        """Reject values < lo and > hi from the windows a..b-1 of the points
        idx (`move`) and keep the new windows; return where they moved."""
        na, nb = self.move(idx, lo, hi, a, b)
        self.a[idx], self.b[idx] = na, nb
        return (na != a) | (nb != b)

    def _mad(self, idx: np.ndarray) -> np.ndarray:
        a, b = self.a[idx], self.b[idx]
        if (idx.size == self.s.shape[1] and self.n <= MAD_ROWS[self.exact]
                and int((b - a).min(initial=self.n)) == self.n):
            c, mad = self.mad_rows()  # every point keeps its n values: pass 1
        else:
            c = self.median(a, b, idx)
            mad = self.mad(a, b, c, idx)
        return self._apply(idx, c, MAD_SCALE * mad, a, b, 'mad')

    def mad_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Median and MAD of every point's n values, from whole rows of the
        sorted values, with no per-point reads: at 24 frames 7 times faster
        than `mad` for small integers and twice for floats; past
        `MAD_ROWS` frames, slower.

        The rows below h = n // 2 and the others give two runs of distances
        from the median c, each sorted: ``left[j] = c - s[h-1-j]``,
        ``right[j] = s[h+j] - c``.  The k-th smallest distance is the least,
        over the t distances taken from the left run, of ``max(left[t-1],
        right[k-1-t])``.  Small integers stay in their type, unsigned (a
        signed type's values wrap around, and so do their differences):
        with m = floor(c) and c = m + odd / 2, the distances less odd / 2
        are the whole numbers ``m - s[i]`` and ``s[i] - m - odd``, which
        fit.  Floats take `mad`'s own steps: the same result to the last
        bit.
        """
        s, n = self.s, self.n
        q, h = (n - 1) >> 1, n >> 1
        if self.exact:
            u = s.view(s.dtype.str.replace('i', 'u'))
            gap = u[h] - u[q]
            m, odd = u[q] + (gap >> 1), gap & 1
            top = m + odd
            left = [m - u[i] for i in range(h - 1, -1, -1)]
            right = [u[i] - top for i in range(h, n)]
        else:
            c = (s[q] + s[h]) / 2
            left = [c - s[i] for i in range(h - 1, -1, -1)]
            right = [s[i] - c for i in range(h, n)]

        def smallest(k: int) -> np.ndarray:  # the k-th smallest (from 1) of both runs
            best = None
            for t in range(max(0, k - len(right)), min(k, len(left)) + 1):
                if 0 < t < k:  # a new array: the least so far goes into it
                    v = np.maximum(left[t - 1], right[k - 1 - t])
                    best = v if best is None else np.minimum(best, v, out=v)
                else:  # all k from one run: its array, read only
                    v = right[k - 1] if t == 0 else left[k - 1]
                    best = v if best is None else np.minimum(best, v)
            assert best is not None
            return best

        if self.exact:  # in float64: two distances may not sum in their type
            half = odd / 2
            return m.view(s.dtype) + half, (smallest(q + 1) + half + (smallest(h + 1) + half)) / 2
        return c, (smallest(q + 1) + smallest(h + 1)) / 2

    def mad(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Median absolute deviation from c of the windows.

        The distances are two sorted runs: ``left[j] = c - s[p-1-j]`` below
        the upper middle row p, whose values are not above c, and
        ``right[j] = s[p+j] - c`` from p on, not below c (values equal to c,
        at distance 0, may fall in either run).  A binary search finds how
        many of the q+1 smallest distances come from the left run (q the
        lower middle); the upper middle is the next one in merged order.
        """
        count = b - a
        p = a + (count >> 1)
        nl, nr = p - a, b - p
        q = np.maximum(count - 1, 0) >> 1
        lo, hi = np.maximum(0, q + 1 - nr), np.minimum(q + 1, nl)

        # more(t) = left(t) < right(q - t) holds for t below the answer: the
        # answer is lo plus the count of t in lo..hi-1 where it holds, found
        # by steps of halving size; rows in the search are inside both runs
        flat, rs = self._flat, self._rs
        at_left = (p - 1) * rs + idx * self._cs  # left(t) is c - flat[at_left - t rs]
        at_right = at_left + (q + 1) * rs  # right(q - t) is flat[at_right - t rs] - c
        span = int((hi - lo).max(initial=0))
        step = 1 << max(span.bit_length() - 1, 0)
        if self.exact:  # left(t) < right(q - t) is L + R > 2c: whole numbers
            twice = (2 * c).astype(np.int32)  # NaN (no value): unused
        while span and step:
            t = lo + (step - 1)  # the t tested: lo moves past it when it holds
            back = t * rs
            if self.exact:
                more = np.add(flat.take(at_left - back, mode='clip'),
                              flat.take(at_right - back, mode='clip'), dtype=np.int32) > twice
            else:
                more = (c - flat.take(at_left - back, mode='clip')
                        < flat.take(at_right - back, mode='clip') - c)
            more &= t < hi
            lo += more * step
            step >>= 1
        # the q+1-th smallest distance is the larger of left(lo - 1) and
        # right(q - lo), the next one the smaller of left(lo) and
        # right(q + 1 - lo); a run has none below 0 (-inf) or past its end (inf)
        edge = at_left + (1 - lo) * rs  # the row p - lo

        def value(i: np.ndarray) -> np.ndarray:
            return flat.take(i, mode='clip')

        inf = np.inf
        # inf - inf (NaN) where nothing is left: count 0, answered below
        first = np.maximum(np.where(lo >= 1, c - value(edge), -inf),
                           np.where(lo <= q, value(edge + q * rs) - c, -inf))
        after = np.minimum(np.where(lo < nl, c - value(edge - rs), inf),
                           np.where(q + 1 - lo < nr, value(edge + (q + 1) * rs) - c, inf))
        second = np.where(count & 1, first, after)
        return np.where(count > 0, (first + second) / 2, np.nan)

    def _winsorized(self, idx: np.ndarray) -> np.ndarray:
        a, b = self.a[idx], self.b[idx]
        count, _, var = self.stats(a, b, idx)
        c = self.median(a, b, idx)
        d = np.sqrt(var)
        # while no clamp passes a value, the clamped copy's variance is a
        # quadratic in the spread u: a round is a few operations on the
        # points still iterating (compacted as they finish), and only the
        # points whose u left its range read data to find their clamps
        at = (count > 0).nonzero()[0]  # the points iterating: places in idx
        u = d[at]
        ia, ib = a.copy(), b.copy()  # the clamp rows, by place in idx
        reach = [np.full(at.size, np.inf), np.full(at.size, -np.inf)]  # u's range
        poly = [np.zeros(at.size) for _ in range(3)]  # variance = p0 + p1 u + p2 u^2
        live = np.ones(at.size, bool)  # still iterating; the others wait for a compaction
        left = at.size
        for _ in range(WINSOR_MAX_ROUNDS):
            if not left:
                break
            moved = ~((u >= reach[0]) & (u < reach[1]))
            moved &= live
            if moved.any():
                w = moved.nonzero()[0]
                self._clamps(w, at[w], idx, a, b, c, u[w], ia, ib, reach, poly)
            p0, p1, p2 = poly
            new = WINSOR_FACTOR * np.sqrt(np.maximum(p0 + u * (p1 + u * p2), 0.0))
            done = ~(np.abs(new - u) > WINSOR_TOLERANCE * new)
            done &= live
            u = new
            w = done.nonzero()[0]
            if w.size:
                d[at[w]] = u[w]
                live[w] = False
                left -= w.size
                if left <= at.size * WINSOR_COMPACT:  # compacting costs a round's work
                    at, u = at[live], u[live]
                    reach, poly = [r[live] for r in reach], [p[live] for p in poly]
                    live = np.ones(at.size, bool)
        d[at[live]] = u[live]  # the rounds' cap reached
        return self._apply(idx, c, d, a, b)

    def _clamps(
        self, w: np.ndarray, at: np.ndarray, idx: np.ndarray, a: np.ndarray, b: np.ndarray,
        c: np.ndarray, u: np.ndarray, ia: np.ndarray, ib: np.ndarray, reach: list[np.ndarray],
        poly: list[np.ndarray],
    ) -> None:
        """Clamp the windows a..b-1 of the points at (places in idx) at
        c -+ 1.5 u: find the clamp rows, the range of u over which they hold
        and the clamped copy's variance as a quadratic in u; store them at
        w."""
        i, aa, bb, c = idx[at], a[at], b[at], c[at]
        k = WINSOR_CLAMP
        if i.size == self.s.shape[1]:  # every point (a first round): counted
            na, nb = self.move(i, c - k * u, c + k * u, aa, bb)
        else:  # the others move a row or two: walked
            na = self._seek(ia[at], c - k * u, aa, bb, i, inclusive=False)
            nb = self._seek(np.maximum(ib[at], na), c + k * u, na, bb, i, inclusive=True)
        ia[at], ib[at] = na, nb
        # sums of the values between the clamps less c: exact for integers
        inside = nb - na
        m1, m2 = self.window_sums(na, nb, i)
        m2 = m2 - 2 * c * m1 + inside * c * c
        m1 -= inside * c
        count = bb - aa
        spread = (bb - nb) - (na - aa)  # values clamped high less those clamped low
        poly[0][w] = (m2 - m1 * m1 / count) / count
        poly[1][w] = -2 * k * spread * m1 / (count * count)
        poly[2][w] = k * k * ((count - inside) * count - spread * spread) / (count * count)
        # the clamps hold while no value crosses them: below ia (above ib)
        # stay below c - 1.5 u (above c + 1.5 u), the others between
        inf, flat, rs = np.inf, self._flat, self._rs
        low_at, high_at = na * rs + i * self._cs, nb * rs + i * self._cs
        below_low = np.where(na > aa, flat.take(low_at - rs, mode='clip'), -inf)
        at_low = np.where(na < bb, flat.take(low_at, mode='clip'), inf)
        below_high = np.where(nb > na, flat.take(high_at - rs, mode='clip'), -inf)
        at_high = np.where(nb < bb, flat.take(high_at, mode='clip'), inf)
        reach[0][w] = np.maximum(c - at_low, below_high - c) / k
        reach[1][w] = np.minimum(c - below_low, at_high - c) / k

    def _seek(self, pos: np.ndarray, bound: np.ndarray, low: np.ndarray, high: np.ndarray,
              idx: np.ndarray, inclusive: bool) -> np.ndarray:
        """The first row in low..high whose value is not < bound (<= with
        inclusive), found by moving from pos (rows are sorted)."""
        pos = np.minimum(np.maximum(pos, low), high)

        def below(r: np.ndarray, w: np.ndarray) -> np.ndarray:
            v = self.at(r, idx[w])
            return (v <= bound[w]) if inclusive else (v < bound[w])

        w = (pos < high).nonzero()[0]
        w = w[below(pos[w], w)]
        while w.size:  # up, past values below the bound
            pos[w] += 1
            w = w[pos[w] < high[w]]
            w = w[below(pos[w], w)]
        w = (pos > low).nonzero()[0]
        w = w[~below(pos[w] - 1, w)]
        while w.size:  # down, back past values that are not below it
            pos[w] -= 1
            w = w[pos[w] > low[w]]
            w = w[~below(pos[w] - 1, w)]
        return pos

    def _linear(self, idx: np.ndarray) -> np.ndarray:
        if not self._linear_left:  # a block's first pass: every valid value
            run = idx[-1] - idx[0] + 1 == idx.size  # a run of points: a view
            s = self.s[:, idx[0]:idx[-1] + 1] if run else self.s[:, idx]
            keep = np.arange(self.n)[:, np.newaxis] < self.k[idx]
            y = np.where(keep, s, 0.0)
            # rejected low: the sorted rows with masks, else a count per point
            low_rows = np.zeros_like(keep) if self.masks else np.zeros(idx.size, self.counter)
        else:  # the points that moved in the last pass (reject's idx), as
            # they were left: their values (0 where not kept) and masks
            _, moved, keep, y, low_rows = self._linear_left
            keep, y = keep.compress(moved, axis=1), y.compress(moved, axis=1)
            low_rows = low_rows.compress(moved, axis=-1)
        # ranks 1..count of the kept values, in order (counted in bytes and
        # then converted: 2x faster than counting in float64): their mean
        # and spread are known, (count + 1) / 2 and count (count^2 - 1) / 12
        rank = _running_count(keep, self.counter)
        count = rank[-1].astype(np.float64)
        dr = rank.astype(np.float64)
        dr -= (count + 1) / 2
        total = _add_rows(y)
        my = total / count
        srr = count * (count * count - 1) / 12
        slope = np.where(srr > 0, np.einsum('ij,ij->j', dr, y) / srr, 0.0)
        # the residuals y - my - slope dr, in dr's buffer, 0 where not kept
        # (so that they reject nothing there)
        res = dr
        res *= -slope
        res += y
        res -= my
        res *= keep
        d = np.abs(res).sum(axis=0) / count
        low, out = self._linear_out(idx, res, d, keep, y)
        keep &= ~out
        if self.masks:
            low_rows |= low
        else:
            low_rows += low.sum(axis=0, dtype=self.counter)
        y *= keep
        moved = np.asarray(out.any(axis=0))
        # the points that did not move are settled: their masks are final
        # (or their count and sum, unchanged by this pass: written for every
        # point, those that moved write theirs again later)
        if self.masks:
            self._linear_masks(idx, ~moved, keep, low_rows)
        else:
            self._linear_final(idx, count, total, low_rows)
        self._linear_left = (idx, moved, keep, y, low_rows)
        return moved

    def _linear_out(self, idx: np.ndarray, res: np.ndarray, d: np.ndarray, keep: np.ndarray,
                    y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linear fit's test of the residuals res (0 where not kept) against
        ``-L d`` and ``H d``: the values rejected low, and all those
        rejected.  Floats: within ``FLOAT_TOLERANCE * (M + d)`` of its bound a
        residual is on it (M the largest magnitude of the point's values);
        integer data: a point with a residual within `EXACT_MARGIN` of that
        is decided again exactly (`_exact_linear`)."""
        m = self.method
        # M, from the point's lowest and highest valid values
        shift = self.shift[idx]
        top = np.maximum(np.abs(self.at(np.zeros_like(idx), idx) + shift),
                         np.abs(self.at(self.k[idx] - 1, idx) + shift))
        scale = top + d
        under, over = -m.sigma_low * d, m.sigma_high * d
        if not self.integers:
            tol = FLOAT_TOLERANCE * scale
            low: np.ndarray = res < under - tol
            return low, low | (res > over + tol)
        low = res < under
        out: np.ndarray = low | (res > over)
        margin = EXACT_MARGIN * scale
        near = np.abs(res - over) <= margin
        near |= np.abs(res - under) <= margin
        near &= keep
        for j in np.flatnonzero(near.any(axis=0) & (d > 0)).tolist():
            rows = np.flatnonzero(keep[:, j])
            lows, outs = _exact_linear([int(v) for v in y[rows, j].tolist()],
                                       m.sigma_low, m.sigma_high)
            low[:, j] = out[:, j] = False
            low[rows, j], out[rows, j] = lows, outs
        return low, out

    def _linear_masks(self, idx: np.ndarray, done: np.ndarray, keep: np.ndarray,
                      low_rows: np.ndarray) -> None:
        """Write the masks of linear fit's points ``idx[done]``."""
        if done.any():
            at = idx[done]
            # made by reject() for linear with masks, the only caller's case
            assert self.keep is not None and self.low_rows is not None
            self.keep[:, at], self.low_rows[:, at] = keep[:, done], low_rows[:, done]

    def _linear_final(self, at: np.ndarray, count: np.ndarray, total: np.ndarray,
                      low_rows: np.ndarray) -> None:
        """Write linear fit's count, sum and values rejected low of the
        points ``at`` (without masks)."""
        assert self.linear_sums is not None  # made by reject() for linear without masks
        kept, sums, low = self.linear_sums
        kept[at], sums[at], low[at] = count, total, low_rows

    def _settle(self) -> None:
        """Write linear's last working set (the points that moved in the
        last pass)."""
        if self._linear_left:
            idx, moved, keep, y, low_rows = self._linear_left
            self._linear_left = ()
            if self.masks:
                self._linear_masks(idx, moved, keep, low_rows)
            else:
                keep, y = keep.compress(moved, axis=1), y.compress(moved, axis=1)
                self._linear_final(idx[moved], keep.sum(axis=0), y.sum(axis=0), low_rows[moved])

    def _percentile(self, idx: np.ndarray) -> np.ndarray:
        low, high = self.method.percentile
        a, b = self.a[idx], self.b[idx]
        m = self.median(a, b, idx) + self.shift[idx]  # in the values' own units
        c = m - self.shift[idx]
        lo, hi = self._edges(idx, c - low * m, c + high * m, c, np.abs(m), a, b, 'percentile',
                             low, high)
        return self._keep_within(idx, lo, hi, a, b)

    def _minmax(self, idx: np.ndarray) -> np.ndarray:
        low, high = (min(int(v), self.n) for v in self.method.minmax)
        k = self.k[idx]
        na = np.minimum(low, k)
        nb = np.maximum(k - high, na)
        changed = (na != self.a[idx]) | (nb != self.b[idx])
        self.a[idx], self.b[idx] = na, nb
        return changed

    def _gesd(self, idx: np.ndarray) -> np.ndarray:
        alpha, fraction = self.method.gesd
        k = self.k[idx]
        a, b = self.a[idx].copy(), self.b[idx].copy()
        limit = np.minimum(np.floor(fraction * k).astype(np.int64), np.maximum(k - 2, 0))
        lam = _gesd_critical(self.n, alpha)
        best_a, best_b = a.copy(), b.copy()
        steps = int(limit.max(initial=0))
        if steps:  # the window's sums, less each value as it is removed
            z = self._z if idx.size == self._z.shape[1] else self._z[:, idx]
            if self.invalid is not None:  # the window is rows a..b-1
                rows = np.arange(self.n)[:, np.newaxis]
                z = np.where((rows >= a) & (rows < b), z, 0)
            if self.exact:  # exact integer sums
                total = _sums(z, None)[0].astype(np.float64)
                squares = _square_sums(z).astype(np.float64)
            else:
                total = _add_rows(z)
                squares = np.einsum('ij,ij->j', z, z)
            count = (b - a).astype(np.float64)
        # the flat places of each window's lowest and highest values
        flat, rs, column = self._flat, self._rs, idx * self._cs
        low_at, high_at = a * rs + column, (b - 1) * rs + column
        best_low, best_high = low_at.copy(), high_at.copy()
        best_total = total.copy() if steps else None
        # every window the same size (no invalid value): a count and a
        # critical value per step, every window live to the last step
        uniform = k.size > 0 and bool((k == k[0]).all())
        for j in range(1, steps + 1):
            live = True if uniform else limit >= j
            lowest = flat.take(low_at, mode='clip').astype(np.float64)
            highest = flat.take(high_at, mode='clip').astype(np.float64)
            if uniform:
                count = float(k[0] - j + 1)
                critical = lam[int(k[0]) - j + 1]
            else:
                critical = lam[np.clip(count, 0, self.n).astype(np.int64)]
            mean = total / count
            # R = r / SD > critical, compared squared (no root; r, SD >= 0),
            # SD^2 the sample variance max(count squares - total^2, 0) /
            # (count (count - 1)): in one buffer, one factor
            var = count * squares
            var -= total * total
            np.maximum(var, 0.0, out=var)
            var *= critical * critical / (count * (count - 1))
            below, above = mean - lowest, highest - mean
            take_low = below > above
            r = np.maximum(below, above, out=below)
            r *= r
            outlier = r > var
            if self.exact:  # the value removed: whole numbers, exact
                gone = lowest - highest
                gone *= take_low
                gone += highest
            else:
                gone = highest
                np.copyto(gone, lowest, where=take_low)
            if not uniform:
                outlier &= live
                take_low &= live
                gone *= live
                count -= live
            total -= gone
            squares -= gone * gone
            up = take_low * rs
            low_at += up
            high_at += up - live * rs
            np.copyto(best_low, low_at, where=outlier)
            np.copyto(best_high, high_at, where=outlier)
            assert best_total is not None  # made when steps > 0, and the loop runs only then
            np.copyto(best_total, total, where=outlier)
        if steps:
            best_a, best_b = (best_low - column) // rs, (best_high - column) // rs + 1
            if self.exact:  # the kept values' sums, for the mean: no second sum
                self.window_total = np.zeros(self.s.shape[1])
                self.window_total[idx] = best_total
        changed = (best_a != self.a[idx]) | (best_b != self.b[idx])
        self.a[idx], self.b[idx] = best_a, best_b
        return changed

    def _none(self, idx: np.ndarray) -> np.ndarray:
        return np.zeros(idx.size, bool)

    # -- what the combination reads (`_combine`) -------------------------------

    def kept_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """The number of values each point keeps, and of those it rejected
        low."""
        if self.keep is not None:  # linear: a mask, not a window
            assert self.low_rows is not None  # made with keep
            return self.keep.sum(axis=0), self.low_rows.sum(axis=0)
        if self.linear_sums is not None:  # linear, the mean alone: sums
            count, _, low = self.linear_sums
            return count, low
        a, b = self.a, self.b
        return b - a, np.where(a >= b, np.minimum(a, self.k), a)

    # the sum of a point's kept values is taken from what its steps
    # left (prefix sums, linear fit's running sums, GESD's exact sums, exact
    # integer sums of a window) rather than from a second pass over the values
    def kept_mean(self, count: np.ndarray, empty: np.ndarray) -> np.ndarray:
        """The mean of the values each point keeps, or of all its valid
        values where it keeps none (``empty``)."""
        k, a, b, keep = self.k, self.a, self.b, self.keep
        rows = np.arange(self.n)[:, np.newaxis]
        if self.linear_sums is not None:
            mean = self.linear_sums[1] / count
            if empty.any():
                e = empty.nonzero()[0]
                mean[e] = _add_rows(np.where(rows < k[e], self.s[:, e], 0.0)) / k[e]
            return mean + self.shift
        ma, mb = np.where(empty, 0, a), np.where(empty, k, b)  # the rows averaged
        if self._sums is not None and keep is None:
            at = np.arange(a.size)
            return self.window_sums(ma, mb, at, self._sums[:1])[0] / (mb - ma) + self.shift
        if self.window_total is not None and not empty.any():  # exact: no shift
            return self.window_total / count
        if self.exact and keep is None:
            return self._exact_sum(ma, mb) / (mb - ma)
        window = (rows >= a) & (rows < b) if keep is None else keep
        window = np.where(empty, rows < k, window)
        return _add_rows(np.where(window, self.s, 0.0)) / window.sum(axis=0) + self.shift

    def weighted_mean(self, empty: np.ndarray) -> np.ndarray:
        """The weighted mean of the values each point keeps, or of all its
        valid values where it keeps none (``empty``)."""
        assert self.weights is not None  # the caller's case
        kept, _, _ = self.kept_in_frame_order()
        fallback = ~self.invalid if self.invalid is not None else np.ones_like(kept)
        use = np.where(empty, fallback, kept)
        values = np.where(use, self.frames, 0)
        w = np.where(use, self.weights, 0.0)
        return _add_rows(w * values) / _add_rows(w)

    def kept_value(self, combine: str, count: np.ndarray) -> np.ndarray:
        """The median, the lowest or the highest of the values each point
        keeps (``combine``), from their sorted rows."""
        keep = self.keep
        if keep is not None:  # rows of the kept values, in order
            order = _running_count(keep, np.int64) - 1

            def nth(j: np.ndarray) -> np.ndarray:
                return (keep & (order == j)).argmax(axis=0)
        else:
            def nth(j: np.ndarray) -> np.ndarray:
                return self.a + j
        at = np.arange(self.a.size)
        if combine == 'median':
            lo = self.at(nth(np.maximum(count - 1, 0) // 2), at)
            hi = self.at(nth(count // 2), at)
            return (lo + hi) / 2 + self.shift
        if combine == 'min':
            return self.at(nth(np.zeros_like(count)), at) + self.shift
        return self.at(nth(np.maximum(count - 1, 0)), at) + self.shift

    def _exact_sum(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact sums of the rows a..b-1 of small integers: the sum of all
        rows less the few rows below a and from b on, or when they are not
        few, from prefix sums in 32 bits (64 beyond 65536 rows)."""
        s, n = self.s, self.n
        below, above = int(a.max(initial=0)), int(b.min(initial=n))
        if 3 * (below + n - above) <= n:
            total = s.sum(axis=0, dtype=np.int64)
            for j in range(below):
                total -= np.where(j < a, s[j], 0)
            for j in range(above, n):
                total -= np.where(j >= b, s[j], 0)
            return total
        up = np.empty((n + 1, s.shape[1]), _sum_type(s.dtype, n))
        up[0] = 0
        _cumsum_rows(s, up)
        flat, width = up.reshape(-1), s.shape[1]
        at = np.arange(width)
        return flat.take(b * width + at).astype(np.int64) - flat.take(a * width + at)

    def kept_in_frame_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return masks ``(n, c)`` in frame order: kept, rejected low,
        rejected high.

        The sort is stable, so among equal values the earlier frame sorts
        first; a value's place in the sort is the number of values below it
        plus the equal values of earlier frames.
        """
        if self._order is None:  # the window is final: the masks too
            self._order = self._masks_in_frame_order()
        return self._order

    def _masks_in_frame_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self.frames
        n, c = x.shape
        valid = np.ones((n, c), bool) if self.invalid is None else ~self.invalid
        if self.keep is not None:  # linear may reject inside the window
            fill = np.inf if x.dtype.kind == 'f' else np.iinfo(x.dtype).max
            order = np.argsort(np.where(valid, x, fill).T, axis=1, kind='stable')
            kept = np.zeros((c, n), bool)
            low = np.zeros((c, n), bool)
            np.put_along_axis(kept, order, self.keep.T, axis=1)
            assert self.low_rows is not None  # made with keep
            np.put_along_axis(low, order, self.low_rows.T, axis=1)
            kept, low = kept.T & valid, low.T & valid
            return kept, low, valid & ~kept & ~low
        before_a = self._before(self.a, valid)
        before_b = self._before(self.b, valid)
        return before_b & ~before_a, before_a, valid & ~before_b

    def _before(self, bound: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Mask of the valid values whose place in the sort is < bound."""
        x = self.frames
        at = np.arange(x.shape[1])
        edge = self.sorted_native[np.minimum(bound, self.n - 1), at]
        if x.dtype.kind == 'f':
            edge = np.where(bound < self.k, edge, np.inf)
            less = valid & (x < edge)
            equal = valid & (x == edge)
        else:
            top = bound >= self.k
            less = valid & ((x < edge) | top)
            equal = valid & (x == edge) & ~top
        rank = _running_count(equal, np.int16 if self.n < 32768 else np.int32) - 1
        return less | (equal & (rank < bound - less.sum(axis=0)))


def _combine(chunk: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine a chunk whose rejection is done: the combined values
    (float64), the values rejected and those rejected low, per point.

    One way for each combination (README, "What is computed"): the mean of
    the kept values, weighted when the chunk has weights; their median,
    lowest or highest value, unweighted.  A point that keeps no value gets
    the mean (weighted as the mean would be) of all its valid values; one
    with no valid value gets 0, which `_clip_points` replaces."""
    k = chunk.k
    count, low = chunk.kept_counts()
    empty = count <= 0
    rejected = np.where(empty, k, k - count)
    combine = chunk.method.combine
    mean = None
    if combine == 'mean' or empty.any():
        mean = chunk.kept_mean(count, empty) if chunk.weights is None \
            else chunk.weighted_mean(empty)
    if combine == 'mean':
        assert mean is not None
        result = mean
    else:
        result = chunk.kept_value(combine, count)
        if mean is not None:
            result = np.where(empty, mean, result)
    return np.where(k > 0, result, 0.0), rejected, low


# radon D: one loop of passes for small integers (exact sums kept up to date)
# and other data (summed again), weighted or not, median or mean: split, the
# loop would be written twice.
def _clip_chunk(
    v: np.ndarray,
    valid: np.ndarray | None,
    low: float,
    high: float,
    iterations: int,
    center: str,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sigma-clip one chunk ``(n, c)`` by thresholds (the fast path of the
    default method); return mean, rejected and rejected-low counts, passes.

    It gives what the window core gives for ``reject='sigma'``,
    ``combine='mean'`` (the tests compare them), without sorting: on a
    night of frames three passes of thresholds cost less than one sort.
    With ``weights`` (``(n, c)``, mean centre only) the mean of the kept
    values is weighted; the rejection is not.

    8- and 16-bit integers stay in their own type: sums are exact int64,
    and each value is compared with per-point integer bounds (``x < lo``
    is ``x < ceil(lo)`` for an integer).  Other types are clipped in
    float64.  Points that a pass leaves unchanged leave the working set
    (once `ACTIVE_SHRINK` or fewer changed): their kept values, and so
    their result, cannot change; a point kept on recomputes the same
    bounds and rejects nothing more.
    ``kept`` is None while every value is kept.
    """
    exact = v.dtype.kind in 'iu' and v.dtype.itemsize <= 2
    # in memory order for the passes: the rows of a band's chunk lie far apart
    x = (np.ascontiguousarray(v) if iterations else v) if exact else np.asarray(v, np.float64)
    # for the median, sort each point's values once: sums do not depend on
    # the order, and the kept values of a point stay a run of its sorted
    # values (NaN sorts last), so each pass finds its median by index.
    # Transparent pixels would break the run: they take the general way.
    if _sorted_path(v.dtype, valid, weights, center, iterations):
        return _clip_sorted(np.ascontiguousarray(_sort_points(x, None)), low, high, iterations)
    presorted = center == 'median' and valid is None and iterations > 0
    if presorted:
        x = np.ascontiguousarray(_sort_points(x, None))
    kept = valid
    if v.dtype.kind == 'f':
        nan = np.isnan(x)
        if nan.any():
            kept = ~nan if kept is None else kept & ~nan
        del nan
    total, count = _sums(x, kept)
    w = weights
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = np.where(count > 0, total / count, 0.0)
        if w is not None:
            wsum, wx = _weighted_sums(x, kept, w)
            mean = np.where(count > 0, wx / wsum, 0.0)
    fallback = mean.copy()  # the mean of the valid values: 0 where none
    rejected = np.zeros(x.shape[1], np.int64)
    below = np.zeros(x.shape[1], np.int64)
    active = np.arange(x.shape[1])  # the points still in the working set
    # small integers: the sums of squares too, exact, kept up to date
    squares = _square_sums(x if kept is None else x * kept) if exact and iterations else None
    passes = 0
    for _ in range(iterations):
        passes += 1
        lo, hi = _bounds(x, kept, total, count, low, high, center, exact, presorted,
                         v.dtype.kind in 'iu', squares)
        under = x < lo
        out = under | (x > hi)
        if kept is not None:
            out &= kept
            under &= kept
        # the values rejected are few: their places, counted per point
        width = x.shape[1]
        rows, cols = np.divmod(np.flatnonzero(out), width)  # faster than nonzero
        if not cols.size:
            break
        removed = np.bincount(cols, minlength=width)
        rejected[active] += removed
        below[active] += np.bincount(cols[under[rows, cols]], minlength=width)
        del under
        kept = ~out if kept is None else kept & ~out
        del out
        if exact:  # take the rejected values out of the sums
            assert squares is not None
            total, squares = _without(x[rows, cols], cols, width, total, squares)
            count = count - removed
        else:  # sum again, in the same order as a fresh sum would
            total, count = _sums(x, kept)
        changed = np.flatnonzero(removed)
        if changed.size <= ACTIVE_SHRINK * width:  # the others leave
            # take keeps rows in memory order (x[:, changed] would not)
            active, x, kept = active[changed], np.take(x, changed, axis=1), \
                np.take(kept, changed, axis=1)
            total, count = total[changed], count[changed]
            if squares is not None:
                squares = squares[changed]
            if w is not None:
                w = np.take(w, changed, axis=1)
        with np.errstate(invalid='ignore', divide='ignore'):
            if w is None:
                mean[active] = np.where(count > 0, total / count, fallback[active])
            else:
                wsum, wx = _weighted_sums(x, kept, w)
                mean[active] = np.where(count > 0, wx / wsum, fallback[active])
    return mean, rejected, below, passes


def _without(
    gone: np.ndarray, points: np.ndarray, width: int, total: np.ndarray, squares: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The int64 sums and sums of squares of small integers without the
    values ``gone`` of the points ``points``, added per point by bincount in
    float64: exact while fewer than 2^21 values go (each square is below
    2^32, so every sum stays below 2^53), else by int64 ``add.at``."""
    if gone.size < 1 << 21:
        g = gone.astype(np.float64)
        less = np.bincount(points, g, width).astype(np.int64)
        less_squares = np.bincount(points, g * g, width).astype(np.int64)
    else:
        g = gone.astype(np.int64)
        less, less_squares = np.zeros(width, np.int64), np.zeros(width, np.int64)
        np.add.at(less, points, g)
        np.add.at(less_squares, points, g * g)
    return total - less, squares - less_squares


ACTIVE_SHRINK = 0.75
"""`_clip_chunk` drops the points that a pass left unchanged from its
working set when at most this fraction of the points changed: copying
the rest costs more than a pass over points that cannot change (with
thousands of frames nearly every point loses a value in every pass)."""


NETWORK_MAX = 128
"""Up to this many frames, 8- and 16-bit integers are sorted by a sorting
network: 2.5x faster than a sort of the transposed copy at 24 frames, as
fast at 200."""


@functools.cache
def _sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """The comparators ``(i, j)``, i < j, of Batcher's merge exchange for n
    items (Knuth, TAOCP vol. 3, 5.2.2, Algorithm M): after them in order,
    each putting the smaller of items i and j at i, the n items are
    sorted."""
    pairs: list[tuple[int, int]] = []
    t = (n - 1).bit_length()
    p = 1 << t >> 1
    while p > 0:
        q, r, d = 1 << t >> 1, 0, p
        while True:
            pairs.extend((i, i + d) for i in range(n - d) if i & p == r)
            if q == p:
                break
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return tuple(pairs)


def _sort_points(x: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
    """Return the values of each point (column) of x ``(n, c)`` sorted,
    the invalid ones last as NaN (floats) or the type's maximum, as a new
    ``(n, c)`` array: C-ordered from the network, else a transposed view.

    Small integers go through `_sorting_network` on whole rows, without
    transposing (each comparator is two numpy calls on contiguous rows);
    the rest are sorted along the contiguous rows of a transposed copy,
    2-3x faster than along the frame axis.
    """
    n, c = x.shape
    fill = np.nan if x.dtype.kind == 'f' else np.iinfo(x.dtype).max
    if x.dtype.kind in 'iu' and x.dtype.itemsize <= 2 and n <= NETWORK_MAX:
        work = np.empty((n + 1, c), x.dtype)  # a spare row for each minimum
        work[:n] = x
        if invalid is not None:
            np.putmask(work[:n], invalid, fill)
        rows, spare = list(range(n)), n  # where item i is: rows[i]
        for i, j in _sorting_network(n):
            a, b = rows[i], rows[j]
            np.minimum(work[a], work[b], out=work[spare])
            np.maximum(work[a], work[b], out=work[b])
            rows[i], spare = spare, a
        return work[rows]
    t = np.array(x.T, order='C')  # a copy, even of one column
    if invalid is not None:
        t[invalid.T] = fill
    t.sort(axis=1)
    return t.T


def _sorted_path(
    dtype: np.dtype, valid: np.ndarray | None, weights: np.ndarray | None, center: str,
    iterations: int,
) -> bool:
    """Whether the fast path clips by `_clip_sorted`: around the median,
    8- or 16-bit integers (not normalized), every value valid, no weights."""
    return (center == 'median' and iterations > 0 and valid is None and weights is None
            and dtype.kind in 'iu' and dtype.itemsize <= 2)


def _clip_sorted(
    x: np.ndarray, low: float, high: float, iterations: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """`_clip_chunk` around the median for small integers, every value
    valid, each point's values sorted (``x`` ``(n, c)``, C-ordered).

    The values a point keeps are a run of its sorted rows, ``first`` and
    ``count`` long: the median is two reads, and exact sums of the values
    and of their squares, less the values each pass rejects, give the mean
    and spread.  A pass moves a point only if its lowest or highest kept
    value is out of bounds (two reads); those points are walked in from
    each end of their run while out of bounds.
    """
    n, c = x.shape
    flat = x.reshape(-1)
    total, count = _sums(x, None)
    squares = _square_sums(x)
    fallback = total / count
    first = np.zeros(c, np.int64)
    rejected = np.zeros(c, np.int64)
    below = np.zeros(c, np.int64)
    active = np.arange(c)
    passes = 0
    for _ in range(iterations):
        if not active.size:
            break
        passes += 1
        if passes == 1:  # every point and its whole run: rows, not reads
            f, k, t = first, count, total
            var = (n * squares - t * t) / float(n * n)
            mid = (x[(n - 1) >> 1].astype(np.float64) + x[n >> 1]) / 2
            lowest, highest = x[0], x[n - 1]
        else:
            f, k, t = first[active], count[active], total[active]
            # as _bounds: d about the mean with divisor k, the median centre
            var = (k * squares[active] - t * t) / (k.astype(np.float64) ** 2)
            mid = (flat.take((f + ((k - 1) >> 1)) * c + active).astype(np.float64)
                   + flat.take((f + (k >> 1)) * c + active)) / 2
            lowest, highest = flat.take(f * c + active), flat.take((f + k - 1) * c + active)
        std = np.sqrt(var)
        # whole-number bounds, decided exactly (`_integer_edges`): only end
        # values are compared with them, few
        def points(j: int, first: np.ndarray = f, count: np.ndarray = k,
                   point: np.ndarray = active) -> list[int]:
            # the kept values of point j, a run of its rows
            start = int(first[j])
            return x[start:start + int(count[j]), int(point[j])].tolist()

        lo, hi = _integer_edges(mid - std * low, mid + std * high, mid, std, points, 'sigma',
                                'median', low, high)
        moved = ((lowest < lo) | (highest > hi)).nonzero()[0]
        if not moved.size:
            break
        active, f, k, lo, hi = active[moved], f[moved], k[moved], lo[moved], hi[moved]
        # the values rejected are the rows at the two ends of the run, few:
        # walked inwards from each end while out of bounds, their values
        # taken from the sums.  A walk stops inside the run: lo <= mid is at
        # most the upper middle value, hi >= mid at least the lower one, so
        # the walks never cross
        t, q = total[active], squares[active]
        low_count, high_count = np.zeros_like(k), np.zeros_like(k)
        ends = ((low_count, f, c, lo, lowest[moved]),
                (high_count, f + k - 1, -c, hi, highest[moved]))
        for cut, start, way, out, value in ends:
            live = np.arange(active.size)
            place = start * c + active  # the flat place of the end's value
            while live.size:
                hit = (value < out) if way > 0 else (value > out)
                live, out, gone = live[hit], out[hit], value[hit].astype(np.int64)
                cut[live] += 1
                t[live] -= gone
                q[live] -= gone * gone
                place = place[hit] + way
                value = flat.take(place)  # the next value in
        total[active], squares[active] = t, q
        out_count = low_count + high_count
        first[active] += low_count
        count[active] -= out_count
        rejected[active] += out_count
        below[active] += low_count
        active = active[count[active] > 0]
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = np.where(count > 0, total / count, fallback)
    return mean, rejected, below, passes


def _weighted_sums(
    x: np.ndarray, kept: np.ndarray | None, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the sums of the weights and of the weighted values kept."""
    if kept is not None:
        w = np.where(kept, w, 0.0)
    wx = w * x
    if kept is not None and x.dtype.kind == 'f':
        wx[~kept] = 0.0  # 0 * NaN or 0 * inf
    return _add_rows(w), _add_rows(wx)


def _add_rows(a: np.ndarray) -> np.ndarray:
    """The sums of a float array ``(n, c)`` along its first axis, row after
    row whatever its width and layout: numpy adds a lone column, or the
    columns of an array in column order (what ``x[:, index]`` gives),
    pairwise, in another order with other roundings; a point would not give
    the same bits alone in a chunk as beside others, nor a streamed band
    those of the whole image."""
    n, c = a.shape
    if n < 2 or c == 0 or (c > 1 and abs(a.strides[1]) < abs(a.strides[0])):
        return a.sum(axis=0)  # rows in memory order: numpy adds row after row
    return np.add.accumulate(a, axis=0)[-1]


def _sums(x: np.ndarray, kept: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Return the sum (int64 for integers) and the count of the kept values
    of each point."""
    if kept is None:
        if x.dtype.kind == 'f':
            return _add_rows(x), np.full(x.shape[1], x.shape[0])
        total = x.sum(axis=0, dtype=_sum_type(x.dtype, x.shape[0])).astype(np.int64)
        return total, np.full(x.shape[1], x.shape[0])
    if x.dtype.kind == 'f':  # where, not a product: 0 * inf is NaN
        return _add_rows(np.where(kept, x, 0.0)), kept.sum(axis=0)
    return (x * kept).sum(axis=0, dtype=np.int64), kept.sum(axis=0)


def _sum_type(dtype: np.dtype, n: int) -> type:
    """The type of exact sums of up to n values of an 8- or 16-bit integer
    type: 32 bits hold the sum of 65536 values of 16 bits, and add twice as
    fast as 64."""
    if n > 65536:
        return np.int64
    return np.uint32 if dtype.kind == 'u' else np.int32


def _bounds(
    x: np.ndarray,
    kept: np.ndarray | None,
    total: np.ndarray,
    count: np.ndarray,
    low: float,
    high: float,
    center: str,
    exact: bool,
    presorted: bool = False,
    integers: bool = False,
    squares: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the lowest and highest value each point keeps in this pass.

    ``d`` is the standard deviation about the mean with divisor ``k``: from
    exact integer sums ``(k*sum(x^2) - sum(x)^2) / k^2`` for small
    integers, otherwise with a second pass over the deviations.  For
    ``integers`` (integer data, not normalized) the bounds are whole
    numbers decided exactly (`_integer_edges`), of the data's type for
    small integers (``exact``); for floats they are widened by
    `FLOAT_TOLERANCE`.
    """
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = total / count
        if exact:
            if squares is None:
                squares = _square_sums(x if kept is None else x * kept)
            var = (count * squares - total * total) / (count.astype(np.float64) ** 2)
        else:
            dev = x - mean
            if kept is not None:
                dev = np.where(kept, dev, 0.0)
            var = _add_rows(np.square(dev, out=dev)) / count
        std = np.sqrt(var)
        mid = mean if center == 'mean' else _median(x, kept, count, presorted)
        lo, hi = mid - std * low, mid + std * high
    if not (integers or exact):
        return _tolerant(lo, hi, mid, std)

    def points(j: int) -> list[int]:  # the kept values of point j
        column = x[:, j] if kept is None else x[kept[:, j], j]
        return [int(v) for v in column.tolist()]

    lo, hi = _integer_edges(lo, hi, mid, std, points, 'sigma', center, low, high)
    if not exact:
        return lo, hi
    return _integer_bounds(lo, hi, x.dtype)


def _square_sums(x: np.ndarray) -> np.ndarray:
    """Exact int64 sums of the squares of 8- or 16-bit integers ``(n, c)``
    along the first axis: the squares fit in 16/32 bits, half the traffic."""
    wide = np.dtype(f'{x.dtype.kind}{2 * x.dtype.itemsize}')
    big = np.uint64 if x.dtype.kind == 'u' else np.int64  # faster unsigned
    return np.square(x, dtype=wide).sum(axis=0, dtype=big).astype(np.int64)


def _integer_bounds(
    lo: np.ndarray, hi: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds in an integer type: ``x < lo`` is ``x < ceil(lo)`` and
    ``x > hi`` is ``x > floor(hi)``, clipped to the type's range."""
    info = np.iinfo(dtype)
    lo = np.clip(np.ceil(lo), info.min, info.max)
    hi = np.clip(np.floor(hi), info.min, info.max)
    # NaN bounds belong to points with no value kept: nothing to compare
    with np.errstate(invalid='ignore'):
        return lo.astype(dtype), hi.astype(dtype)


FLOAT_TOLERANCE = 1e-12
"""Floats: a value within ``FLOAT_TOLERANCE * (|c| + d)`` of a bound counts
as on it and is kept, on every path (linear fit: a residual within
``FLOAT_TOLERANCE * (M + d)`` of its bound, M the largest magnitude of the
point's values), so that no path's rounding decides."""

EXACT_MARGIN = 1e-9
"""Integer data: a bound that float64 puts within ``EXACT_MARGIN * (|c| +
d)`` of an integer (a linear fit's residual within ``EXACT_MARGIN * (M +
d)`` of its bound) is decided again in exact rational arithmetic
(`_exact_bounds`, `_exact_linear`); only those points, few, leave numpy."""


def _tolerant(lo: np.ndarray, hi: np.ndarray, c: np.ndarray,
              d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float bounds widened by `FLOAT_TOLERANCE` ``* (|c| + d)``."""
    with np.errstate(invalid='ignore'):
        tol = FLOAT_TOLERANCE * (np.abs(c) + d)
        return lo - tol, hi + tol


def _integer_edges(
    lo: np.ndarray, hi: np.ndarray, c: np.ndarray, d: np.ndarray,
    points: Callable[[int], list[int]], reject: str, center: str, low: float, high: float,
) -> tuple[np.ndarray, np.ndarray]:
    """For integer data, the lowest and highest integer kept, ``ceil(lo)``
    and ``floor(hi)`` (float64), from bounds computed in float64: where
    either lies within `EXACT_MARGIN` of an integer (and d > 0, else the
    bounds are c, exact), both come from `_exact_bounds` on the point's
    kept values ``points(j)``; percentile's depend on its median c alone
    and are decided once for each median (a fifth of the points are near:
    0.8 m is whole whenever 2m is a multiple of 5)."""
    with np.errstate(invalid='ignore'):  # in place: a few calls a pass on the fast path
        margin = np.abs(c)
        margin += d
        margin *= EXACT_MARGIN
        gap = np.rint(lo)
        gap -= lo
        near = np.abs(gap, out=gap) <= margin
        gap = np.rint(hi)
        gap -= hi
        near |= np.abs(gap, out=gap) <= margin
        near &= d > 0
    lo, hi = np.ceil(lo), np.floor(hi)
    at = np.flatnonzero(near)
    if reject == 'percentile' and at.size:  # c is a half-integer: 2c is exact
        twice, inverse = np.unique(np.rint(2 * c[at]).astype(np.int64), return_inverse=True)
        lows, highs = _percentile_bounds(twice.tolist(), low, high)
        lo[at] = np.array(lows, np.float64)[inverse]
        hi[at] = np.array(highs, np.float64)[inverse]
        return lo, hi
    for j in at.tolist():
        lo[j], hi[j] = _exact_bounds(points(j), reject, center, low, high)
    return lo, hi


def _exact_bounds(values: list[int], reject: str, center: str, low: float,
                  high: float) -> tuple[int, int]:
    """``ceil(c - low d)`` and ``floor(c + high d)`` for integer values (the
    kept values of one point), in exact rational arithmetic: the factors
    are floats, exact dyadic rationals; the median is a half-integer, the
    mean S / k, d^2 = (k Q - S^2) / k^2 (S, Q the sums of the values and
    of their squares), mad's d = MAD_SCALE * MAD, percentile's d = m (the
    median).  A value exactly on a bound is kept."""
    v = sorted(values)
    k = len(v)
    if reject == 'sigma':  # in integers: c = top / under, d = sqrt(spread) / k
        total, squares = sum(v), sum(x * x for x in v)
        top, under = (total, k) if center == 'mean' else (v[(k - 1) >> 1] + v[k >> 1], 2)
        spread = k * squares - total * total
        return (_exact_edge(top, under, k, spread, low, -1),
                _exact_edge(top, under, k, spread, high, 1))
    median = Fraction(v[(k - 1) >> 1] + v[k >> 1], 2)
    if reject == 'percentile':
        lows, highs = _percentile_bounds([v[(k - 1) >> 1] + v[k >> 1]], low, high)
        return lows[0], highs[0]
    lo_f, hi_f = Fraction(low), Fraction(high)
    dist = sorted(abs(x - median) for x in v)  # mad
    d = Fraction(MAD_SCALE) * (dist[(k - 1) >> 1] + dist[k >> 1]) / 2
    return math.ceil(median - lo_f * d), math.floor(median + hi_f * d)


def _percentile_bounds(twice: list[int], low: float, high: float
                       ) -> tuple[list[int], list[int]]:
    """``ceil(m - low m)`` and ``floor(m + high m)`` for medians m given as
    the integers ``2 m``, exact: with ``low = p / q`` (a float is a dyadic
    rational), ``m - low m = 2m (q - p) / 2q``, divided in Python integers
    (Fractions cost 50 times as much, and a night has thousands of
    medians)."""
    p, q = float(low).as_integer_ratio()
    r, s = float(high).as_integer_ratio()
    return ([-(-t * (q - p) // (2 * q)) for t in twice],
            [t * (s + r) // (2 * s) for t in twice])


def _exact_edge(top: int, under: int, k: int, spread: int, factor: float, side: int) -> int:
    """``floor(c + F d)`` (side 1) or ``ceil(c - F d)`` (side -1) for c =
    top / under and d = sqrt(spread) / k, in integers: the last m from c
    outwards with ``(m under - top) k q <= under p sqrt(spread)``, F = p / q
    (compared squared: no root)."""
    p, q = float(factor).as_integer_ratio()
    limit = (under * p) ** 2 * spread

    def inside(m: int) -> bool:
        gap = (m * under - top) * side
        return gap <= 0 or (gap * k * q) ** 2 <= limit

    guess = top / under + side * factor * math.sqrt(spread) / k
    m = math.floor(guess) if side > 0 else math.ceil(guess)
    while inside(m + side):
        m += side
    while not inside(m):
        m -= side
    return m


def _exact_linear(y: list[int], low: float, high: float) -> tuple[list[bool], list[bool]]:
    """Linear fit's pass on integer values y (kept, in rank order 1..k) in
    exact rational arithmetic: the flags of the values rejected low, and of
    all those rejected (a residual exactly on its bound is kept)."""
    k = len(y)
    if k <= 2:  # the line goes through them: every residual is 0
        return [False] * k, [False] * k
    # residuals times 12 k (k^2 - 1), whole numbers: the rank r's residual
    # is y - mean(y) - slope (r - (k + 1) / 2), slope = sum((r - (k + 1) / 2)
    # y) / srr, srr = k (k^2 - 1) / 12
    total = sum(y)
    cross2 = sum((2 * r - k - 1) * v for r, v in enumerate(y, 1))  # 2 sum((r - rbar) y)
    res = [12 * k * (k * k - 1) * v - 12 * (k * k - 1) * total - 36 * cross2 * (2 * r - k - 1)
           for r, v in enumerate(y, 1)]
    spread = sum(abs(e) for e in res)  # k d, in the same units
    lo_f, hi_f = Fraction(low), Fraction(high)
    lows = [k * e < -lo_f * spread for e in res]
    return lows, [lo or k * e > hi_f * spread for lo, e in zip(lows, res)]


def _median(
    x: np.ndarray, kept: np.ndarray | None, count: np.ndarray, presorted: bool = False
) -> np.ndarray:
    """Return the median of the kept values of each point (NaN where none).

    With ``presorted`` the columns of ``x`` are sorted and the kept values
    of each point are a run of them, starting at its first kept value.
    """
    n = x.shape[0]
    if kept is None:
        s = x if presorted else np.sort(x, axis=0)
        return (s[(n - 1) // 2].astype(np.float64) + s[n // 2]) / 2
    if presorted:
        s, start = x, kept.argmax(axis=0)
    else:
        s = np.where(kept, x, np.nan)  # float64: dropped values sort last
        s.sort(axis=0)
        start = np.zeros_like(count)
    lower = (start + np.maximum(count - 1, 0) // 2)[np.newaxis]
    upper = np.minimum(start + count // 2, n - 1)[np.newaxis]
    a = np.take_along_axis(s, lower, axis=0)[0].astype(np.float64)
    b = np.take_along_axis(s, upper, axis=0)[0]
    return np.where(count > 0, (a + b) / 2, np.nan)


def _cumsum_rows(z: np.ndarray, out: np.ndarray) -> None:
    """out[i+1] = out[i] + z[i]: row by row (numpy's cumsum along the first
    axis of a wide array is several times slower)."""
    for i in range(z.shape[0]):
        np.add(out[i], z[i], out=out[i + 1])


def _running_count(mask: np.ndarray, dtype: Any) -> np.ndarray:
    """The count of true values of mask ``(n, c)`` in rows 0..i, at row i:
    numpy's cumsum along the first axis, by `_cumsum_rows` (13x faster)."""
    out = np.empty((mask.shape[0] + 1, mask.shape[1]), dtype)
    out[0] = 0
    _cumsum_rows(mask, out)
    return out[1:]


_STEPS: dict[str, Callable[[_Chunk, np.ndarray], np.ndarray]] = {
    'sigma': _Chunk._sigma,
    'mad': _Chunk._mad,
    'winsorized': _Chunk._winsorized,
    'linear': _Chunk._linear,
    'percentile': _Chunk._percentile,
    'minmax': _Chunk._minmax,
    'gesd': _Chunk._gesd,
    'none': _Chunk._none,
}
"""One small function per ``--reject`` name: it moves the kept window of
the points ``idx`` (one pass) and returns where it moved."""


# radon D: Hill's (1970) algorithm with its published branches, tested
# against SciPy.
def _t_quantile(p: float, df: float) -> float:
    """Quantile (inverse CDF) of Student's t distribution.

    Parameters
    ----------
    p : float
        Probability, ``0 < p < 1``.  For ``p < 0.5`` the result is
        ``-_t_quantile(1 - p, df)`` (computed without rounding ``1 - p``).
    df : float
        Degrees of freedom, a real number ``>= 1`` (``math.inf`` gives the
        standard normal quantile).

    Returns
    -------
    float
        ``t`` such that ``P(T <= t) = p`` for ``T ~ t(df)``.  Overflows to
        ``inf`` only in the far tails of ``df`` close to 1.

    Raises
    ------
    ValueError
        If ``p`` is not in ``(0, 1)`` or ``df`` is not ``>= 1``.

    Notes
    -----
    With the upper tail probability ``q = min(p, 1 - p)`` and the two-tailed
    probability ``P = 2 q``, as in the reference:

    * ``df == 1`` (Cauchy) and ``df == 2`` use the exact closed forms
      ``t = cot(pi q)`` and ``t = (1 - 2 q) / sqrt(2 q (1 - q))``.
    * Otherwise Hill's algorithm gives a first estimate: an asymptotic
      expansion about the normal deviate ``z(q)``, or for small ``P`` an
      expansion of the tail.  ``z(q)`` comes from a rational start
      (Abramowitz and Stegun 26.2.23) and two Halley steps on ``math.erfc``
      (relative error about 1e-16).
    * For ``df < 100`` (and ``df < 3000`` when ``q < 1e-12``), where the
      expansion alone is good to only about 1e-5 (2e-2 for ``df`` between 1
      and 2), Newton steps refine the estimate until one changes it by less
      than 1e-8: one or two steps, up to four for ``df < 2``.  They solve
      ``P(T > t) = q`` on a log scale in the tail and
      ``P(0 < T < t) = 1/2 - q`` near the centre.
      ``P(T > t) = I_x(df/2, 1/2) / 2`` with ``x = df / (df + t**2)``, the
      regularized incomplete beta function, evaluated with its continued
      fraction by the modified Lentz method.  Elsewhere the expansion alone is
      good to about 1e-8, and ``df > 1e20`` gives the normal quantile.

    Measured relative error: at most 1e-10 for ``1 <= df <= 10000`` and
    ``1 - p >= 1e-8`` (against ``scipy.stats.t.ppf``), and about 1e-13 with
    refinement.  A call takes 2 to 17 microseconds.

    References
    ----------
    G. W. Hill, "Algorithm 396: Student's t-quantiles", Communications of the
    ACM 13(10), 619-620 (1970).

    Examples
    --------
    >>> round(_t_quantile(0.975, 10), 6)
    2.228139
    >>> _t_quantile(0.75, 1)
    1.0
    """
    p = float(p)
    df = float(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f'p must be between 0 and 1 (exclusive), got {p!r}')
    if not df >= 1.0:
        raise ValueError(f'df must be a number >= 1, got {df!r}')
    if p == 0.5:
        return 0.0
    # q = upper tail probability, exact for both halves (Sterbenz).
    sign = 1.0 if p > 0.5 else -1.0
    q = 1.0 - p if p > 0.5 else p

    if df == 1.0:  # Cauchy: t = cot(pi q) = tan(pi (1/2 - q))
        if q == 0.25:
            return sign  # math.tan(math.pi / 4) is 1 - 2**-53
        if q < 0.25:
            return sign / math.tan(math.pi * q)
        return sign * math.tan(math.pi * (0.5 - q))
    if df == 2.0:
        return sign * (1.0 - 2.0 * q) / math.sqrt(2.0 * q * (1.0 - q))

    def normal_upper(q: float) -> float:
        """z with P(Z > z) = q for 0 < q < 0.5 (standard normal Z)."""
        s = math.sqrt(-2.0 * math.log(q))
        z = s - (2.515517 + (0.802853 + 0.010328 * s) * s) / (
            1.0 + (1.432788 + (0.189269 + 0.001308 * s) * s) * s
        )
        for _ in range(2):  # Halley steps
            if q > 0.25:  # erf keeps the residual's relative accuracy
                residual = (0.5 - q) - 0.5 * math.erf(z / math.sqrt(2.0))
            else:
                residual = 0.5 * math.erfc(z / math.sqrt(2.0)) - q
            # residual / density without overflow: density = exp(-z*z/2)/sqrt(2 pi)
            u = residual / q * math.sqrt(2.0 * math.pi) * math.exp(
                math.log(q) + 0.5 * z * z
            )
            z += u / (1.0 - 0.5 * z * u)
        return z

    if df > 1e20:  # t = z * (1 + (z*z + 1) / (4 df) + ...) with z < 40
        return sign * normal_upper(q)

    # Hill (1970), Algorithm 396, with P = 2 q.
    n = df
    big_p = 2.0 * q
    a = 1.0 / (n - 0.5)
    b = 48.0 / (a * a)
    c = ((20700.0 * a / b - 98.0) * a - 16.0) * a + 96.36
    d = ((94.5 / (b + c) - 3.0) / b + 1.0) * math.sqrt(a * math.pi / 2.0) * n
    log_y = 2.0 / n * math.log(d * big_p)
    if (n < 2.1 and big_p > 0.5) or log_y > math.log(0.05 + a):
        # Asymptotic expansion about the normal deviate (lower tail, x < 0);
        # the df < 2.1 clause is R's (qt.c) addition to the published test.
        x = -normal_upper(q)
        y = x * x
        if n < 5.0:
            c += 0.3 * (n - 4.5) * (x + 0.6)
        c = (((0.05 * d * x - 5.0) * x - 7.0) * x - 2.0) * x + b + c
        y = (((((0.4 * y + 6.3) * y + 36.0) * y + 94.5) / c - y - 3.0) / b + 1.0) * x
        t = math.sqrt(n * math.expm1(a * y * y))
    elif log_y < math.log(2.2e-16):
        # Far tail: only the leading term t = sqrt(n / y) matters here.
        log_t = 0.5 * (math.log(n) - log_y)
        t = math.exp(log_t) if log_t < 709.78 else math.inf
    else:
        # Tail expansion for small P.
        y = math.exp(log_y)
        y = (
            (1.0 / (((n + 6.0) / (n * y) - 0.089 * d - 0.822) * (n + 2.0) * 3.0)
             + 0.5 / (n + 4.0)) * y - 1.0
        ) * (n + 1.0) / (n + 2.0) + 1.0 / y
        t = math.sqrt(n * y)

    if not (n < 100.0 or (n < 3000.0 and q < 1e-12)) or not 0.0 < t < math.inf:
        return sign * t  # Hill alone is good to 1e-8 here (or t overflowed)

    def betacf(alpha: float, beta: float, x: float) -> float:
        """Continued fraction of I_x(alpha, beta) (modified Lentz method).

        I_x = x**alpha (1-x)**beta / (alpha B(alpha, beta)) * betacf(...),
        converging fast for x < (alpha + 1) / (alpha + beta + 2).
        """
        tiny = 1e-300
        lentz_c = 1.0
        lentz_d = 1.0 - (alpha + beta) * x / (alpha + 1.0)
        lentz_d = 1.0 / (lentz_d if abs(lentz_d) > tiny else tiny)
        value = lentz_d
        for m in range(1, 300):
            m2 = 2 * m
            for term in (
                m * (beta - m) * x / ((alpha + m2 - 1.0) * (alpha + m2)),
                -(alpha + m) * (alpha + beta + m) * x
                / ((alpha + m2) * (alpha + m2 + 1.0)),
            ):
                lentz_d = 1.0 + term * lentz_d
                lentz_d = 1.0 / (lentz_d if abs(lentz_d) > tiny else tiny)
                lentz_c = 1.0 + term / lentz_c
                lentz_c = lentz_c if abs(lentz_c) > tiny else tiny
                value *= lentz_d * lentz_c
            if abs(lentz_d * lentz_c - 1.0) < 1e-15:
                break
        return value

    half = 0.5 * n
    log_beta = math.lgamma(half) + math.lgamma(0.5) - math.lgamma(half + 0.5)

    def newton_step(t: float) -> float:
        """Newton step for P(T > t) = q at t > 0."""
        # x = n / (n + t*t) and 1 - x on a log scale, safe for t near 0 or 1e300
        r = t / math.sqrt(n)
        if r > 1.0:
            log_1mx = -math.log1p(1.0 / (r * r))
            log_x = -2.0 * math.log(r) + log_1mx
        else:
            log_x = -math.log1p(r * r)
            log_1mx = 2.0 * math.log(r) + log_x
        x = math.exp(log_x)
        # front = x**(n/2) (1-x)**(1/2) / B(n/2, 1/2) = t * density(t)
        log_front = half * log_x + 0.5 * log_1mx - log_beta
        if x < (half + 1.0) / (half + 2.5):
            # Tail: P(T > t) = front * h / n, on a log scale.
            h = betacf(half, 0.5, x)
            return (log_front + math.log(h / n) - math.log(q)) * t * h / n
        # Centre: P(0 < T < t) = front * h, against 0.5 - q (exact).
        front = math.exp(log_front)
        return ((0.5 - q) - front * betacf(0.5, half, math.exp(log_1mx))) * t / front

    for _ in range(8):
        step = newton_step(t)
        t = max(t + step, 0.5 * t)
        if abs(step) <= 1e-8 * t:
            break
    return sign * t


@functools.lru_cache(maxsize=32)
def _gesd_critical(n: int, alpha: float) -> np.ndarray:
    """Return Rosner's critical values lambda by the number of values left
    before a removal (``cnt = k - j + 1``), for cnt = 0..n (inf below 3):
    ``(cnt-1) t / sqrt((cnt-2+t^2) cnt)``, t the Student-t quantile at
    ``1 - alpha / (2 cnt)`` with ``cnt - 2`` degrees of freedom."""
    lam = np.full(n + 1, np.inf)
    for cnt in range(3, n + 1):
        t = -_t_quantile(alpha / (2 * cnt), cnt - 2)  # exact for the smallest alpha
        lam[cnt] = (cnt - 1) * t / math.sqrt((cnt - 2 + t * t) * cnt)
    lam.setflags(write=False)  # cached: shared by every chunk
    return lam


@dataclasses.dataclass
class FrameStats:
    """Statistics of one frame, per channel (float64 arrays)."""

    location: np.ndarray  # median of the valid values
    scale: np.ndarray  # MAD_SCALE * MAD of the valid values
    noise: np.ndarray  # MAD_SCALE * MAD of neighbour differences / sqrt(2)
    count: np.ndarray  # valid values in the sample
    metrics: FrameMetrics | None = None  # with frame_statistics(metrics=True)


# radon D: per channel, the location, scale and noise, with and without
# validity masks, and the metrics when asked.
def frame_statistics(sample: np.ndarray, valid: np.ndarray | None = None, *,
                     metrics: bool = False,
                     reference: FrameMetrics | None = None) -> FrameStats:
    """Return the location, scale and noise of a sample of one frame, and
    with ``metrics`` its star metrics (`frame_metrics`, on the central
    `CROP` pixels of the mean of its channels, transparency and snr against
    ``reference``: the metrics of the reference frame's same crop).

    Parameters
    ----------
    sample : ndarray
        Shape ``(..., channels)``: rows of the frame (``(rows, width,
        channels)``), or any run of values whose neighbours along the
        second-to-last axis are neighbouring pixels.
    valid : ndarray of bool, optional
        False marks values that are not valid (NaN never is).

    The location is the median; the scale the MAD times `MAD_SCALE` (robust
    to stars and outliers, exact for Gaussian noise); the noise the same
    estimate on differences of horizontal neighbours divided by sqrt(2),
    which ignores stars, gradients and the sky level.
    """
    x = np.asarray(sample)
    small = x.dtype.kind in 'iu' and x.dtype.itemsize <= 2
    if not small:
        x = x.astype(np.float64)
    channels = x.shape[-1]
    ok = None if small else ~np.isnan(x)
    if valid is not None:
        valid = np.broadcast_to(np.asarray(valid, bool), x.shape)
        ok = valid if ok is None else ok & valid
    location, scale, noise, count = (np.full(channels, np.nan) for _ in range(4))
    # counting pays for samples larger than the range of values
    median_mad = _median_mad_counted if small and x.size > 2**18 else _median_mad
    for ch in range(channels):
        xc = x[..., ch]
        okc = None if ok is None else ok[..., ch]
        v = xc.reshape(-1) if okc is None else xc[okc]
        count[ch] = v.size
        if v.size:
            location[ch], mad = median_mad(v)
            scale[ch] = MAD_SCALE * mad
        if x.ndim >= 2 and x.shape[-2] > 1:
            diff = np.diff(xc.astype(np.int32) if small else xc, axis=-1)
            if okc is not None:
                diff = diff[okc[..., 1:] & okc[..., :-1]]
            if diff.size:
                noise[ch] = MAD_SCALE * median_mad(diff.reshape(-1))[1] / math.sqrt(2)
    found = None
    if metrics:
        if x.ndim != 3:
            msg = f'frame metrics need a frame (rows, columns, channels), not shape {x.shape}'
            raise ValueError(msg)
        side = min(CROP, x.shape[0], x.shape[1])
        r0, c0 = (x.shape[0] - side) // 2, (x.shape[1] - side) // 2
        crop = x[r0:r0 + side, c0:c0 + side]
        good = None if ok is None else ok[r0:r0 + side, c0:c0 + side].all(axis=-1)
        found = frame_metrics(crop.mean(axis=-1, dtype=np.float64), good, reference=reference)
    return FrameStats(location, scale, noise, count, found)


def _median_mad(v: np.ndarray) -> tuple[float, float]:
    """Median and median absolute deviation of float values."""
    median = float(np.median(v))
    return median, float(np.median(np.abs(v - median)))


def _median_mad_counted(v: np.ndarray) -> tuple[float, float]:
    """Median and MAD of integers from their histogram (exact, and several
    times faster than sorting): distances are counted in halves, since a
    median of an even count may lie halfway between two integers."""
    low = int(v.min())
    counts = np.bincount(v.astype(np.intp) - low)
    values = np.arange(low, low + counts.size)
    median = _counted_median(values, counts)
    twice = np.abs(2 * values - int(round(2 * median)))
    by_distance = np.bincount(twice, weights=counts)
    mad = _counted_median(np.arange(by_distance.size), by_distance) / 2
    return median, mad


def _counted_median(values: np.ndarray, counts: np.ndarray) -> float:
    """Median of sorted distinct values with counts (mean of the two middle
    values for an even total)."""
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    lo = values[np.searchsorted(cumulative, (total - 1) // 2, side='right')]
    hi = values[np.searchsorted(cumulative, total // 2, side='right')]
    return (float(lo) + float(hi)) / 2


NORMALIZATIONS = ('none', 'additive', 'multiplicative', 'additive-scale')
"""Per-frame normalizations (``--normalize``)."""


def _normalization(
    stats: Sequence[FrameStats], mode: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return per-frame ``factor`` and ``offset`` arrays ``(n, channels)``
    such that the normalized value is ``x * factor + offset`` (None, None
    for 'none').  The references are the means of the frames' locations
    (and scales), so the result's background is the plain average's.

    Raises
    ------
    ValueError
        An unknown mode, or a frame whose statistics cannot normalize
        (no valid value, zero location for multiplicative, zero scale for
        additive-scale); the message gives the frame's index.
    """
    _check_normalize(mode)
    if mode == 'none':
        return None, None
    loc = np.array([s.location for s in stats])
    scale = np.array([s.scale for s in stats])
    for i in range(len(stats)):
        if not np.isfinite(loc[i]).all():
            msg = f'frame {i} has no valid value to normalize'
            raise ValueError(msg)
        if mode == 'multiplicative' and (loc[i] == 0).any():
            msg = f'frame {i} has a median of 0: multiplicative normalization cannot scale it'
            raise ValueError(msg)
        if mode == 'additive-scale' and not (scale[i] > 0).all():
            msg = f'frame {i} has no spread (MAD 0): additive-scale cannot scale it'
            raise ValueError(msg)
    ref_loc = loc.mean(axis=0)
    if mode == 'additive':
        return np.ones_like(loc), ref_loc - loc
    if mode == 'multiplicative':
        return ref_loc / loc, np.zeros_like(loc)
    factor = scale.mean(axis=0) / scale
    return factor, ref_loc - loc * factor


def _check_normalize(mode: Any) -> None:
    if mode not in NORMALIZATIONS:
        msg = f'normalize must be one of {", ".join(NORMALIZATIONS)}, not {mode!r}'
        raise ValueError(msg)


def _noise_weights(stats: Sequence[FrameStats], factor: np.ndarray | None) -> np.ndarray:
    """Return per-frame weights ``1 / sigma**2`` ``(n, channels)``, sigma the
    noise in normalized units.

    Raises
    ------
    ValueError
        A frame whose noise is 0 or unknown, naming its index.
    """
    noise = np.array([s.noise for s in stats])
    if factor is not None:
        noise = noise * factor
    for i in range(len(noise)):
        if not (np.isfinite(noise[i]).all() and (noise[i] > 0).all()):
            msg = f'frame {i} has no measurable noise: --weights noise cannot weight it'
            raise ValueError(msg)
    return 1.0 / noise**2


# -- frame metrics (--select, --weights snr, stars, fwhm) ---------------------

DETECT_SIGMA = 5.0
"""Detection threshold, in units of `CONTRAST_NOISE` times the noise."""
CONTRAST_NOISE = 0.4
"""Noise of a peak's contrast, in noise units: the 3x3 binomial smoothing
leaves 0.375 of white noise, the median of a star's annulus 0.1."""
HALF = 7
"""Half width of the box that measures a star (15 x 15 pixels): FWHM up to
6 pixels is measured within 1%, 7 px 1% low, 8 px 3% low, 10 px 10% low."""
OUTER = 10
"""A star's local background is measured between the box of half width
`HALF` + 1 and that of half width `OUTER` (an annulus of 152 pixels)."""
WIDEN = 0.5
"""The moments' weight is the stars' Gaussian widened by this many px^2:
pixels too small for the weight alias (undersampled stars collapse)."""
FWHM_SIGMA = 2 * math.sqrt(2 * math.log(2))


@dataclasses.dataclass(frozen=True)
class FrameMetrics:
    """Quality of one frame (NaN where undefined, see `frame_metrics`)."""

    background: float  # median of the valid values
    scale: float  # MAD_SCALE * MAD of the valid values
    noise: float  # MAD_SCALE * MAD of horizontal differences / sqrt(2)
    stars: int  # point sources measured
    fwhm: float  # FWHM of the stars' median Gaussian, pixels
    roundness: float  # its minor / major axis, <= 1
    transparency: float  # star flux relative to the reference frame's
    snr: float  # optimal-extraction SNR of the median star
    # for use as reference: the stars' box centres (rows, columns), and
    # their fluxes in the boxes of half width 2 to HALF, shape (stars, HALF - 1)
    positions: np.ndarray = dataclasses.field(repr=False, compare=False)
    fluxes: np.ndarray = dataclasses.field(repr=False, compare=False)


# radon D: the detector's documented steps in order (smoothing, peaks,
# the drops, moments, transparency), vectorized over the stars.
def frame_metrics(sample: np.ndarray, valid: np.ndarray | None = None, *,
                  reference: FrameMetrics | None = None,
                  saturation: float | None = None) -> FrameMetrics:
    """Return the background, noise and star metrics of a 2-D image.

    Detection: the image is smoothed with the 3x3 binomial kernel; a star
    is a maximum of its 5x5 neighbourhood above both the median and its
    local background (see `_boxes`: gradients add no false stars) by more
    than `DETECT_SIGMA` (5) times `CONTRAST_NOISE` (0.4) times the
    noise: white noise gives about 0.03 false star per 512x512 pixels.
    Dropped: boxes that leave the image or hold an invalid pixel; flat
    tops (equal maxima in the 3x3 core at the image's maximum, as clipping
    leaves) and peaks at or above ``saturation``; hot pixels and cosmic
    rays (the mean of the peak's 4 neighbours under 0.1 of it: sharper than
    FWHM ~0.9 px); centroids that wander over 2 px; duplicates (centroids
    rounding to the same pixel: the brightest is kept).

    Width and shape: Gaussian-weighted second moments ``M`` of every star,
    with one round weight ``W`` for all, centred on each star's centroid.
    For a Gaussian star of covariance ``C``, ``M = (C^-1 + W^-1)^-1``
    whatever ``W``, so ``C = (m^-1 - W^-1)^-1`` with ``m`` the element-wise
    median of the stars' ``M`` (noise averages out, no star is censored).
    ``W`` starts at 4 px^2 and becomes ``sqrt(det C) + WIDEN`` over 4
    passes, which refine the centroids too.  A sensor integrates light over
    square pixels, which adds a unit box's variance: 1/12 px^2 is taken off
    ``C``'s diagonal.  ``fwhm = 2.3548 * det(C)**0.25``; ``roundness`` is
    ``sqrt(minor / major eigenvalue)`` of ``C``.

    Parameters
    ----------
    sample : ndarray
        2-D image (one channel of a crop), converted to float64.
    valid : ndarray of bool, optional
        False marks pixels to ignore; NaN and inf are never valid.
    reference : FrameMetrics, optional
        Metrics of the reference frame of the same (aligned) crop: the
        transparency and snr are then measured on its stars.
    saturation : float, optional
        Peaks at or above this value are saturated (e.g. the dtype's max).

    Returns
    -------
    FrameMetrics
        ``transparency``: median over the reference's stars of (flux here /
        flux in the reference); a flux is the sum of a box of half width
        1.5 times the larger FWHM of the two frames (2 to `HALF` pixels:
        over 99% of a Gaussian's flux), less the local background; clouds
        that dim a frame to 0.6 give 0.6; NaN without a reference.
        ``snr``: median flux / (noise * sqrt(4 pi) * sigma), sigma =
        fwhm / 2.3548 (the reference's if this frame has no star): the SNR
        of a PSF-weighted flux of the median star against the sky noise,
        on the reference's stars if given (comparable between frames),
        else on this frame's.  No star: ``stars`` 0, ``fwhm`` and
        ``roundness`` NaN (and ``snr`` without a reference).
    """
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim != 2:
        msg = f'frame_metrics needs a 2-D image, not {x.ndim}-D'
        raise ValueError(msg)
    ok = np.isfinite(x) if valid is None else np.isfinite(x) & valid
    every = bool(ok.all())
    xw = x if every else np.where(ok, x, np.nan)
    nan = math.nan
    if not ok.any():
        return FrameMetrics(nan, nan, nan, 0, nan, nan, nan, nan,
                            np.zeros((0, 2), np.intp), np.zeros((0, HALF - 1)))
    values = x.ravel() if every else x[ok]
    background, mad = _median_mad(values)
    diff = xw[:, 1:] - xw[:, :-1]
    diff = diff.ravel() if every else diff[np.isfinite(diff)]
    scale = MAD_SCALE * mad
    noise = MAD_SCALE * _median_mad(diff)[1] / math.sqrt(2) if diff.size else nan
    threshold = DETECT_SIGMA * CONTRAST_NOISE * noise

    ys, xs, level = _candidates(x if every else np.where(ok, x, background),
                                background + threshold)
    level -= background  # the peaks' smoothed values above the median
    data, border, good = _boxes(xw, ys, xs, noise)
    dy, dx = np.divmod(np.arange(9), 3)
    core = xw[ys[:, None] + dy - 1, xs[:, None] + dx - 1]  # the 3x3 cores, (n, 9)
    top = core.max(axis=1)
    flat = ((core == top[:, None]).sum(axis=1) > 1) & (top >= values.max())
    core -= border[:, None]
    around = (core[:, 1] + core[:, 3] + core[:, 5] + core[:, 7]) / 4
    clip = np.inf if saturation is None else saturation
    good &= ((level - (border - background) > threshold) & ~flat & (top < clip)
             & (around >= 0.1 * core[:, 4]))
    ys, xs, data = ys[good], xs[good], data[good]
    m, centre, w = _moments(data)
    flux = _fluxes(data)
    keep = np.flatnonzero(np.isfinite(m).all(axis=1) & (np.abs(centre) <= 2).all(axis=1))
    keep = keep[np.argsort(-flux[keep, -1], kind='stable')]  # the brightest first
    pixel = np.round(centre[keep]).astype(np.intp) + np.stack([ys[keep], xs[keep]], axis=1)
    keep = keep[np.unique(pixel[:, 0] * x.shape[1] + pixel[:, 1], return_index=True)[1]]
    positions, flux = np.stack([ys[keep], xs[keep]], axis=1), flux[keep]

    fwhm = roundness = nan
    if keep.size:
        a, b, c = _deconvolve(np.median(m[keep], axis=0), w) - [1 / 12, 0, 1 / 12]
        if a > 0 and a * c > b * b:
            fwhm = FWHM_SIGMA * float(a * c - b * b) ** 0.25
            root = math.hypot((a - c) / 2, b)
            roundness = math.sqrt(((a + c) / 2 - root) / ((a + c) / 2 + root))
    widths = [f for f in (fwhm, nan if reference is None else reference.fwhm) if math.isfinite(f)]
    sigma = widths[0] / FWHM_SIGMA if widths else nan
    # the aperture: a box of half width 1.5 FWHM (2 to HALF) holds > 99%
    column = min(max(math.ceil(1.5 * max(widths)), 2), HALF) - 2 if widths else -1
    transparency = nan
    signal = float(np.median(flux[:, column])) if flux.size else nan
    if reference is not None:
        ry, rx = reference.positions[:, 0], reference.positions[:, 1]
        here, _, good = _boxes(xw, ry, rx, noise)
        here = _fluxes(here[good])[:, column]
        if here.size:
            transparency = float(np.median(here / reference.fluxes[good, column]))
            signal = float(np.median(here))
    spread = noise * math.sqrt(4 * math.pi) * sigma
    snr = signal / spread if spread > 0 else nan
    return FrameMetrics(background, scale, noise, int(keep.size), fwhm, roundness,
                        transparency, snr, positions, flux)


def _candidates(z: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    """Rows, columns and values of the maxima of the 3x3 binomial smoothing
    of ``z`` in their 5x5 neighbourhoods that exceed ``threshold``, 3 pixels
    or more from the edges (none in an image too small for a star's box)."""
    if min(z.shape) <= 2 * OUTER:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
    s = z[:, :-2] + z[:, 2:]  # few temporaries: each costs page faults
    s += z[:, 1:-1]
    s += z[:, 1:-1]
    t = s[:-2] + s[2:]  # t[i, j] is 16 times the smoothing at z[i + 1, j + 1]
    t += s[1:-1]
    t += s[1:-1]
    m = np.maximum(t[:, :-4], t[:, 1:-3])  # running maximum of 5 along rows,
    for i in (2, 3, 4):
        np.maximum(m, t[:, i:t.shape[1] - 4 + i], out=m)
    n = np.maximum(m[:-4], m[1:-3])  # then along columns
    for i in (2, 3, 4):
        np.maximum(n, m[i:m.shape[0] - 4 + i], out=n)
    t = t[2:-2, 2:-2]
    peak = t == n
    peak &= t > 16 * threshold
    ys, xs = np.nonzero(peak)
    return ys + 3, xs + 3, t[ys, xs] / 16


def _boxes(xw: np.ndarray, ys: np.ndarray, xs: np.ndarray, noise: float) -> tuple[np.ndarray, ...]:
    """Return the 15x15 boxes centred on ``(ys, xs)`` less their local
    backgrounds, those backgrounds, and which boxes lie inside the image
    and hold valid (finite) values only in their 21x21 boxes.  A local
    background is the median of the 152 pixels of the 21x21 box outside
    its central 17x17 box, less those more than 2.5 noise from their
    median (neighbouring stars)."""
    rows, cols = xw.shape
    inside = (ys >= OUTER) & (ys < rows - OUTER) & (xs >= OUTER) & (xs < cols - OUTER)
    size = 2 * OUTER + 1
    if min(rows, cols) < size:  # an image smaller than a box holds none
        xw = np.full((size, size), np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(xw, (size, size))
    big = windows[np.where(inside, ys - OUTER, 0), np.where(inside, xs - OUTER, 0)]
    good = inside & np.isfinite(big).all(axis=(1, 2))
    edge = np.ones((size, size), bool)
    edge[OUTER - HALF - 1:OUTER + HALF + 2, OUTER - HALF - 1:OUTER + HALF + 2] = False
    ring = np.sort(big[:, edge], axis=1)
    count = ring.shape[1]
    median = (ring[:, (count - 1) // 2] + ring[:, count // 2]) / 2
    low = (ring < (median - 2.5 * noise)[:, None]).sum(axis=1)
    mid = low + (count - low - (ring > (median + 2.5 * noise)[:, None]).sum(axis=1)) / 2
    border = (np.take_along_axis(ring, np.floor(mid - 0.5).astype(np.intp)[:, None], 1)
              + np.take_along_axis(ring, np.ceil(mid - 0.5).astype(np.intp)[:, None], 1))[:, 0] / 2
    inner = slice(OUTER - HALF, OUTER + HALF + 1)
    return big[:, inner, inner] - border[:, None, None], border, good  # a copy


def _fluxes(data: np.ndarray) -> np.ndarray:
    """Sums of the central boxes of half width 2 to `HALF` of each box."""
    return np.stack([data[:, HALF - h:HALF + h + 1, HALF - h:HALF + h + 1].sum(axis=(1, 2))
                     for h in range(2, HALF + 1)], axis=-1)


def _moments(data: np.ndarray, steps: int = 4) -> tuple[np.ndarray, np.ndarray, float]:
    """Return every box's second moments ``(yy, xy, xx)`` weighted by a
    round Gaussian of variance ``w`` centred on its centroid (NaN if its
    weighted sum is not positive), the centroids' offsets ``(y, x)`` from
    the box centre, and ``w`` (see `frame_metrics`)."""
    grid = np.arange(-HALF, HALF + 1, dtype=np.float64)
    centre = np.zeros((len(data), 2))
    w, m = 4.0, np.full((len(data), 3), np.nan)
    with np.errstate(all='ignore'):
        for step in range(steps):
            d = grid - centre[:, :, None]  # (n, 2, box): offsets in y and x
            g = np.exp(d * d / (-2 * w))
            e = np.stack([g, g * d, g * d * d], axis=-1)
            # s[:, j, k]: the sum of data * weight * dy**j * dx**k
            s = e[:, 0].transpose(0, 2, 1) @ (data @ e[:, 1])
            total = np.where(s[:, 0, 0] > 0, s[:, 0, 0], np.nan)
            my, mx = s[:, 1, 0] / total, s[:, 0, 1] / total
            m = np.stack([s[:, 2, 0] / total - my * my, s[:, 1, 1] / total - my * mx,
                          s[:, 0, 2] / total - mx * mx], axis=1)
            fine = np.isfinite(m).all(axis=1)
            a, b, c = _deconvolve(np.median(m[fine], axis=0), w) if fine.any() else [np.nan] * 3
            if not (a > 0 and a * c > b * b):
                break
            # a centroid weighted by W moves (W + C) W^-1 less than the star
            centre += np.stack([(w + a) * my + b * mx, b * my + (w + c) * mx], axis=1) / w
            if step < steps - 1:
                w = math.sqrt(a * c - b * b) + WIDEN
    return m, centre, w


def _deconvolve(m: np.ndarray, w: float) -> np.ndarray:
    """The covariance ``(yy, xy, xx)`` of a Gaussian whose moments weighted
    by a round Gaussian of variance ``w`` are ``m``: ``(m^-1 - I/w)^-1``."""
    a, b, c = m
    det = a * c - b * b
    p, q, r = c / det - 1 / w, -b / det, a / det - 1 / w
    return np.array([r, -q, p]) / (p * r - q * q)


METRICS = {'noise': -1, 'fwhm': -1, 'transparency': 1, 'stars': 1, 'snr': 1, 'roundness': 1}
"""The metrics ``--select`` keeps the best frames by, and which way is
best: -1 low, 1 high."""

FRAME_WEIGHTS = ('none', 'noise', 'snr', 'stars', 'fwhm', 'exposure')
"""The names ``--weights`` takes (besides ``FILE.csv:COLUMN``)."""

CROP = 256
"""Side of the central crop of each frame on which the star metrics are
measured (smaller frames: all of it; a small budget: less)."""

CROP_BYTES = 96
"""Bytes a crop pixel takes while its metrics are measured: the native
rows, a float64 copy, the smoothing's and the boxes' temporaries."""


def _parse_select(text: Any) -> tuple[str, str, float]:
    """``METRIC:KEEP`` of ``--select`` as ``(metric, kind, value)``: kind
    ``'%'`` a share of the frames, ``'n'`` a count, ``'s'`` a distance from
    the median in robust sigmas (1.4826 MAD).

    Raises
    ------
    ValueError
        An unknown metric or a KEEP that is none of the three.
    """
    if not isinstance(text, str) or ':' not in text:
        msg = f'select must be METRIC:KEEP (such as fwhm:80%), not {text!r}'
        raise ValueError(msg)
    metric, _, keep = text.partition(':')
    if metric not in METRICS:
        msg = f'select: unknown metric {metric!r} (one of {", ".join(METRICS)})'
        raise ValueError(msg)
    kinds = {'%': r'\d+(\.\d*)?%', 's': r'\d+(\.\d*)?s', 'n': r'\d+'}
    for kind, pattern in kinds.items():
        if re.fullmatch(pattern, keep):
            value = float(keep.rstrip('%s'))
            if (kind == '%' and not 0 < value <= 100) or (kind != '%' and value <= 0):
                break
            return metric, kind, value
    msg = (f'select {metric}: keep a share (80%), a count (20) or a distance from the '
           f'median in robust sigmas (2.5s), not {keep!r}')
    raise ValueError(msg)


def _select_frames(values: np.ndarray, metric: str, kind: str, value: float) -> np.ndarray:
    """Which frames one selection keeps (bool), from their values of
    ``metric`` (NaN never kept): the best share or count, or those no
    further than ``value`` robust sigmas from the median on the bad side."""
    best = METRICS[metric]
    ok = np.isfinite(values)
    keep = np.zeros(len(values), bool)
    if kind == 's':
        centre, mad = _median_mad(values[ok])
        keep[ok] = best * (values[ok] - centre) >= -value * MAD_SCALE * mad
        return keep
    count = math.ceil(len(values) * value / 100 - 1e-9) if kind == '%' else int(value)
    order = np.flatnonzero(ok)[np.argsort(-best * values[ok], kind='stable')]
    keep[order[:count]] = True
    return keep


def _exposure_time(path: str) -> float | None:
    """The ExposureTime (EXIF tag 33434, in seconds) of the first page of a
    TIFF file, from its IFD or its EXIF IFD; None without one."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        value: Any = None
        if 33434 in tags:
            value = tags[33434].value
        elif 'ExifTag' in tags and isinstance(tags['ExifTag'].value, dict):
            value = tags['ExifTag'].value.get('ExposureTime')
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = value[0] / value[1] if value[1] else None
    with contextlib.suppress(TypeError, ValueError):
        return float(value) if value is not None else None
    return None


# radon D: one check per way a weights file can be wrong, each with its
# one-line message.
def _csv_weights(spec: str, names: Sequence[str]) -> np.ndarray:
    """The weights of ``FILE.csv:COLUMN`` for the frames named ``names``:
    one row per input, matched by its path (the ``path`` or ``file``
    column, else the first), whole or by its base name.

    Raises
    ------
    ImgstackError
        The file cannot be read, or lacks the column; a row matches no
        input or the same one as another, or holds no positive number; an
        input has no row (naming the file and the row).
    """
    import csv

    file, _, column = spec.rpartition(':')
    try:
        with open(file, newline='', encoding='utf-8', errors='surrogateescape') as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ImgstackError(file, f'cannot read the weights ({exc.strerror or exc})') from exc
    except csv.Error as exc:
        raise ImgstackError(file, f'is not CSV ({exc})') from exc
    if not rows or column not in rows[0]:
        raise ImgstackError(file, f'has no column {column!r} (its first line names the columns)')
    header = rows[0]
    key = next((header.index(k) for k in ('path', 'file') if k in header), 0)
    at = header.index(column)
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
        index.setdefault(os.path.basename(name), i)
    found: dict[int, tuple[int, float]] = {}
    for line, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        name = row[key] if key < len(row) else ''
        name = name[1:] if name[:2] in ("'=", "'+", "'-", "'@") else name  # as we write it
        at_ = index.get(name, index.get(os.path.basename(name)))
        if at_ is None:
            raise ImgstackError(file, f'row {line}: {name!r} is none of the inputs')
        i = at_
        if i in found:
            raise ImgstackError(file, f'row {line}: {name!r} has a row already (row '
                                      f'{found[i][0]})')
        try:
            weight = float(row[at])
        except (IndexError, ValueError):
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            cell = row[at] if at < len(row) else ''
            raise ImgstackError(file, f'row {line}: {column} of {name!r} is {cell!r}, not a '
                                      'positive number')
        found[i] = (line, weight)
    for i, name in enumerate(names):
        if i not in found:
            raise ImgstackError(file, f'no row for the input {name!r}')
    return np.array([found[i][1] for i in range(len(names))])


def _never_rejects(n: int, sigma_low: float, sigma_high: float, center: str) -> bool:
    """Return whether mean-centred clipping of n values can never reject one.

    With ``n`` values, a lone value ``x`` is at most ``sqrt(n-1)`` standard
    deviations from the mean, so nothing is ever rejected when both
    factors are at least that.
    """
    return center == 'mean' and math.sqrt(max(n - 1, 0)) <= min(sigma_low, sigma_high)


def _to_dtype(mean: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return float64 results as ``dtype``: integers rounded to nearest
    (half to even) and clipped to the type's range, never truncated.

    A mean within a millionth of a half is a half: the last bits of a
    float64 sum depend on its order, and must not decide the rounding.
    """
    if dtype.kind == 'f':
        return mean.astype(dtype)
    info = np.iinfo(dtype)
    # np.round(mean, 6) then np.rint, in one buffer (fresh arrays of a
    # band's size cost page faults in the main thread)
    out = np.multiply(mean, 1e6)
    np.rint(out, out=out)
    out /= 1e6
    np.rint(out, out=out)
    np.clip(out, info.min, info.max, out=out)
    return out.astype(dtype)


# -- reading TIFF ------------------------------------------------------------


@dataclasses.dataclass
class Frame:
    """One input: its header, and where its pixel data lie in the file.

    The file is not kept open: every band read opens it, reads the
    segments (strips or tiles) it needs with positioned reads and closes it, so
    any number of inputs can be stacked whatever the open-file limit.
    """

    path: str
    height: int
    width: int
    samples: int
    planar: bool
    dtype: np.dtype
    photometric: int
    extrasamples: tuple[int, ...]
    byteorder: str
    seg_rows: int  # rows of one strip or tile
    seg_width: int  # columns of one tile (the width for strips)
    offsets: np.ndarray | None  # strip/tile offsets, or None: read from tables
    bytecounts: np.ndarray | None
    raw: bool  # segments are plain rows, read straight into the band
    decode: Callable[..., Any] | None
    jpeg: dict[str, Any]
    iccprofile: bytes | None
    resolution: tuple[Any, Any] | None
    resolutionunit: int | None
    pages: int
    compression: int = 1
    predictor: int = 1
    identity: tuple[int, ...] = ()  # st_dev, st_ino, st_size, st_mtime_ns
    tables: tuple[tuple[int, str], tuple[int, str]] | None = None  # where
    # the offsets and byte counts lie in the file (position, dtype), when
    # they are too many to keep in memory
    largest: int = 0  # largest stored strip or tile, bytes
    fd: int | None = None  # an open (unlinked) raw file decoded beforehand
    label: str = ''  # where in a multi-page file the frame lies: 'T=3', 'page 2'

    def segments(self, fd: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the offsets and byte counts of segments first..last-1
        (int64), read from the file's tables when not kept in memory.

        Raises
        ------
        ImgstackError
            The tables are truncated.
        """
        if self.tables is None:
            # dropped only when the tables hold them (open_frame)
            assert self.offsets is not None and self.bytecounts is not None
            return self.offsets[first:last], self.bytecounts[first:last]
        out = []
        for position, dtype in self.tables:
            item = np.dtype(dtype)
            data = _pread(fd, (last - first) * item.itemsize, position + first * item.itemsize)
            if len(data) != (last - first) * item.itemsize:
                raise ImgstackError(self.path, 'truncated strip or tile tables')
            out.append(np.frombuffer(data, item).astype(np.int64))
        return out[0], out[1]

    @property
    def streamable(self) -> bool:
        """Whether a strip can be decoded in pieces (deflate, LZMA or LZW),
        for strips too large to decode whole within the budget."""
        return (
            self.compression in STREAM_CODECS
            and self.seg_width == self.width
            and self.predictor in (1, 2, 3)
            and (self.predictor != 2 or self.dtype.kind in 'iu')
            and (self.predictor != 3 or self.dtype.kind == 'f')
        )

    @property
    def planes(self) -> int:
        """Separately stored sample planes (1 when chunky)."""
        return self.samples if self.planar else 1

    @property
    def contig(self) -> int:
        """Samples stored together in one pixel of one plane."""
        return 1 if self.planar else self.samples

    @property
    def down(self) -> int:
        """Strips or tiles down one plane."""
        return -(-self.height // self.seg_rows)

    @property
    def across(self) -> int:
        """Tiles across one plane (1 for strips)."""
        return -(-self.width // self.seg_width)

    @property
    def segment_count(self) -> int:
        """Strips or tiles in the image."""
        return self.planes * self.down * self.across

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Shape of the image as tifffile writes it: planes first if planar."""
        if self.planar:
            return (self.samples, self.height, self.width)
        if self.samples > 1:
            return (self.height, self.width, self.samples)
        return (self.height, self.width)

    @property
    def row_bytes(self) -> int:
        """Bytes of one row of one plane."""
        return self.width * self.contig * self.dtype.itemsize

    @property
    def segment_bytes(self) -> int:
        """Bytes of one decoded strip or tile."""
        return self.seg_rows * self.seg_width * self.contig * self.dtype.itemsize

    def alpha_index(self, no_alpha: bool) -> int | None:
        """Return the sample index of the alpha channel, or None.

        The alpha channel is the last extra sample that ExtraSamples marks
        as associated (1) or unassociated (2) alpha.
        """
        if no_alpha:
            return None
        first = self.samples - len(self.extrasamples)
        for i in reversed(range(len(self.extrasamples))):
            if self.extrasamples[i] in (1, 2):
                return first + i
        return None


def _expand_inputs(names: Sequence[str]) -> list[str]:
    """Return the input names with unexpanded wildcards expanded by glob.

    Raises
    ------
    ImgstackError
        A pattern matches no file.
    """
    paths = []
    for name in names:
        if glob.has_magic(name) and not os.path.exists(name):
            matches = sorted(glob.glob(name))
            if not matches:
                raise ImgstackError(name, 'no file matches this pattern')
            paths.extend(matches)
        else:
            paths.append(name)
    return paths


def open_frame(path: str) -> Frame:
    """Read the header of the first image of a TIFF file.

    Raises
    ------
    ImgstackError
        The file cannot be read, is not a TIFF, or holds an image that
        cannot be stacked.
    """
    return _parsed(path, lambda tif: [_frame_of(path, tif, tif.pages.first, len(tif.pages))])[0]


def _parsed(path: str, parse: Callable[[tifffile.TiffFile], list[Frame]]) -> list[Frame]:
    """Open a file, check that it is a regular file, parse its header with
    tifffile and return the Frames that ``parse`` makes of it, each checked
    against the file's size.

    Raises
    ------
    ImgstackError
        The file cannot be read, is not a TIFF, or holds an image that
        cannot be stacked.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImgstackError(path, exc.strerror or str(exc)) from exc
    if stat.S_ISDIR(info.st_mode):
        raise _folder_given(path)
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device: never open it
        raise ImgstackError(path, 'not a regular file')
    try:
        fd = _open_read(path)
    except OSError as exc:
        raise ImgstackError(path, exc.strerror or str(exc)) from exc
    try:
        info = os.fstat(fd)
        identity = _identity(info)
        if not stat.S_ISREG(info.st_mode):
            raise ImgstackError(path, 'not a regular file')
        with os.fdopen(os.dup(fd), 'rb') as fh, tifffile.TiffFile(fh, name=path) as tif:
            frames = parse(tif)
    except ImgstackError:
        raise
    except OSError as exc:
        raise ImgstackError(path, exc.strerror or str(exc)) from exc
    except Exception as exc:  # tifffile raises many kinds for a bad file
        raise ImgstackError(path, f'not a readable TIFF file ({exc})') from exc
    finally:
        os.close(fd)
    collect = len(frames) > 1
    for frame in frames:
        frame.identity = identity
        _check_sizes(frame, identity[2])
        assert frame.offsets is not None  # _frame_of reads them; dropped only here
        if len(frame.offsets) > TABLE_LIMIT:
            if frame.tables is not None:
                frame.offsets = frame.bytecounts = None  # read the part a band needs
            collect = True
    if collect:
        # tifffile's parsed header (a tuple per table, an object per page,
        # in reference cycles) would otherwise wait for the garbage
        # collector: 100 such files held 80 MiB
        gc.collect()
    return frames


def _open_read(path: str) -> int:
    """Open a file for reading; never block on a FIFO that appeared since."""
    return os.open(path, os.O_RDONLY | BINARY | getattr(os, 'O_NONBLOCK', 0))


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _open_input(frame: Frame) -> int:
    """Open an input for reading; return the descriptor.

    Raises
    ------
    ImgstackError
        The file cannot be opened, or it is not the file whose header was
        read (replaced, rewritten or resized since).
    """
    if frame.fd is not None:
        return os.dup(frame.fd)
    try:
        fd = _open_read(frame.path)
    except OSError as exc:
        raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
    try:
        info = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
    if frame.identity and _identity(info) != frame.identity:
        os.close(fd)
        raise ImgstackError(frame.path, 'changed while stacking')
    return fd


# radon D: one refusal per TIFF feature that cannot be stacked, each with
# its own message.
def _frame_of(path: str, tif: tifffile.TiffFile, page: Any, pages: int) -> Frame:
    """Return the Frame of a parsed page, or say why it is not supported."""
    if page.photometric == 3:
        raise ImgstackError(path, 'palette (indexed colour) images are not supported')
    if page.bitspersample == 1:
        raise ImgstackError(path, 'bilevel (1-bit) images are not supported')
    if page.sampleformat in (5, 6):
        raise ImgstackError(path, 'complex-valued images are not supported')
    dtype = page.dtype
    if dtype is None or dtype.name not in DTYPES:
        kinds = {1: 'unsigned integer', 2: 'signed integer', 3: 'floating-point'}
        what = dtype.name if dtype is not None else (
            f'{page.bitspersample}-bit {kinds.get(page.sampleformat, "unknown format")}')
        raise ImgstackError(
            path,
            f'{what} samples are not supported '
            f'(use {", ".join(sorted(DTYPES))})',
        )
    if page.photometric not in PHOTOMETRICS:
        raise ImgstackError(
            path, f'photometric interpretation {page.photometric!r} is not supported'
        )
    if page.bitspersample != dtype.itemsize * 8:  # 12-bit and such: range unknown to --dtype
        raise ImgstackError(
            path, f'{page.bitspersample}-bit packed samples are not supported '
                  f'(save the frames with 8, 16 or 32 bits per sample)')
    separate, depth, length, width, contig = page.shaped
    if depth != 1:
        raise ImgstackError(path, 'volumetric (3-D) images are not supported')
    if length < 1 or width < 1:
        raise ImgstackError(path, 'the image is empty')
    tags = page.tags
    resolution = None
    if 'XResolution' in tags and 'YResolution' in tags:
        resolution = (tags['XResolution'].value, tags['YResolution'].value)
    unit = tags.get('ResolutionUnit')
    raw = (
        page.compression == 1
        and not page.is_tiled
        and page.fillorder == 1
        and page.bitspersample == dtype.itemsize * 8
        and not page.is_subsampled
    )
    decode = None if raw else page.decode
    jpeg = {}
    if page.compression in (6, 7, 34892, 33007):
        jpeg = {'jpegtables': page.jpegtables, 'jpegheader': page.jpegheader}
    frame = Frame(
        path=path,
        height=length,
        width=width,
        samples=separate * contig,
        planar=separate > 1,
        dtype=np.dtype(dtype.name),
        photometric=int(page.photometric),
        extrasamples=tuple(int(e) for e in page.extrasamples),
        byteorder=tif.byteorder,
        seg_rows=page.tilelength if page.is_tiled else max(min(page.rowsperstrip, length), 1),
        seg_width=page.tilewidth if page.is_tiled else width,
        offsets=np.asarray(page.dataoffsets, np.int64),
        bytecounts=np.asarray(page.databytecounts, np.int64),
        tables=_table_positions(tif, page),
        raw=raw,
        decode=decode,
        jpeg=jpeg,
        iccprofile=page.iccprofile,
        resolution=resolution,
        resolutionunit=None if unit is None else int(unit.value),
        pages=pages,
        compression=int(page.compression) if page.fillorder == 1 else -1,
        predictor=int(page.predictor),
    )
    assert frame.offsets is not None and frame.bytecounts is not None  # just read
    if not len(frame.offsets) == len(frame.bytecounts) == frame.segment_count:
        raise ImgstackError(
            path,
            f'corrupt header: {len(frame.offsets)} strip or tile offsets and '
            f'{len(frame.bytecounts)} byte counts for {frame.segment_count} strips or tiles',
        )
    return frame


@dataclasses.dataclass
class _Source:
    """One input file and the frames it contributes: one per page of a
    plain multi-page file, one per step along the frame axis (T or Z) of an
    ImageJ hyperstack or OME-TIFF, whose channels (C, and the other of T and
    Z) are the planes of a planar Frame.  ``kind`` ('plain', 'imagej' or 'ome') and ``meta`` (the
    ImageJ metadata, or the OME physical sizes and channel names) decide how
    the output is written when this is the first input."""

    path: str
    frames: list[Frame]
    kind: str = 'plain'
    axis: str = ''  # the frame axis, '' when the file holds one frame
    kept: str = ''  # the axes kept in each frame, as its planes: 'C', 'ZC'
    kept_shape: tuple[int, ...] = ()
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


FRAME_AXES = 'TZ'
"""The named axes that frames run along (``--axis``); pages along an
unnamed axis of tifffile's ('I', 'Q') are frames too."""

PAGE_AXES = 'YXS'
"""Axes inside one page."""


def _open_source(path: str, axis: str | None = None) -> _Source:
    """Read the headers of every frame of a TIFF file (see `_Source`).

    Raises
    ------
    ImgstackError
        As `open_frame`; or pages of different shapes that no series
        explains, an ``axis`` the file does not have, T and Z both longer
        than 1 without ``axis`` (a usage error: ``usage`` is True).
    """
    source = _Source(path, [])

    def parse(tif: tifffile.TiffFile) -> list[Frame]:
        source.frames = _series_frames(path, tif, axis, source)
        return source.frames

    _parsed(path, parse)
    return source


# radon E: the steps from a file's series to its frames (the page axes, the
# frame axis, the planes kept), each a few lines that read in order.
def _series_frames(path: str, tif: tifffile.TiffFile, axis: str | None,
                   source: _Source) -> list[Frame]:
    """The frames of a parsed file (see `_open_source`)."""
    first = tif.pages.first
    count = len(tif.pages)
    if count == 1 or _is_rejection_map(first):  # imgstack's map: its first page
        return [_frame_of(path, tif, first, count)]
    pages, axes, shape = _series_pages(path, tif, source)
    # the axes that index pages, the others lie inside one
    keyframe = pages[0]
    images = math.prod(shape) // max(math.prod(keyframe.shaped), 1)
    lead = 0
    while lead < len(axes) and math.prod(shape[:lead + 1]) <= images \
            and axes[lead] not in PAGE_AXES:
        lead += 1
    lead_axes, lead_shape = axes[:lead], tuple(shape[:lead])
    base = _frame_of(path, tif, keyframe, count)
    if images != len(pages) or any(p is None for p in pages):
        if len(pages) == 1 and base.raw and images > 1:  # ImageJ's contiguous data, one IFD
            step = int(keyframe.nbytes)
            pages = [np.asarray(base.offsets) + k * step for k in range(images)]
        else:
            raise ImgstackError(path, f'its {count} pages do not make the series that its '
                                      f'metadata describes (axes {axes}, shape {shape})')
    frame_axis = _frame_axis(path, lead_axes, lead_shape, axis)
    source.axis = frame_axis
    # the other axes longer than 1 (C, and Z or T beside the frame axis)
    # are kept: their pages are the planes of one planar Frame
    kept = [i for i, (a, n) in enumerate(zip(lead_axes, lead_shape))
            if a != frame_axis and n > 1]
    source.kept = ''.join(lead_axes[i] for i in kept)
    source.kept_shape = tuple(lead_shape[i] for i in kept)
    order = ([lead_axes.index(frame_axis)] if frame_axis else []) + kept
    order += [i for i in range(len(lead_axes)) if i not in order]
    grid = np.arange(images).reshape(lead_shape).transpose(order)
    planes = math.prod(source.kept_shape)
    grid = grid.reshape(-1, planes)
    if planes > 1 and base.samples > 1:
        raise ImgstackError(path, f'{planes} planes ({source.kept}) of {base.samples} '
                                  f'samples each are not supported (axes {axes})')
    frames = []
    for k, row in enumerate(grid):
        parts = [_page_frame(path, tif, pages[int(i)], base, count) for i in row]
        frame = parts[0] if planes == 1 else _channels_frame(parts)
        frame.label = f'{frame_axis}={k}' if frame_axis in tuple(FRAME_AXES) else \
            f'page {int(row[0])}'
        frames.append(frame)
    if source.kind == 'imagej':
        source.meta = dict(tif.imagej_metadata or {})
    elif source.kind == 'ome':
        channels = dict(zip(lead_axes, lead_shape)).get('C', 1)
        source.meta = _ome_meta(tif.ome_metadata or '', channels)
    return frames


def _series_pages(path: str, tif: tifffile.TiffFile,
                  source: _Source) -> tuple[list[Any], str, tuple[int, ...]]:
    """The pages of a multi-page file's frames, with the series' axes and
    shape: tifffile's first series for ImageJ, OME and its own shaped
    files (``source.kind`` says which), else every page of one shape, as
    axis I (overviews, thumbnails and masks left out).

    Raises
    ------
    ImgstackError
        Pages of different shapes with no series to explain them.
    """
    if tif.is_imagej or tif.is_ome or tif.is_shaped:
        series = tif.series[0]
        source.kind = 'imagej' if tif.is_imagej else 'ome' if tif.is_ome else 'plain'
        return list(series.pages), series.get_axes(False), tuple(series.get_shape(False))
    pages = [p for p in tif.pages if not getattr(p, 'subfiletype', 0) & 5]
    shapes = sorted({(p.shape, str(p.dtype)) for p in pages})
    if len(shapes) > 1:
        seen = ', '.join('x'.join(map(str, sh)) + f' {dt}' for sh, dt in shapes[:4])
        raise ImgstackError(
            path, f'its {len(tif.pages)} pages differ in shape or type ({seen}) and no series '
                  f'(ImageJ, OME or tifffile) explains them: save the frames as pages '
                  f'of one shape, or as separate files')
    return pages, 'I' + pages[0].axes, (len(pages), *pages[0].shape)


def _is_rejection_map(page: Any) -> bool:
    """Whether a page is the first of imgstack's own rejection map (whose
    other pages are not frames of it)."""
    text = page.description or ''
    return text.startswith('imgstack ') and f': values {MAP_PAGES[0]} per pixel' in text


def _frame_axis(path: str, axes: str, shape: tuple[int, ...], axis: str | None) -> str:
    """The axis whose steps are the frames ('' for a single frame).

    Raises
    ------
    ImgstackError
        ``axis`` not in the file, or the frame axis cannot be told (T and Z
        both longer than 1: a usage error).
    """
    sizes = dict(zip(axes, shape))
    held = ', '.join(f'{a}={n}' for a, n in zip(axes, shape))
    longer = [a for a, n in zip(axes, shape) if n > 1 and a != 'C']
    unnamed = [a for a in longer if a not in FRAME_AXES and a != axis]
    if axis is not None and sizes.get(axis, 1) == 1:
        if not longer:  # one frame: nothing to choose
            return ''
        if len(longer) == 1 and longer[0] not in FRAME_AXES:  # plain pages: the frames
            return longer[0]
        raise ImgstackError(path, f'has no axis {axis} longer than 1 (its pages hold {held}): '
                                  f'choose --axis {" or --axis ".join(longer)}')
    if len(longer) > 1 and unnamed:
        raise ImgstackError(path, f'its pages hold {held}, along axes that cannot be told '
                                  'apart: save the frames along T or Z (ImageJ, OME-TIFF) '
                                  'or as plain pages')
    if axis is not None:
        return axis
    if len(longer) > 1:
        error = ImgstackError(path, f'its pages hold {held}: frames run along one axis; '
                                    f'choose --axis {" or --axis ".join(longer)} (the other '
                                    'is kept, as channels are)')
        error.usage = True
        raise error
    return longer[0] if longer else ''


def _page_frame(path: str, tif: tifffile.TiffFile, page: Any, base: Frame,
                count: int) -> Frame:
    """The Frame of one page of a series: parsed anew for a full page, the
    series' first page with this page's offsets for a lighter TiffFrame (or
    offsets computed for contiguous data)."""
    if isinstance(page, np.ndarray):
        return dataclasses.replace(base, offsets=page, tables=None)
    if page is base or isinstance(page, tifffile.TiffPage):
        frame = _frame_of(path, tif, page, count)
        if frame.stored_shape != base.stored_shape or frame.dtype != base.dtype:
            raise ImgstackError(path, f'page {getattr(page, "index", 0)} differs in shape or type '
                                      'from the first page of its series')
        return frame
    return dataclasses.replace(
        base, offsets=np.asarray(page.dataoffsets, np.int64),
        bytecounts=np.asarray(page.databytecounts, np.int64), tables=None)


def _channels_frame(parts: list[Frame]) -> Frame:
    """One Frame whose planes are the channel pages ``parts`` (each one
    plane): the channels are stacked each on its own, as the planes of a
    planar image."""
    first = parts[0]
    per_plane = first.segment_count
    return dataclasses.replace(
        first, samples=len(parts), planar=True, photometric=1, extrasamples=(),
        offsets=np.concatenate([p.offsets for p in parts]),
        bytecounts=np.concatenate([p.bytecounts for p in parts]), tables=None,
        decode=None if first.decode is None else _PlaneDecoder(first.decode, per_plane),
    )


class _PlaneDecoder:
    """The decoder of a channel page, for the segments of every channel of
    a Frame made of channel pages (their indices run on across planes)."""

    def __init__(self, decode: Callable[..., Any], per_plane: int) -> None:
        self.decode, self.per_plane = decode, per_plane

    def __call__(self, data: bytes, index: int, **kwargs: Any) -> Any:
        return self.decode(data, index % self.per_plane, **kwargs)


def _ome_meta(xml: str, channels: int) -> dict[str, Any]:
    """The physical sizes, time increment and channel names of an OME-XML
    document's first image, as tifffile's OME writer takes them."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    pixels = next((e for e in root.iter() if e.tag.rsplit('}', 1)[-1] == 'Pixels'), None)
    if pixels is None:
        return {}
    meta: dict[str, Any] = {}
    for key in ('PhysicalSizeX', 'PhysicalSizeY', 'PhysicalSizeZ', 'TimeIncrement'):
        if key in pixels.attrib:
            with contextlib.suppress(ValueError):
                meta[key] = float(pixels.attrib[key])
            if key + 'Unit' in pixels.attrib:
                meta[key + 'Unit'] = pixels.attrib[key + 'Unit']
    names = [e.attrib.get('Name') for e in pixels if e.tag.rsplit('}', 1)[-1] == 'Channel']
    if len(names) == channels and all(names):
        meta['Channel'] = {'Name': names}
    return meta


def _table_positions(
    tif: tifffile.TiffFile, page: Any
) -> tuple[tuple[int, str], tuple[int, str]] | None:
    """Return where the offsets and byte counts tables lie in the file, or
    None when they are not plain tables of the page's segment count."""
    names = ('TileOffsets', 'TileByteCounts') if page.is_tiled else (
        'StripOffsets', 'StripByteCounts')
    out = []
    for name in names:
        tag = page.tags.get(name)
        if tag is None or tag.count != len(page.dataoffsets):
            return None
        code = tifffile.TIFF.DATA_FORMATS[tag.dtype][-1]
        if code not in 'HIQ':
            return None
        out.append((int(tag.valueoffset), tif.byteorder + code))
    return out[0], out[1]  # offsets, byte counts


def _check_sizes(frame: Frame, filesize: int) -> None:
    """Refuse a header whose data cannot be in the file; note the largest
    and total stored sizes (the tables may not be kept)."""
    # called by open_frame before it may drop the tables
    assert frame.offsets is not None and frame.bytecounts is not None
    frame.largest = int(frame.bytecounts.max(initial=0))
    ends = frame.offsets + frame.bytecounts
    if len(ends) and int(ends.max()) > filesize:
        raise ImgstackError(
            frame.path,
            f'truncated: image data reach byte {int(ends.max())} '
            f'but the file has {filesize} bytes',
        )
    size = frame.height * frame.planes * frame.row_bytes
    stored = _stored_bytes(frame.offsets, frame.bytecounts)
    if not frame.raw and frame.segment_count > max(stored, 1):
        raise ImgstackError(
            frame.path,
            f'the header claims {frame.segment_count} strips or tiles '
            f'from only {stored} bytes of data',
        )
    if frame.raw and stored < size:
        raise ImgstackError(
            frame.path,
            f'the header claims {frame.height}x{frame.width} pixels '
            f'({size} bytes) but only {stored} bytes of data',
        )
    if size > MAX_RATIO * max(stored, 1):
        raise ImgstackError(
            frame.path,
            f'the header claims {frame.height}x{frame.width} pixels '
            f'({size} bytes) from only {stored} bytes of data',
        )


def _stored_bytes(offsets: np.ndarray, counts: np.ndarray) -> int:
    """The bytes of a file that its segments cover, each counted once
    (segments that overlap, or all point at one blob, share theirs)."""
    order = np.argsort(offsets, kind='stable')
    starts, ends = offsets[order], offsets[order] + counts[order]
    reach = np.maximum.accumulate(ends)  # the furthest end so far
    before = np.concatenate(([0], reach[:-1]))
    return int(np.maximum(ends - np.maximum(starts, before), 0).sum())


def _check_frames(frames: Sequence[Frame], no_alpha: bool) -> None:
    """Check that all inputs can be stacked together.

    Raises
    ------
    ImgstackError
        The first input that differs from the first one in shape, samples,
        layout, data type or alpha channel, naming both files and values.
    """
    first = frames[0]

    def describe(f: Frame) -> dict[str, str]:
        return {
            'shape': f'{f.height}x{f.width}',
            'samples per pixel': str(f.samples),
            'layout': 'planar' if f.planar else 'chunky',
            'data type': f.dtype.name,
            'alpha channel': str(f.alpha_index(no_alpha)),
            'photometric': PHOTOMETRICS[f.photometric],
        }

    want = describe(first)
    for f in frames[1:]:
        have = describe(f)
        for key, value in want.items():
            if have[key] != value:
                raise ImgstackError(
                    f.path,
                    f'{key} {have[key]} differs from {value} of {first.path}',
                )


def _read_rows(frame: Frame, fd: int, plane: int, r0: int, r1: int, out: np.ndarray) -> None:
    """Read rows ``r0:r1`` of one plane of a frame into ``out``.

    ``out`` has shape ``(r1 - r0, width, contig)`` and the native dtype.
    Plain (uncompressed strip) data are read straight into ``out``; other
    data decode only the strips or tiles that overlap the rows.

    Raises
    ------
    ImgstackError
        The data are short or corrupt, naming the file and rows.
    """
    if frame.raw:
        _read_raw(frame, fd, plane, r0, r1, out)
    else:
        _read_decoded(frame, fd, plane, r0, r1, out)


def _read_raw(frame: Frame, fd: int, plane: int, r0: int, r1: int, out: np.ndarray) -> None:
    rows = frame.seg_rows
    row_bytes = frame.row_bytes
    buffer = out.reshape(-1).view(np.uint8)
    base = plane * frame.down
    first = base + r0 // rows
    offsets, _ = frame.segments(fd, first, base + -(-r1 // rows))
    r = r0
    while r < r1:
        s = r // rows
        end = min((s + 1) * rows, r1)
        offset = int(offsets[base + s - first]) + (r - s * rows) * row_bytes
        part = buffer[(r - r0) * row_bytes:(end - r0) * row_bytes]
        if _pread_into(fd, part, offset) != part.nbytes:
            raise ImgstackError(frame.path, f'truncated data in rows {r}-{end - 1}')
        r = end
    if frame.dtype.itemsize > 1 and frame.byteorder != NATIVE:
        out.byteswap(inplace=True)


def _read_decoded(
    frame: Frame, fd: int, plane: int, r0: int, r1: int, out: np.ndarray
) -> None:
    first = plane * frame.down * frame.across
    s0, s1 = r0 // frame.seg_rows, -(-r1 // frame.seg_rows)
    lo, hi = first + s0 * frame.across, first + s1 * frame.across
    table = frame.segments(fd, lo, hi)
    for index in range(lo, hi):
        _, y0, x0, h, w = _segment_box(frame, index)
        a, b = max(r0, y0), min(r1, y0 + h)
        where = (int(table[0][index - lo]), int(table[1][index - lo]))
        out[a - r0:b - r0, x0:x0 + w] = _decoded_segment(frame, fd, index, where)[a - y0:b - y0]


def _segment_box(frame: Frame, index: int) -> tuple[int, int, int, int, int]:
    """Return the plane, first row, first column, rows and columns of a
    strip or tile (tiles at the edges are cropped to the image)."""
    plane, rest = divmod(index, frame.down * frame.across)
    s, t = divmod(rest, frame.across)
    y0, x0 = s * frame.seg_rows, t * frame.seg_width
    h, w = min(frame.seg_rows, frame.height - y0), min(frame.seg_width, frame.width - x0)
    return plane, y0, x0, h, w


def _decoded_segment(
    frame: Frame, fd: int, index: int, where: tuple[int, int] | None = None
) -> np.ndarray:
    """Read and decode one strip or tile, cropped to the image: shape
    ``(rows, columns, contig)``, native dtype; zeros for an empty one.

    Raises
    ------
    ImgstackError
        The data are corrupt, naming the file and the segment's rows.
    """
    _, y0, _, h, w = _segment_box(frame, index)
    if where is None:
        offsets, counts = frame.segments(fd, index, index + 1)
        where = (int(offsets[0]), int(counts[0]))
    offset, count = where
    if count == 0:
        return np.zeros((h, w, frame.contig), frame.dtype)
    assert frame.decode is not None  # a frame that is not raw: read_rows, predecode
    try:
        data = _pread(fd, count, offset)
        return frame.decode(data, index, **frame.jpeg)[0][0, :h, :w]
    except Exception as exc:  # any codec error means corrupt data
        raise ImgstackError(
            frame.path,
            f'corrupt data in rows {y0}-{y0 + h - 1} ({type(exc).__name__}: {exc})',
        ) from exc


def _predecode(
    frame: Frame, fd_out: int, stream: bool = False, cancel: threading.Event | None = None,
    directory: str | None = None,
) -> Frame:
    """Decode a frame once into the (unlinked) raw file ``fd_out``; return
    its Frame, which reads from that descriptor.

    Used for files whose strips or tiles are too tall for one band: they
    are decoded one segment at a time, then read band by band from disk.
    With ``stream`` each strip is decoded in pieces (deflate, LZMA, LZW),
    for strips too large to decode whole within the budget; ``cancel``
    stops it between pieces.  ``directory`` (where the raw file is) is
    named when the raw file cannot be written.

    Raises
    ------
    ImgstackError
        The input is corrupt or changed, or the raw file cannot be written.
    """
    plane_bytes = frame.height * frame.row_bytes
    planes = np.arange(frame.planes, dtype=np.int64) * plane_bytes
    raw = dataclasses.replace(
        frame,
        byteorder=NATIVE,
        seg_rows=frame.height,
        seg_width=frame.width,
        offsets=planes,
        bytecounts=np.full(frame.planes, plane_bytes, np.int64),
        tables=None,
        raw=True,
        decode=None,
        fd=fd_out,
        identity=(),
    )
    fd_in = _open_input(frame)
    try:
        if stream:
            for index in range(frame.segment_count):
                _stream_strip(frame, fd_in, index, fd_out, planes, cancel)
        else:
            _predecode_segments(frame, fd_in, fd_out, planes)
    except OSError as exc:
        if exc.errno in WRITE_ERRORS and directory is not None:
            raise ImgstackError(directory, f'cannot write a temporary decoded copy of '
                                f'{frame.path} here ({exc.strerror or exc})') from exc
        raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
    finally:
        os.close(fd_in)
    return raw


WRITE_ERRORS = frozenset(
    getattr(errno, name) for name in ('ENOSPC', 'EFBIG', 'EDQUOT', 'EROFS', 'EIO')
    if hasattr(errno, name))
"""Errors of a write that a full or failing disk gives."""


def _predecode_segments(frame: Frame, fd_in: int, fd_out: int, planes: np.ndarray) -> None:
    """Decode every segment of a frame, one at a time, into a raw file."""
    item = frame.contig * frame.dtype.itemsize
    for index in range(frame.segment_count):
        plane, y0, x0, h, w = _segment_box(frame, index)
        segment = _decoded_segment(frame, fd_in, index)
        base = int(planes[plane]) + y0 * frame.row_bytes + x0 * item
        if w == frame.width:
            _pwrite_all(fd_out, segment, base)
        else:
            for j in range(h):
                _pwrite_all(fd_out, segment[j], base + j * frame.row_bytes)
        del segment


def _stream_strip(
    frame: Frame, fd_in: int, index: int, fd_out: int, planes: np.ndarray,
    cancel: threading.Event | None = None,
) -> None:
    """Decode one strip in pieces into a raw file, undoing the predictor
    block by block of rows as tifffile would for the whole strip; stop
    between pieces once ``cancel`` is set."""
    plane, y0, _, height, _ = _segment_box(frame, index)
    row_bytes = frame.row_bytes
    piece = 2 * MIB if STREAM_CODECS[frame.compression] != 'lzw' else MIB // 8
    block = max(piece // row_bytes, 1) * row_bytes
    offsets, counts = frame.segments(fd_in, index, index + 1)
    start = int(offsets[0])
    chunks = _chunks(fd_in, start, start + int(counts[0]))
    pending = bytearray()
    done = 0
    try:
        for data in _decoded_pieces(STREAM_CODECS[frame.compression], chunks, block):
            _cancelled(cancel)
            pending += data
            rows = min(len(pending) // row_bytes, height - done)
            if rows:
                offset = int(planes[plane]) + (y0 + done) * row_bytes
                _pwrite_all(fd_out, _unpredicted(frame, pending[:rows * row_bytes], rows), offset)
                del pending[:rows * row_bytes]
                done += rows
            if done == height:
                break
    except (zlib.error, lzma.LZMAError, EOFError, ValueError, IndexError) as exc:
        raise ImgstackError(
            frame.path, f'corrupt data in rows {y0 + done}-{y0 + height - 1} ({exc})'
        ) from exc
    if done < height:
        raise ImgstackError(
            frame.path, f'corrupt or truncated data in rows {y0 + done}-{y0 + height - 1}'
        )


def _cancelled(cancel: threading.Event | None) -> None:
    """Raise KeyboardInterrupt in a worker thread once the run is cancelled."""
    if cancel is not None and cancel.is_set():
        raise KeyboardInterrupt


def _chunks(fd: int, position: int, end: int) -> Iterator[bytes]:
    """Yield the bytes from position to end of a file, 1 MiB at a time."""
    while position < end:
        data = _pread(fd, min(MIB, end - position), position)
        if not data:
            return
        position += len(data)
        yield data


def _decoded_pieces(codec: str, chunks: Iterator[bytes], block: int) -> Iterator[bytes]:
    """Yield the decoded bytes of a compressed stream, at most block at a time."""
    if codec == 'deflate':
        inflater = zlib.decompressobj()
        for data in chunks:
            while data and not inflater.eof:
                yield inflater.decompress(data, block)
                data = inflater.unconsumed_tail
            if inflater.eof:  # the stream has ended: what follows is not data
                return
        yield inflater.flush()
    elif codec == 'lzma':
        unxz = lzma.LZMADecompressor()
        for data in chunks:
            if unxz.eof:
                return
            yield unxz.decompress(data, block)
            while not unxz.needs_input and not unxz.eof:
                yield unxz.decompress(b'', block)
    else:
        yield from _lzw_pieces(chunks, block)


def _lzw_pieces(chunks: Iterator[bytes], block: int) -> Iterator[bytes]:
    """Yield the decoded bytes of a TIFF LZW stream (codes of 9 to 12 bits,
    most significant bit first, widened one code early as libtiff does).
    The table holds at most `LZW_CODES` codes, as the format allows: a
    stream that never clears it adds no entry past that, so the table
    never holds more than `LZW_TABLE_BYTES`.

    Plain Python, a few MB/s: used only for strips too large to decode
    whole within the memory budget (imagecodecs decodes LZW only whole).
    """
    table = [bytes((i,)) for i in range(256)] + [b'', b'']  # 256 clear, 257 end
    width, widen_at = 9, 511
    bits = count = size = 0
    previous = b''
    out: list[bytes] = []
    for data in chunks:
        for byte in data:
            bits = ((bits << 8) | byte) & 0xFFFFFF
            count += 8
            if count < width:
                continue
            count -= width
            code = (bits >> count) & ((1 << width) - 1)
            if code == 256:
                del table[258:]
                width, widen_at, previous = 9, 511, b''
                continue
            if code == 257:
                yield b''.join(out)
                return
            if code < len(table):
                entry = table[code]
                if previous and len(table) < LZW_CODES:
                    table.append(previous + entry[:1])
            elif code == len(table) < LZW_CODES and previous:
                entry = previous + previous[:1]
                table.append(entry)
            else:
                msg = f'LZW code {code} beyond the table of {len(table)}'
                raise ValueError(msg)
            out.append(entry)
            size += len(entry)
            previous = entry
            if len(table) >= widen_at and width < 12:
                width += 1
                widen_at = (1 << width) - 1
            if size >= block:
                yield b''.join(out)
                out, size = [], 0
    yield b''.join(out)


def _unpredicted(frame: Frame, data: bytearray, rows: int) -> np.ndarray:
    """Return decoded rows (file byte order, predictor applied) as native
    samples, the way tifffile's own decoder treats a whole strip."""
    if frame.predictor == 3:  # the floating-point predictor works on raw bytes
        dtype = np.dtype(frame.dtype.char)
    else:
        # tifffile's byte order, '<' or '>': a str to numpy's stubs
        dtype = frame.dtype.newbyteorder(frame.byteorder)  # type: ignore[arg-type]
    array = np.frombuffer(data, dtype).reshape(rows, frame.width, frame.contig).copy()
    if frame.predictor != 1:  # use the result: floatpred cannot work in place
        array = tifffile.TIFF.UNPREDICTORS[frame.predictor](array, axis=-2, out=array)
    return array.astype(frame.dtype)


def _pwrite_all(fd: int, array: np.ndarray, offset: int) -> None:
    # ndarray is a buffer; numpy's stubs say so to Python 3.12+ only
    view = memoryview(np.ascontiguousarray(array)).cast('B')  # type: ignore[arg-type]
    while view:
        written = _pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


# Positioned reads and writes: os.pread/os.preadv/os.pwrite where the system
# has them (Linux, macOS, BSD); seek and read or write elsewhere (Windows),
# which is safe because every descriptor is used by one thread at a time.

def _pread_once(fd: int, size: int, offset: int) -> bytes:
    """Return what one read call gives of size bytes from offset (it may
    give fewer: Linux caps one read at 2,147,479,552 bytes, and FUSE or
    network file systems at much less)."""
    if hasattr(os, 'pread'):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Return size bytes of a file from offset, fewer only at its end."""
    data = _pread_once(fd, size, offset)
    if len(data) in (0, size):
        return data
    parts = [data]
    done = len(data)
    while done < size:
        data = _pread_once(fd, min(size - done, READ_MOST), offset + done)
        if not data:
            break
        parts.append(data)
        done += len(data)
    return b''.join(parts)


def _pread_into(fd: int, buffer: np.ndarray, offset: int) -> int:
    """Read into buffer from offset of a file, until it is full or the file
    ends (a read may return less than asked); return the bytes read."""
    view = memoryview(buffer).cast('B')  # type: ignore[arg-type]  # as in _pwrite_all
    done = 0
    while done < len(view):
        if hasattr(os, 'preadv'):
            got = os.preadv(fd, [view[done:done + READ_MOST]], offset + done)
        else:
            data = _pread_once(fd, min(len(view) - done, READ_MOST), offset + done)
            got = len(data)
            view[done:done + got] = data
        if not got:
            break
        done += got
    return done


def _pwrite(fd: int, data: Any, offset: int) -> int:
    """Write data at offset of a file; return the bytes written."""
    if hasattr(os, 'pwrite'):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


# -- the memory budget -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a run uses its memory: band height and where the bytes go."""

    rows: int  # rows of every input held per band
    strip_rows: int  # rows per strip of the output
    predecode: tuple[bool, ...]  # inputs decoded once into a temporary file
    per_row: int  # bytes that one row of band costs
    fixed: int  # bytes that do not depend on the band height
    transient: int  # bytes of strips or tiles being decoded at once
    needed: int  # bytes the plan needs in all
    predecode_workers: int = 1  # threads that decode inputs beforehand
    streamed: tuple[bool, ...] = ()  # of those, inputs decoded in pieces


# radon E: one function holds the whole budget arithmetic, where every byte
# goes, as README promises; its branches are the cases of that arithmetic.
def plan_bands(
    frames: Sequence[Frame],
    *,
    memory: int,
    rows: int,
    alpha: bool = False,
    rejection_map: bool = False,
    method: Method | None = None,
    held: int = 0,
) -> Plan:
    """Choose the band height that fits the memory budget.

    Where the bytes go, per row of band (``v`` values per row of one plane,
    ``n`` inputs of ``s``-byte samples):

    - ``2 * n * v * s``: the band being clipped and the next one, read
      meanwhile;
    - ``n * v``: the validity mask (images with alpha), plus
      ``2 * n * width * s`` for the alpha plane of planar images;
    - ``v * (8 + 8 + 8 + 2 * s)``: the float64 results, the rejection
      counts (total and low), the output samples and their encoded strips;
      ``6 * v`` more for a rejection map;
    - ``n * v``: the validity mask of a valid range or alpha.

    And once: `RESERVE_BYTES`, ``WORKERS * chunk_scratch(memory, method)`` of scratch,
    the inputs' `_bookkeeping` (and ``held`` bytes of other frames' headers: the
    other groups of ``--group``), and ``WORKERS`` strips or tiles being decoded (decoded and stored
    bytes).  An input whose strips or tiles are taller than the band is
    decoded once into a temporary file instead (one segment in memory at a
    time, or `STREAM_BYTES` of one where a whole one does not fit), so that
    no segment is decoded more than once per plane.

    Raises
    ------
    ImgstackError
        The budget is too small for one row of every input; the message
        names the smallest budget that works.
    """
    first = frames[0]
    n = len(frames)
    s = first.dtype.itemsize
    v = first.width * first.contig
    per_row = 2 * n * v * s + v * (24 + 2 * s) + n * v
    if alpha:
        per_row += 2 * n * first.width * s if first.planar else 0
    if rejection_map:
        per_row += 6 * v
    fixed = (RESERVE_BYTES + WORKERS * _chunk_scratch(memory, method) + _bookkeeping(frames)
             + held)
    cost = [f.segment_bytes + f.largest for f in frames]
    # decoding beforehand takes a whole strip, or a stream where that does
    # not fit and the codec allows it
    stream = [f.streamable and RESERVE_BYTES + c > memory for f, c in zip(frames, cost)]
    early = [STREAM_BYTES + (LZW_TABLE_BYTES if STREAM_CODECS.get(f.compression) == 'lzw' else 0)
             if piecewise else c for f, piecewise, c in zip(frames, stream, cost)]

    def needed(b: int) -> tuple[int, int]:
        """Bytes needed with bands of b rows, and the decode transient."""
        inband = [c for f, c in zip(frames, cost) if not f.raw and f.seg_rows <= b]
        before = [c for f, c in zip(frames, early) if not f.raw and f.seg_rows > b]
        transient = WORKERS * max(inband, default=0)
        during = fixed + per_row * b + transient
        return max(during, RESERVE_BYTES + max(before, default=0)), transient

    # needed(b) is linear in b between the heights where an input switches
    # from decoding in band to decoding once beforehand: take the largest
    # b that fits in each such range, and the largest of those
    limit = max(min(rows, first.height), 1)
    tops = sorted({limit} | {f.seg_rows - 1 for f in frames if 1 < f.seg_rows <= limit})
    b, floor = 0, 0
    for top in tops:
        constant = needed(top)[0] - per_row * top
        fit = min(top, (memory - constant) // per_row)
        if fit > floor and needed(fit)[0] <= memory:
            b = fit
        floor = top
    if b < 1:
        need = needed(1)[0]
        largest = max(range(n), key=lambda i: -1 if frames[i].raw else cost[i])
        what = 'one row of every input'
        if fixed + per_row < need and not frames[largest].raw:
            what = (f'decoding one strip or tile of {frames[largest].path} '
                    f'({_format_size(cost[largest])} decoded and stored)')
        raise ImgstackError(
            None,
            f'a memory budget of {_format_size(memory)} is too small for {what}; '
            f'the smallest that works is {_format_size(need)} (-m {-(-need // MIB)}M)',
        )
    # align bands with the strips or tiles decoded in band, so that each is
    # decoded once
    heights = {f.seg_rows for f in frames if not f.raw and f.seg_rows <= b}
    if len(heights) == 1:
        h = heights.pop()
        b = b // h * h
    strip_rows = max(d for d in range(1, min(b, MAX_STRIP_ROWS) + 1) if b % d == 0)
    predecode = tuple(not f.raw and f.seg_rows > b for f in frames)
    need, transient = needed(b)
    largest = max((c for c, p in zip(early, predecode) if p), default=0)
    workers = WORKERS if RESERVE_BYTES + WORKERS * largest <= memory else 1
    streamed = tuple(p and piecewise for p, piecewise in zip(predecode, stream))
    return Plan(b, strip_rows, predecode, per_row, fixed, transient, need, workers, streamed)


def _bookkeeping(frames: Sequence[Frame]) -> int:
    """Bytes that the inputs' headers take while the run lasts: each Frame
    object and the strip tables kept in memory (at most `TABLE_LIMIT`
    entries each; larger tables are read band by band)."""
    # the two tables are kept or dropped together: testing both only narrows
    tables = sum(0 if f.offsets is None or f.bytecounts is None
                 else f.offsets.nbytes + f.bytecounts.nbytes for f in frames)
    return tables + FRAME_BYTES * len(frames)


FRAME_BYTES = 4096
"""Memory of one input's header (a Frame object, its path and tags)."""


def parse_size(text: str) -> int:
    """Return a memory size in bytes: ``512M``, ``2G``, ``1.5GiB``, ``100MB``,
    ``1000000``.

    K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB
    powers of 1000 (as in GNU coreutils).

    Raises
    ------
    ValueError
        Not a size.
    """
    units = {'': 1, 'B': 1}
    for i, p in enumerate('KMGT', 1):
        units[p] = units[p + 'IB'] = 1024**i
        units[p + 'B'] = 1000**i
    t = text.strip().upper()
    number = t.rstrip('KMGTIB')
    unit = t[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if unit not in units or not math.isfinite(value) or value <= 0:
        msg = f'not a memory size: {text!r} (try 512M, 2G or 1.5GiB)'
        raise ValueError(msg)
    return int(value * units[unit])


def _format_size(size: float) -> str:
    """Return a byte count for people: ``1.5 GiB``."""
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if size < 1024 or unit == 'GiB':
            return f'{size:.0f} {unit}' if unit == 'bytes' else f'{size:.1f} {unit}'
        size /= 1024
    raise AssertionError  # unreachable


# -- writing TIFF ------------------------------------------------------------


def _parse_codec(text: str) -> tuple[str, int | None]:
    """Return the codec and level of ``-c CODEC[:LEVEL]``.

    Raises
    ------
    ValueError
        Unknown codec, or a level that is not valid for it.
    """
    name, _, level_text = text.lower().partition(':')
    if name not in CODECS:
        msg = f'unknown codec {name!r} (choose from {", ".join(CODECS)})'
        raise ValueError(msg)
    if not level_text:
        return name, None
    if name not in LEVELS:
        msg = f'codec {name} takes no level'
        raise ValueError(msg)
    lo, hi = LEVELS[name]
    if not level_text.isdigit() or not lo <= int(level_text) <= hi:
        msg = f'level of {name} must be an integer from {lo} to {hi}'
        raise ValueError(msg)
    return name, int(level_text)


def _strip_encoder(
    codec: tuple[str, int | None] | None, dtype: np.dtype
) -> tuple[Callable[[np.ndarray], bytes], dict[str, Any]]:
    """Return a function that encodes one strip, and the writer's arguments.

    Integers use the horizontal predictor, floats the floating-point one;
    packbits uses none.

    Raises
    ------
    ImgstackError
        The codec's library is not installed.
    """
    if codec is None:
        return (lambda strip: strip.tobytes()), {}
    name, level = codec
    tag = CODECS[name]
    try:
        compressor = tifffile.TIFF.COMPRESSORS[tag]
    except (KeyError, ImportError) as exc:
        raise ImgstackError(
            None, f'codec {name} is not available: pip install imagecodecs'
        ) from exc
    predictor = None if name == 'packbits' else (3 if dtype.kind == 'f' else 2)
    args: dict[str, Any] = {'level': level} if level is not None else {}
    if name == 'packbits':
        args['axis'] = -2  # each row packed on its own
    predict = None if predictor is None else tifffile.TIFF.PREDICTORS[predictor]

    def encode(strip: np.ndarray) -> bytes:
        if predict is not None:
            strip = predict(strip, axis=-2)
        return compressor(strip, **args)

    try:
        encode(np.zeros((1, 1, 1), dtype))
    except Exception as exc:  # the codec is listed but its library is missing
        raise ImgstackError(
            None, f'codec {name} does not work here ({exc}): pip install -U imagecodecs'
        ) from exc
    return encode, {'compression': tag, 'predictor': predictor}


def _needs_bigtiff(size: int) -> bool:
    """Return whether a file with ``size`` bytes of image data needs BigTIFF
    (classic TIFF offsets end at 4 GiB; keep room for headers and for
    compressed strips a little larger than their data)."""
    return size + size // 50 + 32 * MIB >= 2**32


def _writer_args(
    first: Frame, strip_rows: int, extra: dict[str, Any],
    dtype: np.dtype | None = None, description: str | None = None,
) -> dict[str, Any]:
    """Return the arguments of ``TiffWriter.write`` for the stacked image.

    Extra samples that the inputs leave unspecified stay unspecified
    (tifffile would call a 4th channel alpha); the resolution is written
    only when the first input has one.
    """
    base = {2: 3, 6: 3, 5: 4}.get(first.photometric, 1)
    extrasamples = first.extrasamples or (0,) * max(first.samples - base, 0)
    args = {
        'shape': first.stored_shape,
        'dtype': first.dtype if dtype is None else dtype,
        'photometric': PHOTOMETRICS[first.photometric],
        'planarconfig': 'separate' if first.planar else 'contig',
        'extrasamples': extrasamples or None,
        'rowsperstrip': strip_rows,
        'iccprofile': first.iccprofile,
        'metadata': None,
        'description': description,
        'software': f'imgstack {__version__}',
        'maxworkers': 1,
        **extra,
    }
    if first.resolution is not None:
        args['resolution'] = first.resolution
        args['resolutionunit'] = first.resolutionunit
    return args


# -- the file-to-file job ----------------------------------------------------


class ImgstackWarning(UserWarning):
    """A setting or an input that will not give what the user expects."""


@dataclasses.dataclass
class Stats:
    """What a run did."""

    output: str
    frames: int
    values: int  # values stacked: frames x points
    rejected: int  # values rejected
    passes: int  # passes run (the most over all bands)
    seconds: float
    bytes_read: int
    band_rows: int
    low: int = 0  # of the rejected values, those below the kept ones
    frame_table: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)
    channel_noise: tuple[float, ...] = ()  # the result's noise over a frame's, per channel
    dropped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # --select's:
    # each frame's name and why (its metric)

    @property
    def percent(self) -> float:
        """Values rejected, in percent of all values."""
        return 100.0 * self.rejected / self.values if self.values else 0.0

    @property
    def noise_ratio(self) -> float:
        """The result's noise over a single frame's (the median frame's, in
        normalized units), estimated as ``--weights noise`` estimates a
        frame's; the median over the channels; NaN where it cannot be
        estimated (a flat or tiny image)."""
        ratios = [r for r in self.channel_noise if math.isfinite(r) and r > 0]
        return float(np.median(ratios)) if ratios else math.nan

    @property
    def effective_frames(self) -> float:
        """The number of ideal frames the result is worth: ``1 /
        noise_ratio**2`` (a plain mean of k equal frames has k)."""
        ratio = self.noise_ratio
        return 1.0 / (ratio * ratio) if ratio > 0 else math.nan


class Reporter:
    """Messages on stderr: warnings, progress while the run lasts, a summary.

    Parameters
    ----------
    level : int
        0 errors only (``-q``), 1 normal, 2 verbose (``-v``).
    stream : file, optional
        Where messages go; default ``sys.stderr``.

    When the stream goes away (a closed pipe), messages stop and the run
    goes on: they are a courtesy.
    """

    def __init__(self, level: int = 1, stream: Any = None) -> None:
        self.level = level
        self.stream = sys.stderr if stream is None else stream
        if self.stream is None:  # stderr closed (2>&-): nobody to tell
            self.level, self.stream = 0, io.StringIO()
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            self.tty = False
        self.midline = False  # a progress bar waits for its end of line
        self._start = time.monotonic()
        self._next = 0.0

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError, AttributeError):  # a broken pipe: stop talking
            self.level = 0
            if self.stream is sys.stderr:
                with contextlib.suppress(OSError):
                    sys.stderr = open(os.devnull, 'w')  # noqa: SIM115
            self.stream = open(os.devnull, 'w')  # noqa: SIM115

    def say(self, text: str, level: int = 1) -> None:
        """Print a line (or lines) if the level is shown, every character
        that is not printable escaped."""
        if self.level >= level:
            self.newline()
            self._write('\n'.join(_printable(line) for line in text.split('\n')) + '\n')

    def warn(self, text: str) -> None:
        """Print a warning unless quiet."""
        self.say(f'imgstack: warning: {text}')

    def newline(self) -> None:
        """End a progress bar's line, if one is open."""
        if self.midline:
            self.midline = False
            self._write('\n')

    def start(self) -> None:
        """Start the clock of the progress report."""
        self._start = time.monotonic()
        self._next = 0.0

    def progress(
        self, done: int, total: int, frames: int, nbytes: int, what: str = 'rows'
    ) -> None:
        """Report rows (or ``what``) done: a bar redrawn in place on a
        terminal, fitted to its width; a line every 10% otherwise."""
        if self.level < 1 or total <= 0:
            return
        elapsed = time.monotonic() - self._start
        fraction = done / total
        rate = nbytes / elapsed / 1e6 if elapsed > 0 else 0.0
        left = elapsed / fraction - elapsed if fraction > 0 else 0.0
        text = (
            f'{100 * fraction:3.0f}%  {what} {done}/{total}  {frames} frames  '
            f'{rate:.0f} MB/s  {left:.0f} s left'
        )
        if self.tty:
            columns = shutil.get_terminal_size().columns - 1
            width = min(24, columns - len(text) - 3)
            line = text if width < 4 else f'[{"#" * int(width * fraction):<{width}}] {text}'
            self._write('\r' + line[:columns].ljust(columns))
            self.midline = True
            if done >= total:
                self.newline()
        elif fraction >= self._next or done >= total:
            self._next = math.floor(fraction * 10 + 1) / 10
            self.say(text)

    def summary(self, stats: Stats) -> None:
        """Print the summary line of a finished run."""
        rate = stats.bytes_read / stats.seconds / 1e6 if stats.seconds > 0 else 0.0
        self.say(
            f'stacked {stats.frames} frames into {stats.output}: '
            f'{stats.passes} pass{"" if stats.passes == 1 else "es"}, '
            f'{stats.rejected} values rejected ({stats.percent:.3f}%), '
            + (f'noise {stats.noise_ratio:.2f} of a frame\'s, worth '
               f'{stats.effective_frames:.1f} frames, ' if math.isfinite(stats.noise_ratio)
               else '')
            + f'{stats.seconds:.{1 if stats.seconds >= 10 else 2}f} s, {rate:.0f} MB/s'
        )
        if stats.dropped:
            self.say(f'dropped {len(stats.dropped)} of {stats.frames + len(stats.dropped)} '
                     'frames: ' + ', '.join(f'{name} ({why})' for name, why in stats.dropped))
        if len(stats.channel_noise) > 1:
            self.say('noise of a frame\'s by channel: ' + ', '.join(
                f'{r:.3f} (worth {1 / (r * r) if r > 0 else math.nan:.1f} frames)'
                for r in stats.channel_noise), level=2)


NOT_TIFF = frozenset(
    [
        '.png', '.jpg', '.jpeg', '.gif', '.bmp', '.webp', '.fits', '.fit', '.fts', '.xisf', '.cr2',
        '.cr3', '.nef', '.arw', '.dng', '.raw', '.exr', '.heic', '.jxl', '.j2k', '.jp2', '.pgm',
        '.ppm', '.pnm', '.ser', '.avi', '.mp4', '.csv', '.txt',
    ]
)
"""Extensions of files that are not TIFF: an OUTPUT named so is refused."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run does, checked once: built by `from_options` from
    the command line or from a library call's keywords, then carried to
    every stage of the job and read there."""

    method: Method
    normalize: str = 'none'
    weights: str = 'none'
    valid_range: tuple[float | None, float | None] | None = None
    dtype: str = 'input'
    codec: tuple[str, int | None] | None = None
    memory: int = DEFAULT_MEMORY
    rows: int = 100
    force: bool = False
    no_alpha: bool = False
    rejection_map: str | None = None
    frame_stats: str | None = None
    cli: bool = False  # messages name the command's flags (--force), not keywords
    axis: str | None = None  # the axis frames run along (T or Z), None: the file's only one
    group: int | None = None  # frames stacked into each page of the output
    select: tuple[tuple[str, str, float], ...] = ()  # (metric, kind, value): `_parse_select`

    @classmethod
    def from_options(
        cls, *, cli: bool = False, sigma: Any = None, sigma_low: Any = None,
        sigma_high: Any = None, iterations: Any = None, center: Any = 'mean', reject: Any = 'sigma',
        combine: Any = 'mean', percentile: Any = (0.2, 0.1), minmax: Any = (1, 1),
        gesd: Any = DEFAULT_GESD, normalize: Any = 'none', weights: Any = 'none',
        valid_range: Any = None, dtype: Any = 'input', compress: Any = None,
        memory: Any = DEFAULT_MEMORY, rows: Any = 100, force: Any = False,
        no_alpha: Any = False, rejection_map: Any = None, frame_stats: Any = None,
        axis: Any = None, group: Any = None, select: Any = None,
    ) -> Settings:
        """Check every option (the keywords of `stack_files`, the flags of
        the command) and return them as Settings; ``cli`` names the flags
        in messages.

        Raises
        ------
        ImgstackError
            An option of the wrong type or out of range, named in the message.
        """
        try:
            method = _method_of(sigma, sigma_low, sigma_high, iterations=iterations,
                                center=center, reject=reject, combine=combine,
                                percentile=percentile, minmax=minmax, gesd=gesd)
            _check_normalize(normalize)
            _check_weights(weights)
            chosen = _select_of(select)
            if chosen and group is not None:
                msg = 'select applies to one stack, not to groups'
                raise ValueError(msg)
            if dtype not in ('input', 'float32'):
                msg = f"dtype must be 'input' or 'float32', not {dtype!r}"
                raise ValueError(msg)
            for name, flag in (('force', force), ('no_alpha', no_alpha)):
                if not isinstance(flag, (bool, np.bool_)):
                    msg = f'{name} must be True or False, not {flag!r}'
                    raise ValueError(msg)
            settings = cls(
                method, normalize, weights, _checked_range(valid_range), dtype,
                _codec_of(compress), _budget(memory), _whole(rows, 'rows', 1), bool(force),
                bool(no_alpha), cli=cli, axis=_axis_of(axis), group=_group_of(group),
                select=chosen,
                **{name: None if value is None else _path_arg(value, name)
                   for name, value in (('rejection_map', rejection_map),
                                       ('frame_stats', frame_stats))},
            )
        except ValueError as exc:
            msg = str(exc)
            if cli:  # name the flag, not the keyword
                msg = msg.replace('sigma_low', '--sigma-low').replace('sigma_high', '--sigma-high')
            raise ImgstackError(None, msg) from exc
        return settings

    def describe(self, frames: int) -> str:
        """The settings as options, for the output's ImageDescription."""
        m = self.method
        parts = [f'imgstack {__version__}:']
        if m.reject != 'sigma':
            parts.append(f'--reject {m.reject}')
        if m.reject in ITERATIVE:  # the options that apply, as a command line
            if m.sigma_low == m.sigma_high:
                parts.append(f'-s {m.sigma_low:g}')
            else:
                parts.append(f'--sigma-low {m.sigma_low:g} --sigma-high {m.sigma_high:g}')
            parts.append(f'-i {m.iterations}')
        if m.reject == 'sigma':
            parts.append(f'--center {m.center}')
        if m.reject in PARAMETERS:
            a, b = getattr(m, m.reject)
            parts.append(f'--{m.reject} {a:g}:{b:g}')
        if m.combine != 'mean':
            parts.append(f'--combine {m.combine}')
        if self.normalize != 'none':
            parts.append(f'--normalize {self.normalize}')
        if self.weights != 'none':
            parts.append(f'--weights {self.weights}')
        for metric, kind, value in self.select:
            parts.append(f'--select {metric}:{value:g}{"" if kind == "n" else kind}')
        if self.valid_range is not None:
            lo, hi = ('' if v is None else f'{v:g}' for v in self.valid_range)
            parts.append(f'--valid-range {lo}:{hi}')
        if self.dtype != 'input':
            parts.append(f'--dtype {self.dtype}')
        if self.axis is not None:
            parts.append(f'--axis {self.axis}')
        if self.group is not None:
            parts.append(f'--group {self.group}')
        return f'{" ".join(parts)}; {frames} frames'


def _check_weights(weights: Any) -> None:
    """Refuse weights that are none of `FRAME_WEIGHTS` nor ``FILE.csv:COLUMN``."""
    if weights in FRAME_WEIGHTS:
        return
    if isinstance(weights, str):
        file, _, column = weights.rpartition(':')
        if file.lower().endswith('.csv') and column:
            return
    msg = f'weights must be one of {", ".join(FRAME_WEIGHTS)} or FILE.csv:COLUMN, not {weights!r}'
    raise ValueError(msg)


def _select_of(select: Any) -> tuple[tuple[str, str, float], ...]:
    """The selections of ``select``: None, one ``METRIC:KEEP`` or several."""
    if select is None:
        return ()
    items = [select] if isinstance(select, str) else list(select)
    return tuple(_parse_select(item) for item in items)


def _flag(name: str, cli: bool) -> str:
    """How a setting is spelled to the user: ``--force`` or ``force=True``."""
    return f'--{name.replace("_", "-")}' if cli else f'{name}=True'


def _method_of(sigma: Any, sigma_low: Any, sigma_high: Any, iterations: Any,
               **options: Any) -> Method:
    """The Method of a call's options: ``sigma`` checked, and standing for
    the factors not given; a factor or passes not given (None) are the
    method's own (`DEFAULT_FACTORS`, `DEFAULT_PASSES`).

    Raises
    ------
    ValueError
        An option out of range, named in the message.
    """
    reject, center = options.get('reject', 'sigma'), options.get('center', 'mean')
    if sigma is None:
        sigma = DEFAULT_FACTORS.get((reject, center), DEFAULT_FACTORS.get(reject, 2.5))
    if iterations is None:
        iterations = DEFAULT_PASSES.get(reject, 5)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) \
            or not (math.isfinite(sigma) and sigma > 0):
        msg = f'sigma must be finite and > 0, not {sigma!r}'
        raise ValueError(msg)
    sigma = cast(float, sigma)  # or a numpy number, which Method takes as well
    return Method(sigma_low=sigma if sigma_low is None else sigma_low,
                  sigma_high=sigma if sigma_high is None else sigma_high,
                  iterations=iterations, **options)


def _codec_of(compress: Any) -> tuple[str, int | None] | None:
    """The output codec of ``compress``: None, ``'zstd:9'`` or ``('zstd', 9)``.

    Raises
    ------
    ValueError
        Not such a codec.
    """
    if compress is None or isinstance(compress, str):
        return None if compress is None else _parse_codec(compress)
    if isinstance(compress, tuple) and len(compress) == 2 and isinstance(compress[0], str) \
            and (compress[1] is None or _is_int(compress[1])):
        try:
            return _parse_codec(compress[0] + ('' if compress[1] is None else f':{compress[1]}'))
        except ValueError as exc:
            raise ValueError(f'compress: {exc}') from None
    msg = f"compress must be a codec such as 'zstd:9' or ('zstd', 9), not {compress!r}"
    raise ValueError(msg)


def _budget(memory: Any) -> int:
    """The memory budget of ``memory``: bytes, or a size such as ``'512M'``.

    Raises
    ------
    ValueError
        Not such a size.
    """
    if isinstance(memory, str):
        return parse_size(memory)
    if _is_int(memory) and memory > 0:
        return int(memory)
    msg = (f"memory must be a size in bytes (an integer > 0) or a string such as '512M', "
           f"not {memory!r}")
    raise ValueError(msg)


def _axis_of(axis: Any) -> str | None:
    """The frame axis of ``axis``: None, or one letter such as 'T' or 'Z'.

    Raises
    ------
    ValueError
        Not such a letter (C, Y, X and S lie inside a frame).
    """
    if axis is None:
        return None
    if isinstance(axis, str) and len(axis) == 1 and axis.isalpha() and axis.isascii() \
            and axis.upper() not in 'CYXS':
        return axis.upper()
    msg = f"axis must be the letter of the axis frames run along, such as 'T' or 'Z', not {axis!r}"
    raise ValueError(msg)


def _group_of(group: Any) -> int | None:
    """The group size of ``group``: None, or an integer >= 2.

    Raises
    ------
    ValueError
        Not such a number.
    """
    return None if group is None else _whole(group, 'group', 2)


def _whole(value: Any, name: str, least: int) -> int:
    """``value``, an integer of at least ``least`` (the band height ``rows``,
    the ``group`` size).

    Raises
    ------
    ValueError
        Not such a number, named in the message.
    """
    if not _is_int(value) or value < least:
        msg = f'{name} must be an integer >= {least}, not {value!r}'
        raise ValueError(msg)
    return int(value)


def _checked_range(value: Any) -> tuple[float | None, float | None] | None:
    """Return a valid range given as ``'LOW:HIGH'``, a pair (either side
    None) or None, as numbers.

    Raises
    ------
    ValueError
        Not such a range, or LOW > HIGH.
    """
    if value is None or isinstance(value, str):
        return None if value is None else _parse_range(value)
    try:
        lo, hi = value
    except (TypeError, ValueError):
        msg = f"valid_range must be 'LOW:HIGH' or a pair (LOW, HIGH), not {value!r}"
        raise ValueError(msg) from None
    return _parse_range(f'{"" if lo is None else lo}:{"" if hi is None else hi}')


def _parse_range(text: str) -> tuple[float | None, float | None]:
    """Return ``LOW:HIGH`` as numbers, either side None when left out.

    Raises
    ------
    ValueError
        Not a range, or LOW > HIGH.
    """
    low_text, sep, high_text = text.partition(':')
    values: list[float | None] = []
    for part in (low_text, high_text):
        part = part.strip()
        if not part:
            values.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if math.isnan(value):
            msg = (f'valid range must be LOW:HIGH, either side may be left out '
                   f'(e.g. 1: or :65000), not {text!r}')
            raise ValueError(msg)
        values.append(value)
    if not sep or (values[0] is not None and values[1] is not None and values[0] > values[1]):
        msg = f'valid range must be LOW:HIGH with LOW <= HIGH (e.g. 1: or :65000), not {text!r}'
        raise ValueError(msg)
    return values[0], values[1]


# radon D: the job's steps in order, one call each; the branches are the
# optional outputs (map, CSV) and their checks.
def stack_files(
    inputs: Any,
    output: Any,
    *,
    settings: Settings | None = None,
    reporter: Reporter | None = None,
    progress: Callable[[int, int], Any] | None = None,
    **options: Any,
) -> Stats:
    """Stack TIFF files into the TIFF file of their combined values.

    Every input is checked before any work; the output (and the rejection
    map) are written to temporary files beside them and renamed into place
    when complete, so a failed or interrupted run leaves no partial file.

    Parameters
    ----------
    inputs : str, pathlib.Path or a sequence of them
        Two or more TIFF files of the same shape and type; a single str or
        Path is one file or one wildcard; wildcards are expanded.
    output : str or pathlib.Path
        The TIFF file to write.
    settings : Settings, optional
        Every option at once, from `Settings.from_options`; or give the
        options as keywords:
    sigma, sigma_low, sigma_high, iterations, center, reject, combine, \
percentile, minmax, gesd
        The rejection and combination, as in `stack_array`.
    normalize : {'none', 'additive', 'multiplicative', 'additive-scale'}
        Per-frame normalization before rejection.
    weights : {'none', 'noise', 'snr', 'stars', 'fwhm', 'exposure'} or 'FILE.csv:COLUMN'
        Weight each frame by its inverse noise variance, its SNR squared,
        its stars, 1 / FWHM squared, its exposure time or a CSV column.
    select : str or sequence of str, optional
        ``'METRIC:KEEP'`` selections (``'fwhm:80%'``, ``'snr:20'``,
        ``'transparency:2.5s'``): only the frames that every one keeps are
        stacked.
    valid_range : str or (float or None, float or None), optional
        Values outside ``[low, high]`` (input units) are not valid.
    dtype : {'input', 'float32'}
        Output type; float32 from integers is scaled to [0, 1].
    compress : str or (str, int or None), optional
        Output codec, ``'zstd:9'`` or ``('zstd', 9)``; default none.
    memory : int or str
        Memory budget of the run, bytes or a size such as ``'512M'``.
    rows : int
        Largest number of rows per band, >= 1.
    force : bool
        Replace an existing output.
    no_alpha : bool
        Treat the alpha channel as data.
    rejection_map : str or pathlib.Path, optional
        Also write a uint16 TIFF counting the values rejected at each pixel
        (page 1), and of those the low (page 2) and high (page 3) ones.
    frame_stats : str or pathlib.Path, optional
        Also write a CSV of per-frame statistics and rejections.
    reporter : Reporter, optional
        Where messages go; default none (warnings go to `warnings`).
    progress : callable, optional
        Called as ``progress(done_rows, total_rows)`` after each band.

    Returns
    -------
    Stats

    Raises
    ------
    ImgstackError
        Bad settings, inputs or output; nothing has been written.
    OSError
        The output could not be written; nothing is left behind.
    """
    started = time.monotonic()
    report = Reporter(0) if reporter is None else reporter
    if settings is None:
        settings = Settings.from_options(**options)
    elif options:
        msg = f'give settings or options, not both ({", ".join(options)})'
        raise TypeError(msg)
    paths = _check_inputs(inputs)
    output = _path_arg(output, 'output')
    extras = _check_targets(output, paths, settings)
    sources, frames = _open_frames(paths, settings)
    first = frames[0]
    groups = _groups(frames, settings, sources)
    plan, jobs = _plan_jobs(groups, frames, settings, extras, report, progress)
    with contextlib.ExitStack() as stack:
        table = _write_outputs(jobs, sources[0], output, extras, settings, stack)
    n = sum(len(job.frames) for job in jobs)  # a last frame alone is left out, and --select's
    points = first.height * first.width * first.samples
    return Stats(
        output=output,
        frames=n,
        values=n * points,
        rejected=sum(job.rejected for job in jobs),
        passes=max(job.passes for job in jobs),
        seconds=time.monotonic() - started,
        bytes_read=n * points * first.dtype.itemsize,
        band_rows=plan.rows,
        low=sum(job.low for job in jobs),
        frame_table=table,
        channel_noise=jobs[0].noise_ratios(),  # the first page's, with --group
        dropped=[(_frame_name(job.every[i]), why) for job in jobs
                 for i, why in sorted(job.dropped.items())],
    )


def _check_targets(output: str, paths: Sequence[str], settings: Settings) -> dict[str, str]:
    """Check OUTPUT and the other files a run writes (the rejection map and
    the frame statistics, by name in the returned dict).

    Raises
    ------
    ImgstackError
        A target that may not be written, or two that are the same file.
    """
    extras = {k: v for k in ('rejection_map', 'frame_stats')
              if (v := getattr(settings, k)) is not None}
    _check_output(output, paths, settings.force, settings.cli)
    for name, target in extras.items():
        _check_output(target, paths, settings.force, settings.cli, tiff=name == 'rejection_map')
        if _same_file(target, output):
            raise ImgstackError(target, f'the {name.replace("_", " ")} cannot be OUTPUT')
    if len(extras) == 2 and _same_file(extras['rejection_map'], extras['frame_stats']):
        raise ImgstackError(extras['frame_stats'],
                            'the frame statistics cannot be the rejection map')
    return extras


def _open_frames(paths: Sequence[str], settings: Settings) -> tuple[list[_Source], list[Frame]]:
    """Read every input's header; return the sources and all their frames,
    checked to stack together.

    Raises
    ------
    ImgstackError
        An input that cannot be read, fewer than two frames, or frames that
        differ.
    """
    sources = [_open_source(p, settings.axis) for p in paths]
    frames = [f for source in sources for f in source.frames]
    if len(frames) < 2:
        raise ImgstackError(paths[0], 'holds a single image: need two or more frames to stack '
                                      '(more files, or a file of several pages)')
    _check_frames(frames, settings.no_alpha)
    for f in frames[1:]:
        f.iccprofile = None  # only the first input's profile is written
    return sources, frames


def _plan_jobs(
    groups: list[list[Frame]], frames: list[Frame], settings: Settings, extras: dict[str, str],
    report: Reporter, progress: Callable[[int, int], Any] | None,
) -> tuple[Plan, list[_Job]]:
    """The memory plan of the first group and a Job per group (the output's
    pages), each planned in bands of the same height.

    Raises
    ------
    ImgstackError
        The budget is too small.
    """
    first = frames[0]
    alpha = first.alpha_index(settings.no_alpha)
    held = _bookkeeping(frames) - _bookkeeping(groups[0])  # the other groups' headers

    def planned(group: list[Frame], rows: int) -> Plan:
        return plan_bands(group, memory=settings.memory, rows=rows, alpha=alpha is not None,
                          rejection_map='rejection_map' in extras, method=settings.method,
                          held=held)

    plan = planned(groups[0], settings.rows)
    out_dtype = np.dtype(np.float32) if settings.dtype == 'float32' else first.dtype
    advice = _poorly_suited(len(groups[0]), settings.method)
    if advice:
        _warn(advice)
    report.say(
        f'{len(frames)} frames of {first.height}x{first.width}x{first.samples} '
        f'{first.dtype.name}; bands of {plan.rows} rows; budget {_format_size(settings.memory)} '
        f'(needs {_format_size(plan.needed)})',
        level=2,
    )
    jobs = [_Job(group, settings, plan, alpha, out_dtype, report, progress) for group in groups]
    for g, job in enumerate(jobs[1:], 1):  # as many rows, so as many rows per strip
        job.plan = dataclasses.replace(planned(groups[g], plan.rows), strip_rows=plan.strip_rows)
        if job.plan.rows != plan.rows:  # a shorter group: never so
            raise ImgstackError(None, 'the last group cannot be stacked in bands of the others')
    need_stats = (settings.normalize != 'none' or settings.weights != 'none'
                  or bool(settings.select) or 'frame_stats' in extras or report.level >= 2)
    for job in jobs:
        # per-frame rejections (a mask per band) only for the table
        job.want_frames = 'frame_stats' in extras or report.level >= 2
        job.need_stats = need_stats
        job.want_metrics = bool(job.want_frames or settings.select
                                or settings.weights in ('snr', 'stars', 'fwhm'))
    return plan, jobs


def _write_outputs(
    jobs: list[_Job], source: _Source, output: str, extras: dict[str, str], settings: Settings,
    stack: contextlib.ExitStack,
) -> list[dict[str, Any]]:
    """Stack every job into temporary files (closed with ``stack``), then
    publish OUTPUT, the map and the CSV, all or none; return the frame
    table."""
    first, plan = jobs[0].frames[0], jobs[0].plan
    out_dtype = jobs[0].out_dtype
    encode, extra = _strip_encoder(settings.codec, out_dtype)
    layout = _Layout.of(source, settings, len(jobs), out_dtype)
    directory = os.path.dirname(os.path.abspath(output))
    for job in jobs:
        job.directory = directory
    jobs[0].prepare(stack)  # the later groups when their turn comes
    temps = [_temporary_file(os.path.dirname(os.path.abspath(t)), stack, target=t)
             for t in [output, *extras.values()]]
    names = list(extras)
    rmap = temps[1 + names.index('rejection_map')] if 'rejection_map' in extras else None
    _write_stack(jobs, layout, temps[0], rmap, encode, extra)
    if rmap is not None and settings.codec is not None:
        index = 1 + names.index('rejection_map')
        temps[index] = _compressed_map(rmap, first, plan.strip_rows, settings.codec, stack)
    unranged = sum(job.unranged for job in jobs)
    if unranged:
        _warn(f'{unranged:,} points had no valid value; they keep the plain mean of '
              'their values (NaN where every value is NaN)')
    table = [row for job in jobs for row in job.table()]
    if 'frame_stats' in extras:
        _write_frame_stats(temps[1 + names.index('frame_stats')], table)
    _publish(temps, [output, *extras.values()], settings.force, settings.cli)
    return table


def _groups(
    frames: list[Frame], settings: Settings, sources: Sequence[_Source],
) -> list[list[Frame]]:
    """The frames of each page of the output: all of them, or every
    ``group`` consecutive ones (a last group of one frame left out, a
    shorter one stacked; either said in a warning).

    Raises
    ------
    ImgstackError
        A group larger than the frames.
    """
    size = settings.group
    if size is None:
        return [frames]
    flag = f'--group {size}' if settings.cli else f'group={size}'
    if size > len(frames):
        names = sources[0].path if len(sources) == 1 else f'{len(sources)} inputs'
        raise ImgstackError(None, f'{flag} is larger than the {len(frames)} frames of {names}: '
                                  f'choose a group of 2 to {len(frames)} frames')
    groups = [frames[i:i + size] for i in range(0, len(frames), size)]
    last = len(groups[-1])
    if last == 1:
        groups.pop()
        _warn(f'{flag}: the last frame ({_frame_name(frames[-1])}) is left out, a group of one')
    elif last < size:
        _warn(f'{flag}: the last group holds {last} frames ({_frame_name(groups[-1][0])} to '
              f'{_frame_name(frames[-1])})')
    return groups


def _frame_name(frame: Frame) -> str:
    """A frame as the messages and the frame table name it."""
    return f'{frame.path}[{frame.label}]' if frame.label else frame.path


# radon D: the output's layout for each kind of input (plain, ImageJ, OME)
# in one place, so that the writer has one object to read.
@dataclasses.dataclass
class _Layout:
    """How the output is written: as the first input (a plain TIFF, an
    ImageJ hyperstack or an OME-TIFF), one page (or one plane per kept
    channel) for each group of frames."""

    kind: str = 'plain'
    axes: str = ''  # the axes of the output's pages, frame axis first: 'TC', 'ZTC'
    shape: tuple[int, ...] = ()
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    # radon D: one branch per kind of input and per piece of metadata kept.
    @classmethod
    def of(cls, source: _Source, settings: Settings, groups: int, dtype: np.dtype) -> _Layout:
        """The layout of an output of ``groups`` pages from ``source``'s frames."""
        step = settings.group or 1
        axes, shape = source.kept, source.kept_shape
        if groups > 1:
            axes, shape = (source.axis or 'I') + axes, (groups, *shape)
        meta: dict[str, Any] = {}
        if source.kind == 'imagej':
            if 'T' in axes and 'Z' in axes and axes.index('T') > axes.index('Z'):
                return cls('plain', axes, shape)  # ImageJ's order is TZC: plain pages
            ij = source.meta
            meta = {k: ij[k] for k in ('unit', 'mode', 'LUTs', 'loop') if k in ij}
            if 'Z' in axes and 'spacing' in ij:
                meta['spacing'] = ij['spacing'] * (step if source.axis == 'Z' else 1)
            if 'T' in axes and 'finterval' in ij:
                meta['finterval'] = ij['finterval'] * (step if source.axis == 'T' else 1)
            scale = _range_scale(source.frames[0].dtype, dtype)
            for key in ('min', 'max'):
                if key in ij:
                    meta[key] = ij[key] * scale
            if 'Ranges' in ij:
                meta['Ranges'] = tuple(v * scale for v in ij['Ranges'])
        elif source.kind == 'ome':
            meta = dict(source.meta)
            if source.axis == 'Z' and 'PhysicalSizeZ' in meta:
                meta['PhysicalSizeZ'] *= step
            if source.axis == 'T' and 'TimeIncrement' in meta:
                meta['TimeIncrement'] *= step
            if 'C' not in axes:
                meta.pop('Channel', None)
            if 'Z' not in axes:
                meta.pop('PhysicalSizeZ', None)
                meta.pop('PhysicalSizeZUnit', None)
        return cls(source.kind, axes, shape, meta)


def _range_scale(dtype: np.dtype, out: np.dtype) -> float:
    """What display ranges of ``dtype`` values are multiplied by in the
    output (integers written as float32 are scaled to [0, 1])."""
    if dtype.kind in 'iu' and out.kind == 'f':
        return 1.0 / float(np.iinfo(dtype).max)
    return 1.0


def _warn(text: str) -> None:
    """Warn the caller of the library: the warning names the caller's line,
    the first outside this module."""
    frame: types.FrameType | None
    level, frame = 1, sys._getframe()
    while frame is not None and frame.f_globals.get('__name__') == __name__:
        level, frame = level + 1, frame.f_back
    warnings.warn(text, ImgstackWarning, stacklevel=level)


def _path_arg(value: Any, name: str) -> str:
    """Return a path argument as str.

    Raises
    ------
    ImgstackError
        Not a str or os.PathLike.
    """
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            return path
    raise ImgstackError(None, f'{name} must be a str or pathlib.Path, not {value!r}')


def _folder_given(path: str) -> ImgstackError:
    """The error of a folder given as an input, with the pattern meant."""
    return ImgstackError(path, f'is a directory; did you mean {os.path.join(path, "*.tif")}?')


def _same_file(a: str, b: str) -> bool:
    """Whether two names reach the same file, by any path."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_inputs(inputs: Any) -> list[str]:
    """Return the input paths: wildcards expanded, each file once.

    Raises
    ------
    ImgstackError
        No input, a pattern that matches nothing, a directory or the same
        file given twice.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    try:
        names = [_path_arg(p, 'each input') for p in inputs]
    except TypeError as exc:
        msg = f'inputs must be a path or a sequence of paths, not {inputs!r}'
        raise ImgstackError(None, msg) from exc
    paths = _expand_inputs(names)
    if len(paths) == 1 and os.path.isdir(paths[0]):
        raise _folder_given(paths[0])
    if not paths:  # one file may hold the frames (its pages): `stack_files` counts them
        raise ImgstackError(None, 'need two or more frames to stack')
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        if os.path.isdir(path):
            raise _folder_given(path)
        try:
            info = os.stat(path)
        except OSError:
            continue  # open_frame names the cause
        key = (info.st_dev, info.st_ino)
        if key in seen:
            raise ImgstackError(path, f'given twice (also as {seen[key]})')
        seen[key] = path
    return paths


# radon D: one refusal per way an OUTPUT can be wrong, each with its message.
def _check_output(
    output: str, inputs: Sequence[str], force: bool, cli: bool = True, tiff: bool = True
) -> None:
    """Refuse an output that exists (without force), is an input, looks
    like a forgotten OUTPUT, is not a regular file or cannot be written.

    Raises
    ------
    ImgstackError
    """
    if not output:
        raise ImgstackError(None, "'': empty file name")
    if output.endswith(('/', os.sep)) or os.path.basename(output) in ('', '.', '..'):
        raise ImgstackError(output, 'names a directory, not a file')
    if tiff and os.path.splitext(output)[1].lower() in NOT_TIFF:
        raise ImgstackError(output, 'imgstack writes TIFF: name OUTPUT .tif or .tiff')
    for path in inputs:
        if _same_file(path, output):
            raise ImgstackError(output, f'is an input ({path}); choose another output')
    if tiff:
        alike = [p for p in inputs if _differs_in_digits(output, p)]
        if alike:
            shown = alike[0] if len(alike) == 1 else f'{alike[0]} ... {alike[-1]}'
            raise ImgstackError(
                None, f'{output} looks like one of the frames ({shown}): did you forget OUTPUT?')
    if os.path.isdir(output):
        raise ImgstackError(output, 'is a directory')
    if os.path.lexists(output):
        try:
            mode = os.stat(output, follow_symlinks=False).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
            raise ImgstackError(output, 'exists and is not a regular file')
        if stat.S_ISLNK(mode) and os.path.exists(output) and not os.path.isfile(output):
            raise ImgstackError(output, 'exists and is not a regular file')
        if not force:
            raise ImgstackError(
                None, f'{output} exists: name another OUTPUT, or add {_flag("force", cli)} '
                      'to replace it')
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ImgstackError(output, f'directory {directory} does not exist')
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ImgstackError(output, f'directory {directory} is not writable')


def _differs_in_digits(output: str, path: str) -> bool:
    """Whether two names are the same but for the numbers in them (same
    folder, same extension): ``f1.tif`` and ``f2.tif``, not ``f.tif``."""
    da, na = os.path.split(os.path.abspath(output))
    db, nb = os.path.split(os.path.abspath(path))
    if da != db or na == nb:
        return False
    (sa, ea), (sb, eb) = os.path.splitext(na), os.path.splitext(nb)
    pa, pb = re.sub(r'[0-9]+', '#', sa), re.sub(r'[0-9]+', '#', sb)
    return ea == eb and '#' in pa and pa == pb


def _poorly_suited(n: int, method: Method) -> str | None:
    """Return advice when a rejection cannot work with n frames, or None.

    The rows of README's "Which rejection?": 3-6 frames percentile or
    min/max, 6-15 winsorized, 15+ sigma or linear fit, 50+ generalized ESD.
    """
    m, r = method, method.reject
    if r == 'none' or m.passes == 0:
        return None
    suggest = ('percentile' if n <= 6 else 'winsorized' if n < 15 else
               'linear' if n < 50 else 'gesd')
    what = {'sigma': 'sigma clipping', 'mad': 'MAD clipping', 'winsorized': 'winsorized clipping',
            'linear': 'linear-fit clipping', 'gesd': 'generalized ESD',
            'minmax': 'min/max clipping', 'percentile': 'percentile clipping'}[r]
    if r == 'sigma' and m.center == 'mean' and _never_rejects(n, m.sigma_low, m.sigma_high, 'mean'):
        return (f'with {n} frames, {what} can never reject a value: '
                f'try --reject {suggest}, --center median or a smaller --sigma')
    if r == 'gesd' and math.floor(m.gesd[1] * n) < 1:
        return f'with {n} frames, {what} can never reject a value: try --reject {suggest}'
    if r == 'minmax' and n <= sum(m.minmax):
        return (f'with {n} frames, --minmax {m.minmax[0]:g}:{m.minmax[1]:g} keeps no value: '
                'try fewer')
    if r in ('sigma', 'mad', 'winsorized', 'linear') and n < 6:
        return (f'with {n} frames, {what} rarely tells an outlier from noise: '
                f'try --reject {suggest}')
    if r == 'gesd' and n < 15:
        return f'with {n} frames, {what} has little power: try --reject {suggest}'
    return None


SAMPLE_VALUES = 1_000_000
"""Values per channel that the frame statistics sample, at least (every
value of a smaller frame)."""

WARNING_VALUES = 20_000
"""Values per channel sampled for the drift warning alone (no
normalization, weights or frame statistics asked)."""

SAMPLE_BYTES = 32
"""Bytes a sampled value takes while its frame's statistics are computed:
the native value, a float64 copy and temporaries."""


class _Job:
    """One run of `stack_files` after its checks: the frames' statistics,
    then the stack written band by band."""

    def __init__(
        self, frames: list[Frame], settings: Settings, plan: Plan, alpha: int | None,
        out_dtype: np.dtype, report: Reporter, progress: Callable[[int, int], Any] | None,
    ) -> None:
        self.frames = frames
        self.settings = settings
        self.plan = plan
        self.alpha = alpha
        self.out_dtype = out_dtype
        self.report = report
        self.callback = progress
        first = frames[0]
        n, channels = len(frames), first.samples
        self.stats: list[FrameStats] = []
        self.borders: list[np.ndarray] = []  # zero borders: left, right, top, bottom
        self.factor: np.ndarray | None = None  # (n, samples)
        self.offset: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.rejected = self.low = self.passes = self.unranged = 0
        self.frame_low = np.zeros((n, channels), np.int64)
        self.frame_high = np.zeros((n, channels), np.int64)
        self.want_frames = False
        self.want_metrics = False  # measure the frames' stars (`measure`)
        self.metrics: list[FrameMetrics] = []
        self.every = list(frames)  # the frames before --select, and why each was dropped
        self.every_stats: list[FrameStats] = []
        self.every_metrics: list[FrameMetrics] = []
        self.dropped: dict[int, str] = {}
        # the result's rows of a light sample, for its noise (float32)
        self.quality_rows = _sample_rows(first, 1 << 62, WARNING_VALUES)
        self.quality = np.full((len(self.quality_rows), first.width, first.samples), np.nan,
                               np.float32)
        self.need_stats = False  # statistics beyond the drift warning's (`prepare`)
        self.directory = '.'  # where inputs decoded once go (`prepare`)
        self.rows_before = 0  # rows of the groups before (progress of --group)
        self.rows_all = first.height * first.planes  # rows of every group

    def prepare(self, stack: contextlib.ExitStack) -> None:
        """Decode once the inputs that need it (closed with ``stack``), and
        estimate the frames' statistics."""
        self.frames = _predecoded(self.frames, self.plan, self.directory, stack, self.report)
        self.statistics(self.need_stats)

    # -- statistics -----------------------------------------------------------

    # radon D: the statistics pass in order (sample, metrics, selection,
    # normalization, weights, warnings), each step a call.
    def statistics(self, needed: bool) -> None:
        """Estimate each frame's location, scale and noise from a sample of
        its rows (spread over its height), derive the normalization and
        weights, and warn when the sky drifts without normalization."""
        s = self.settings
        first = self.frames[0]
        # normalization and weights use the full sample; the drift warning
        # alone a light one, so that it costs little
        room = s.memory - RESERVE_BYTES - _bookkeeping(self.frames)
        rows = _sample_rows(first, room, SAMPLE_VALUES if needed else WARNING_VALUES)
        self.report.say(f'frame statistics from {len(rows)} rows of each frame', level=2)
        # two frames at a time when two samples fit (sample_rows' estimate)
        both = len(rows) * SAMPLE_BYTES * first.width * first.samples * WORKERS <= room
        if both and len(self.frames) > 1:
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
                samples = list(_pool_map(pool, lambda f: self._frame_sample(f, rows),
                                        self.frames))
        else:
            samples = [self._frame_sample(f, rows) for f in self.frames]
        self.stats = [st for st, _ in samples]
        self.borders = [border for _, border in samples]
        self.every, self.every_stats = list(self.frames), self.stats
        if self.want_metrics:
            self.metrics = self.every_metrics = self.measure(room)
        given = self.given_weights()
        if s.select:
            kept = self.select()
            self.frames = [self.frames[i] for i in kept]
            self.stats = [self.stats[i] for i in kept]
            self.borders = [self.borders[i] for i in kept]
            self.metrics = [self.metrics[i] for i in kept]
            given = None if given is None else given[kept]
            n = len(kept)
            self.frame_low = np.zeros((n, first.samples), np.int64)
            self.frame_high = np.zeros((n, first.samples), np.int64)
        if s.weights in ('snr', 'stars', 'fwhm'):
            given = self.metric_weights(s.weights)
        data = self.stats
        if self.alpha is not None:  # alpha is not normalized nor weighted
            data = [dataclasses.replace(st, location=st.location.copy(), scale=st.scale.copy(),
                                        noise=st.noise.copy()) for st in self.stats]
            for st in data:
                st.location[self.alpha] = st.scale[self.alpha] = st.noise[self.alpha] = 1.0
        try:
            factor, offset = _normalization(data, s.normalize)
            if s.weights == 'noise':
                self.weights = _noise_weights(data, factor)
            elif given is not None:
                self.weights = np.repeat(given[:, np.newaxis], first.samples, axis=1)
                if self.alpha is not None:
                    self.weights[:, self.alpha] = 1.0
        except ValueError as exc:
            index = int(str(exc).split()[1])
            raise ImgstackError(self.frames[index].path, str(exc).split(' ', 2)[2]) from exc
        self.factor, self.offset = factor, offset
        if s.normalize == 'none':
            advice = _drift_advice(self.stats, self.alpha, first.dtype)
            if advice:
                _warn(advice)
        low = None if s.valid_range is None else s.valid_range[0]
        if low is None or low <= 0:
            advice = _border_advice(self.borders)
            if advice:
                _warn(advice)

    def given_weights(self) -> np.ndarray | None:
        """Per-frame weights that need no metric: exposure times, or a
        column of a CSV file (None for the others).

        Raises
        ------
        ImgstackError
            The first frame without an exposure time; a bad CSV row.
        """
        weights = self.settings.weights
        if weights == 'exposure':
            times = []
            for frame in self.frames:
                try:
                    t = _exposure_time(frame.path)
                except (OSError, tifffile.TiffFileError) as exc:
                    raise ImgstackError(frame.path, f'cannot read its tags ({exc})') from exc
                if t is None or not (math.isfinite(t) and t > 0):
                    raise ImgstackError(frame.path, 'has no exposure time (EXIF ExposureTime, '
                                                    'tag 33434) to weight it by')
                times.append(t)
            return np.array(times)
        if weights not in FRAME_WEIGHTS:
            return _csv_weights(weights, [_frame_name(f) for f in self.frames])
        return None

    def metric_values(self, metric: str, frames: Sequence[int] | None = None) -> np.ndarray:
        """One metric of every frame (of ``frames``, indices in `every`):
        the noise their channels' median, alpha aside."""
        index = range(len(self.every)) if frames is None else frames
        if metric == 'noise':
            noise = np.array([self.every_stats[i].noise for i in index])
            if self.alpha is not None:
                noise = np.delete(noise, self.alpha, axis=1)
            return np.median(noise, axis=1)
        return np.array([float(getattr(self.every_metrics[i], metric)) for i in index])

    def _unmeasured(self, values: np.ndarray, metric: str, frames: Sequence[int], use: str,
                    ) -> None:
        """Refuse a metric that one of ``frames`` lacks (naming the first)."""
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0 if use == 'weights' else True)))
        if bad.size:
            frame = self.every[frames[bad[0]]]
            why = {'fwhm': 'no star', 'roundness': 'no star', 'snr': 'no star of the reference',
                   'transparency': 'no star of the reference', 'stars': 'no star'}.get(
                       metric, 'no valid value')
            flag = f'--{use} {metric}' if self.settings.cli else f'{use}={metric!r}'
            raise ImgstackError(_frame_name(frame), f'{metric} cannot be measured ({why} in the '
                                                    f'central crop): {flag} cannot use it')

    def select(self) -> list[int]:
        """The indices of the frames that every ``--select`` keeps; the
        others' reasons go to `dropped`.

        Raises
        ------
        ImgstackError
            A frame whose metric cannot be measured; fewer than 2 kept.
        """
        every = range(len(self.every))
        keep = np.ones(len(self.every), bool)
        for metric, kind, value in self.settings.select:
            values = self.metric_values(metric)
            self._unmeasured(values, metric, every, 'select')
            ok = _select_frames(values, metric, kind, value)
            for i in np.flatnonzero(keep & ~ok):
                self.dropped[int(i)] = f'{metric} {values[i]:.4g}'
            keep &= ok
            if keep.sum() < 2:
                spec = f'{metric}:{value:g}{"" if kind == "n" else kind}'
                flag = f'--select {spec}' if self.settings.cli else f'select={spec!r}'
                shown = ', '.join(f'{v:.4g}' for v in values)
                raise ImgstackError(None, f'{flag} leaves {int(keep.sum())} frame(s) of '
                                          f'{len(values)}, need 2 (the {metric} of the frames: '
                                          f'{shown})')
        return [int(i) for i in np.flatnonzero(keep)]

    def metric_weights(self, metric: str) -> np.ndarray:
        """The weights of ``--weights snr`` (SNR squared), ``stars`` (their
        count) or ``fwhm`` (1 / FWHM squared) of the kept frames."""
        kept = [i for i in range(len(self.every)) if i not in self.dropped]
        values = self.metric_values(metric, kept)
        self._unmeasured(values, metric, kept, 'weights')
        if metric == 'snr':
            return values ** 2
        if metric == 'fwhm':
            return 1.0 / values ** 2
        return values.astype(np.float64)

    def crop_side(self, room: int) -> int:
        """The side of the central crop (`CROP` at most) whose metrics
        fit in ``room`` with `WORKERS` crops at once."""
        first = self.frames[0]
        side = min(CROP, first.height, first.width)
        while side > 2 * OUTER + 1 and WORKERS * side * (
                side * CROP_BYTES + first.width * first.samples * first.dtype.itemsize) > room:
            side //= 2
        return side

    def measure(self, room: int) -> list[FrameMetrics]:
        """Each frame's metrics on its central crop (`crop`): the first
        frame's stars are the reference of every frame's transparency and
        snr; two frames at a time."""
        side = self.crop_side(room)
        self.report.say(f'frame metrics from the central {side}x{side} pixels of each frame',
                        level=2)
        first = self.crop(self.frames[0], side)
        reference = frame_metrics(*first)
        measured = [frame_metrics(*first, reference=reference)]
        del first
        if len(self.frames) > 1:
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
                measured += _pool_map(pool, lambda f: frame_metrics(
                    *self.crop(f, side), reference=reference), self.frames[1:])
        return measured

    def crop(self, frame: Frame, side: int) -> tuple[np.ndarray, np.ndarray]:
        """The central ``side`` x ``side`` pixels of a frame as one channel
        (the mean of its colour channels, float64) and their validity
        (every colour channel valid, opaque, and below an integer type's
        maximum: saturated stars are no measure)."""
        first = self.frames[0]
        r0, c0 = (first.height - side) // 2, (first.width - side) // 2
        planes = []
        fd = _open_input(frame)
        try:
            for plane in range(first.planes):
                out = np.empty((side, first.width, first.contig), first.dtype)
                _read_rows(frame, fd, plane, r0, r0 + side, out)
                planes.append(out[:, c0:c0 + side])
                del out
        except OSError as exc:
            raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)
        sample = planes[0] if len(planes) == 1 else np.concatenate(planes, axis=-1)
        a = None if self.alpha is None else sample[np.newaxis, ..., self.alpha:self.alpha + 1]
        valid = self._valid(sample[np.newaxis], a, self.alpha)
        colours = [c for c in range(first.samples) if c != self.alpha]
        ok = np.ones((side, side), bool) if valid is None else valid[0][..., colours].all(-1)
        values = sample[..., colours]
        if first.dtype.kind in 'iu':
            ok &= (values < np.iinfo(first.dtype).max).all(-1)
        luminance = values.astype(np.float64).mean(axis=-1)
        return luminance, ok

    def _frame_sample(self, frame: Frame, rows: np.ndarray) -> tuple[FrameStats, np.ndarray]:
        """Read the sample rows of one frame; return its statistics and its
        zero borders (`_zero_borders`)."""
        first = self.frames[0]
        planes = []
        fd = _open_input(frame)
        try:
            for plane in range(first.planes):
                out = np.empty((len(rows), first.width, first.contig), first.dtype)
                for _j, (r0, r1) in enumerate(_runs(rows)):
                    at = int(np.searchsorted(rows, r0))
                    _read_rows(frame, fd, plane, r0, r1, out[at:at + r1 - r0])
                planes.append(out)
        except OSError as exc:
            raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)
        sample = planes[0] if len(planes) == 1 else np.concatenate(planes, axis=-1)
        a = None if self.alpha is None else sample[np.newaxis, ..., self.alpha:self.alpha + 1]
        valid = self._valid(sample[np.newaxis], a, self.alpha)
        stats = frame_statistics(sample, None if valid is None else valid[0])
        return stats, _zero_borders(sample, rows, first.height)

    def _valid(
        self, values: np.ndarray, a: np.ndarray | None, alpha: int | None,
        in_range: bool = True,
    ) -> np.ndarray | None:
        """Validity of values ``(n, rows, width, samples)``: opaque where
        the alpha values ``a`` say so, and inside the valid range (unless
        ``in_range`` is False: an alpha plane), but for the channel
        ``alpha`` of the last axis.  None while every value is valid."""
        valid = None
        if a is not None:
            valid = np.broadcast_to(a >= _opaque(self.frames[0].dtype), values.shape)
        vr = self.settings.valid_range
        inside = _valid_mask(values, None, vr) if vr is not None and in_range else None
        if inside is not None:
            if alpha is not None:
                inside[..., alpha] = True
            valid = inside if valid is None else valid & inside
        return valid

    def _keep_quality_rows(self, result: np.ndarray, plane: int, r0: int, r1: int) -> None:
        """Keep the result's rows of the quality sample that band r0..r1 of
        plane holds (before rounding to the output type)."""
        first = self.frames[0]
        at = np.flatnonzero((self.quality_rows >= r0) & (self.quality_rows < r1))
        if not at.size:
            return
        rows = result.reshape(r1 - r0, first.width, first.contig)[self.quality_rows[at] - r0]
        if first.planar:
            self.quality[at, :, plane] = rows[..., 0]
        else:
            self.quality[at] = rows

    def noise_ratios(self) -> tuple[float, ...]:
        """The result's noise over the median frame's, per channel (alpha
        and channels without an estimate NaN): both estimated as
        `frame_statistics` does, the frames' in normalized units."""
        if not self.stats:
            return ()
        noise = frame_statistics(self.quality.astype(np.float64)).noise
        frames = np.array([st.noise for st in self.stats])
        if self.factor is not None:
            frames = frames * np.abs(self.factor)
        with np.errstate(invalid='ignore', divide='ignore'):
            ratio = noise / np.median(frames, axis=0)
        if self.alpha is not None:
            ratio[self.alpha] = np.nan
        return tuple(float(r) if np.isfinite(r) else math.nan for r in ratio)

    def table(self) -> list[dict[str, Any]]:
        """Per-frame rows of the frame statistics (``--frame-stats``): every
        frame, those that ``--select`` dropped with weight 0 and the reason."""
        if not self.stats:
            return []
        first = self.frames[0]
        points = first.height * first.width
        rows = []
        kept = [i for i in range(len(self.every)) if i not in self.dropped]
        at = {e: k for k, e in enumerate(kept)}
        for e, (f, st) in enumerate(zip(self.every, self.every_stats)):
            row: dict[str, Any] = {'path': _frame_name(f)}
            i = at.get(e, -1)
            for c in range(first.samples):
                w = 1.0 if self.weights is None else float(self.weights[i, c])
                lo, hi = int(self.frame_low[i, c]), int(self.frame_high[i, c])
                if i < 0:
                    w, lo, hi = 0.0, 0, 0
                row.update({
                    f'location_{c}': float(st.location[c]),
                    f'scale_{c}': float(st.scale[c]),
                    f'noise_{c}': float(st.noise[c]),
                    f'weight_{c}': w,
                })
                if self.want_frames:  # counted only for the table
                    row.update({
                        f'rejected_low_{c}': lo,
                        f'rejected_low_pct_{c}': 100.0 * lo / points,
                        f'rejected_high_{c}': hi,
                        f'rejected_high_pct_{c}': 100.0 * hi / points,
                    })
            if self.every_metrics:
                m = self.every_metrics[e]
                row.update({'stars': m.stars, 'fwhm': m.fwhm, 'roundness': m.roundness,
                            'transparency': m.transparency, 'snr': m.snr})
            if self.settings.select:
                row['dropped'] = self.dropped.get(e, '')
            rows.append(row)
        return rows

    # -- the stack ------------------------------------------------------------

    def _strips(
        self, bands: Iterator[tuple[int, int, int, np.ndarray, np.ndarray | None]],
        encode: Callable[[np.ndarray], bytes], workers: concurrent.futures.Executor,
        rmap: _Temporary | None, pages: list[int] | None,
    ) -> Iterator[bytes]:
        """Reject and combine each band; yield the encoded strips."""
        first, plan, s = self.frames[0], self.plan, self.settings
        scratch = _chunk_scratch(s.memory, s.method)
        map_ = functools.partial(_pool_map, workers)  # the band's chunks, on the threads
        scale = float(np.iinfo(first.dtype).max) if first.dtype.kind in 'iu' else 1.0
        done = 0
        if not self.rows_before:
            self.report.start()
        for plane, r0, r1, values, a in bands:
            n = values.shape[0]
            valid = self._valid(values, a, None if first.planar else self.alpha,
                                in_range=not (first.planar and plane == self.alpha))
            if valid is not None:
                valid = valid.reshape(n, -1)
            channels = first.contig
            tables = [None if t is None else (t[:, plane:plane + 1] if first.planar else t)
                      for t in (self.factor, self.offset, self.weights)]
            core = _clip_points(
                values.reshape(n, -1), valid, s.method, factor=tables[0], offset=tables[1],
                weights=tables[2], channels=channels, frame_counts=self.want_frames,
                scratch=scratch, map_=map_,
            )
            del valid
            self.rejected += int(core.rejected.sum())
            self.low += int(core.low.sum())
            self.unranged += core.unranged
            self.passes = max(self.passes, core.passes)
            if self.want_frames:
                # frame_counts=self.want_frames: clip_points counted them
                assert core.frame_low is not None and core.frame_high is not None
                cols = slice(plane, plane + 1) if first.planar else slice(None)
                self.frame_low[:, cols] += core.frame_low
                self.frame_high[:, cols] += core.frame_high
            result = core.result
            self._keep_quality_rows(result, plane, r0, r1)
            if self.out_dtype != first.dtype and scale != 1.0:  # [0, 1] from integers
                result = result / scale
            out = _to_dtype(result, self.out_dtype).reshape(r1 - r0, first.width, first.contig)
            del result
            if rmap is not None:
                assert pages is not None  # opened with rmap (write)
                counts = [core.rejected, core.low, core.rejected - core.low]
                _write_map_band(rmap, pages, first, plane, r0, r1, counts)
                del counts
            del core
            strips = [out[j:j + plan.strip_rows] for j in range(0, r1 - r0, plan.strip_rows)]
            encoded = list(map_(encode, strips))
            del out, strips
            # before the strips go: the writer takes the last one and stops
            done += r1 - r0
            before = self.rows_before
            self.report.progress(before + done, self.rows_all, n,
                                 (before + done) * n * first.row_bytes)
            if self.callback is not None:
                self.callback(before + done, self.rows_all)
            yield from encoded
            del encoded


def _write_stack(jobs: Sequence[_Job], layout: _Layout, temp: _Temporary, rmap: _Temporary | None,
                encode: Callable[[np.ndarray], bytes], extra: dict[str, Any]) -> None:
    """Stack each job's frames band by band into one page (or one page per
    kept channel) of the temporary output, in one write of the whole
    series, and its counts into the rejection map (three pages per job);
    the jobs after the first are prepared when their turn comes."""
    first, plan = jobs[0].frames[0], jobs[0].plan
    settings, out_dtype = jobs[0].settings, jobs[0].out_dtype
    args = _writer_args(first, plan.strip_rows, extra, out_dtype,
                       settings.describe(len(jobs[0].frames)))
    size = (len(jobs) * first.height * first.planes * first.width * first.contig
            * out_dtype.itemsize)
    rows = first.height * first.planes
    for g, job in enumerate(jobs):
        job.rows_before, job.rows_all = g * rows, len(jobs) * rows
    if len(jobs) > 1:  # one page per group
        args['shape'] = (len(jobs), *args['shape'])
        if first.samples == 1:
            args['planarconfig'] = None
    opened: dict[str, Any] = {}
    if layout.kind in ('imagej', 'ome'):
        opened[layout.kind] = True
        sample = first.stored_shape[2:] if not first.planar and first.samples > 1 else ()
        # how the stack was made: ImageJ's Info, OME's image Description
        info = {'Info' if layout.kind == 'imagej' else 'Description': args['description']}
        args.update(shape=(*layout.shape, first.height, first.width, *sample),
                    metadata={'axes': layout.axes + 'YX' + ('S' if sample else ''),
                              **layout.metadata, **info},
                    description=None, planarconfig=None, extrasamples=None)
        if first.planar:
            args['photometric'] = 'minisblack'
    with contextlib.ExitStack() as stack:
        readers = stack.enter_context(concurrent.futures.ThreadPoolExecutor(WORKERS))
        workers = stack.enter_context(concurrent.futures.ThreadPoolExecutor(WORKERS))
        stack.callback(readers.shutdown, cancel_futures=True)
        stack.callback(workers.shutdown, cancel_futures=True)
        pages = None if rmap is None else _open_rejection_map(rmap, first, len(jobs))

        def strips() -> Iterator[bytes]:
            for g, job in enumerate(jobs):
                with contextlib.ExitStack() as own:
                    if g:
                        job.prepare(own)
                    bands = _stream_bands(job.frames, job.plan, job.alpha, readers)
                    yield from job._strips(bands, encode, workers, rmap,
                                           None if pages is None else pages[3 * g:3 * g + 3])

        with tifffile.TiffWriter(temp.file, bigtiff=_needs_bigtiff(size), **opened) as tw:
            tw.write(strips(), **args)
        if first.resolution is None and layout.kind != 'imagej':
            _drop_tags(temp.fd, (282, 283, 296))


def _opaque(dtype: np.dtype) -> float:
    """The alpha value of a fully opaque pixel."""
    return 1.0 if dtype.kind == 'f' else float(np.iinfo(dtype).max)


def _sample_rows(frame: Frame, room: int, values: int) -> np.ndarray:
    """Rows whose values the frame statistics use: runs spread evenly over
    the height, at least ``values`` values per channel (every row of a
    smaller frame), the sample of one frame within ``room`` bytes."""
    need = -(-values // frame.width)
    # the band buffers are not allocated yet: the sample takes their room
    cap = max(room // (SAMPLE_BYTES * frame.width * frame.samples), 1)
    count = min(frame.height, need, cap)
    if count >= frame.height:
        return np.arange(frame.height)
    # runs as tall as a strip or tile of compressed inputs (decoded once
    # each), or of up to 16 rows of plain ones, at least 8 runs if it can
    run = min(frame.seg_rows, count) if not frame.raw else max(min(16, count // 8), 1)
    runs = max(count // run, 1)
    starts = np.linspace(0, frame.height - run, runs).astype(np.int64)
    if not frame.raw:
        starts = starts // frame.seg_rows * frame.seg_rows
    rows = np.unique((starts[:, np.newaxis] + np.arange(run)).reshape(-1))
    return rows[rows < frame.height]


def _runs(rows: np.ndarray) -> Iterator[tuple[int, int]]:
    """Yield (start, stop) of the runs of consecutive rows."""
    if not rows.size:
        return
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for part in np.split(rows, breaks):
        yield int(part[0]), int(part[-1]) + 1


def _zero_borders(sample: np.ndarray, rows: np.ndarray, height: int) -> np.ndarray:
    """The widths of the runs of zero pixels (every sample 0) along the
    left, right, top and bottom edges of a frame, from its sample rows
    ``(rows, width, samples)``: the median over the rows of the zeros at
    each end of a row; the leading and trailing rows of the sample that
    are zero (the sample holds the first and last rows of the frame)."""
    nonzero = (sample != 0).any(axis=-1)
    width = nonzero.shape[1]
    some = nonzero.any(axis=1)
    left = np.where(some, nonzero.argmax(axis=1), width)
    right = np.where(some, nonzero[:, ::-1].argmax(axis=1), width)
    top = bottom = 0
    if rows.size and rows[0] == 0:
        top = int(some.argmax()) if some.any() else rows.size
    if rows.size and rows[-1] == height - 1:
        bottom = int(some[::-1].argmax()) if some.any() else rows.size
    return np.array([int(np.median(left)) if left.size else 0,
                     int(np.median(right)) if right.size else 0, top, bottom])


def _border_advice(borders: Sequence[np.ndarray]) -> str | None:
    """Return the warning of zero borders that differ between frames (what
    registration leaves where a frame was shifted), or None: averaged with
    the other frames they darken the result's edges."""
    if len(borders) < 2:
        return None
    widths = np.array(borders)
    if not widths.any() or (widths == widths[0]).all():  # none, or every frame's own
        return None
    edges = [f'{widths[:, k].max()} at the {name}' for k, name in
             enumerate(('left', 'right', 'top', 'bottom')) if widths[:, k].max() > 0]
    frames = int((widths > 0).any(axis=1).sum())
    return (f'{frames} of {len(borders)} frames have borders of zeros (up to '
            f'{", ".join(edges)}, in pixels), as registration leaves them; averaged with '
            'the other frames they darken the edges: try --valid-range 1: to leave zeros out')


def _drift_advice(stats: Sequence[FrameStats], alpha: int | None, dtype: np.dtype) -> str | None:
    """Return the drift warning when the frames' background levels spread
    more than their noise (per channel, alpha excepted), or None.  It
    suggests multiplicative normalization when the frames' spreads follow
    their levels (exposure flicker, bleaching: the image scales), additive
    when they do not (sky glow: the image shifts); the unit is ADU only for
    16- and 32-bit integers of one channel (a camera's raw counts)."""
    loc = np.array([s.location for s in stats])
    noise = np.array([s.noise for s in stats])
    if alpha is not None:
        loc, noise = np.delete(loc, alpha, axis=1), np.delete(noise, alpha, axis=1)
    if loc.size == 0 or not np.isfinite(loc).all():
        return None
    span = loc.max(axis=0) - loc.min(axis=0)
    level = np.nanmedian(noise, axis=0)
    with np.errstate(invalid='ignore', divide='ignore'):
        ratio = np.where(level > 0, span / level, np.nan)  # no noise: synthetic
    finite = np.isfinite(ratio)
    c = int(np.nanargmax(np.where(finite, ratio, -1))) if finite.any() else 0
    if not (ratio[c] > 1):
        return None
    unit = 'ADU' if dtype.kind in 'iu' and dtype.itemsize >= 2 and loc.shape[1] == 1 else 'units'
    scale = np.array([s.scale for s in stats])
    if alpha is not None:
        scale = np.delete(scale, alpha, axis=1)
    mode = 'multiplicative' if _scales_with_level(loc, scale) else 'additive'
    return (f'frame backgrounds span {span[c]:.4g} {unit}, {ratio[c]:.0f} times their noise; '
            'changes of the light between frames will be rejected as outliers, or widen '
            f'the spread so that outliers hide (try --normalize {mode})')


LEVEL_SLOPE = 0.75
"""Slope of log spread on log level from which frames count as scaled
(flicker, bleaching) rather than shifted (sky glow): between photon
noise's 0.5 and a scaled image's 1."""


def _scales_with_level(loc: np.ndarray, scale: np.ndarray) -> bool:
    """Whether the frames' spreads grow with their levels as a scaled image's
    do: the slope of log spread on log level, over frames and channels,
    nearer 1 than 0 (photon noise alone gives 0.5)."""
    along = across = 0.0  # the slope's sums, pooled over channels
    for c in range(loc.shape[1]):
        ok = (loc[:, c] > 0) & (scale[:, c] > 0) & np.isfinite(loc[:, c] + scale[:, c])
        if ok.sum() < 3:
            continue
        x, y = np.log(loc[ok, c]), np.log(scale[ok, c])
        x -= x.mean()
        along += float((x * (y - y.mean())).sum())
        across += float((x * x).sum())
    return across > 0 and along / across > LEVEL_SLOPE


def _write_frame_stats(temp: _Temporary, table: list[dict[str, Any]]) -> None:
    """Write the per-frame table as CSV through the temporary's descriptor.

    Names are written as their bytes (a name that is not UTF-8 stays
    itself); a name that a spreadsheet would run as a formula (starting
    with ``= + - @``, a tab or CR) gets a leading ``'``; fields holding a
    line break are quoted (CSV's CRLF lines).

    Raises
    ------
    ImgstackError
        The file cannot be written (naming it).
    """
    import csv

    text = io.StringIO()
    if table:
        writer = csv.DictWriter(text, fieldnames=list(table[0]), lineterminator='\r\n')
        writer.writeheader()
        for row in table:
            writer.writerow({k: _csv_field(v) for k, v in row.items()})
    try:
        temp.file.write(text.getvalue().encode('utf-8', 'surrogateescape'))
        temp.file.flush()
    except OSError as exc:
        raise ImgstackError(temp.target, f'cannot write it ({exc.strerror or exc})') from exc


def _csv_field(value: Any) -> Any:
    """A value as the frame statistics CSV holds it."""
    if isinstance(value, float):
        return f'{value:.6g}'
    if isinstance(value, str) and value[:1] in ('=', '+', '-', '@', '\t', '\r'):
        return "'" + value  # not a formula to a spreadsheet
    return value


@dataclasses.dataclass
class _Temporary:
    """A file being written: unnamed until published where the system
    allows it (Linux's ``O_TMPFILE``, linked into place through ``/proc``),
    else a temporary name created once (``O_EXCL|O_NOFOLLOW``); written only
    through its descriptor."""

    path: str  # its temporary name, '' while it has none
    fd: int
    file: Any  # a binary file object on fd (not closing it)
    target: str = ''  # the file it becomes, for messages
    directory: str = ''  # where it lies


TEMP_PREFIX = '.imgstack-'
"""Temporary names are ``.imgstack-XXXXXXXX.tmp`` beside their target."""

PROC_FD = '/proc/self/fd'
"""Where Linux shows a process's open files: an unnamed file is linked into
place through it (``linkat`` with ``AT_SYMLINK_FOLLOW``)."""


def _temporary_file(
    directory: str, stack: contextlib.ExitStack, *, keep_name: bool = True, target: str = '',
) -> _Temporary:
    """Create a file in directory for writing, gone when stack closes
    (unless published first); Ctrl-C cannot fall between making and
    registering it.

    The file has no name where Linux allows it (``O_TMPFILE``; a file to
    publish also needs `PROC_FD`): nothing is left even after SIGKILL, and
    nobody can swap it.  Elsewhere it has a temporary name, removed at once
    without ``keep_name`` (a file never published).  ``target`` is the
    file it will become, named in messages.

    Raises
    ------
    ImgstackError
        The directory refuses the file.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | BINARY | getattr(os, 'O_NOFOLLOW', 0)
    with _critical():
        fd, path = -1, ''
        if hasattr(os, 'O_TMPFILE') and (not keep_name or _links_unnamed(directory)):
            with contextlib.suppress(OSError):  # not every file system has it
                fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
        if fd < 0:
            fd, path = _named_file(directory, flags)
            stack.callback(os.close, fd)
            identity = os.fstat(fd)
            if keep_name:  # removed by the folder's descriptor: also if the folder moved
                folder = _open_folder(directory)
                if folder is not None:
                    stack.callback(os.close, folder)
                stack.callback(_remove_own, path, identity, folder)
            else:
                _remove_own(path, identity)
                path = ''
        else:
            stack.callback(os.close, fd)
        raw = io.FileIO(fd, 'r+', closefd=False)
        raw.name = path or target or directory  # tifffile asks a file object for its name
        fh = io.BufferedRandom(raw)
        stack.callback(fh.close)
    return _Temporary(path, fd, fh, target or path or directory, directory)


def _links_unnamed(directory: str) -> bool:
    """Whether an unnamed file of directory can be linked into it through
    `PROC_FD` (some sandboxes and file systems refuse): tried on a probe,
    named for an instant and removed."""
    if not os.path.isdir(PROC_FD):
        return False
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:
        return False
    try:
        path = os.path.join(directory, f'{TEMP_PREFIX}{secrets.token_hex(4)}.probe')
        os.link(f'{PROC_FD}/{fd}', path, follow_symlinks=True)
    except OSError:
        return False
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return True


def _named_file(directory: str, flags: int) -> tuple[int, str]:
    """Create a file of a new temporary name in directory; return its
    descriptor and name.

    Raises
    ------
    ImgstackError
        The directory refuses the file.
    """
    for _ in range(100):
        path = os.path.join(directory, f'{TEMP_PREFIX}{secrets.token_hex(4)}.tmp')
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
        except OSError as exc:
            raise ImgstackError(
                directory, f'cannot create a file here ({exc.strerror or exc})'
            ) from exc
    raise ImgstackError(directory, 'cannot create a temporary file here')


def _remove_own(path: str, identity: os.stat_result, folder: int | None = None) -> None:
    """Remove path if it is still the file we created (by its name in the
    open ``folder`` when given, wherever that folder has moved since)."""
    where = {} if folder is None else {'dir_fd': folder}
    name = path if folder is None else os.path.basename(path)
    with contextlib.suppress(OSError):
        now = os.stat(name, follow_symlinks=False, **where)
        if (now.st_dev, now.st_ino) == (identity.st_dev, identity.st_ino):
            os.unlink(name, **where)


def _open_folder(directory: str) -> int | None:
    """A descriptor of directory, or None where the system has none."""
    if os.unlink not in os.supports_dir_fd or not hasattr(os, 'O_DIRECTORY'):
        return None
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None


def _publish(
    temps: Sequence[_Temporary], targets: Sequence[str], force: bool, cli: bool = True,
) -> None:
    """Move finished temporary files into place, all or none.

    Their data are flushed to disk first and they get mode
    ``0666 & ~umask``, or the permissions of the file they replace (as
    ``cp`` keeps them).  Without force no existing file is replaced, even
    one that appeared while the run lasted: each is linked into place
    (which fails if the name exists) and the links made so far are undone
    on failure.  With force every target is checked again first, then
    each temporary is renamed over it.

    Raises
    ------
    ImgstackError
        A target exists (without force) or is no longer replaceable.
    """
    _checkpoint()  # a Ctrl-C held back while the last workers finished
    mode = 0o666 & ~_umask()
    for temp, target in zip(temps, targets):
        temp.file.flush()
        if hasattr(os, 'fchmod'):
            os.fchmod(temp.fd, _kept_mode(target, mode) if force else mode)
        os.fsync(temp.fd)
    with _critical():
        _move_into_place(temps, targets, force, cli)
        for signum in SIGNALS:
            handler = signal.getsignal(signum)
            if isinstance(handler, _Interrupts):
                handler.done = True  # the outputs are in place: the run is done


def _kept_mode(target: str, mode: int) -> int:
    """The permission bits of the regular file target replaces, else mode."""
    try:
        info = os.stat(target, follow_symlinks=False)
    except OSError:
        return mode
    return stat.S_IMODE(info.st_mode) & 0o777 if stat.S_ISREG(info.st_mode) else mode


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move_into_place(temps: Sequence[_Temporary], targets: Sequence[str], force: bool,
                     cli: bool) -> None:
    exists = f'exists: name another OUTPUT, or add {_flag("force", cli)} to replace it'
    if force:
        _replace_all(temps, targets)
        return
    done: list[str] = []
    try:
        for temp, target in zip(temps, targets):
            if os.path.lexists(target):
                raise ImgstackError(None, f'{target} {exists}')
            try:
                _link(temp, target)
            except FileExistsError as exc:
                raise ImgstackError(None, f'{target} {exists}') from exc
            done.append(target)
        for temp in temps:
            if temp.path:
                _remove_own(temp.path, os.fstat(temp.fd))
    except BaseException:
        for target in done:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise


def _replace_all(temps: Sequence[_Temporary], targets: Sequence[str]) -> None:
    """Rename the temporaries over their targets, all or none: each file
    replaced is first kept under a hard link (a temporary name), and put
    back if a later target cannot be replaced.

    Raises
    ------
    ImgstackError
        A target is not a regular file.
    """
    for target in targets:
        if os.path.lexists(target) and not os.path.isfile(target):
            raise ImgstackError(target, 'exists and is not a regular file')
    done: list[tuple[str, str | None]] = []
    named: list[_Temporary] = []
    try:
        for temp, target in zip(temps, targets):
            if not temp.path:  # an unnamed file takes a name only now
                _name(temp)
                named.append(temp)
            backup = None
            if os.path.lexists(target):
                backup = os.path.join(temp.directory, f'{TEMP_PREFIX}{secrets.token_hex(4)}.old')
                try:
                    os.link(target, backup, follow_symlinks=False)
                except OSError:
                    backup = None  # no hard links: replaced without a way back
            try:
                os.replace(temp.path, target)
            except OSError as exc:
                if backup is not None:
                    os.unlink(backup)
                raise ImgstackError(target, f'cannot replace it ({exc.strerror or exc})') from exc
            done.append((target, backup))
    except BaseException:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is None:
                    os.unlink(target)
                else:
                    os.replace(backup, target)
        for temp in named:  # the names not yet renamed into place
            _remove_own(temp.path, os.fstat(temp.fd))
        raise
    for _, backup in done:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)


def _link(temp: _Temporary, target: str) -> None:
    """Hard-link the open file at target: through /proc on Linux (the file
    itself, named or not, whatever its name now points to), else by name,
    else rename when the file system has no hard links.

    Raises
    ------
    FileExistsError
        The target exists.
    ImgstackError
        The target cannot be made (its folder is gone or refuses it).
    """
    proc = f'{PROC_FD}/{temp.fd}'
    try:
        if os.path.exists(proc):
            os.link(proc, target, follow_symlinks=True)
        else:
            os.link(temp.path, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:  # no hard links here: the check before must do
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, 'exists', target) from None
        if not temp.path or not os.path.isdir(os.path.dirname(os.path.abspath(target))):
            raise ImgstackError(target, f'cannot create it ({exc.strerror or exc})') from exc
        try:
            os.replace(temp.path, target)
        except OSError as again:
            raise ImgstackError(target, f'cannot create it ({again.strerror or again})') from again


def _name(temp: _Temporary) -> None:
    """Give an unnamed file a temporary name beside its target, to be
    renamed over it: the one moment a killed run can leave a name.

    Raises
    ------
    ImgstackError
        The name cannot be made (the folder is gone or refuses it).
    """
    for _ in range(100):
        path = os.path.join(temp.directory, f'{TEMP_PREFIX}{secrets.token_hex(4)}.tmp')
        try:
            os.link(f'{PROC_FD}/{temp.fd}', path, follow_symlinks=True)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ImgstackError(temp.target, f'cannot create it ({exc.strerror or exc})') from exc
        temp.path = path
        return
    raise ImgstackError(temp.target, 'cannot create a temporary name beside it')


def _drop_tags(fd: int, codes: Sequence[int]) -> None:
    """Remove tags from every IFD of a TIFF file in place (tifffile
    always writes a resolution; an input without one gets none)."""
    head = _pread(fd, 16, 0)
    order = '<' if head[:2] == b'II' else '>'
    big = int(np.frombuffer(head[2:4], order + 'u2')[0]) == 43
    count_t, entry, off_t = (('u8', 20, 'u8') if big else ('u2', 12, 'u4'))
    ifd = int(np.frombuffer(head[8:16] if big else head[4:8], order + off_t)[0])
    csize = 8 if big else 2
    while ifd:
        count = int(np.frombuffer(_pread(fd, csize, ifd), order + count_t)[0])
        body = _pread(fd, count * entry + (8 if big else 4), ifd + csize)
        entries = [body[i * entry:(i + 1) * entry] for i in range(count)]
        tail = body[count * entry:]
        keep = [e for e in entries if int(np.frombuffer(e[:2], order + 'u2')[0]) not in codes]
        if len(keep) != count:
            data = (np.array([len(keep)], order + count_t).tobytes() + b''.join(keep) + tail
                    + b'\0' * ((count - len(keep)) * entry))
            _pwrite_all(fd, np.frombuffer(data, np.uint8), ifd)
        ifd = int(np.frombuffer(tail, order + off_t)[0])


def _predecoded(
    frames: list[Frame], plan: Plan, directory: str,
    stack: contextlib.ExitStack, report: Reporter,
) -> list[Frame]:
    """Decode the inputs whose segments are taller than a band into
    unlinked temporary raw files (on `Plan.predecode_workers` threads),
    closed when stack closes."""
    todo = [i for i, flag in enumerate(plan.predecode) if flag]
    if not todo:
        return frames
    report.say(f'decoding {len(todo)} inputs once to temporary files', level=2)
    for i in todo:
        frame = frames[i]
        if plan.streamed[i] and STREAM_CODECS[frame.compression] == 'lzw':
            whole = RESERVE_BYTES + frame.segment_bytes + frame.largest
            _warn(
                f'{frame.path}: an LZW strip does not fit the memory budget whole; '
                f'decoding it slowly in pieces (-m {-(-whole // MIB)}M decodes it fast)'
            )
    raws = [_temporary_file(directory, stack, keep_name=False) for _ in todo]
    result = list(frames)
    report.start()
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(plan.predecode_workers) as pool:
        try:
            decoded = _pool_map(pool, _predecode, [frames[i] for i in todo], [r.fd for r in raws],
                               [plan.streamed[i] for i in todo], [cancel] * len(todo),
                               [directory] * len(todo))
            for done, (i, raw) in enumerate(zip(todo, decoded), 1):
                result[i] = raw
                nbytes = done * raw.height * raw.planes * raw.row_bytes
                report.progress(done, len(todo), len(frames), nbytes, 'decoded once')
        except BaseException:
            cancel.set()
            pool.shutdown(cancel_futures=True)
            raise
    return result


def _stream_bands(
    frames: Sequence[Frame], plan: Plan, alpha: int | None,
    pool: concurrent.futures.Executor,
) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray | None]]:
    """Yield ``(plane, r0, r1, values, alpha_values)`` band by band.

    ``values`` has shape ``(n, r1 - r0, width, contig)``.  The next band is
    read (in ``pool``) while the caller works on the current one; the two
    buffers are allocated once and reused, so a yielded band is valid only
    until the next one is requested.
    """
    first, n = frames[0], len(frames)
    per_band = plan.rows * first.width * first.contig
    buffers = [np.empty(n * per_band, first.dtype) for _ in range(2)]
    planar_alpha = alpha is not None and first.planar
    alphas = [np.empty(n * plan.rows * first.width, first.dtype) if planar_alpha else None
              for _ in range(2)]
    bands = [(p, r, min(r + plan.rows, first.height))
             for p in range(first.planes) for r in range(0, first.height, plan.rows)]

    def shaped(buffer: np.ndarray, r0: int, r1: int, contig: int) -> np.ndarray:
        return buffer[:n * (r1 - r0) * first.width * contig].reshape(
            n, r1 - r0, first.width, contig)

    def read(indices: list[int], plane: int, r0: int, r1: int, out: np.ndarray,
             aout: np.ndarray | None) -> None:
        frame = frames[indices[0]]
        fd = _open_input(frame)
        try:
            for i in indices:
                frame = frames[i]
                _read_rows(frame, fd, plane, r0, r1, out[i])
                if aout is not None and plane != alpha:
                    assert alpha is not None  # aout only with a planar alpha
                    _read_rows(frame, fd, alpha, r0, r1, aout[i])
        except OSError as exc:
            raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)

    tasks = _read_tasks(frames)

    def submit(k: int) -> list[concurrent.futures.Future[None]]:
        plane, r0, r1 = bands[k]
        out = shaped(buffers[k % 2], r0, r1, first.contig)
        abuffer = alphas[k % 2]
        aout = None if abuffer is None else shaped(abuffer, r0, r1, 1)
        return [pool.submit(read, task, plane, r0, r1, out, aout) for task in tasks]

    pending = submit(0)
    for k, (plane, r0, r1) in enumerate(bands):
        for future in pending:
            _wait_for(future)
        pending = submit(k + 1) if k + 1 < len(bands) else []
        values = shaped(buffers[k % 2], r0, r1, first.contig)
        if planar_alpha:
            abuffer = alphas[k % 2]
            assert abuffer is not None  # made with planar_alpha
            a = values if plane == alpha else shaped(abuffer, r0, r1, 1)
        elif alpha is not None:
            a = values[..., alpha:alpha + 1]
        else:
            a = None
        yield plane, r0, r1, values, a
    for future in pending:
        future.cancel()


def _read_tasks(frames: Sequence[Frame]) -> list[list[int]]:
    """The frames that one reading task reads with one open file: the
    pages of one file (consecutive frames), split among the `WORKERS`
    threads; a frame of its own where each file holds one."""
    runs: list[list[int]] = []
    for i, frame in enumerate(frames):
        if runs and _same_input(frames[runs[-1][0]], frame):
            runs[-1].append(i)
        else:
            runs.append([i])
    tasks: list[list[int]] = []
    for run in runs:
        step = -(-len(run) // WORKERS)
        tasks.extend(run[j:j + step] for j in range(0, len(run), step))
    return tasks


def _same_input(a: Frame, b: Frame) -> bool:
    """Whether two frames are read from the same open file."""
    return a.path == b.path and a.fd == b.fd and a.fd is None and a.identity == b.identity


MAP_PAGES = ('rejected', 'rejected low', 'rejected high')
"""Pages of the rejection map: per pixel, the values rejected, and of those
the ones below and above the kept values."""


def _open_rejection_map(temp: _Temporary, first: Frame, groups: int = 1) -> list[int]:
    """Write the header of an empty uint16 rejection map of three pages per
    group; return the offsets of the pages' (contiguous) data."""
    size = 2 * first.height * first.width
    offsets = []
    with tifffile.TiffWriter(temp.file, bigtiff=_needs_bigtiff(3 * groups * size)) as tw:
        for _ in range(groups):
            for name in MAP_PAGES:
                written = tw.write(None, returnoffset=True, **_map_args(first, name))
                assert written is not None  # returnoffset: (offset, bytes), None without it
                offset, _ = written
                offsets.append(offset)
    return offsets


def _write_map_band(
    temp: _Temporary, pages: list[int], first: Frame, plane: int, r0: int, r1: int,
    counts: Sequence[np.ndarray],
) -> None:
    """Add one band's counts, summed over each pixel's samples, to the map.

    Raises
    ------
    ImgstackError
        The map cannot be written (naming it).
    """
    row_bytes = first.width * 2
    shape = (r1 - r0, first.width)
    try:
        for offset, c in zip(pages, counts):
            per_pixel = c.reshape(r1 - r0, first.width, first.contig).sum(axis=-1)
            at = offset + r0 * row_bytes
            if first.planar and plane > 0:  # add to the planes before
                before = np.empty(shape, np.uint16)
                _pread_into(temp.fd, before, at)
                per_pixel += before
            _pwrite_all(temp.fd, np.minimum(per_pixel, 65535).astype(np.uint16), at)
    except OSError as exc:
        cause = f'cannot write the rejection map ({exc.strerror or exc})'
        raise ImgstackError(temp.target, cause) from exc


def _compressed_map(
    temp: _Temporary, first: Frame, strip_rows: int, codec: tuple[str, int | None],
    stack: contextlib.ExitStack,
) -> _Temporary:
    """Copy the uncompressed rejection map into a compressed temporary file
    beside it, strip by strip; return the copy.

    The map is written uncompressed while stacking (each band lands at its
    place with ``pwrite``) and compressed afterwards: it is 2 bytes per
    pixel and page, and mostly zeros.
    """
    encode, extra = _strip_encoder(codec, np.dtype(np.uint16))
    temp.file.flush()
    temp.file.seek(0)  # tifffile reads an open file from where it stands
    with tifffile.TiffFile(temp.file, name=temp.target) as tif:
        offsets = [int(p.dataoffsets[0]) for p in tif.pages]
    target = _temporary_file(temp.directory, stack, target=temp.target)
    row_bytes = first.width * 2

    def strips(offset: int) -> Iterator[bytes]:
        for r0 in range(0, first.height, strip_rows):
            rows = min(strip_rows, first.height - r0)
            strip = np.empty((rows, first.width, 1), np.uint16)  # predictor on axis -2
            _pread_into(temp.fd, strip, offset + r0 * row_bytes)
            yield encode(strip)

    bigtiff = _needs_bigtiff(len(offsets) * 2 * first.height * first.width)
    with tifffile.TiffWriter(target.file, bigtiff=bigtiff) as tw:
        for offset, name in zip(offsets, MAP_PAGES * (len(offsets) // len(MAP_PAGES))):
            tw.write(strips(offset), rowsperstrip=strip_rows, maxworkers=1,
                     **_map_args(first, name), **extra)
    return target


def _map_args(first: Frame, name: str) -> dict[str, Any]:
    """Return the arguments of ``TiffWriter.write`` for one page of the
    rejection map: one uint16 count per pixel, grayscale."""
    return {
        'shape': (first.height, first.width),
        'dtype': np.uint16,
        'photometric': 'minisblack',
        'metadata': None,
        'description': f'imgstack {__version__}: values {name} per pixel',
        'software': f'imgstack {__version__}',
    }


# -- sample frames and the demo ----------------------------------------------


def make_frames(
    count: int,
    height: int = 240,
    width: int = 320,
    *,
    channels: int = 1,
    dtype: Any = np.uint16,
    trails: Sequence[int] = (3,),
    seed: int = 1,
    drift: float = 0.0,
    electrons: float = 4000.0,
    read_noise: float = 0.002,
) -> Iterator[np.ndarray]:
    """Yield synthetic aligned frames of one star field, one by one.

    Each frame has the same stars and sky gradient, its own Poisson and
    read noise, hot pixels and cosmic-ray hits at random places, and frames
    whose index is in ``trails`` a bright satellite trail across the image.

    Parameters
    ----------
    count : int
        Number of frames.
    height, width, channels : int
        Shape of a frame; channels 1 gives 2-D frames.
    dtype : numpy dtype
        uint8, uint16 or a float type (floats scaled to 0..1).
    trails : sequence of int
        Indices of the frames that get a trail.
    seed : int
        Seed of the random generator: the same seed gives the same frames.
    drift : float
        How much the sky changes over the night, as a real night's does:
        the sky level follows a trend of +-drift (plus jitter), its
        gradient turns and strengthens, and thin cloud dims whole frames
        by up to 1.5 * drift.  0 gives frames of one steady sky.
    electrons : float
        Electrons at full scale: sets the Poisson noise (more electrons,
        less noise relative to the signal).
    read_noise : float
        Read noise, as a fraction of full scale.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    top = 1.0 if dtype.kind == 'f' else float(np.iinfo(dtype).max)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = 0.02 * top + 0.03 * top * (y / height + 0.5 * x / width)
    stars = np.zeros((height, width), np.float32)
    for _ in range(max(height * width // 400, 1)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        flux = top * 0.5 * rng.pareto(2.0) / 4
        r0, r1 = max(int(cy) - 4, 0), min(int(cy) + 5, height)
        c0, c1 = max(int(cx) - 4, 0), min(int(cx) + 5, width)
        yy, xx = y[r0:r1, c0:c1] - cy, x[r0:r1, c0:c1] - cx
        stars[r0:r1, c0:c1] += flux * np.exp(-(yy * yy + xx * xx) / 2.0)
    scene = sky + stars
    gain = electrons / top  # electrons per unit: sets the Poisson noise
    colour = np.linspace(1.0, 0.8, channels, dtype=np.float32)
    trend = np.linspace(-1.0, 1.0, count) + rng.normal(0, 0.2, count)
    for index in range(count):
        image = scene[..., None] * colour
        if drift:
            angle = math.pi * index / max(count - 1, 1)
            tilt = (math.cos(angle) * y / height + math.sin(angle) * x / width) - 0.5
            level = sky * (1 + drift * trend[index]) + 0.02 * top * drift * index / count * tilt
            clouds = 1 - 1.5 * drift * rng.uniform(0, 1)
            image = ((level + stars)[..., None] * colour) * clouds
        image = rng.poisson(np.clip(image, 0, None) * gain).astype(np.float32) / gain
        image += rng.normal(0, read_noise * top, image.shape).astype(np.float32)
        spots = max(height * width // 5000, 1)
        for kind in range(2):  # hot pixels, then cosmic-ray hits
            ys = rng.integers(0, height, spots)
            xs = rng.integers(0, width, spots)
            image[ys, xs] = top * (0.9 if kind == 0 else rng.uniform(0.3, 1.0, (spots, 1)))
        if index in trails:
            slope = rng.uniform(-0.5, 0.5)
            x0 = rng.uniform(0.2, 0.8) * width
            rows = np.arange(height)
            cols = (x0 + slope * (rows - height / 2)).astype(int)
            inside = (cols >= 1) & (cols < width - 1)
            for dc in (-1, 0, 1):
                image[rows[inside], cols[inside] + dc] += 0.4 * top
        image = np.clip(image, 0, top)
        if dtype.kind != 'f':
            image = np.rint(image)
        image = image.astype(dtype)
        yield image[..., 0] if channels == 1 else image


def _run_demo(directory: str, reporter: Reporter, force: bool = False) -> int:
    """Write sample frames of a drifting night into directory, stack them
    with and without normalization, and explain the result.

    Raises
    ------
    ImgstackError
        The directory holds files (without force) or is not a directory.
    """
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise ImgstackError(directory, 'is not a directory')
    if os.path.isdir(directory) and os.listdir(directory) and not force:
        raise ImgstackError(directory, 'is not empty (use --force to write the demo there)')
    os.makedirs(directory, exist_ok=True)
    count, trail = 12, 3
    paths = []
    frames = []
    night = make_frames(count, trails=(trail,), drift=DEMO_DRIFT, electrons=80_000,
                        read_noise=0.0003)  # a camera's noise on a bright sky
    for i, image in enumerate(night):
        path = os.path.join(directory, f'frame{i:02d}.tif')
        tifffile.imwrite(path, image, metadata=None)
        paths.append(path)
        frames.append(image)
    stack = np.stack(frames).astype(np.float64)
    output = os.path.join(directory, 'stacked.tif')
    raw = os.path.join(directory, 'not-normalized.tif')
    rmap = os.path.join(directory, 'rejected.tif')
    before = stack_files(paths, raw, force=True, reporter=Reporter(0))
    # the sky brightens and thin cloud dims whole frames: the frames scale
    stats = stack_files(paths, output, force=True, rejection_map=rmap,
                        normalize='multiplicative', reporter=reporter)
    reporter.summary(stats)
    result = tifffile.imread(output).astype(np.float64)
    unnormalized = tifffile.imread(raw).astype(np.float64)
    plain = stack.mean(axis=0)
    # the trail: pixels much brighter in its frame than the same pixels in
    # the other frames (their median is the sky there, stars included)
    sky = np.median(np.delete(stack, trail, axis=0), axis=0)
    on = stack[trail] - sky > 0.2 * 65535
    levels = [float(np.median(f)) for f in frames]
    in_frame, *after = (
        float((image - sky)[on].mean()) for image in (stack[trail], plain, unnormalized, result))
    rows = [
        (f'in frame {trail}:', in_frame, ''),
        ('plain average:', after[0], ''),
        (f'sigma-clipped ({os.path.basename(raw)}):', after[1],
         f'   ({before.percent:.2f}% of values rejected)'),
        ('--normalize multiplicative (stacked.tif):', after[2],
         f'   ({stats.percent:.2f}% of values rejected)'),
    ]
    reporter.say(
        f'wrote {count} frames into {directory}; frame {trail} has a satellite trail, and the\n'
        f'sky drifts from frame to frame (median level {min(levels):.0f} to {max(levels):.0f}).\n'
        'mean brightness along the trail above the sky there:\n'
        + ''.join(f'  {label:<44}{value:10.1f}{note}\n' for label, value, note in rows)
        + 'without normalization the changes of the sky widen the spread of every\n'
        'point, and outliers hide in it; normalized, each frame is scaled to the\n'
        'mean level first, so that only outliers are rejected.\n'
        f'the count of rejected values per pixel is in {rmap}'
    )
    counts = tifffile.imread(rmap, key=0).astype(np.float64)
    picture = _write_comparison(
        os.path.join(directory, 'compare.png'), [stack[trail], plain, result, counts]
    )
    reporter.say(f'side by side (frame, plain average, stacked, rejections): {picture}')
    return 0


DEMO_DRIFT = 0.1
"""Sky drift of the demo's frames (see `make_frames`)."""


def _write_comparison(path: str, images: Sequence[np.ndarray]) -> str:
    """Write grayscale images side by side as a PNG, each stretched so that
    faint sky shows (percentiles 1 to 99.5, then a square-root curve), with
    imagecodecs' PNG encoder."""
    tiles = []
    for image in images:
        lo, hi = np.percentile(image, [1, 99.5])
        scaled = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        tiles.append(np.sqrt(scaled))
        tiles.append(np.ones((image.shape[0], 4)))
    picture = (np.hstack(tiles[:-1]) * 255).astype(np.uint8)
    with open(path, 'wb') as fh:
        fh.write(imagecodecs.png_encode(picture))
    return path


# -- the command line --------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f'must be a finite number > 0, not {text!r}'
        raise argparse.ArgumentTypeError(msg)
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            msg = f'must be an integer >= {minimum}, not {text!r}'
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def _argtype(func: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return func(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parse.__name__ = func.__name__
    return parse


def _pair_of(kind: Callable[[str], Any], name: str) -> Callable[[str], tuple[Any, Any]]:
    def parse(text: str) -> tuple[Any, Any]:
        low, sep, high = text.partition(':')
        try:
            if not sep:
                raise ValueError
            return kind(low), kind(high)
        except ValueError:
            msg = f'must be LOW:HIGH ({name}), not {text!r}'
            raise argparse.ArgumentTypeError(msg) from None

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, with a suggestion for a misspelled option."""

    def error(self, message: str) -> Any:
        if 'unrecognized arguments' in message:
            known = [o for action in self._actions for o in action.option_strings
                     if o.startswith('--')]
            for word in message.split(':', 1)[1].split():
                name = word.split('=')[0]
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                if name.startswith('-') and close:
                    message += f' (did you mean {close[0]}?)'
                    break
        super().error(message)


def _program_name() -> str:
    """The program's name as it was invoked: imgstack or imgstack.py."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    return name if name in ('imgstack', 'imgstack.py') else 'imgstack'


def _build_parser() -> argparse.ArgumentParser:
    """Return the parser of the command line."""
    prog = _program_name()
    parser = _Parser(
        prog=prog,
        description='Stack aligned TIFF frames into their sigma-clipped (or otherwise '
                    'rejected and combined) average.',
        epilog=(
            'examples:\n'
            f'  {prog} -s 2.5 -i 3 out.tif in*.tif\n'
            f'  {prog} --normalize additive --weights noise out.tif night/*.tif\n'
            f'  {prog} --reject winsorized -s 3 out.tif lights/*.tif\n'
            f'  {prog} --reject none --combine median bias.tif bias/*.tif\n'
            f'  {prog} --demo demo'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --reject must never be taken for --rejection-map
    )
    parser.add_argument('output', metavar='OUTPUT', nargs='?', help='TIFF file to write')
    parser.add_argument('inputs', metavar='INPUT', nargs='*',
                        help='two or more aligned TIFF files of one scene')
    clip = parser.add_argument_group('rejection and combination')
    clip.add_argument('--reject', choices=REJECTIONS, default='sigma',
                      help='how values are rejected (default %(default)s)')
    clip.add_argument('--combine', choices=COMBINATIONS, default='mean',
                      help='how the kept values are combined (default %(default)s)')
    clip.add_argument('-s', '--sigma', type=_positive_float, metavar='S',
                      help='factor of sigma, mad, winsorized, linear (default: each '
                           "method's own, README's table; 2.5 for sigma)")
    clip.add_argument('--sigma-low', type=_positive_float, metavar='L',
                      help='factor below the center (default S)')
    clip.add_argument('--sigma-high', type=_positive_float, metavar='H',
                      help='factor above the center (default S)')
    clip.add_argument('-i', '--iterations', type=_count(0), metavar='N',
                      help='passes, stopping early after one that rejects nothing; 0 is a '
                           'plain average (default 5 for sigma, 1 for mad, winsorized, linear)')
    clip.add_argument('--center', choices=('mean', 'median'),
                      help='center of sigma clipping (default mean)')
    clip.add_argument('--percentile', type=_pair_of(float, 'fractions of the median'),
                      metavar='LOW:HIGH', help='percentile clipping (default 0.2:0.1)')
    clip.add_argument('--minmax', type=_pair_of(int, 'counts'), metavar='LOW:HIGH',
                      help='values dropped at each end (default 1:1)')
    clip.add_argument('--gesd', type=_pair_of(float, 'ALPHA:FRACTION'), metavar='ALPHA:FRACTION',
                      help='generalized ESD test (default 0.03:0.3)')
    night = parser.add_argument_group('a night of frames')
    night.add_argument('--normalize', choices=NORMALIZATIONS, default='none',
                       help='normalize each frame before rejection (default %(default)s)')
    night.add_argument('--weights', type=_argtype(_weights_arg), default='none',
                       metavar='{none,noise,snr,stars,fwhm,exposure,FILE.csv:COLUMN}',
                       help='weight frames by inverse noise variance, SNR squared, stars, '
                            '1/FWHM squared, exposure time or a column (default %(default)s)')
    night.add_argument('--select', action='append', type=_argtype(_select_arg),
                       metavar='METRIC:KEEP',
                       help='keep the best frames by noise, fwhm, transparency, stars, snr or '
                            'roundness: a share (80%%), a count (20) or within N robust sigmas '
                            'of the median (2.5s); repeatable')
    night.add_argument('--valid-range', type=_argtype(_parse_range), metavar='LOW:HIGH',
                       help='values outside are not valid, e.g. 1: or :65000')
    night.add_argument('--no-alpha', action='store_true',
                       help='treat a 4th channel as data, not transparency')
    series = parser.add_argument_group('a microscope series')
    series.add_argument('--axis', type=_argtype(_axis_of), metavar='{T,Z}',
                        help='the axis of a hyperstack or OME-TIFF that frames run along '
                             '(default: the only one longer than 1)')
    series.add_argument('--group', type=_count(2), metavar='N',
                        help='stack every N consecutive frames into one page of OUTPUT')
    mem = parser.add_argument_group('memory')
    mem.add_argument('-m', '--memory', type=_argtype(parse_size), default=DEFAULT_MEMORY,
                     metavar='SIZE',
                     help='memory budget: 512M, 2G, 1.5GiB or bytes (default 1G)')
    mem.add_argument('-r', '--rows', type=_count(1), default=100, metavar='N',
                     help='rows stacked at once, lowered to fit (default %(default)s)')
    out = parser.add_argument_group('output')
    out.add_argument('-c', '--compress', type=_argtype(_parse_codec), metavar='CODEC[:LEVEL]',
                     help='zlib, lzw, zstd, lzma or packbits, e.g. zstd:9 (default none)')
    out.add_argument('--dtype', choices=('input', 'float32'), default='input',
                     help='output type; float32 from integers is scaled to [0, 1] '
                          '(default %(default)s)')
    out.add_argument('-f', '--force', action='store_true', help='replace OUTPUT if it exists')
    out.add_argument('--rejection-map', metavar='FILE',
                     help='also write a uint16 TIFF counting rejected values per pixel '
                          '(pages: all, low, high)')
    out.add_argument('--frame-stats', metavar='FILE',
                     help='also write a CSV of per-frame statistics and rejections')
    msg = parser.add_argument_group('messages')
    level = msg.add_mutually_exclusive_group()
    level.add_argument('-q', '--quiet', action='store_true', help='errors only')
    level.add_argument('-v', '--verbose', action='store_true', help='more detail')
    msg.add_argument('--demo', metavar='DIR',
                     help='write sample frames into DIR, stack them and explain')
    msg.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    return parser


def _weights_arg(text: str) -> str:
    _check_weights(text)
    return text


def _select_arg(text: str) -> str:
    _parse_select(text)
    return text


PARAMETERS = ('percentile', 'minmax', 'gesd')
"""Options that only the rejection of the same name uses."""

OPTIONS = frozenset(inspect.signature(Settings.from_options).parameters) - {'cli'}
"""The command's flags that are options of a run, by their argparse names
(a flag left out takes `Settings.from_options`' default)."""


# radon D: the run's one place for every outcome: each exception and signal
# becomes one line and an exit status.
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0 success, 1 an error (one line on stderr), 2 a usage error,
    128 + the signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
    It leaves the process as it found it: the signal handlers it installs
    for the run are put back, and the process-wide settings of the command
    (thread switch interval, allocator) are made by `_cli` alone.
    """
    parser = _build_parser()
    args = parser.parse_intermixed_args(argv)  # options anywhere, as most tools take them
    _check_usage(parser, args)
    reporter = Reporter(0 if args.quiet else 2 if args.verbose else 1)
    installed = signal.getsignal(signal.SIGINT)
    handler = installed if isinstance(installed, _Interrupts) else _Interrupts()
    handler.done, handler.pending = False, None  # a new run
    previous = {}
    if handler is not installed and threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        with warnings.catch_warnings(), _tifffile_silent():
            warnings.simplefilter('ignore')
            warnings.simplefilter('always', ImgstackWarning)
            warnings.showwarning = lambda message, *a, **k: reporter.warn(str(message))
            if args.demo is not None:
                return _run_demo(args.demo, reporter, force=args.force)
            options = {k: v for k, v in vars(args).items() if k in OPTIONS and v is not None}
            stats = stack_files(args.inputs, args.output, reporter=reporter,
                                settings=Settings.from_options(cli=True, **options))
        if stats.frame_table and reporter.level >= 2:
            reporter.say(_format_frame_table(stats.frame_table), level=2)
        reporter.summary(stats)
        return 0
    except ImgstackError as exc:
        return 2 if _fail(reporter, str(exc)) and exc.usage else 1
    except (OSError, MemoryError) as exc:
        return _fail(reporter, _one_line(exc, args.output if args.demo is None else args.demo))
    except RuntimeError as exc:  # threading's "can't start new thread"
        if 'thread' not in str(exc):
            raise
        return _fail(reporter, f'cannot start the threads of a run ({exc}): the process '
                               'or memory limits (ulimit -u, ulimit -v) are too low')
    except KeyboardInterrupt as exc:
        signum = getattr(exc, 'signum', signal.SIGINT)
        if handler.done:  # the outputs were published: the run succeeded
            return 0
        _fail(reporter, f'{SIGNALS.get(signum, "interrupted")}; nothing written', 'imgstack: ')
        return 128 + signum
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, as usage errors (exit 2), what the parser alone cannot: the
    operands missing, and options of a method that is not the one chosen."""
    if args.demo is not None and (args.output is not None or args.inputs):
        parser.error('--demo DIR takes no OUTPUT or INPUT')
    if args.demo is None and (args.output is None or not args.inputs):
        parser.error('need OUTPUT and at least one INPUT (or --demo DIR)')
    for name in PARAMETERS:
        if getattr(args, name) is not None and args.reject != name:
            parser.error(f'--{name} applies to --reject {name} only, not --reject {args.reject}')
    if args.reject not in ITERATIVE and (
            args.sigma is not None or args.sigma_low is not None or args.sigma_high is not None):
        parser.error(f'-s, --sigma-low and --sigma-high do not apply to --reject {args.reject}')
    if args.center is not None and args.reject != 'sigma':
        parser.error(f'--center applies to --reject sigma only, not --reject {args.reject}')


def _one_line(exc: BaseException, target: str) -> str:
    """The error line of an exception that ends a run: an ImgstackError as
    it is, a system error naming its file (else ``target``), no memory."""
    if isinstance(exc, MemoryError):
        return 'out of memory; try a smaller -m or -r'
    if isinstance(exc, OSError):
        return str(ImgstackError(str(exc.filename or target), exc.strerror or str(exc)))
    return str(exc)


@contextlib.contextmanager
def _tifffile_silent() -> Iterator[None]:
    """Silence tifffile's log of what it repairs in damaged files (our
    errors say what matters) for a block; its level is put back after."""
    logger = logging.getLogger('tifffile')
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _cli(argv: Sequence[str] | None = None) -> int:
    """The command's entry point (the console script and ``python
    imgstack.py``): set up the process, run `main`, return its status.

    The process is the command's alone, so this is where it is set up: the
    standard streams (a closed one is opened on the null device, so that no
    file of the run can take its number), one handler of `SIGNALS` for the
    whole process (once the outputs are published, a late signal changes
    nothing), the thread switch interval (`SWITCH_SECONDS`) and the
    allocator for the budget (`_tune_allocator`).
    """
    _standard_streams()
    handler = _Interrupts()
    for signum in SIGNALS:
        signal.signal(signum, handler)
    try:
        sys.setswitchinterval(SWITCH_SECONDS)
        _tune_allocator(_budget_of(argv))
        status = main(argv)
    except KeyboardInterrupt as exc:  # before main() caught it
        status = 0
        if not handler.done:
            handler.done = True  # a second signal changes nothing
            signum = getattr(exc, 'signum', signal.SIGINT)
            with contextlib.suppress(OSError, ValueError):
                what = SIGNALS.get(signum, 'interrupted')
                sys.stderr.write(f'imgstack: {what}; nothing written\n')
            status = 128 + signum
    except BrokenPipeError:
        status = 1
    # the run is over: a signal while the interpreter shuts down (which puts
    # back the default handlers, which kill) must not change how it ended
    handler.done = True
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    return status


def _standard_streams() -> None:
    """Open a closed standard stream (``2>&-``) on the null device: the run
    goes on, and no file it opens can take descriptor 0, 1 or 2 (where a
    message would then land)."""
    for fd, name in ((0, 'stdin'), (1, 'stdout'), (2, 'stderr')):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(os.devnull, 'r' if fd == 0 else 'w'))  # noqa: SIM115


def _budget_of(argv: Sequence[str] | None) -> int:
    """The memory budget that argv asks for (the default where argv is not
    a valid command line: `main` then says why)."""
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), \
            contextlib.suppress(SystemExit):
        return int(_build_parser().parse_intermixed_args(argv).memory)
    return DEFAULT_MEMORY


def _tune_allocator(memory: int) -> bool:
    """Set glibc's malloc for a run under the memory budget; return
    whether it did.

    With a budget of `ALLOCATOR_BUDGET` or more, whose room above what a
    run uses holds what the heaps keep, it keeps for the next chunk the
    memory that a chunk's working arrays free (`KEEP_FREED`).  Below it, where
    that room is small, it has all threads share two heaps (`TWO_HEAPS`),
    so that what one thread frees serves the others.  Only with glibc (by
    ``ctypes``, from the standard library), and before the run's threads
    start; elsewhere nothing changes.  Set by the command only: a program
    that imports imgstack keeps its own allocator's settings.
    """
    settings = KEEP_FREED if memory >= ALLOCATOR_BUDGET else TWO_HEAPS
    try:  # no confstr (Windows), no such name (macOS), or not glibc (musl)
        if not (os.confstr('CS_GNU_LIBC_VERSION') or '').startswith('glibc'):  # None: unset
            return False
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all([mallopt(param, value) == 1 for param, value in settings])


def _fail(reporter: Reporter, text: str, prefix: str = 'imgstack: error: ') -> int:
    """Print an error line on stderr (after an open progress bar); return 1."""
    reporter.newline()
    with contextlib.suppress(OSError, ValueError):
        print(prefix + text, file=sys.stderr, flush=True)
    return 1


def _format_frame_table(table: list[dict[str, Any]]) -> str:
    """The per-frame table as text (``-v``): one line per frame."""
    lines = []
    for row in table:
        parts = [row['path']]
        c = 0
        while f'location_{c}' in row:
            parts.append(
                f'ch{c} loc {row[f"location_{c}"]:.6g} scale {row[f"scale_{c}"]:.4g} '
                f'noise {row[f"noise_{c}"]:.4g} w {row[f"weight_{c}"]:.4g} '
                f'low {row[f"rejected_low_{c}"]} ({row[f"rejected_low_pct_{c}"]:.2f}%) '
                f'high {row[f"rejected_high_{c}"]} ({row[f"rejected_high_pct_{c}"]:.2f}%)')
            c += 1
        if 'stars' in row:
            parts.append(f'stars {row["stars"]} fwhm {row["fwhm"]:.3g} round '
                         f'{row["roundness"]:.2f} transp {row["transparency"]:.3g} '
                         f'snr {row["snr"]:.3g}')
        if row.get('dropped'):
            parts.append(f'dropped ({row["dropped"]})')
        lines.append('  '.join(parts))
    return 'frames:\n' + '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(_cli())
