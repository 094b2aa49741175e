# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""A microscope series: multi-page BigTIFF series stacked by imgstack under a
memory budget, beside an in-memory numpy mean of the same file, as ratios in
one run.

For each of ``--pages`` (a list: ``50,500,2000``) it writes that many pages
of ``--size`` x ``--size`` uint16 (noise about a level; zlib with
``--zlib``) into a BigTIFF in ``--dir`` (kept for the next run), then runs
every case on every series ``--repeat`` times, each round in a seeded
shuffled order, each run a child process:

``imread`` and ``chunked`` (the floors, ``--floor``; both by default)
    ``imread`` is Fiji's way: ``tifffile.imread(path).mean(axis=0)`` written
    with ``tifffile.imwrite`` (every page in memory at once).  ``chunked``
    is a plain numpy mean that fits any series: a float64 sum of
    ``tifffile.imread`` of 64 pages at a time.  Ratios are to the first
    floor listed.
``-i 0``, ``-s 2.5 -i 3``, ``default``, ``--group 10``
    ``imgstack.py -q -f -m BUDGET`` with these options (``default``: none).
``start-up``
    ``imgstack.py --version`` and ``python -c "import numpy, tifffile"``,
    once a round: the interpreter's and the imports' share of each run,
    taken off imgstack's and the floors' times for the net time per frame.

Just before each run its input is read whole (the page cache of a shared
machine may have dropped it since the last run), so the figures are CPU and
memory figures, not disk figures.  Wall time is taken around the child;
its peak RSS is the ``ru_maxrss`` that ``os.wait4`` gives for that child
alone.

Each line gives the median and minimum time, the spread ((max - min) /
median), time per frame (median / pages) and net of start-up, the ratio of
medians to the first floor on the same series in the same run, the largest peak
and whether it stayed within the budget plus 64 MiB.

Usage::

    python bench/series.py --pages 50,500,2000 --memory 256M --repeat 3
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

import numpy as np
import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))
IMGSTACK = os.path.join(os.path.dirname(HERE), 'imgstack.py')
READ_CHUNK = 1 << 24

FLOORS = {
    'imread': ('import sys, tifffile; '
               'tifffile.imwrite(sys.argv[2], '
               'tifffile.imread(sys.argv[1]).mean(axis=0).astype("f4"))'),
    'chunked': ('import sys, numpy, tifffile\n'
                'n = len(tifffile.TiffFile(sys.argv[1]).pages)\n'
                'total = 0\n'
                'for i in range(0, n, 64):\n'
                '    pages = tifffile.imread(sys.argv[1], key=range(i, min(n, i + 64)))\n'
                '    total = total + pages.sum(axis=0, dtype=numpy.float64)\n'
                'tifffile.imwrite(sys.argv[2], (total / n).astype("f4"))\n'),
}

CASES = {
    'i0': ('-i 0', ['-i', '0']),
    's25i3': ('-s 2.5 -i 3', ['-s', '2.5', '-i', '3']),
    'default': ('default', []),
    'group10': ('--group 10', ['--group', '10']),
}


def parse_size(text: str) -> int:
    """Return a memory size in bytes as imgstack reads it (K, M, G: powers of
    1024; KB, MB, GB: of 1000)."""
    t = text.strip().upper()
    number = t.rstrip('KMGTIB')
    unit = t[len(number):]
    units = {'': 1, 'B': 1}
    for i, p in enumerate('KMGT', 1):
        units[p] = units[p + 'IB'] = 1024**i
        units[p + 'B'] = 1000**i
    return int(float(number) * units[unit])


def write_series(path: str, pages: int, size: int, zlib: bool) -> None:
    """Write the series once: noise about a level, page by page."""
    if os.path.exists(path):
        return
    rng = np.random.default_rng(1)
    with tifffile.TiffWriter(path + '.part', bigtiff=True) as tw:
        for _ in range(pages):
            page = rng.normal(1000, 30, (size, size)).astype(np.uint16)
            tw.write(page, metadata=None, compression='zlib' if zlib else None)
    os.replace(path + '.part', path)


def read_whole(path: str, buffer: bytearray) -> float:
    """Read a file whole, so that the run after finds it in the page cache;
    return the seconds it took."""
    start = time.perf_counter()
    view = memoryview(buffer)
    with open(path, 'rb', buffering=0) as fh:
        while fh.readinto(view):
            pass
    return time.perf_counter() - start


def timed(argv: list[str]) -> tuple[float, float]:
    """Run a child; return its seconds and its own peak RSS in MiB."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f'failed ({os.waitstatus_to_exitcode(status)}): {" ".join(argv)}')
    return seconds, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pages', default='400',
                        help='page counts, comma-separated, all in one run (default 400)')
    parser.add_argument('--size', type=int, default=1024, help='page side (default 1024)')
    parser.add_argument('--memory', default='256M', help='imgstack -m (default 256M)')
    parser.add_argument('--repeat', type=int, default=3, help='rounds (default 3)')
    parser.add_argument('--cases', default=','.join(CASES),
                        help=f'imgstack cases, of {",".join(CASES)} (default all)')
    parser.add_argument('--floor', default='imread,chunked',
                        help='the numpy means, comma-separated, ratios to the first: imread '
                             "(Fiji's way, the whole series in memory), chunked (64 pages at "
                             'a time); default both')
    parser.add_argument('--zlib', action='store_true', help='zlib-compressed pages')
    parser.add_argument('--imgstack', default=IMGSTACK,
                        help="the imgstack.py to run (default this checkout's)")
    parser.add_argument('--seed', type=int, default=1, help='order of the runs')
    parser.add_argument('--dir', default=os.path.join(HERE, 'data'),
                        help='where the series are written and kept')
    args = parser.parse_args()
    counts = [int(p) for p in args.pages.split(',')]
    cases = [CASES[c] for c in args.cases.split(',') if c]
    floors = [f for f in args.floor.split(',') if f]
    if not floors or set(floors) - set(FLOORS):
        parser.error(f'--floor: a list of {", ".join(FLOORS)}, not {args.floor!r}')
    os.makedirs(args.dir, exist_ok=True)
    out = os.path.join(args.dir, 'series-out.tif')
    paths = {}
    for pages in counts:
        name = f'series-{pages}x{args.size}{"-zlib" if args.zlib else ""}.tif'
        paths[pages] = os.path.join(args.dir, name)
        write_series(paths[pages], pages, args.size, args.zlib)

    jobs: list[tuple[int, str, list[str]]] = [
        (0, 'start-up', [sys.executable, args.imgstack, '--version']),
        (0, 'numpy start-up', [sys.executable, '-c', 'import numpy, tifffile'])]
    for pages, path in paths.items():
        jobs += [(pages, floor, [sys.executable, '-c', FLOORS[floor], path, out])
                 for floor in floors]
        jobs += [(pages, label, [sys.executable, args.imgstack, '-q', '-f', '-m', args.memory,
                                 *options, out, path]) for label, options in cases]
    runs: dict[tuple[int, str], list[tuple[float, float]]] = {}
    reads: dict[int, list[float]] = {}
    order = random.Random(args.seed)
    buffer = bytearray(READ_CHUNK)
    for r in range(args.repeat):
        started = time.perf_counter()
        shuffled = list(jobs)
        order.shuffle(shuffled)
        for pages, label, argv in shuffled:
            if pages:  # read just before, as every run finds it
                reads.setdefault(pages, []).append(read_whole(paths[pages], buffer))
            runs.setdefault((pages, label), []).append(timed(argv))
        print(f'round {r + 1}/{args.repeat}: {time.perf_counter() - started:.0f} s',
              file=sys.stderr, flush=True)

    startup = statistics.median(t for t, _ in runs[0, 'start-up'])
    numpy_startup = statistics.median(t for t, _ in runs[0, 'numpy start-up'])
    bound = parse_size(args.memory) / 2**20 + 64
    print(f'{args.size}x{args.size} uint16{" zlib" if args.zlib else ""}, '
          f'-m {args.memory} (bound {bound:.0f} MiB), x {floors[0]}, '
          f'medians of {args.repeat} interleaved runs; '
          f'start-up {startup:.2f} s (imgstack.py --version), '
          f'{numpy_startup:.2f} s (import numpy, tifffile)')
    print(f'{"pages":>5}  {"case":<12} {"median s":>8} {"min s":>6} {"spread":>6} '
          f'{"ms/frame":>8} {"net":>6} {"x floor":>7} {"peak MiB":>8}  within')
    for pages, path in paths.items():
        floor = statistics.median(t for t, _ in runs[pages, floors[0]])
        gib = os.path.getsize(path) / 2**30
        rate = gib / statistics.median(reads[pages])
        print(f'{pages:>5}  ({gib:.2f} GiB on disk, read before each run at a median '
              f'{rate:.1f} GiB/s)')
        for label in floors + [label for label, _ in cases]:
            times = [t for t, _ in runs[pages, label]]
            seconds = statistics.median(times)
            peak = max(p for _, p in runs[pages, label])
            within = '-' if label in floors else ('yes' if peak <= bound else 'NO')
            net = seconds - (numpy_startup if label in floors else startup)
            print(f'{pages:>5}  {label:<12} {seconds:8.2f} {min(times):6.2f} '
                  f'{(max(times) - min(times)) / seconds:6.0%} '
                  f'{seconds / pages * 1000:8.2f} {net / pages * 1000:6.2f} '
                  f'{seconds / floor:7.2f} {peak:8.0f}  {within}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
