# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""A microscope series: one multi-page BigTIFF stacked by imgstack under a
memory budget, beside ``tifffile.imread(path).mean(axis=0)`` (the whole
series in memory), in one run.

It writes ``--pages`` pages of ``--size`` x ``--size`` uint16 (zlib with
``--zlib``) into a BigTIFF in ``--dir`` (kept for the next run), then times,
``--repeat`` times round-robin, each as a child process:

``numpy``
    ``tifffile.imread(path).mean(axis=0)`` written with ``tifffile.imwrite``
    (the floor: every page in memory at once);
``-i 0``, ``-s 2.5 -i 3``, ``--group 10``
    ``imgstack.py -m BUDGET`` with these options.

Each line gives the median time, its ratio to the floor's and the peak
resident memory (``RUSAGE_CHILDREN``).

Usage::

    python bench/series.py --pages 400 --size 1024 --memory 256M
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import numpy as np
import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))
IMGSTACK = os.path.join(os.path.dirname(HERE), 'imgstack.py')

FLOOR = ('import sys, tifffile; '
         'tifffile.imwrite(sys.argv[2], tifffile.imread(sys.argv[1]).mean(axis=0).astype("f4"))')

CASES = (('-i 0', ['-i', '0']), ('-s 2.5 -i 3', ['-s', '2.5', '-i', '3']),
         ('--group 10', ['--group', '10']))


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


def timed(args: list[str]) -> tuple[float, int]:
    """Run a child; return its seconds and its peak RSS in bytes."""
    code = ('import resource, subprocess, sys, time\n'
            't = time.perf_counter()\n'
            'subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n'
            'print(time.perf_counter() - t, '
            'resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n')
    out = subprocess.run([sys.executable, '-c', code, *args], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pages', type=int, default=400)
    parser.add_argument('--size', type=int, default=1024)
    parser.add_argument('--memory', default='256M')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--zlib', action='store_true')
    parser.add_argument('--dir', default=os.path.join(HERE, 'data'))
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    name = f'series-{args.pages}x{args.size}{"-zlib" if args.zlib else ""}.tif'
    path = os.path.join(args.dir, name)
    write_series(path, args.pages, args.size, args.zlib)
    out = os.path.join(args.dir, 'series-out.tif')
    runs: dict[str, list[tuple[float, int]]] = {}
    jobs = [('numpy', [sys.executable, '-c', FLOOR, path, out])]
    jobs += [(label, [sys.executable, IMGSTACK, '-q', '-f', '-m', args.memory, *options, out,
                      path]) for label, options in CASES]
    for _ in range(args.repeat):
        for label, command in jobs:
            with open(path, 'rb') as fh:  # read before, as every run finds it
                while fh.read(1 << 24):
                    pass
            runs.setdefault(label, []).append(timed(command))
    floor = statistics.median(t for t, _ in runs['numpy'])
    size = os.path.getsize(path) / 2**20
    print(f'{args.pages} pages of {args.size}x{args.size} uint16 ({size:.0f} MiB on disk), '
          f'-m {args.memory}, median of {args.repeat}')
    for label, _ in jobs:
        seconds = statistics.median(t for t, _ in runs[label])
        peak = max(p for _, p in runs[label]) / 2**20
        print(f'{label:<14} {seconds:7.2f} s  {seconds / floor:5.2f} x numpy  '
              f'peak {peak:6.0f} MiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
