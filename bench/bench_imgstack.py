# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Benchmark imgstack.py: wall time and peak memory against a plain floor.

What is measured
----------------
Every run is a child process of this script, started with the same
interpreter (``sys.executable``); its wall time is taken around the whole
child (interpreter start-up included) and its peak resident memory is the
``ru_maxrss`` that ``os.wait4`` returns for that child alone.  The cases:

``floor``
    A plain average with numpy and tifffile: every input read once with
    ``tifffile.imread`` into a float64 sum, the mean rounded and written with
    ``tifffile.imwrite`` (``bench_imgstack.py --floor OUT IN ...``).  This is
    the least work any stacker must do; its memory is not bounded.
``i0``, ``clip``, ``median``
    ``imgstack.py -q -f -m BUDGET`` with ``-i 0`` (a plain average),
    ``-s 2.5 -i 3`` and ``-s 2.5 -i 3 --center median``, at ``-m 1G`` and
    ``-m 256M``.
``startup``
    ``imgstack.py --version``: the interpreter with numpy and tifffile
    imported, subtracted from the scaling times below.

on three variants of the same frames: uncompressed (``raw``), LZW with 16
rows per strip (``lzw16``) and LZW in one strip (``lzw1``).  The frames are
``imgstack.make_frames`` ones (a fixed star field, sky gradient, Poisson and
read noise, hot pixels, cosmic rays, a satellite trail in one frame of six),
written once into ``--data`` and reused while every file is whole and its
header matches.

All cases run ``--repeat`` times, round-robin (every round runs each case
once, in a seeded shuffled order), so that a slow spell of a shared machine
spreads over all cases.  The table gives the median wall time, the spread
((max - min) / median), the largest peak RSS over the repeats, the ratio to
the floor of the same variant and whether the peak RSS stays within the
budget plus 64 MiB (CONTRACT.md section 4).  Scaling lines give the time
per frame of ``-s 2.5 -i 3`` on 25, 50 and 100 small uncompressed frames
(gross, net of the start-up, and per frame added: it should stay flat) and
the time of ``--center median`` over ``--center mean`` at each count; a
last line gives that median/mean ratio for the table's inputs too.

The inputs are read from the page cache (they were just written or read),
so the numbers are CPU and memory numbers, not disk numbers.

Note on memory: on Linux a child started with vfork (as ``subprocess``
does) inherits the parent's peak RSS in its ``ru_maxrss``.  This script
therefore keeps its own process small: it imports neither numpy nor
tifffile, and writes the frames in a separate process.  Its own peak is
printed; no child can report less.

Usage
-----
::

    python bench/bench_imgstack.py                 # quick set, about a minute
    python bench/bench_imgstack.py --large         # 24 frames of 4000x3000
    python bench/bench_imgstack.py --cases clip --variants raw,lzw1 --budgets 256M
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root, which holds imgstack.py."""

sys.path.insert(0, str(REPO))  # for `import imgstack` in the generating process

IMGSTACK = REPO / 'imgstack.py'

MIB = 1 << 20

SLACK_MIB = 64
"""Interpreter footprint allowed above the budget (CONTRACT.md section 4)."""

TRAIL_EVERY = 6
"""One frame in this many gets a satellite trail."""

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
"""imgstack.py runs measured, by name: their clipping options."""

BUDGETS = ('1G', '256M')
"""Memory budgets (``-m``) every case runs at."""

SCALING_COUNTS = (25, 50, 100)
"""Frame counts of the scaling line (the first frames of one set)."""

SCALING_CASES = ('clip', 'median')
"""Cases of the scaling lines: the first gives the time per frame, the
second the cost of the median center relative to it."""

SCALING_BUDGET = '1G'


@dataclasses.dataclass(frozen=True)
class FrameSet:
    """A set of synthetic frames: what `imgstack.make_frames` is given."""

    count: int
    height: int
    width: int
    channels: int = 3
    dtype: str = 'uint16'
    seed: int = 1

    @property
    def label(self) -> str:
        """``1000x800x3-uint16-seed1``: width first, as people say it."""
        return f'{self.width}x{self.height}x{self.channels}-{self.dtype}-seed{self.seed}'

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


QUICK = (FrameSet(12, 800, 1000), FrameSet(100, 300, 400))
"""The main and the scaling frame sets of the default run."""

LARGE = (FrameSet(24, 3000, 4000), FrameSet(100, 750, 1000))
"""The main and the scaling frame sets of ``--large``."""


Key = tuple[str, str, str]
"""Key of a measured case: (case, variant or scaling case, budget or count)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One measured command: its key in the results and its argv."""

    key: Key
    argv: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Result:
    """What one child run took."""

    seconds: float
    maxrss_mib: float
    status: int
    error: str


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


def prepare_frames(frames: FrameSet, data: str, variants: Sequence[str]) -> list[str]:
    """Write the variants of a frame set that are not cached; return those written.

    Each file is written beside its name and renamed into place, so an
    interrupted run leaves no file that looks complete.
    """
    import imgstack
    import tifffile

    missing = [v for v in variants if not is_cached(frames, data, v)]
    if not missing:
        return []
    for variant in missing:
        os.makedirs(os.path.dirname(frames.paths(data, variant, 1)[0]), exist_ok=True)
    images = imgstack.make_frames(
        frames.count, frames.height, frames.width, channels=frames.channels,
        dtype=frames.dtype, trails=range(0, frames.count, TRAIL_EVERY), seed=frames.seed,
    )
    photometric = 'rgb' if frames.channels == 3 else 'minisblack'
    for i, image in enumerate(images):
        for variant in missing:
            path = frames.paths(data, variant)[i]
            part = path + '.part'
            tifffile.imwrite(part, image, photometric=photometric, metadata=None,
                             **write_options(variant, frames.height))
            os.replace(part, path)
    return missing


def prepare_all(
    wanted: Sequence[tuple[FrameSet, Sequence[str]]], data: str
) -> list[tuple[FrameSet, list[str]]]:
    """Run `prepare_frames` for each set in fresh processes (see the module
    docstring on memory); return what each wrote."""
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(len(wanted), mp_context=context) as pool:
        futures = [pool.submit(prepare_frames, frames, data, variants)
                   for frames, variants in wanted]
        return [(frames, future.result()) for (frames, _), future in zip(wanted, futures)]


# -- running and measuring ----------------------------------------------------


def measure(argv: Sequence[str]) -> Result:
    """Run a command as a child; return its wall time and peak RSS."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode(errors='replace').strip().splitlines()
    return Result(seconds, usage.ru_maxrss / 1024, child.returncode, lines[-1] if lines else '')


def run_rounds(jobs: Sequence[Job], repeat: int, seed: int) -> dict[Key, list[Result]]:
    """Run every job once per round, repeat rounds, in a seeded shuffled order."""
    order = random.Random(seed)
    results: dict[Key, list[Result]] = {job.key: [] for job in jobs}
    for r in range(repeat):
        started = time.perf_counter()
        shuffled = list(jobs)
        order.shuffle(shuffled)
        for job in shuffled:
            results[job.key].append(measure(job.argv))
        print(f'round {r + 1}/{repeat}: {len(jobs)} runs, '
              f'{time.perf_counter() - started:.1f} s', file=sys.stderr, flush=True)
    return results


def imgstack_argv(case: str, budget: str, output: str, inputs: Sequence[str]) -> tuple[str, ...]:
    """Return the command line of one imgstack.py run."""
    return (sys.executable, str(IMGSTACK), '-q', '-f', '-m', budget,
            *CASES[case], output, *inputs)


def build_jobs(
    main_set: FrameSet, scaling_set: FrameSet | None, data: str, out: str,
    cases: Sequence[str], variants: Sequence[str], budgets: Sequence[str],
) -> list[Job]:
    """Return the jobs of one benchmark: floors, cases, start-up and scaling."""
    jobs = [Job(('startup', '', ''), (sys.executable, str(IMGSTACK), '--version'))]
    for variant in variants:
        inputs = main_set.paths(data, variant)
        output = os.path.join(out, f'floor-{variant}.tif')
        jobs.append(Job(('floor', variant, ''),
                        (sys.executable, str(Path(__file__).resolve()), '--floor',
                         output, *inputs)))
        for case in cases:
            for budget in budgets:
                output = os.path.join(out, f'{case}-{variant}-{budget}.tif')
                jobs.append(Job((case, variant, budget),
                                imgstack_argv(case, budget, output, inputs)))
    if scaling_set is not None:
        for case in SCALING_CASES:
            for n in SCALING_COUNTS:
                output = os.path.join(out, f'scaling-{case}-{n}.tif')
                inputs = scaling_set.paths(data, 'raw', n)
                jobs.append(Job(('scaling', case, str(n)),
                                imgstack_argv(case, SCALING_BUDGET, output, inputs)))
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
    return (f'{frames.count} frames of {frames.width}x{frames.height}x{frames.channels} '
            f'{frames.dtype} ({frame_mib:.1f} MiB each, seed {frames.seed}); on disk: {sizes}')


def table_rows(
    results: dict[Key, list[Result]], cases: Sequence[str],
    variants: Sequence[str], budgets: Sequence[str],
) -> tuple[list[list[str]], list[str]]:
    """Return the rows of the table and the problems worth a remark."""
    rows = []
    problems = []
    for variant in variants:
        floors = results[('floor', variant, '')]
        floor = None if any(r.status for r in floors) else statistics.median(
            r.seconds for r in floors)
        keys = [('floor', variant, '')] + [(c, variant, b) for c in cases for b in budgets]
        for key in keys:
            case, _, budget = key
            runs = results[key]
            failed = [r for r in runs if r.status != 0]
            args = 'numpy+tifffile' if case == 'floor' else ' '.join(CASES[case])
            if failed:
                rows.append([case, args, variant, budget or '-', 'FAILED', '', '', '', ''])
                problems.append(f'{case} {variant} {budget}: exit {failed[0].status}: '
                                f'{failed[0].error}')
                continue
            wall = statistics.median(r.seconds for r in runs)
            spread = (max(r.seconds for r in runs) - min(r.seconds for r in runs)) / wall
            peak = max(r.maxrss_mib for r in runs)
            if budget:
                bound = budget_mib(budget) + SLACK_MIB
                within = 'yes' if peak <= bound else 'NO'
                if peak > bound:
                    problems.append(f'{case} {variant} -m {budget}: peak RSS {peak:.0f} MiB '
                                    f'> {bound:.0f} MiB')
            else:
                within = '-'
            rows.append([case, args, variant, budget or '-', f'{wall:.2f}',
                         f'{100 * spread:.0f}%', f'{peak:.0f}', '-' if floor is None else f'{wall / floor:.2f}', within])
    return rows, problems


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return rows as an aligned text table (text left, numbers right)."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    left = {0, 1, 2}

    def line(cells: Sequence[str]) -> str:
        return '  '.join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return '\n'.join([line(header), line(['-' * w for w in widths])] + [line(r) for r in rows])


def scaling_lines(results: dict[Key, list[Result]], frames: FrameSet) -> list[str]:
    """Return the scaling lines: time per frame at each count (gross, net
    of the interpreter start-up, and per frame added), and the median/mean
    center time ratio at each count."""
    startup = statistics.median(r.seconds for r in results[('startup', '', '')])
    walls: dict[str, list[float]] = {}
    for case in SCALING_CASES:
        walls[case] = []
        for n in SCALING_COUNTS:
            runs = results[('scaling', case, str(n))]
            if any(r.status != 0 for r in runs):
                return [f'scaling: {case} FAILED at {n} frames: {runs[0].error}']
            walls[case].append(statistics.median(r.seconds for r in runs))
    wall = walls[SCALING_CASES[0]]
    counts = SCALING_COUNTS
    gross = [1000 * w / n for w, n in zip(wall, counts)]
    net = [1000 * (w - startup) / n for w, n in zip(wall, counts)]
    added = [1000 * (wall[i + 1] - wall[i]) / (counts[i + 1] - counts[i])
             for i in range(len(counts) - 1)]
    steps = ', '.join(f'{counts[i]}->{counts[i + 1]} {x:.1f}' for i, x in enumerate(added))
    ratios = [m / c for m, c in zip(walls['median'], walls['clip'])]
    return [
        f'scaling: {" ".join(CASES[SCALING_CASES[0]])} -m {SCALING_BUDGET} on '
        f'{"/".join(map(str, counts))} raw frames of '
        f'{frames.width}x{frames.height}x{frames.channels} {frames.dtype}',
        '  ms per frame:                 ' + ' / '.join(f'{x:.1f}' for x in gross),
        f'  net of {1000 * startup:.0f} ms start-up:      '
        + ' / '.join(f'{x:.1f}' for x in net) + f'  (last/first {net[-1] / net[0]:.2f})',
        f'  ms per frame added:           {steps}',
        '  --center median / mean time:  ' + ' / '.join(f'{x:.2f}' for x in ratios),
    ]


def center_line(
    results: dict[Key, list[Result]], variants: Sequence[str], budgets: Sequence[str]
) -> str | None:
    """Return the median/mean time ratio (``median`` over ``clip``) per
    variant and budget, or None when either case was not run."""
    ratios = []
    for variant in variants:
        for budget in budgets:
            a, b = results.get(('median', variant, budget)), results.get(('clip', variant, budget))
            if not a or not b or any(r.status for r in a + b):
                continue
            ratio = (statistics.median(r.seconds for r in a)
                     / statistics.median(r.seconds for r in b))
            ratios.append(f'{variant} {budget} {ratio:.2f}')
    if not ratios:
        return None
    return '--center median / mean time (table): ' + ', '.join(ratios)


def environment_line() -> str:
    """Return the interpreter, library versions and machine of the run."""
    versions = subprocess.run(
        [sys.executable, '-c',
         'import numpy, tifffile, imagecodecs; '
         'print(numpy.__version__, tifffile.__version__, imagecodecs.__version__)'],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    libs = ' '.join(f'{name} {v}' for name, v in
                    zip(('numpy', 'tifffile', 'imagecodecs'), versions))
    return (f'python {platform.python_version()} ({sys.executable}), {libs}; '
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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the command line."""
    parser = argparse.ArgumentParser(
        prog='bench_imgstack.py',
        description='Benchmark imgstack.py: wall time and peak RSS against a plain average.',
        epilog=(
            'examples:\n'
            '  python bench/bench_imgstack.py\n'
            '  python bench/bench_imgstack.py --large --repeat 5\n'
            '  python bench/bench_imgstack.py --cases clip --variants lzw1 --no-scaling'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('--data', metavar='DIR', default=str(REPO / 'bench' / 'data'),
                        help='where the frames are written and cached (default bench/data)')
    parser.add_argument('--repeat', type=_positive, default=3, metavar='N',
                        help='runs of each case; the median is reported (default %(default)s)')
    parser.add_argument('--large', action='store_true',
                        help='24 frames of 4000x3000 RGB uint16 (scaling at 1000x750)')
    parser.add_argument('--seed', type=int, default=1,
                        help='seed of the frames and of the run order (default %(default)s)')
    only = parser.add_argument_group('filters')
    only.add_argument('--cases', type=_choices(tuple(CASES)), default=tuple(CASES),
                      metavar='LIST', help=f'imgstack cases, from {",".join(CASES)} '
                      '(the floor always runs)')
    only.add_argument('--variants', type=_choices(tuple(VARIANTS)), default=tuple(VARIANTS),
                      metavar='LIST', help=f'input variants, from {",".join(VARIANTS)}')
    only.add_argument('--budgets', type=_choices(BUDGETS), default=BUDGETS,
                      metavar='LIST', help=f'memory budgets, from {",".join(BUDGETS)}')
    only.add_argument('--no-scaling', action='store_true', help='skip the scaling lines')
    parser.add_argument('--floor', nargs='+', metavar=('OUT', 'IN'),
                        help='internal: write the plain average of IN... to OUT and exit')
    return parser


def run_benchmark(args: argparse.Namespace) -> int:
    """Prepare the frames, run all rounds and print the report."""
    main_set, scaling_set = LARGE if args.large else QUICK
    main_set = dataclasses.replace(main_set, seed=args.seed)
    scaling_set = None if args.no_scaling else dataclasses.replace(scaling_set, seed=args.seed)
    data = os.path.abspath(args.data)
    os.makedirs(data, exist_ok=True)
    print('$ python ' + shlex.join(sys.argv))
    print(environment_line())
    started = time.perf_counter()
    wanted = [(main_set, args.variants)] + ([(scaling_set, ['raw'])] if scaling_set else [])
    for frames, written in prepare_all(wanted, data):
        state = f'wrote {",".join(written)}' if written else 'cached'
        print(f'frames {frames.label} in {data}: {state}', file=sys.stderr)
    print(f'frames ready in {time.perf_counter() - started:.1f} s', file=sys.stderr)
    print(describe_set(main_set, data, args.variants))
    with tempfile.TemporaryDirectory(prefix='out-', dir=data) as out:
        jobs = build_jobs(main_set, scaling_set, data, out, args.cases, args.variants,
                          args.budgets)
        measure(jobs[0].argv)  # warm-up, not counted
        results = run_rounds(jobs, args.repeat, args.seed)
    rows, problems = table_rows(results, args.cases, args.variants, args.budgets)
    header = ['case', 'options', 'input', '-m', 'wall s', 'spread', 'peak MiB',
              'x floor', f'RSS<=m+{SLACK_MIB}M']
    print(f'\nmedian of {args.repeat} runs each, interleaved; peak RSS is the largest '
          'over the runs')
    print(format_table(header, rows))
    startup = results[('startup', '', '')]
    print(f'start-up (imgstack.py --version): '
          f'{statistics.median(r.seconds for r in startup):.2f} s, '
          f'{max(r.maxrss_mib for r in startup):.0f} MiB')
    if scaling_set is not None:
        print('\n'.join(scaling_lines(results, scaling_set)))
    ratio = center_line(results, args.variants, args.budgets)
    if ratio:
        print(ratio)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'this process peaked at {own:.0f} MiB (a lower bound of every child\'s peak RSS)')
    for problem in problems:
        print(f'problem: {problem}')
    failed = any(r.status != 0 for runs in results.values() for r in runs)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with --floor, one floor average); return the exit status."""
    args = build_parser().parse_args(argv)
    if args.floor is not None:
        if len(args.floor) < 2:
            raise SystemExit('bench_imgstack.py: --floor needs OUT and at least one IN')
        floor_average(args.floor[0], args.floor[1:])
        return 0
    return run_benchmark(args)


if __name__ == '__main__':
    sys.exit(main())
