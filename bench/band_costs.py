# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Where a band's time goes: the computation of one band of the night set,
method by method, against the floor's share of a band.

``bench_imgstack.py`` times whole runs; this script times the part of a run
that the rejection methods own, so that a target of issue 14 can be checked
against what the band alone costs.  It reads one band (``--rows`` rows, 100
as the command's default, from the middle of every frame) of the night set
that ``bench_imgstack.py --night`` writes (``--large`` for the 24 frames of
4000x3000 of issue 14's table; written here if missing), then measures, in
this process, ``--repeat`` times round-robin:

``floor``
    ``bench_imgstack.py --floor`` on the whole set, as a child process with
    its inputs read just before (as the whole-run bench does); its *band
    share* is its time times rows / height: what one band of the plain
    average costs, reading and writing included.
shared steps (one thread)
    What every method of a kind does to a band before it rejects anything:
    the floor's own sum (float64), additive-scale normalization into
    float64, and the per-point sort (``imgstack._sort_points``) of the 16-bit
    values and of the normalized ones, in chunks of the window core's size
    for 16-bit values.
the cases
    ``imgstack._clip_points`` on the band, with the options of
    ``bench_imgstack.NIGHT_CASES`` (the same names), on one thread and on
    the command's `imgstack.WORKERS` threads, with the command's chunk
    scratch for ``--memory``, its thread switch interval and its allocator
    settings.  The frame statistics that normalization and weights need
    come from the band itself (the command samples rows of the whole
    frame): the work is the same.

Each line gives the median and the minimum in milliseconds, and the
median over the floor's band share.  A whole run cannot take less than its
bands' computation, so a case whose band alone, on the command's threads,
takes more than a target's multiple of the floor's band share cannot meet
that target without a faster band.

Usage::

    python bench/band_costs.py --large                  # issue 14's set
    python bench/band_costs.py --large --cases rej-mad,wins-as --repeat 7
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tifffile

import bench_imgstack as bench

sys.path.insert(0, str(bench.REPO))
import imgstack  # noqa: E402  (the repository's, beside bench/)

CASES = ('clip', 'median10', 'wins-as', 'rej-sigma', 'rej-mad', 'rej-winsorized',
         'rej-linear', 'rej-percentile', 'rej-minmax', 'rej-gesd', 'comb-median', 'norm-as',
         'weights')
"""The night cases measured by default: every one whose band work differs
(``i0`` and ``rej-none`` are the plain mean, ``valid`` and ``float32`` the
default clip with a mask or another output type)."""


def case_arguments(options: Sequence[str]) -> tuple[imgstack.Method, str, str]:
    """``_clip_points``' method, normalization and weights of a night case's
    options, read by the command's own parser; what they leave out keeps
    `imgstack.Method`'s defaults (the command's)."""
    args = imgstack._build_parser().parse_args([*options, 'out.tif', 'in.tif'])
    given = {name: getattr(args, name) for name in ('reject', 'combine', 'iterations', 'center',
                                                    'percentile', 'minmax', 'gesd')}
    for name in ('sigma_low', 'sigma_high'):
        given[name] = args.sigma if getattr(args, name) is None else getattr(args, name)
    method = imgstack.Method(**{k: v for k, v in given.items() if v is not None})
    return method, args.normalize, args.weights


def read_band(paths: Sequence[str], rows: int) -> tuple[np.ndarray, int, int]:
    """The middle ``rows`` rows of every frame as ``(frames, points)``, the
    channels and the frames' height."""
    bands = []
    for path in paths:
        image = tifffile.imread(path)
        height = image.shape[0]
        first = max((height - rows) // 2, 0)
        bands.append(image[first:first + rows].copy())
        del image
    band = np.stack(bands)
    channels = band.shape[-1] if band.ndim == 4 else 1
    return band.reshape(len(paths), -1), channels, height


def median_ms(times: Sequence[float]) -> tuple[float, float]:
    return statistics.median(times) * 1000, min(times) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--large', action='store_true',
                        help='the 24 frames of 4000x3000 (issue 14), not 800x600')
    parser.add_argument('--data', metavar='DIR', default=str(bench.REPO / 'bench' / 'data'))
    parser.add_argument('--rows', type=int, default=100, help='rows of the band (default 100)')
    parser.add_argument('--memory', default='1G', help="the command's budget (default 1G)")
    parser.add_argument('--repeat', type=int, default=5, metavar='N', help='rounds (default 5)')
    parser.add_argument('--cases', default=','.join(CASES), metavar='LIST',
                        help='night cases, comma-separated (default: %(default)s)')
    args = parser.parse_args(argv)
    names = [c for c in args.cases.split(',') if c]
    unknown = [c for c in names if c not in bench.NIGHT_CASES]
    if unknown:
        parser.error(f'unknown cases: {", ".join(unknown)}')
    frames = bench.NIGHT_LARGE if args.large else bench.NIGHT_QUICK
    bench.prepare_frames(frames, args.data, ('raw',), str(bench.IMGSTACK))
    paths = frames.paths(args.data, 'raw')
    budget = imgstack.parse_size(args.memory)
    # as the command runs: its switch interval and allocator settings
    sys.setswitchinterval(imgstack.SWITCH_SECONDS)
    imgstack._tune_allocator(budget)

    values, channels, height = read_band(paths, args.rows)
    n = values.shape[0]
    stats = [imgstack.frame_statistics(values[i].reshape(args.rows, -1, channels))
             for i in range(n)]
    factor, offset = imgstack._normalization(stats, 'additive-scale')
    # per point: point j holds channel j % channels
    table_f = np.tile(factor, values.shape[1] // channels)
    table_o = np.tile(offset, values.shape[1] // channels)
    chunk = imgstack._chunk_points(n, channels, None, 'mean', True,
                                  imgstack._chunk_scratch(budget), True)

    def chunked(step: Callable[[slice], object]) -> Callable[[], None]:
        def run() -> None:
            for a in range(0, values.shape[1], chunk):
                step(slice(a, a + chunk))
        return run

    def normalized(s: slice) -> np.ndarray:
        out = np.multiply(values[:, s], table_f[:, s])
        out += table_o[:, s]
        return out

    steps: dict[str, Callable[[], object]] = {
        'sum (the floor)': chunked(lambda s: values[:, s].sum(axis=0, dtype=np.float64)),
        'normalization': chunked(normalized),
        'sort, 16-bit': chunked(lambda s: imgstack._sort_points(values[:, s], None)),
        'sort, normalized': chunked(lambda s: imgstack._sort_points(normalized(s), None)),
    }
    pool = concurrent.futures.ThreadPoolExecutor(imgstack.WORKERS)
    runs: dict[tuple[str, int], Callable[[], object]] = {}
    for name in names:
        method, normalize, weights = case_arguments(bench.NIGHT_CASES[name])
        kw: dict[str, object] = {}
        if normalize != 'none':
            kw['factor'], kw['offset'] = imgstack._normalization(stats, normalize)
        if weights != 'none':
            kw['weights'] = imgstack._noise_weights(stats, kw.get('factor'))
        scratch = imgstack._chunk_scratch(budget, method)
        for threads, map_ in ((1, map), (imgstack.WORKERS, pool.map)):
            runs[name, threads] = (lambda method=method, kw=kw, scratch=scratch, map_=map_:
                                   imgstack._clip_points(values, None, method, channels=channels,
                                                        scratch=scratch, map_=map_, **kw))

    times: dict[object, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        floor_argv = [sys.executable, str(Path(__file__).with_name('bench_imgstack.py')),
                      '--floor', os.path.join(tmp, 'floor.tif'), *paths]
        buffer = bytearray(bench.READ_CHUNK)
        for _ in range(args.repeat):
            bench.read_inputs(paths, buffer)
            t = time.perf_counter()
            subprocess.run(floor_argv, check=True)
            times.setdefault('floor', []).append(time.perf_counter() - t)
            for key, fn in (*steps.items(), *runs.items()):
                t = time.perf_counter()
                fn()
                times.setdefault(key, []).append(time.perf_counter() - t)
    pool.shutdown()

    floor, floor_min = median_ms(times['floor'])
    share = floor * args.rows / height
    print(f'{frames.label}, a band of {args.rows} rows: {n} frames x {values.shape[1]:,} points; '
          f'-m {args.memory}; median and minimum of {args.repeat} rounds')
    print(f'floor (whole set): {floor:.0f} ms median, {floor_min:.0f} min; '
          f'its band share {share:.1f} ms')
    print(f'{"step or case":26s} {"threads":>7s} {"median ms":>10s} {"min ms":>8s} '
          f'{"x floor share":>14s}')
    for key in (*steps, *runs):
        label, threads = (key, 1) if isinstance(key, str) else key
        med, low = median_ms(times[key])
        print(f'{label:26s} {threads:7d} {med:10.1f} {low:8.1f} {med / share:14.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
