# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Frame metrics (README, A night of frames): the star detector on frames
with known synthetic stars (scipy as an oracle), and what the command does
with them: --select, --weights snr, stars, fwhm, exposure and FILE.csv:COLUMN,
the columns of --frame-stats and -v, and one-line errors.

Stars are pixel-integrated Gaussians, as a sensor records them: each pixel
holds the Gaussian's integral over its square (products of erf
differences), not the Gaussian's value at its centre.  Their SNR is the
continuous Gaussian's peak amplitude ``A = flux / (2 pi sigma^2)`` over the
noise; the brightest pixel holds 0.50 to 0.82 A at FWHM 1.5 (by where the
centre falls in its pixel) and 0.95 to 0.99 A at FWHM 6.
"""

import csv
import math
import re

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from scipy.special import erf

import imgstack
from imgstack import FrameMetrics, _boxes, _candidates, frame_metrics
from tests.helpers import Guard, assert_error, run_main

pytestmark = pytest.mark.filterwarnings('ignore::imgstack.ImgstackWarning')  # few frames

SHAPE = (512, 512)
N = 144  # a 12 x 12 grid of stars
NOISE = 10.0  # the default noise, the unit of the stars' SNR


def star_field(fwhm, snr=20.0, *, seed=0, noise_seed=None, noise=NOISE, bg=1000.0,
               gain=1.0, trail=0.0, gradient=0.0, n=N):
    """Return a frame of ``n`` stars on a jittered grid and their centres.

    The stars' peak amplitude is ``snr * NOISE``, whatever ``noise``;
    ``gain`` scales the stars (clouds; one per star or for all), ``trail``
    smears them along x over that many pixels, ``gradient`` adds a linear
    sky gradient along x; the stars' positions come from ``seed``, the
    noise from ``noise_seed`` (default ``seed``)."""
    rng = np.random.default_rng(seed)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    side = max(math.isqrt(n), 1)
    margin = 24  # the same positions for every width
    step = (SHAPE[0] - 2 * margin) / side
    grid = margin + (np.arange(side) + 0.5) * step
    cy, cx = (c.ravel() + rng.uniform(-1, 1, n) * min(3, step / 4)
              for c in np.meshgrid(grid, grid, indexing='ij'))
    flux = snr * NOISE * 2 * math.pi * sigma ** 2
    r = math.ceil(5 * sigma + trail) + 2
    edges = np.arange(-r, r + 2) - 0.5
    image = np.zeros(SHAPE)
    for y, x, g in zip(cy, cx, np.broadcast_to(gain, (n,))):
        iy, ix = int(y), int(x)
        py = np.diff(erf((iy + edges - y) / (sigma * math.sqrt(2)))) / 2
        shifts = np.linspace(-trail / 2, trail / 2, 41) if trail else [0.0]
        px = np.mean([np.diff(erf((ix + edges - x - d) / (sigma * math.sqrt(2)))) / 2
                      for d in shifts], axis=0)
        image[iy - r:iy + r + 1, ix - r:ix + r + 1] += g * flux * np.outer(py, px)
    rng = np.random.default_rng(seed if noise_seed is None else noise_seed)
    image += bg + gradient * np.linspace(0, 1, SHAPE[1]) + rng.normal(0, noise, SHAPE)
    return image, np.stack([cy, cx], axis=1)


@pytest.mark.parametrize('snr', [20, 100])
@pytest.mark.parametrize('fwhm', [1.5, 2, 3, 4, 6])
@pytest.mark.parametrize('seed', [0, 1])
def test_fwhm_within_5_percent(fwhm, snr, seed):
    m = frame_metrics(star_field(fwhm, snr, seed=seed)[0])
    # 5 sigma: white noise may add a false star (about 0.03 per frame)
    assert N <= m.stars <= N + 1
    assert m.fwhm == pytest.approx(fwhm, rel=0.05)
    assert m.roundness > 0.95
    # the stars' light raises both a little (up to 10% and 0.15 noise at FWHM 6)
    assert m.noise == pytest.approx(NOISE, rel=0.15)
    assert m.background == pytest.approx(1000, abs=0.2 * NOISE)


def test_positions_are_the_stars():
    image, centres = star_field(3, 20)
    m = frame_metrics(image)
    distance = np.hypot(*(m.positions[:, None] - centres[None]).transpose(2, 0, 1))
    assert (distance.min(axis=1) < 1.0).all()
    assert m.fluxes.shape == (m.stars, 6)  # boxes of half width 2 to 7


def test_trailed_frame_is_not_round():
    round_ = frame_metrics(star_field(3, 20, seed=2)[0])
    trailed = frame_metrics(star_field(3, 20, seed=2, trail=4)[0])
    assert round_.roundness > 0.97
    assert trailed.roundness < 0.8
    assert trailed.stars == N and trailed.fwhm > round_.fwhm


def test_clouds_lower_transparency_and_snr():
    clear, _ = star_field(3, 20, seed=3)
    reference = frame_metrics(clear)
    assert frame_metrics(clear, reference=reference).transparency == 1.0
    again = frame_metrics(star_field(3, 20, seed=3, noise_seed=4)[0], reference=reference)
    assert again.transparency == pytest.approx(1, abs=0.03)
    # clouds: 0.6 of the light, a brighter sky and more noise
    cloudy = frame_metrics(star_field(3, 20, seed=3, noise_seed=5, gain=0.6, bg=1300,
                                      noise=12)[0], reference=reference)
    assert cloudy.transparency == pytest.approx(0.6, abs=0.03)
    assert cloudy.snr == pytest.approx(again.snr * 0.6 / 1.2, rel=0.1)
    assert cloudy.stars <= again.stars
    # bad seeing is no cloud: the same flux at twice the FWHM
    blurred = frame_metrics(star_field(6, 5, seed=3, noise_seed=6)[0], reference=reference)
    assert blurred.transparency == pytest.approx(1, abs=0.05)
    assert blurred.snr == pytest.approx(again.snr / 2, rel=0.1)
    thick = frame_metrics(star_field(3, 20, seed=3, gain=0.1)[0], reference=reference)
    assert thick.transparency == pytest.approx(0.1, abs=0.02)
    assert thick.stars < N // 4 and thick.snr < cloudy.snr / 4


def test_no_stars():
    """No star: stars 0, fwhm and roundness NaN (undefined, not 0), snr NaN
    without a reference; with one, transparency and snr near 0."""
    for seed in range(5):
        image = star_field(3, seed=seed, n=0, gradient=300)[0]
        m = frame_metrics(image)
        assert m.stars == 0 and m.positions.shape == (0, 2)
        assert math.isnan(m.fwhm) and math.isnan(m.roundness)
        assert math.isnan(m.transparency) and math.isnan(m.snr)
        # the gradient inflates the scale, not the noise
        assert m.noise == pytest.approx(10, rel=0.03) and m.scale > 5 * m.noise
    reference = frame_metrics(star_field(3, 20, seed=3)[0])
    m = frame_metrics(image, reference=reference)
    assert m.stars == 0 and abs(m.transparency) < 0.02 and abs(m.snr) < 1


def test_invalid_pixels():
    image, centres = star_field(3, 20, seed=6)
    valid = np.ones(SHAPE, bool)
    image[100:140, :] = np.nan  # a band of NaN
    valid[300:360, 200:300] = False  # and a block marked invalid,
    image[300:360, 200:300] = 1e6  # whatever it holds
    m = frame_metrics(image, valid)
    # boxes of 21x21 px: a star is lost within 10 px of an invalid pixel
    def near(pad):
        y, x = centres.T
        return (((y > 100 - pad) & (y < 140 + pad))
                | ((y > 300 - pad) & (y < 360 + pad) & (x > 200 - pad) & (x < 300 + pad)))
    assert N - near(11).sum() <= m.stars <= N - near(0).sum()
    assert m.fwhm == pytest.approx(3, rel=0.05)
    assert m.background == pytest.approx(1000, abs=1)
    assert m.noise == pytest.approx(10, rel=0.05)
    image[300:360, 200:300] = np.nan
    assert frame_metrics(image) == m
    empty = frame_metrics(np.full((64, 64), np.nan))
    assert empty.stars == 0 and math.isnan(empty.background) and math.isnan(empty.fwhm)


def test_saturated_and_hot_pixels_are_not_stars():
    gain = np.ones(N)
    gain[np.random.default_rng(7).choice(N, 20, replace=False)] = 30
    image, centres = star_field(3, 20, seed=7, gain=gain)
    assert frame_metrics(image).stars == N
    clipped = np.minimum(image, 4000)  # 20 stars saturate: flat tops
    m = frame_metrics(clipped)
    assert m.stars == N - 20 and m.fwhm == pytest.approx(3, rel=0.05)
    # a saturation level catches peaks that are not flat too
    assert frame_metrics(image, saturation=4000).stars == N - 20
    # hot pixels and cosmic-ray hits, midway between the stars
    corners = centres.reshape(12, 12, 2)
    spots = ((corners[:-1, :-1] + corners[1:, 1:]) / 2).reshape(-1, 2)[:50].astype(int)
    image[spots[:, 0], spots[:, 1]] += np.random.default_rng(8).uniform(300, 3000, 50)
    assert frame_metrics(image).stars == N


def test_integer_data():
    """Ties between a peak's pixels are common in integers, not flat tops."""
    image = star_field(3, 20)[0]
    for data in (image.astype(np.uint16), np.round(image / 10)):  # noise 10 and 1
        m = frame_metrics(data)
        assert m.stars == N and m.fwhm == pytest.approx(3, rel=0.05)


def test_crowded_field():
    m = frame_metrics(star_field(2.5, 30, n=900)[0])
    assert m.stars == 900 and m.fwhm == pytest.approx(2.5, rel=0.03)


def test_candidates_match_scipy():
    image, _ = star_field(2, 20, seed=8)
    ys, xs, level = _candidates(image, 1020.0)
    kernel = np.outer([1, 2, 1], [1, 2, 1]) / 16
    smooth = ndimage.correlate(image, kernel, mode='nearest')
    peak = (smooth == ndimage.maximum_filter(smooth, 5, mode='nearest')) & (smooth > 1020)
    inner = np.zeros(SHAPE, bool)
    inner[11:-11, 11:-11] = True
    expect = np.argwhere(peak & inner)
    got = np.stack([ys, xs], axis=1)
    got = got[inner[ys, xs]]
    assert np.array_equal(got, expect)
    np.testing.assert_allclose(level[inner[ys, xs]], smooth[peak & inner], rtol=1e-12)


def test_local_background_is_a_clipped_median():
    image, centres = star_field(2.5, 30, n=900)  # neighbours reach the annuli
    ys, xs = np.round(centres).astype(int).T
    data, border, good = _boxes(image, ys, xs, NOISE)
    assert good.all()
    annulus = np.ones((21, 21), bool)
    annulus[2:-2, 2:-2] = False  # 8 to 10 pixels from the centre
    for y, x, b in zip(ys, xs, border):
        ring = image[y - 10:y + 11, x - 10:x + 11][annulus]
        median = np.median(ring)
        assert b == np.median(ring[np.abs(ring - median) <= 2.5 * NOISE])
    np.testing.assert_array_equal(data[0], image[ys[0] - 7:ys[0] + 8, xs[0] - 7:xs[0] + 8]
                                  - border[0])


def test_metrics_are_frozen_and_floats():
    m = frame_metrics(star_field(3, 20)[0])
    assert isinstance(m, FrameMetrics)
    with pytest.raises(AttributeError):
        m.stars = 0
    for name in ('background', 'scale', 'noise', 'fwhm', 'roundness', 'snr'):
        assert type(getattr(m, name)) is float
    with pytest.raises(ValueError):
        frame_metrics(np.zeros(10))


# -- the command -------------------------------------------------------------


def night_of_frames(directory, count=6, *, cloudy=(), smeared=(), exposure=True,
                    rgb=False):
    """Write ``count`` uint16 frames of one star field (FWHM 3, SNR 20):
    frames in ``cloudy`` get half the light, those in ``smeared`` a trail
    of 5 px; each an ExposureTime of 30 + its index seconds."""
    paths = []
    for i in range(count):
        image = star_field(3, 20, seed=1, noise_seed=10 + i, gain=0.5 if i in cloudy else 1.0,
                           trail=5.0 if i in smeared else 0.0)[0]
        data = np.round(image).astype(np.uint16)
        if rgb:
            data = np.stack([data, data, data], axis=-1)
        path = str(directory / f'f{i}.tif')
        tags = [(33434, '2I', 1, (30 + i, 1), False)] if exposure else []
        tifffile.imwrite(path, data, extratags=tags, photometric='rgb' if rgb else None)
        paths.append(path)
    return paths


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_select_drops_the_cloudy_and_the_smeared_frames(tmp_path, capsys):
    paths = night_of_frames(tmp_path, cloudy=(2,), smeared=(4,))
    out, table = tmp_path / 'out.tif', tmp_path / 'frames.csv'
    result = run_main(capsys, '-v', '--select', 'transparency:80%', '--select', 'fwhm:2.5s',
                      '--frame-stats', table, out, *paths)
    assert result.status == 0, result.err
    summary = result.lines.index(next(line for line in result.lines
                                      if line.startswith('stacked 4 frames')))
    assert result.lines[summary + 1].startswith('dropped 2 of 6 frames: ')
    assert re.search(r'f2.tif \(transparency 0.(4|5)', result.lines[summary + 1])
    assert 'f4.tif (fwhm 3.' in result.lines[summary + 1]
    rows = read_csv(table)
    assert [r['dropped'].split(' ')[0] for r in rows] == ['', '', 'transparency', '',
                                                          'fwhm', '']
    assert [float(r['weight_0']) for r in rows] == [1, 1, 0, 1, 0, 1]
    for r in rows:
        assert 25 <= int(r['stars']) <= N // 4  # the central 256x256 pixels
        assert float(r['snr']) > 15
    assert float(rows[0]['transparency']) == 1.0  # the first frame is the reference
    assert float(rows[2]['transparency']) == pytest.approx(0.5, abs=0.03)
    assert float(rows[4]['roundness']) < 0.8
    assert 'dropped (transparency' in result.err  # -v's table
    frames = np.stack([tifffile.imread(p) for i, p in enumerate(paths) if i not in (2, 4)])
    want = np.round(frames.mean(axis=0))
    assert np.abs(tifffile.imread(out).astype(float) - want).max() <= 1
    assert '--select transparency:80% --select fwhm:2.5s' in tifffile.TiffFile(
        out).pages.first.description


def test_dropped_frames_are_never_read_again(tmp_path, monkeypatch):
    paths = night_of_frames(tmp_path, count=4, cloudy=(1,))
    read, streaming = [], []
    read_rows, stream_bands = imgstack._read_rows, imgstack._stream_bands

    def counted(frame, *args):
        if streaming:
            read.append(frame.path)
        return read_rows(frame, *args)

    def streamed(*args, **kwargs):
        streaming.append(True)
        return stream_bands(*args, **kwargs)

    monkeypatch.setattr(imgstack, '_read_rows', counted)
    monkeypatch.setattr(imgstack, '_stream_bands', streamed)
    stats = imgstack.stack_files(paths, tmp_path / 'out.tif', select=['transparency:3'])
    assert stats.frames == 3 and [name for name, _ in stats.dropped] == [paths[1]]
    assert set(read) == {paths[0], paths[2], paths[3]}


@pytest.mark.parametrize('keep, count', [('50%', 3), ('2', 2), ('100%', 6)])
def test_select_keeps_a_share_or_a_count(tmp_path, keep, count):
    paths = night_of_frames(tmp_path, cloudy=(1, 3))
    stats = imgstack.stack_files(paths, tmp_path / 'out.tif', select=f'snr:{keep}')
    assert stats.frames == count
    if count < 6:
        assert {name for name, _ in stats.dropped} >= {paths[1], paths[3]}


def test_select_frames_by_direction():
    values = np.array([3.0, 1.0, 2.0, 10.0, 2.5])
    assert imgstack._select_frames(values, 'fwhm', 'n', 2).tolist() == [0, 1, 1, 0, 0]
    assert imgstack._select_frames(values, 'snr', '%', 40).tolist() == [1, 0, 0, 1, 0]
    assert imgstack._select_frames(values, 'fwhm', 's', 2.5).tolist() == [1, 1, 1, 0, 1]
    assert imgstack._select_frames(values, 'snr', 's', 2.5).tolist() == [1, 1, 1, 1, 1]


def test_weights_from_metrics(tmp_path):
    paths = night_of_frames(tmp_path, count=4, cloudy=(1,))
    for weights, check in (
            ('snr', lambda w, m: np.allclose(w, m['snr'] ** 2, rtol=1e-5)),
            ('stars', lambda w, m: np.array_equal(w, m['stars'])),
            ('fwhm', lambda w, m: np.allclose(w, 1 / m['fwhm'] ** 2, rtol=1e-5)),
            ('exposure', lambda w, m: np.array_equal(w, [30, 31, 32, 33]))):
        table = tmp_path / f'{weights}.csv'
        imgstack.stack_files(paths, tmp_path / f'{weights}.tif', weights=weights,
                             frame_stats=table)
        rows = read_csv(table)
        w = np.array([float(r['weight_0']) for r in rows])
        metrics = {k: np.array([float(r[k]) for r in rows]) for k in ('snr', 'stars', 'fwhm')}
        assert check(w, metrics), (weights, w)


def test_weights_from_a_csv_file(tmp_path):
    paths = night_of_frames(tmp_path, count=3, rgb=True)
    given = tmp_path / 'given.csv'
    given.write_text('file,w\n' + ''.join(f'{name},{k + 1}\n' for k, name in enumerate(
        ['f2.tif', paths[0], 'f1.tif'])))
    table = tmp_path / 'frames.csv'
    imgstack.stack_files(paths, tmp_path / 'out.tif', weights=f'{given}:w', frame_stats=table)
    rows = read_csv(table)
    assert [float(r['weight_1']) for r in rows] == [2, 3, 1]
    frames = np.stack([tifffile.imread(p) for p in paths]).astype(float)
    want = np.average(frames, axis=0, weights=[2, 3, 1])
    assert np.abs(tifffile.imread(tmp_path / 'out.tif') - want).max() <= 1


@pytest.mark.parametrize('text, words', [
    ('file,w\nf0.tif,1\nf1.tif,2\n', [r"no row for the input '.*f2.tif'"]),
    ('file,w\nf0.tif,1\nf1.tif,2\nf0.tif,3\nf2.tif,1\n', [r'row 4: .f0.tif. has a row already']),
    ('file,w\nf0.tif,1\nf1.tif,two\nf2.tif,1\n', [r"row 3: w of 'f1.tif' is 'two'"]),
    ('file,w\nf0.tif,1\nf1.tif,0\nf2.tif,1\n', [r'row 3: .* not a positive number']),
    ('file,w\nf0.tif,1\nother.tif,1\n', [r"row 3: 'other.tif' is none of the inputs"]),
    ('file,x\nf0.tif,1\n', [r"has no column 'w'"]),
])
def test_bad_weights_file_is_one_line(tmp_path, capsys, text, words):
    paths = night_of_frames(tmp_path, count=3, exposure=False)
    given = tmp_path / 'given.csv'
    given.write_text(text)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, '-q', '--weights', f'{given}:w', out, *paths)
    assert_error(result, guard, str(given), words=words)


def test_missing_exposure_names_the_first_file(tmp_path, capsys):
    paths = night_of_frames(tmp_path, count=3, exposure=False)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, '-q', '--weights', 'exposure', out, *paths)
    assert_error(result, guard, paths[0], words=['no exposure time'])


def test_unmeasurable_metric_is_one_line(tmp_path, capsys):
    paths = night_of_frames(tmp_path, count=3)
    tifffile.imwrite(paths[1], np.full((512, 512), 1000, np.uint16)
                     + np.random.default_rng(0).integers(0, 20, (512, 512)).astype(np.uint16))
    out, table = tmp_path / 'out.tif', tmp_path / 'frames.csv'
    guard = Guard(out, table)
    for option in (['--select', 'fwhm:2'], ['--weights', 'fwhm']):
        result = run_main(capsys, '-q', *option, '--frame-stats', table, out, *paths)
        assert_error(result, guard, paths[1], words=['fwhm cannot be measured', 'no star'])


def test_fewer_than_two_frames_left_names_the_metric_and_values(tmp_path, capsys):
    paths = night_of_frames(tmp_path, count=3)
    out = tmp_path / 'out.tif'
    guard = Guard(out)
    result = run_main(capsys, '-q', '--select', 'snr:1', out, *paths)
    line = assert_error(result, guard, '--select snr:1', words=['leaves 1 frame', r'snr of the '
                                                                r'frames: [\d.]+, [\d.]+, '])
    assert line.count(',') >= 2


@pytest.mark.parametrize('argv, words', [
    (['--select', 'sharpness:80%'], ["unknown metric 'sharpness'"]),
    (['--select', 'fwhm:80'], []),  # a count: valid
    (['--select', 'fwhm:0%'], ['keep a share']),
    (['--select', 'fwhm'], ['METRIC:KEEP']),
    (['--weights', 'snr2'], ['FILE.csv:COLUMN']),
])
def test_bad_options_are_usage_errors(tmp_path, capsys, argv, words):
    paths = night_of_frames(tmp_path, count=2)
    result = run_main(capsys, *argv, '-q', tmp_path / 'out.tif', *paths)
    if not words:
        assert result.status == 0, result.err
        return
    assert result.status == 2 and 'Traceback' not in result.err
    assert all(w in result.err for w in words), result.err


def test_settings_check_select_and_weights():
    s = imgstack.Settings.from_options(select=['fwhm:80%', 'snr:2.5s'], weights='w.csv:x')
    assert s.select == (('fwhm', '%', 80.0), ('snr', 's', 2.5))
    assert imgstack.Settings.from_options(select='stars:20').select == (('stars', 'n', 20.0),)
    with pytest.raises(imgstack.ImgstackError, match='not to groups'):
        imgstack.Settings.from_options(select='fwhm:80%', group=2)
    with pytest.raises(imgstack.ImgstackError, match='weights must be one of'):
        imgstack.Settings.from_options(weights='fwhm2')
    parser = imgstack._build_parser()
    dests = {a.dest for a in parser._actions}
    assert {'select', 'weights'} <= dests & imgstack.OPTIONS


def test_default_run_measures_nothing(tmp_path, monkeypatch):
    paths = night_of_frames(tmp_path, count=3)
    called = []
    monkeypatch.setattr(imgstack, 'frame_metrics', lambda *a, **k: called.append(1))
    imgstack.stack_files(paths, tmp_path / 'out.tif', normalize='additive', weights='noise')
    assert called == []


def test_frame_statistics_gives_the_metrics_to_the_library():
    # README, Library use: frame_statistics(metrics=True) measures the
    # central crop of the mean of the channels, as the command does
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:300, 0:320]
    image = 100 + rng.normal(0, 3, (300, 320))
    for cy, cx in rng.uniform(20, 280, (60, 2)):
        image += 400 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.3 ** 2))
    frame = np.stack([image, image * 0.5], axis=-1)
    stats = imgstack.frame_statistics(frame, metrics=True)
    side = imgstack.CROP
    r0, c0 = (300 - side) // 2, (320 - side) // 2
    want = imgstack.frame_metrics(frame[r0:r0 + side, c0:c0 + side].mean(axis=-1))
    assert stats.metrics is not None and stats.metrics.stars == want.stars > 10
    assert stats.metrics.fwhm == want.fwhm
    assert imgstack.frame_statistics(frame).metrics is None  # only when asked
