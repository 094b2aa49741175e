# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Stack aligned TIFF frames into their sigma-clipped average.

For every point (one sample of one pixel) the values of that point in all
input frames are compared with their center (mean or median); values that
lie more than a given number of standard deviations away are rejected, the
comparison is repeated for a number of passes, and the mean of the values
that remain is written.  Satellite and airplane trails, cosmic-ray hits, hot
pixels and noise spikes disappear while the signal keeps its full depth.

The frames are streamed band by band (a few rows of every input at a time)
under a memory budget, so a night of frames that does not fit in memory can
be stacked on a laptop.

The data flow, in the order of this file's sections:

- the computation: `sigma_clipped_mean` and `clip_points`, pure functions
  of arrays (no I/O), which the file job calls band by band;
- reading: `open_frame` reads each header, `check_frames` compares them,
  `read_rows` reads the rows of one band of one input;
- the memory budget: `plan_bands` picks the band height and says where
  every byte goes;
- writing: `strip_encoder` and `writer_args` for tifffile's writer;
- the file job: `stack_files` checks everything, then `stream_bands` reads
  band after band (the next one while the current one is clipped),
  `_strips` clips each band and yields the output's strips to the writer,
  and `publish` renames the finished temporary files into place;
- the command line: `build_parser` and `main`, which turns every error
  into one line on stderr and an exit status.

Example::

    python imgstack.py -s 2.5 -i 3 out.tif in*.tif

Exit status: 0 on success, 1 for any error in the inputs, the output or the
environment, 2 for a usage error, 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

__version__ = '0.1.0'

__all__ = [
    'ImgstackError',
    'Stats',
    'main',
    'make_frames',
    'parse_size',
    'plan_bands',
    'sigma_clipped_mean',
    'stack_files',
]

import argparse
import concurrent.futures
import contextlib
import dataclasses
import glob
import logging
import lzma
import math
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

if __name__ == '__main__':  # Ctrl-C while numpy loads: no traceback

    def _interrupted_early(signum: int, frame: Any) -> None:
        sys.stderr.write('imgstack: interrupted; nothing written\n')
        os._exit(130)

    signal.signal(signal.SIGINT, _interrupted_early)

import numpy as np
import tifffile

MIB = 1 << 20

BINARY = getattr(os, 'O_BINARY', 0)
"""Flag that os.open needs on Windows for binary files (0 elsewhere)."""

NATIVE = '<' if sys.byteorder == 'little' else '>'
"""This machine's byte order, as tifffile writes it."""

DEFAULT_MEMORY = 1 << 30
"""Default memory budget for a whole run, in bytes (``-m``)."""

WORKERS = 2
"""Threads that decode inputs, and threads that clip, at the same time."""

CHUNK_BYTES = 16 * MIB
"""Scratch memory of one clipping thread: the points of a band are clipped
in column chunks this large, so that the working arrays stay small whatever
the band height."""

RESERVE_BYTES = 12 * MIB
"""Memory kept aside in every budget for Python objects, the TIFF writer's
buffers, the per-input bookkeeping and numpy's small temporaries."""

STREAM_BYTES = 8 * MIB
"""Memory that decoding one strip in pieces takes: compressed data read 1 MiB
at a time, decoded rows written about 2 MiB at a time, and their copies."""

STREAM_CODECS = {8: 'deflate', 32946: 'deflate', 34925: 'lzma', 5: 'lzw'}
"""Codecs whose strips can be decoded in pieces: deflate and LZMA with the
standard library, LZW with a slow decoder of our own (`_lzw_pieces`)."""

MAX_STRIP_ROWS = 64
"""Largest number of rows in one strip of the output."""

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

DTYPES = frozenset('uint8 uint16 uint32 int8 int16 int32 float32 float64'.split())
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

    def __init__(self, file: str | None, cause: str) -> None:
        self.file = file
        self.cause = cause
        super().__init__(f'{file}: {cause}' if file else cause)


class Interrupts:
    """The SIGINT handler of the command line.

    Ctrl-C raises KeyboardInterrupt as usual, except inside `critical`
    sections (creating and registering a temporary file, moving outputs
    into place), where it waits for the end of the section, and after the
    outputs are in place, where it is ignored: the run is done.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.done = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.done:
            return
        if self.depth:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold Ctrl-C back until the end of the block."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending and not self.done:
            self.pending = False
            raise KeyboardInterrupt


def critical() -> contextlib.AbstractContextManager[None]:
    """Return a context in which Ctrl-C waits (when `Interrupts` handles it)."""
    handler = signal.getsignal(signal.SIGINT)
    return handler.deferred() if isinstance(handler, Interrupts) else contextlib.nullcontext()


# -- the computation ---------------------------------------------------------


def sigma_clipped_mean(
    stack: Any,
    sigma: float = 2.5,
    iterations: int = 1,
    *,
    sigma_low: float | None = None,
    sigma_high: float | None = None,
    center: str = 'mean',
    valid: Any = None,
) -> tuple[np.ndarray, int]:
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
    point with no valid value gets 0.  All arithmetic is float64 (exact
    integer sums for 8- and 16-bit integers).

    This equals ``astropy.stats.sigma_clip(stack, sigma_lower=sigma_low,
    sigma_upper=sigma_high, maxiters=iterations, cenfunc=center,
    stdfunc='std', axis=0).mean(axis=0)`` except where astropy leaves every
    value masked.

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

    Returns
    -------
    result : ndarray of float64
        Shape ``stack.shape[1:]``.
    rejected : int
        Number of values rejected.

    Raises
    ------
    ValueError
        A factor that is not finite and > 0, a negative iteration count, an
        unknown center or a stack with no image axis.
    """
    stack = np.asarray(stack)
    if stack.ndim < 1 or stack.shape[0] < 1:
        msg = f'stack must have at least one image, not shape {stack.shape!r}'
        raise ValueError(msg)
    low = sigma if sigma_low is None else sigma_low
    high = sigma if sigma_high is None else sigma_high
    _check_settings(low, high, iterations, center)
    n = stack.shape[0]
    values = stack.reshape(n, -1)
    if stack.dtype.kind not in 'iuf':
        values = values.astype(np.float64)
    mask = None
    if valid is not None:
        mask = np.broadcast_to(np.asarray(valid, bool), stack.shape).reshape(n, -1)
    mean, rejected, _ = clip_points(
        values, mask, sigma_low=low, sigma_high=high,
        iterations=iterations, center=center,
    )
    return mean.reshape(stack.shape[1:]), int(rejected.sum(dtype=np.int64))


def _check_settings(low: float, high: float, iterations: int, center: str) -> None:
    for name, value in (('sigma_low', low), ('sigma_high', high)):
        if not (math.isfinite(value) and value > 0):
            msg = f'{name} must be finite and > 0, not {value!r}'
            raise ValueError(msg)
    if int(iterations) != iterations or iterations < 0:
        msg = f'iterations must be an integer >= 0, not {iterations!r}'
        raise ValueError(msg)
    if center not in ('mean', 'median'):
        msg = f"center must be 'mean' or 'median', not {center!r}"
        raise ValueError(msg)


def clip_points(
    values: np.ndarray,
    valid: np.ndarray | None,
    *,
    sigma_low: float,
    sigma_high: float,
    iterations: int,
    center: str,
    map_: Callable[..., Iterator[Any]] = map,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip the points of a 2-D array ``(n, points)`` (see `sigma_clipped_mean`).

    The points are cut into column chunks of `chunk_points` each, clipped
    independently (a point never depends on another), optionally in
    parallel through ``map_``.

    Returns
    -------
    mean : ndarray of float64, shape ``(points,)``
    rejected : ndarray of int64, shape ``(points,)``
        Values rejected at each point.
    passes : int
        Passes run (the largest over the chunks).
    """
    n, npoints = values.shape
    size = chunk_points(n, values.dtype.itemsize, center)
    bounds = [(a, min(a + size, npoints)) for a in range(0, npoints, size)]
    mean = np.empty(npoints, np.float64)
    rejected = np.empty(npoints, np.int64)

    def work(bound: tuple[int, int]) -> int:
        a, b = bound
        chunk_valid = None if valid is None else valid[:, a:b]
        m, r, p = _clip_chunk(
            values[:, a:b], chunk_valid, sigma_low, sigma_high, iterations, center
        )
        mean[a:b] = m
        rejected[a:b] = r
        return p

    passes = max(map_(work, bounds), default=0)
    return mean, rejected, passes


def chunk_points(n: int, itemsize: int, center: str) -> int:
    """Return how many points one clipping chunk holds within `CHUNK_BYTES`."""
    return max(CHUNK_BYTES // (n * scratch_per_value(itemsize, center)), 64)


def scratch_per_value(itemsize: int, center: str) -> int:
    """Bytes of scratch that clipping needs per value of a chunk, at most.

    A float64 copy, its masked copy and a product (3 x 8), two masks and a
    comparison (3 x 1), a gathered subset of the input (itemsize), and for
    the median a sorted float64 copy and its temporary (2 x 8).
    """
    return 27 + itemsize + (16 if center == 'median' else 0)


def _clip_chunk(
    v: np.ndarray,
    valid: np.ndarray | None,
    low: float,
    high: float,
    iterations: int,
    center: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip one chunk ``(n, c)``; return mean, rejected counts and passes.

    8- and 16-bit integers stay in their own type: sums are exact int64,
    and each value is compared with per-point integer bounds (``x < lo``
    is ``x < ceil(lo)`` for an integer).  Other types are clipped in
    float64.  Points leave the working set as soon as a pass rejects
    nothing there: their kept values, and so their result, cannot change.
    ``kept`` is None while every value is kept.
    """
    exact = v.dtype.kind in 'iu' and v.dtype.itemsize <= 2
    x = v if exact else v.astype(np.float64)
    # for the median, sort each point's values once: sums do not depend on
    # the order, and the kept values of a point stay a run of its sorted
    # values (NaN sorts last), so each pass finds its median by index.
    # Transparent pixels would break the run: they take the general way.
    presorted = center == 'median' and valid is None and iterations > 0
    if presorted:
        x = np.sort(x, axis=0)
    kept = valid
    if v.dtype.kind == 'f':
        nan = np.isnan(x)
        if nan.any():
            kept = ~nan if kept is None else kept & ~nan
        del nan
    total, count = _sums(x, kept)
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = np.where(count > 0, total / count, 0.0)
    fallback = mean.copy()  # the mean of the valid values: 0 where none
    rejected = np.zeros(x.shape[1], np.int64)
    active = np.arange(x.shape[1])  # the points still in the working set
    passes = 0
    for _ in range(iterations):
        passes += 1
        lo, hi = _bounds(x, kept, total, count, low, high, center, exact, presorted)
        out = (x < lo) | (x > hi)
        if kept is not None:
            out &= kept
        changed = np.flatnonzero(out.any(axis=0))
        if not changed.size:
            break
        active, x, out = active[changed], x[:, changed], out[:, changed]
        removed = out.sum(axis=0)
        rejected[active] += removed
        kept = ~out if kept is None else kept[:, changed] & ~out
        if exact:  # exact: take the rejected values out of the sums
            total = total[changed] - (x * out).sum(axis=0, dtype=np.int64)
            count = count[changed] - removed
        else:  # sum again, in the same order as a fresh sum would
            total, count = _sums(x, kept)
        with np.errstate(invalid='ignore', divide='ignore'):
            mean[active] = np.where(count > 0, total / count, fallback[active])
    return mean, rejected, passes


def _sums(x: np.ndarray, kept: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Return the sum (int64 for integers) and the count of the kept values
    of each point."""
    if kept is None:
        if x.dtype.kind == 'f':
            return x.sum(axis=0), np.full(x.shape[1], x.shape[0])
        # 32 bits hold the sum of 65536 values of 16 bits, and add twice as
        # fast as 64
        narrow = np.uint32 if x.dtype.kind == 'u' else np.int32
        if x.shape[0] > 65536:
            narrow = np.int64
        total = x.sum(axis=0, dtype=narrow).astype(np.int64)
        return total, np.full(x.shape[1], x.shape[0])
    if x.dtype.kind == 'f':  # where, not a product: 0 * inf is NaN
        return np.where(kept, x, 0.0).sum(axis=0), kept.sum(axis=0)
    return (x * kept).sum(axis=0, dtype=np.int64), kept.sum(axis=0)


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
) -> tuple[np.ndarray, np.ndarray]:
    """Return the lowest and highest value each point keeps in this pass.

    ``d`` is the standard deviation about the mean with divisor ``k``: from
    exact integer sums ``(k*sum(x^2) - sum(x)^2) / k^2`` for small
    integers, otherwise with a second pass over the deviations.  For small
    integers the bounds are returned as integers of the data's type.
    """
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = total / count
        if exact:
            xk = x if kept is None else x * kept
            # squares of 8/16-bit values fit in 16/32 bits: half the traffic
            wide = np.dtype(f'{x.dtype.kind}{2 * x.dtype.itemsize}')
            big = np.uint64 if x.dtype.kind == 'u' else np.int64  # faster unsigned
            squares = np.square(xk, dtype=wide).sum(axis=0, dtype=big).astype(np.int64)
            var = (count * squares - total * total) / (count.astype(np.float64) ** 2)
        else:
            dev = x - mean
            if kept is not None:
                dev = np.where(kept, dev, 0.0)
            var = np.square(dev, out=dev).sum(axis=0) / count
        std = np.sqrt(var)
        mid = mean if center == 'mean' else _median(x, kept, count, presorted)
        lo, hi = mid - std * low, mid + std * high
    if not exact:
        return lo, hi
    info = np.iinfo(x.dtype)
    np.clip(np.ceil(lo, out=lo), info.min, info.max, out=lo)
    np.clip(np.floor(hi, out=hi), info.min, info.max, out=hi)
    # NaN bounds belong to points with no value kept: nothing to compare
    with np.errstate(invalid='ignore'):
        return lo.astype(x.dtype), hi.astype(x.dtype)


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


def never_rejects(n: int, sigma_low: float, sigma_high: float, center: str) -> bool:
    """Return whether mean-centred clipping of n values can never reject one.

    With ``n`` values, a lone value ``x`` is at most ``sqrt(n-1)`` standard
    deviations from the mean, so nothing is ever rejected when both
    factors are at least that.
    """
    return center == 'mean' and math.sqrt(max(n - 1, 0)) <= min(sigma_low, sigma_high)


def to_dtype(mean: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return float64 results as ``dtype``: integers rounded to nearest
    (half to even) and clipped to the type's range, never truncated."""
    if dtype.kind == 'f':
        return mean.astype(dtype)
    info = np.iinfo(dtype)
    out = np.rint(mean)
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
    offsets: np.ndarray
    bytecounts: np.ndarray
    raw: bool  # segments are plain rows, read straight into the band
    decode: Callable[..., Any] | None
    jpeg: dict[str, Any]
    iccprofile: bytes | None
    resolution: tuple[Any, Any] | None
    resolutionunit: int | None
    pages: int
    compression: int = 1
    predictor: int = 1

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


def expand_inputs(names: Sequence[str]) -> list[str]:
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
    if os.path.isdir(path):
        raise ImgstackError(path, 'is a directory, not a TIFF file')
    try:
        filesize = os.path.getsize(path)
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            pages = len(tif.pages)
            frame = _frame_of(path, tif, page, pages)
    except ImgstackError:
        raise
    except OSError as exc:
        raise ImgstackError(path, exc.strerror or str(exc)) from exc
    except Exception as exc:  # tifffile raises many kinds for a bad file
        raise ImgstackError(path, f'not a readable TIFF file ({exc})') from exc
    _check_sizes(frame, filesize)
    return frame


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
    if not len(frame.offsets) == len(frame.bytecounts) == frame.segment_count:
        raise ImgstackError(
            path,
            f'corrupt header: {len(frame.offsets)} strip or tile offsets and '
            f'{len(frame.bytecounts)} byte counts for {frame.segment_count} strips or tiles',
        )
    return frame


def _check_sizes(frame: Frame, filesize: int) -> None:
    """Refuse a header whose data cannot be in the file."""
    ends = frame.offsets + frame.bytecounts
    if len(ends) and int(ends.max()) > filesize:
        raise ImgstackError(
            frame.path,
            f'truncated: image data reach byte {int(ends.max())} '
            f'but the file has {filesize} bytes',
        )
    size = frame.height * frame.planes * frame.row_bytes
    stored = int(frame.bytecounts.sum())
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


def check_frames(frames: Sequence[Frame], no_alpha: bool) -> None:
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


def read_rows(frame: Frame, fd: int, plane: int, r0: int, r1: int, out: np.ndarray) -> None:
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
    r = r0
    while r < r1:
        s = r // rows
        end = min((s + 1) * rows, r1)
        offset = int(frame.offsets[base + s]) + (r - s * rows) * row_bytes
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
    for s in range(r0 // frame.seg_rows, -(-r1 // frame.seg_rows)):
        for t in range(frame.across):
            index = first + s * frame.across + t
            _, y0, x0, h, w = _segment_box(frame, index)
            a, b = max(r0, y0), min(r1, y0 + h)
            out[a - r0:b - r0, x0:x0 + w] = _decoded_segment(frame, fd, index)[a - y0:b - y0]


def _segment_box(frame: Frame, index: int) -> tuple[int, int, int, int, int]:
    """Return the plane, first row, first column, rows and columns of a
    strip or tile (tiles at the edges are cropped to the image)."""
    plane, rest = divmod(index, frame.down * frame.across)
    s, t = divmod(rest, frame.across)
    y0, x0 = s * frame.seg_rows, t * frame.seg_width
    h, w = min(frame.seg_rows, frame.height - y0), min(frame.seg_width, frame.width - x0)
    return plane, y0, x0, h, w


def _decoded_segment(frame: Frame, fd: int, index: int) -> np.ndarray:
    """Read and decode one strip or tile, cropped to the image: shape
    ``(rows, columns, contig)``, native dtype; zeros for an empty one.

    Raises
    ------
    ImgstackError
        The data are corrupt, naming the file and the segment's rows.
    """
    _, y0, _, h, w = _segment_box(frame, index)
    count = int(frame.bytecounts[index])
    if count == 0:
        return np.zeros((h, w, frame.contig), frame.dtype)
    try:
        data = _pread(fd, count, int(frame.offsets[index]))
        return frame.decode(data, index, **frame.jpeg)[0][0, :h, :w]
    except Exception as exc:  # any codec error means corrupt data
        raise ImgstackError(
            frame.path,
            f'corrupt data in rows {y0}-{y0 + h - 1} ({type(exc).__name__}: {exc})',
        ) from exc


def predecode(frame: Frame, path: str, stream: bool = False) -> Frame:
    """Decode a frame once into the raw file ``path``; return its Frame.

    Used for files whose strips or tiles are too tall for one band: they
    are decoded one segment at a time, then read band by band from disk.
    With ``stream`` each strip is decoded in pieces (deflate, LZMA, LZW),
    for strips too large to decode whole within the budget.  The caller
    creates ``path`` and removes it.
    """
    plane_bytes = frame.height * frame.row_bytes
    raw = dataclasses.replace(
        frame,
        path=path,
        byteorder=NATIVE,
        seg_rows=frame.height,
        seg_width=frame.width,
        offsets=np.arange(frame.planes, dtype=np.int64) * plane_bytes,
        bytecounts=np.full(frame.planes, plane_bytes, np.int64),
        raw=True,
        decode=None,
    )
    fd_out = os.open(path, os.O_WRONLY | BINARY)
    try:
        fd_in = os.open(frame.path, os.O_RDONLY | BINARY)
        try:
            if stream:
                for index in range(len(frame.offsets)):
                    _stream_strip(frame, fd_in, index, fd_out, raw.offsets)
            else:
                _predecode_segments(frame, fd_in, fd_out, raw.offsets)
        finally:
            os.close(fd_in)
    finally:
        os.close(fd_out)
    return raw


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
    frame: Frame, fd_in: int, index: int, fd_out: int, planes: np.ndarray
) -> None:
    """Decode one strip in pieces into a raw file, undoing the predictor
    block by block of rows as tifffile would for the whole strip."""
    plane, y0, _, height, _ = _segment_box(frame, index)
    row_bytes = frame.row_bytes
    block = max(2 * MIB // row_bytes, 1) * row_bytes
    start = int(frame.offsets[index])
    chunks = _chunks(fd_in, start, start + int(frame.bytecounts[index]))
    pending = bytearray()
    done = 0
    try:
        for piece in _decoded_pieces(STREAM_CODECS[frame.compression], chunks, block):
            pending += piece
            rows = min(len(pending) // row_bytes, height - done)
            if rows:
                offset = int(planes[plane]) + (y0 + done) * row_bytes
                _pwrite_all(fd_out, _unpredicted(frame, pending[:rows * row_bytes], rows), offset)
                del pending[:rows * row_bytes]
                done += rows
            if done == height:
                break
    except (zlib.error, lzma.LZMAError, ValueError, IndexError) as exc:
        raise ImgstackError(
            frame.path, f'corrupt data in rows {y0 + done}-{y0 + height - 1} ({exc})'
        ) from exc
    if done < height:
        raise ImgstackError(
            frame.path, f'corrupt or truncated data in rows {y0 + done}-{y0 + height - 1}'
        )


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
            while data:
                yield inflater.decompress(data, block)
                data = inflater.unconsumed_tail
        yield inflater.flush()
    elif codec == 'lzma':
        unxz = lzma.LZMADecompressor()
        for data in chunks:
            yield unxz.decompress(data, block)
            while not unxz.needs_input and not unxz.eof:
                yield unxz.decompress(b'', block)
    else:
        yield from _lzw_pieces(chunks, block)


def _lzw_pieces(chunks: Iterator[bytes], block: int) -> Iterator[bytes]:
    """Yield the decoded bytes of a TIFF LZW stream (codes of 9 to 12 bits,
    most significant bit first, widened one code early as libtiff does).

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
                if previous:
                    table.append(previous + entry[:1])
            elif code == len(table) and previous:
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
        dtype = frame.dtype.newbyteorder(frame.byteorder)
    array = np.frombuffer(data, dtype).reshape(rows, frame.width, frame.contig).copy()
    if frame.predictor != 1:  # use the result: floatpred cannot work in place
        array = tifffile.TIFF.UNPREDICTORS[frame.predictor](array, axis=-2, out=array)
    return array.astype(frame.dtype)


def _pwrite_all(fd: int, array: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(array)).cast('B')
    while view:
        written = _pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


# Positioned reads and writes: os.pread/os.preadv/os.pwrite where the system
# has them (Linux, macOS, BSD); seek and read or write elsewhere (Windows),
# which is safe because every descriptor is used by one thread at a time.

def _pread(fd: int, size: int, offset: int) -> bytes:
    """Return up to size bytes of a file from offset."""
    if hasattr(os, 'pread'):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _pread_into(fd: int, buffer: np.ndarray, offset: int) -> int:
    """Read into buffer from offset of a file; return the bytes read."""
    if hasattr(os, 'preadv'):
        return os.preadv(fd, [buffer], offset)
    view = memoryview(buffer).cast('B')
    done = 0
    while done < len(view):
        data = _pread(fd, len(view) - done, offset + done)
        if not data:
            break
        view[done:done + len(data)] = data
        done += len(data)
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


def plan_bands(
    frames: Sequence[Frame],
    *,
    memory: int,
    rows: int,
    alpha: bool = False,
    rejection_map: bool = False,
) -> Plan:
    """Choose the band height that fits the memory budget.

    Where the bytes go, per row of band (``v`` values per row of one plane,
    ``n`` inputs of ``s``-byte samples):

    - ``2 * n * v * s``: the band being clipped and the next one, read
      meanwhile;
    - ``n * v``: the validity mask (images with alpha), plus
      ``2 * n * width * s`` for the alpha plane of planar images;
    - ``v * (8 + 8 + 2 * s)``: the float64 means, the rejection counts, the
      output samples and their encoded strips; ``2 * v`` more for a
      rejection map.

    And once: `RESERVE_BYTES`, ``WORKERS * CHUNK_BYTES`` of clipping scratch,
    and ``WORKERS`` strips or tiles being decoded (decoded and stored
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
    per_row = 2 * n * v * s + v * (16 + 2 * s)
    if alpha:
        per_row += n * v + (2 * n * first.width * s if first.planar else 0)
    if rejection_map:
        per_row += 2 * v
    fixed = RESERVE_BYTES + WORKERS * CHUNK_BYTES
    cost = [f.segment_bytes + int(f.bytecounts.max(initial=0)) for f in frames]
    # decoding beforehand takes a whole strip, or a stream where that does
    # not fit and the codec allows it
    stream = [f.streamable and RESERVE_BYTES + c > memory for f, c in zip(frames, cost)]
    early = [STREAM_BYTES if piecewise else c for piecewise, c in zip(stream, cost)]

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
                    f'({format_size(cost[largest])} decoded and stored)')
        raise ImgstackError(
            None,
            f'a memory budget of {format_size(memory)} is too small for {what}; '
            f'the smallest that works is {format_size(need)} (-m {-(-need // MIB)}M)',
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


def format_size(size: float) -> str:
    """Return a byte count for people: ``1.5 GiB``."""
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if size < 1024 or unit == 'GiB':
            return f'{size:.0f} {unit}' if unit == 'bytes' else f'{size:.1f} {unit}'
        size /= 1024
    raise AssertionError  # unreachable


# -- writing TIFF ------------------------------------------------------------


def parse_codec(text: str) -> tuple[str, int | None]:
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


def strip_encoder(
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


def needs_bigtiff(size: int) -> bool:
    """Return whether a file with ``size`` bytes of image data needs BigTIFF
    (classic TIFF offsets end at 4 GiB; keep room for headers and for
    compressed strips a little larger than their data)."""
    return size + size // 50 + 32 * MIB >= 2**32


def writer_args(first: Frame, strip_rows: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Return the arguments of ``TiffWriter.write`` for the stacked image."""
    args = {
        'shape': first.stored_shape,
        'dtype': first.dtype,
        'photometric': PHOTOMETRICS[first.photometric],
        'planarconfig': 'separate' if first.planar else 'contig',
        'extrasamples': first.extrasamples or None,
        'rowsperstrip': strip_rows,
        'iccprofile': first.iccprofile,
        'metadata': None,
        'software': f'imgstack {__version__}',
        'maxworkers': 1,
        **extra,
    }
    if first.resolution is not None:
        args['resolution'] = first.resolution
        args['resolutionunit'] = first.resolutionunit
    return args


# -- the file-to-file job ----------------------------------------------------


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

    @property
    def percent(self) -> float:
        """Values rejected, in percent of all values."""
        return 100.0 * self.rejected / self.values if self.values else 0.0


class Reporter:
    """Messages on stderr: warnings, progress while the run lasts, a summary.

    Parameters
    ----------
    level : int
        0 errors only (``-q``), 1 normal, 2 verbose (``-v``).
    stream : file, optional
        Where messages go; default ``sys.stderr``.
    """

    def __init__(self, level: int = 1, stream: Any = None) -> None:
        self.level = level
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, 'isatty', lambda: False)())
        self._start = time.monotonic()
        self._next = 0.0

    def say(self, text: str, level: int = 1) -> None:
        """Print a line if the level is shown."""
        if self.level >= level:
            print(text, file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        """Print a warning unless quiet."""
        self.say(f'warning: {text}')

    def start(self) -> None:
        """Start the clock of the progress report."""
        self._start = time.monotonic()
        self._next = 0.0

    def progress(
        self, done: int, total: int, frames: int, nbytes: int, what: str = 'rows'
    ) -> None:
        """Report rows (or ``what``) done: a bar on a terminal, a line every
        10% otherwise."""
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
            bar = '#' * int(24 * fraction)
            end = '\n' if done >= total else ''
            print(f'\r[{bar:<24}] {text}', end=end, file=self.stream, flush=True)
        elif fraction >= self._next or done >= total:
            self._next = math.floor(fraction * 10 + 1) / 10
            self.say(text)

    def summary(self, stats: Stats) -> None:
        """Print the summary line of a finished run."""
        rate = stats.bytes_read / stats.seconds / 1e6 if stats.seconds > 0 else 0.0
        self.say(
            f'stacked {stats.frames} frames into {stats.output}: '
            f'{stats.passes} pass{"" if stats.passes == 1 else "es"}, '
            f'{stats.rejected} values rejected '
            f'({stats.percent:.3f}%), {stats.seconds:.{1 if stats.seconds >= 10 else 2}f} s, '
            f'{rate:.0f} MB/s'
        )


def stack_files(
    inputs: Sequence[str],
    output: str,
    *,
    sigma: float = 2.5,
    sigma_low: float | None = None,
    sigma_high: float | None = None,
    iterations: int = 1,
    center: str = 'mean',
    compress: str | tuple[str, int | None] | None = None,
    memory: int | str = DEFAULT_MEMORY,
    rows: int = 100,
    force: bool = False,
    no_alpha: bool = False,
    rejection_map: str | None = None,
    reporter: Reporter | None = None,
) -> Stats:
    """Stack TIFF files into the TIFF file of their sigma-clipped mean.

    Every input is checked before any work; the output (and the rejection
    map) are written to temporary files beside them and renamed into place
    when complete, so a failed or interrupted run leaves no partial file.

    Parameters
    ----------
    inputs : sequence of str
        Two or more TIFF files of the same shape and type; unexpanded
        wildcards are expanded.
    output : str
        The TIFF file to write.
    sigma, sigma_low, sigma_high, iterations, center
        The clipping, as in `sigma_clipped_mean`.
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
    rejection_map : str, optional
        Also write a uint16 TIFF counting the values rejected at each point.
    reporter : Reporter, optional
        Where messages go; default none.

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
    low = sigma if sigma_low is None else sigma_low
    high = sigma if sigma_high is None else sigma_high
    try:
        _check_settings(low, high, iterations, center)
        codec = parse_codec(compress) if isinstance(compress, str) else compress
        budget = parse_size(memory) if isinstance(memory, str) else int(memory)
    except ValueError as exc:
        raise ImgstackError(None, str(exc)) from exc
    if rows < 1:
        raise ImgstackError(None, f'rows must be >= 1, not {rows}')
    paths = expand_inputs(inputs)
    if len(paths) < 2:
        raise ImgstackError(paths[0] if paths else None, 'need two or more inputs to stack')
    targets = [output] + ([rejection_map] if rejection_map else [])
    for target in targets:
        check_output(target, paths, force)
    if rejection_map and os.path.abspath(rejection_map) == os.path.abspath(output):
        raise ImgstackError(rejection_map, 'the rejection map cannot be the output')
    frames = [open_frame(p) for p in paths]
    check_frames(frames, no_alpha)
    first = frames[0]
    alpha = first.alpha_index(no_alpha)
    plan = plan_bands(
        frames, memory=budget, rows=rows,
        alpha=alpha is not None, rejection_map=bool(rejection_map),
    )
    encode, extra = strip_encoder(codec, first.dtype)
    for f in frames:
        if f.pages > 1:
            report.warn(f'{f.path}: holds {f.pages} images; only the first is stacked')
    if iterations > 0 and never_rejects(len(frames), low, high, center):
        report.warn(
            f'with {len(frames)} frames, mean-centred clipping at these factors can '
            'never reject a value; try --center median or a smaller --sigma'
        )
    report.say(
        f'{len(frames)} frames of {first.height}x{first.width}x{first.samples} '
        f'{first.dtype.name}; bands of {plan.rows} rows; budget {format_size(budget)} '
        f'(needs {format_size(plan.needed)})',
        level=2,
    )
    with contextlib.ExitStack() as stack:
        directory = os.path.dirname(os.path.abspath(output))
        frames = _predecoded(frames, plan, directory, stack, report)
        temps = [
            temporary_file(os.path.dirname(os.path.abspath(t)),
                           f'.{os.path.basename(t)}.', '.part', stack)
            for t in targets
        ]
        result = _write_stack(
            frames, temps, plan, alpha, encode, extra,
            (low, high, iterations, center), report,
        )
        if rejection_map and codec is not None:
            temps[1] = compressed_map(temps[1], first, plan.strip_rows, codec, stack)
        publish(temps, targets, force)
    n, points = len(frames), first.height * first.width * first.samples
    return Stats(
        output=output,
        frames=n,
        values=n * points,
        rejected=result[0],
        passes=result[1],
        seconds=time.monotonic() - started,
        bytes_read=n * points * first.dtype.itemsize,
        band_rows=plan.rows,
    )


def check_output(output: str, inputs: Sequence[str], force: bool) -> None:
    """Refuse an output that exists (without force), is an input or cannot
    be written.

    Raises
    ------
    ImgstackError
    """
    directory = os.path.dirname(os.path.abspath(output))
    real = os.path.realpath(output)
    for path in inputs:
        same = os.path.realpath(path) == real
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(path, output)
        if same:
            raise ImgstackError(output, f'is an input ({path}); choose another output')
    if os.path.isdir(output):
        raise ImgstackError(output, 'is a directory')
    if os.path.lexists(output) and not force:
        raise ImgstackError(output, 'exists (use --force to replace it)')
    if not os.path.isdir(directory):
        raise ImgstackError(output, f'directory {directory} does not exist')
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ImgstackError(output, f'directory {directory} is not writable')


def publish(temps: Sequence[str], targets: Sequence[str], force: bool) -> None:
    """Move finished temporary files into place, all or none.

    Without force no existing file is replaced, even one that appeared
    while the run lasted: each is linked into place (which fails if the
    name exists) and the links made so far are undone on failure.

    Raises
    ------
    ImgstackError
        A target exists (without force).
    """
    with critical():
        _publish(temps, targets, force)
        handler = signal.getsignal(signal.SIGINT)
        if isinstance(handler, Interrupts):
            handler.done = True  # the outputs are in place: the run is done


def _publish(temps: Sequence[str], targets: Sequence[str], force: bool) -> None:
    if force:
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
        return
    done: list[str] = []
    try:
        for temp, target in zip(temps, targets):
            if os.path.lexists(target):
                raise ImgstackError(target, 'exists (use --force to replace it)')
            try:
                os.link(temp, target)
            except FileExistsError as exc:
                raise ImgstackError(target, 'exists (use --force to replace it)') from exc
            except OSError:  # no hard links here: the check above must do
                os.replace(temp, target)
            done.append(target)
    except BaseException:
        for target in done:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise


def temporary_file(
    directory: str, prefix: str, suffix: str, stack: contextlib.ExitStack
) -> str:
    """Create an empty temporary file, removed when stack closes (unless
    renamed away first); Ctrl-C cannot fall between making and registering
    it."""

    def remove(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    with critical():
        try:
            fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
        except OSError as exc:
            raise ImgstackError(
                directory, f'cannot create a file here ({exc.strerror or exc})'
            ) from exc
        stack.callback(remove, path)
        os.close(fd)
    return path


def _predecoded(
    frames: list[Frame], plan: Plan, directory: str,
    stack: contextlib.ExitStack, report: Reporter,
) -> list[Frame]:
    """Decode the inputs whose segments are taller than a band into
    temporary raw files (on `Plan.predecode_workers` threads), removed when
    stack closes."""
    todo = [i for i, flag in enumerate(plan.predecode) if flag]
    if not todo:
        return frames
    report.say(f'decoding {len(todo)} inputs once to temporary files', level=2)
    for i in todo:
        frame = frames[i]
        if plan.streamed[i] and STREAM_CODECS[frame.compression] == 'lzw':
            whole = RESERVE_BYTES + frame.segment_bytes + int(frame.bytecounts.max())
            report.warn(
                f'{frame.path}: an LZW strip does not fit the memory budget whole; '
                f'decoding it slowly in pieces (-m {-(-whole // MIB)}M decodes it fast)'
            )
    paths = [temporary_file(directory, '.imgstack-', '.raw', stack) for _ in todo]
    result = list(frames)
    report.start()
    with concurrent.futures.ThreadPoolExecutor(plan.predecode_workers) as pool:
        try:
            raws = pool.map(predecode, [frames[i] for i in todo], paths,
                            [plan.streamed[i] for i in todo])
            for done, (i, raw) in enumerate(zip(todo, raws), 1):
                result[i] = raw
                nbytes = done * raw.height * raw.planes * raw.row_bytes
                report.progress(done, len(todo), len(frames), nbytes, 'decoded once')
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return result


def _write_stack(
    frames: list[Frame],
    temps: list[str],
    plan: Plan,
    alpha: int | None,
    encode: Callable[[np.ndarray], bytes],
    extra: dict[str, Any],
    settings: tuple[float, float, int, str],
    report: Reporter,
) -> tuple[int, int]:
    """Stack band by band into the temporary output (and rejection map).

    Returns the number of values rejected and the passes run.
    """
    first = frames[0]
    args = writer_args(first, plan.strip_rows, extra)
    bigtiff = needs_bigtiff(first.height * first.planes * first.row_bytes)
    totals = [0, 0]
    with contextlib.ExitStack() as stack:
        readers = stack.enter_context(concurrent.futures.ThreadPoolExecutor(WORKERS))
        workers = stack.enter_context(concurrent.futures.ThreadPoolExecutor(WORKERS))
        stack.callback(readers.shutdown, cancel_futures=True)
        stack.callback(workers.shutdown, cancel_futures=True)
        rejmap = None
        if len(temps) > 1:
            rejmap = _open_rejection_map(temps[1], first, stack)
        bands = stream_bands(frames, plan, alpha, readers)
        strips = _strips(
            bands, first, plan, alpha, encode, settings, workers, rejmap, totals, report
        )
        with tifffile.TiffWriter(temps[0], bigtiff=bigtiff) as tw:
            tw.write(strips, **args)
    return totals[0], totals[1]


def stream_bands(
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

    def read(i: int, plane: int, r0: int, r1: int, out: np.ndarray,
             aout: np.ndarray | None) -> None:
        frame = frames[i]
        try:
            fd = os.open(frame.path, os.O_RDONLY | BINARY)
        except OSError as exc:
            raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
        try:
            read_rows(frame, fd, plane, r0, r1, out[i])
            if aout is not None and plane != alpha:
                read_rows(frame, fd, alpha, r0, r1, aout[i])
        except OSError as exc:
            raise ImgstackError(frame.path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)

    def submit(k: int) -> list[concurrent.futures.Future[None]]:
        plane, r0, r1 = bands[k]
        out = shaped(buffers[k % 2], r0, r1, first.contig)
        aout = None if alphas[k % 2] is None else shaped(alphas[k % 2], r0, r1, 1)
        return [pool.submit(read, i, plane, r0, r1, out, aout) for i in range(n)]

    pending = submit(0)
    for k, (plane, r0, r1) in enumerate(bands):
        for future in pending:
            future.result()
        pending = submit(k + 1) if k + 1 < len(bands) else []
        values = shaped(buffers[k % 2], r0, r1, first.contig)
        if planar_alpha:
            a = values if plane == alpha else shaped(alphas[k % 2], r0, r1, 1)
        elif alpha is not None:
            a = values[..., alpha:alpha + 1]
        else:
            a = None
        yield plane, r0, r1, values, a
    for future in pending:
        future.cancel()


def _strips(
    bands: Iterator[tuple[int, int, int, np.ndarray, np.ndarray | None]],
    first: Frame,
    plan: Plan,
    alpha: int | None,
    encode: Callable[[np.ndarray], bytes],
    settings: tuple[float, float, int, str],
    workers: concurrent.futures.Executor,
    rejmap: tuple[int, int] | None,
    totals: list[int],
    report: Reporter,
) -> Iterator[bytes]:
    """Clip each band and yield the encoded strips of the output."""
    low, high, iterations, center = settings
    total_rows = first.height * first.planes
    done = 0
    report.start()
    for plane, r0, r1, values, a in bands:
        n = values.shape[0]
        valid = None
        if a is not None:
            opaque = a >= (1.0 if first.dtype.kind == 'f' else np.iinfo(first.dtype).max)
            valid = np.broadcast_to(opaque, values.shape).reshape(n, -1)
        mean, rejected, passes = clip_points(
            values.reshape(n, -1), valid, sigma_low=low, sigma_high=high,
            iterations=iterations, center=center, map_=workers.map,
        )
        del valid
        totals[0] += int(rejected.sum())
        totals[1] = max(totals[1], passes)
        out = to_dtype(mean, first.dtype).reshape(r1 - r0, first.width, first.contig)
        del mean
        if rejmap is not None:
            counts = np.minimum(rejected, 65535).astype(np.uint16)
            fd, offset = rejmap
            row_bytes = first.width * first.contig * 2
            _pwrite_all(fd, counts, offset + (plane * first.height + r0) * row_bytes)
            del counts
        del rejected
        strips = [out[j:j + plan.strip_rows] for j in range(0, r1 - r0, plan.strip_rows)]
        yield from workers.map(encode, strips)
        del out, strips
        done += r1 - r0
        report.progress(done, total_rows, n, done * n * first.row_bytes)


def _open_rejection_map(path: str, first: Frame, stack: contextlib.ExitStack) -> tuple[int, int]:
    """Write the header of an empty uint16 rejection map; return an open
    descriptor and the offset of its (contiguous) data."""
    with tifffile.TiffWriter(path, bigtiff=needs_bigtiff(2 * math.prod(first.stored_shape))) as tw:
        offset, _ = tw.write(None, returnoffset=True, **map_args(first))
    fd = os.open(path, os.O_RDWR | BINARY)
    stack.callback(os.close, fd)
    return fd, offset


def compressed_map(
    path: str, first: Frame, strip_rows: int, codec: tuple[str, int | None],
    stack: contextlib.ExitStack,
) -> str:
    """Copy the uncompressed rejection map at path into a compressed
    temporary file beside it, strip by strip; return the copy's path.

    The map is written uncompressed while stacking (each band lands at its
    place with ``pwrite``) and compressed afterwards: it is 2 bytes per
    point, and mostly zeros.
    """
    encode, extra = strip_encoder(codec, np.dtype(np.uint16))
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages.first.dataoffsets[0])
    directory, name = os.path.split(path)
    target = temporary_file(directory, name + '.', '.part', stack)
    row_bytes = first.width * first.contig * 2

    def strips() -> Iterator[bytes]:
        fd = os.open(path, os.O_RDONLY | BINARY)
        try:
            for plane in range(first.planes):
                for r0 in range(0, first.height, strip_rows):
                    rows = min(strip_rows, first.height - r0)
                    strip = np.empty((rows, first.width, first.contig), np.uint16)
                    _pread_into(fd, strip, offset + (plane * first.height + r0) * row_bytes)
                    yield encode(strip)
        finally:
            os.close(fd)

    bigtiff = needs_bigtiff(2 * math.prod(first.stored_shape))
    with tifffile.TiffWriter(target, bigtiff=bigtiff) as tw:
        tw.write(strips(), rowsperstrip=strip_rows, maxworkers=1, **map_args(first), **extra)
    return target


def map_args(first: Frame) -> dict[str, Any]:
    """Return the arguments of ``TiffWriter.write`` for the rejection map:
    uint16 counts in the layout of the stacked image."""
    return {
        'shape': first.stored_shape,
        'dtype': np.uint16,
        'photometric': 'minisblack',
        'planarconfig': 'separate' if first.planar else 'contig',
        'metadata': None,
        'software': f'imgstack {__version__} rejection map',
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
    gain = 4000.0 / top  # electrons per unit: sets the Poisson noise
    colour = np.linspace(1.0, 0.8, channels, dtype=np.float32)
    for index in range(count):
        image = scene[..., None] * colour
        image = rng.poisson(np.clip(image, 0, None) * gain).astype(np.float32) / gain
        image += rng.normal(0, 0.002 * top, image.shape).astype(np.float32)
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


def run_demo(directory: str, reporter: Reporter) -> int:
    """Write sample frames into directory, stack them and explain the result."""
    os.makedirs(directory, exist_ok=True)
    count, trail = 12, 3
    paths = []
    frames = []
    for i, image in enumerate(make_frames(count, trails=(trail,))):
        path = os.path.join(directory, f'frame{i:02d}.tif')
        tifffile.imwrite(path, image, metadata=None)
        paths.append(path)
        frames.append(image)
    stack = np.stack(frames).astype(np.float64)
    output = os.path.join(directory, 'stacked.tif')
    rmap = os.path.join(directory, 'rejected.tif')
    stats = stack_files(paths, output, force=True, rejection_map=rmap, reporter=reporter)
    reporter.summary(stats)
    result = tifffile.imread(output).astype(np.float64)
    plain = stack.mean(axis=0)
    # the trail: pixels much brighter in its frame than the same pixels in
    # the other frames (their median is the sky there, stars included)
    sky = np.median(np.delete(stack, trail, axis=0), axis=0)
    on = stack[trail] - sky > 0.2 * 65535
    before, after_plain, after = (
        float((image - sky)[on].mean()) for image in (stack[trail], plain, result))
    reporter.say(
        f'wrote {count} frames into {directory}; frame {trail} has a satellite trail.\n'
        f'mean brightness along the trail above the sky there:\n'
        f'  in frame {trail}:                    {before:10.1f}\n'
        f'  plain average:                {after_plain:10.1f}\n'
        f'  sigma-clipped (stacked.tif):  {after:10.1f}\n'
        f'{stats.rejected} values rejected ({stats.percent:.2f}%); '
        f'their count per pixel is in {rmap}'
    )
    counts = tifffile.imread(rmap).astype(np.float64)
    picture = write_comparison(
        os.path.join(directory, 'compare.png'), [stack[trail], plain, result, counts]
    )
    reporter.say(f'side by side (frame, plain average, stacked, rejections): {picture}')
    return 0


def write_comparison(path: str, images: Sequence[np.ndarray]) -> str:
    """Write grayscale images side by side as a PNG, each stretched so that
    faint sky shows (percentiles 1 to 99.5, then a square-root curve)."""
    import imagecodecs  # tifffile's codec library, also used for the PNG

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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the command line."""
    parser = argparse.ArgumentParser(
        prog='imgstack',
        description='Stack aligned TIFF frames into their sigma-clipped average.',
        epilog=(
            'examples:\n'
            '  imgstack.py -s 2.5 -i 3 out.tif in*.tif\n'
            '  imgstack.py --center median -c zstd -m 512M out.tif lights/*.tif\n'
            '  imgstack.py --demo demo'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('output', metavar='OUTPUT', nargs='?', help='TIFF file to write')
    parser.add_argument('inputs', metavar='INPUT', nargs='*',
                        help='two or more aligned TIFF files of one scene')
    clip = parser.add_argument_group('clipping')
    clip.add_argument('-s', '--sigma', type=_positive_float, default=2.5, metavar='S',
                      help='clipping factor (default %(default)s)')
    clip.add_argument('--sigma-low', type=_positive_float, metavar='L',
                      help='factor below the center (default S)')
    clip.add_argument('--sigma-high', type=_positive_float, metavar='H',
                      help='factor above the center (default S)')
    clip.add_argument('-i', '--iterations', type=_count(0), default=1, metavar='N',
                      help='clipping passes, stopping early after one that rejects '
                           'nothing; 0 is a plain average (default %(default)s)')
    clip.add_argument('--center', choices=('mean', 'median'), default='mean',
                      help='center values are compared with (default %(default)s)')
    clip.add_argument('--no-alpha', action='store_true',
                      help='treat a 4th channel as data, not transparency')
    mem = parser.add_argument_group('memory')
    mem.add_argument('-m', '--memory', type=_argtype(parse_size), default=DEFAULT_MEMORY,
                     metavar='SIZE',
                     help='memory budget: 512M, 2G, 1.5GiB or bytes (default 1G)')
    mem.add_argument('-r', '--rows', type=_count(1), default=100, metavar='N',
                     help='rows stacked at once, lowered to fit (default %(default)s)')
    out = parser.add_argument_group('output')
    out.add_argument('-c', '--compress', type=_argtype(parse_codec), metavar='CODEC[:LEVEL]',
                     help='zlib, lzw, zstd, lzma or packbits, e.g. zstd:9 (default none)')
    out.add_argument('-f', '--force', action='store_true', help='replace OUTPUT if it exists')
    out.add_argument('--rejection-map', metavar='FILE',
                     help='also write a uint16 TIFF counting rejected values per point')
    msg = parser.add_argument_group('messages')
    level = msg.add_mutually_exclusive_group()
    level.add_argument('-q', '--quiet', action='store_true', help='errors only')
    level.add_argument('-v', '--verbose', action='store_true', help='more detail')
    msg.add_argument('--demo', metavar='DIR',
                     help='write sample frames into DIR, stack them and explain')
    msg.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0 success, 1 an error (one line on stderr), 2 a usage error,
    130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    reporter = Reporter(0 if args.quiet else 2 if args.verbose else 1)
    if args.demo is None and (args.output is None or not args.inputs):
        parser.error('need OUTPUT and at least one INPUT (or --demo DIR)')
    # tifffile logs what it repairs in damaged files; our errors say what matters
    logging.getLogger('tifffile').setLevel(logging.CRITICAL + 1)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, Interrupts())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if args.demo is not None:
                return run_demo(args.demo, reporter)
            stats = stack_files(
                args.inputs,
                args.output,
                sigma=args.sigma,
                sigma_low=args.sigma_low,
                sigma_high=args.sigma_high,
                iterations=args.iterations,
                center=args.center,
                compress=args.compress,
                memory=args.memory,
                rows=args.rows,
                force=args.force,
                no_alpha=args.no_alpha,
                rejection_map=args.rejection_map,
                reporter=reporter,
            )
        reporter.summary(stats)
        return 0
    except ImgstackError as exc:
        print(f'imgstack: error: {exc}', file=sys.stderr)
        return 1
    except OSError as exc:
        where = exc.filename or (args.output if args.demo is None else args.demo)
        print(f'imgstack: error: {where}: {exc.strerror or exc}', file=sys.stderr)
        return 1
    except MemoryError:
        print('imgstack: error: out of memory; try a smaller -m or -r', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('imgstack: interrupted; nothing written', file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == '__main__':
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main() took over Ctrl-C
        sys.stderr.write('imgstack: interrupted; nothing written\n')
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
