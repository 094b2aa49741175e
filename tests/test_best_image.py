# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""The best image without expert knowledge (README, A night of frames and
What is computed): points with no valid value keep their plain mean, zero
borders and drifting levels are named in the data's own terms."""

import re

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgstack
from tests.helpers import run_main, write_frames


def sky_frames(n=8, shape=(60, 80), level=1000.0, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    scene = level + 200 * np.sin(x / 7.0) * np.cos(y / 9.0)  # structure, not noise
    return scene, rng


def test_unranged_points_are_counted_in_a_warning(tmp_path, capsys):
    stack = np.full((5, 6, 7), 1000, np.uint16)
    stack[:, 1, 1] = 65535  # saturated in every frame
    stack[:, 2, :3] = 65535
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    result = run_main(capsys, '--valid-range', '1:65000', out, *paths)
    assert result.status == 0, result.err
    assert ('imgstack: warning: 4 points had no valid value; they keep the plain mean of '
            'their values (NaN where every value is NaN)') in result.lines
    got = tifffile.imread(out)
    assert got[1, 1] == 65535 and (got[2, :3] == 65535).all()


def test_float_nan_everywhere_stays_nan(tmp_path):
    stack = np.random.default_rng(1).normal(5, 1, (6, 10, 12)).astype(np.float32)
    stack[:, :3, :] = np.nan  # outside the cells in every frame
    stack[2, 5, 5] = np.nan  # missing in one frame only
    paths = write_frames(tmp_path, stack)
    out = str(tmp_path / 'out.tif')
    with pytest.warns(imgstack.ImgstackWarning, match='36 points had no valid value'):
        imgstack.stack_files(paths, out)
    got = tifffile.imread(out)
    assert got.dtype == np.float32
    assert np.isnan(got[:3]).all() and np.isfinite(got[3:]).all()


@pytest.mark.parametrize(('edge', 'index'), [('left', np.s_[:, :, :5]),
                                             ('right', np.s_[:, :, -3:]),
                                             ('top', np.s_[:, :4, :]),
                                             ('bottom', np.s_[:, -2:, :])])
def test_zero_borders_of_some_frames_are_named(tmp_path, capsys, edge, index):
    scene, rng = sky_frames()
    stack = (scene + rng.normal(0, 10, (8, *scene.shape))).astype(np.uint16)
    stack[(slice(2, 5), *index[1:])] = 0  # 3 frames shifted by registration
    paths = write_frames(tmp_path, stack)
    result = run_main(capsys, '-q', str(tmp_path / 'plain.tif'), *paths)
    assert result.status == 0 and result.err == ''  # -q: nothing
    result = run_main(capsys, str(tmp_path / 'out.tif'), *paths)
    warning = [line for line in result.lines if 'borders of zeros' in line]
    width = {'left': 5, 'right': 3, 'top': 4, 'bottom': 2}[edge]
    assert warning == [f'imgstack: warning: 3 of 8 frames have borders of zeros (up to {width} '
                       f'at the {edge}, in pixels), as registration leaves them; averaged with '
                       'the other frames they darken the edges: try --valid-range 1: to leave '
                       'zeros out']
    # leaving zeros out: no warning, and the borders take the other frames' values
    result = run_main(capsys, '--valid-range', '1:', str(tmp_path / 'fixed.tif'), *paths)
    assert not [line for line in result.lines if 'borders of zeros' in line]
    fixed = tifffile.imread(tmp_path / 'fixed.tif').astype(float)
    assert abs(fixed[index[1:]] - scene[index[1:]]).max() < 60


def test_the_same_border_in_every_frame_is_no_warning(tmp_path, capsys):
    scene, rng = sky_frames()
    stack = (scene + rng.normal(0, 10, (8, *scene.shape))).astype(np.uint16)
    stack[:, :, :4] = 0  # the camera's own black edge
    paths = write_frames(tmp_path, stack)
    result = run_main(capsys, str(tmp_path / 'out.tif'), *paths)
    assert not [line for line in result.lines if 'borders' in line]


@pytest.mark.parametrize(('kind', 'mode'), [('shift', 'additive'),
                                            ('scale', 'multiplicative')])
def test_drift_warning_suggests_what_the_frames_do(tmp_path, capsys, kind, mode):
    scene, rng = sky_frames(shape=(80, 100))
    levels = np.linspace(0.7, 1.3, 8)
    frames = []
    for k in levels:  # sky glow shifts the image; flicker or bleaching scales it
        image = scene + 1000 * (k - 1) if kind == 'shift' else scene * k
        frames.append(image + rng.normal(0, 5, scene.shape))
    stack = np.clip(np.array(frames), 0, 255 * 256).astype(np.uint16)
    paths = write_frames(tmp_path, stack)
    result = run_main(capsys, str(tmp_path / 'out.tif'), *paths)
    warning = [line for line in result.lines if 'frame backgrounds span' in line]
    assert len(warning) == 1 and warning[0].endswith(f'(try --normalize {mode})')
    assert 'sky' not in warning[0] and ' ADU, ' in warning[0]


def test_drift_warning_speaks_units_for_photographs(tmp_path, capsys):
    scene, rng = sky_frames(shape=(40, 50), level=120)
    stack = np.stack([np.clip(scene[..., None] * k + rng.normal(0, 2, (40, 50, 3)), 0, 255)
                      for k in np.linspace(0.8, 1.2, 6)]).astype(np.uint8)
    paths = write_frames(tmp_path, stack, photometric='rgb')
    result = run_main(capsys, str(tmp_path / 'out.tif'), *paths)
    warning = [line for line in result.lines if 'frame backgrounds span' in line]
    assert len(warning) == 1 and ' units, ' in warning[0] and 'ADU' not in warning[0]


@pytest.mark.parametrize(('n', 'options'), [(4, ['--reject', 'none']), (16, ['--reject', 'none']),
                                            (16, []), (9, ['--normalize', 'multiplicative'])])
def test_the_summary_gives_the_result_quality(tmp_path, capsys, n, options):
    rng = np.random.default_rng(n)
    gains = np.linspace(0.9, 1.1, n) if '--normalize' in options else np.ones(n)
    stack = np.stack([1000 * g + rng.normal(0, 20, (120, 160)) * g for g in gains])
    paths = write_frames(tmp_path, stack.astype(np.float32))
    out = str(tmp_path / 'out.tif')
    result = run_main(capsys, *options, out, *paths)
    assert result.status == 0, result.err
    summary = [line for line in result.lines if line.startswith('stacked')][0]
    found = re.search(r"noise ([\d.]+) of a frame's, worth ([\d.]+) frames", summary)
    ratio, worth = found.groups()
    assert float(ratio) == pytest.approx(1 / np.sqrt(n), rel=0.06)
    assert float(worth) == pytest.approx(n, rel=0.12)
    stats = imgstack.stack_files(paths, out, force=True, **{
        o.lstrip('-'): v for o, v in zip(options[::2], options[1::2])})
    assert stats.noise_ratio == pytest.approx(float(ratio), abs=0.006)
    assert stats.effective_frames == pytest.approx(1 / stats.noise_ratio ** 2)


def test_the_result_quality_per_channel_with_verbose(tmp_path, capsys):
    rng = np.random.default_rng(3)
    noise = np.array([10.0, 20.0, 40.0])
    stack = 1000 + rng.normal(0, 1, (9, 60, 80, 3)) * noise  # frames and result scale alike
    paths = write_frames(tmp_path, stack.astype(np.float32), photometric='rgb')
    result = run_main(capsys, '-v', '--reject', 'none', str(tmp_path / 'out.tif'), *paths)
    line = [t for t in result.lines if t.startswith("noise of a frame's by channel:")]
    assert len(line) == 1
    ratios = [float(r) for r in re.findall(r'([\d.]+) \(worth', line[0])]
    assert ratios == pytest.approx([1 / 3] * 3, rel=0.08)


# -- one answer whatever is reported (README, What is computed) ---------------

REJECTS = ['sigma', 'mad', 'winsorized', 'linear', 'percentile', 'minmax', 'gesd', 'none']


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 14), points=st.integers(1, 60), seed=st.integers(0, 2**31),
       reject=st.sampled_from(REJECTS), center=st.sampled_from(['mean', 'median']),
       dtype=st.sampled_from(['uint8', 'uint16', 'float32']),
       combine=st.sampled_from(['mean', 'median']))
def test_reporting_and_chunking_never_change_a_value(n, points, seed, reject, center, dtype,
                                                     combine):
    # small integers full of ties put values exactly on bounds; asking for
    # the frame counts (-v, --frame-stats), smaller chunks (-m, -r) or no
    # threads must give the same values, bit for bit
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, (n, points)).astype(dtype)
    x[rng.random(x.shape) < 0.05] = 200  # outliers
    options = {'reject': reject, 'combine': combine}
    if reject == 'sigma':
        options['center'] = center
    method = imgstack.Settings.from_options(**options).method
    base = imgstack._clip_points(x, None, method)
    variants = [{'frame_counts': True}, {'scratch': 4096}, {'frame_counts': True, 'scratch': 4096},
                {'channels': 1, 'map_': lambda f, items: [f(i) for i in reversed(list(items))]}]
    for kwargs in variants:
        other = imgstack._clip_points(x, None, method, **kwargs)
        np.testing.assert_array_equal(other.result, base.result, err_msg=str(kwargs))
        np.testing.assert_array_equal(other.rejected, base.rejected, err_msg=str(kwargs))
        np.testing.assert_array_equal(other.low, base.low, err_msg=str(kwargs))


@pytest.mark.parametrize('options', [[], ['--center', 'median'], ['--reject', 'mad']])
def test_reporting_options_never_change_the_output(tmp_path, capsys, options):
    rng = np.random.default_rng(7)
    stack = rng.integers(1000, 1004, (9, 40, 50)).astype(np.uint16)  # ties everywhere
    stack[rng.random(stack.shape) < 0.02] = 3000
    paths = write_frames(tmp_path, stack)
    runs = {'plain': [], '-v': ['-v'], 'frame-stats': ['--frame-stats', 'f.csv'],
            'map': ['--rejection-map', 'm.tif'], 'rows': ['-r', '1'], 'memory': ['-m', '64M']}
    outputs = {}
    for name, extra in runs.items():
        out = str(tmp_path / f'{name}.tif')
        extra = [str(tmp_path / e) if e.endswith(('.csv', '.tif')) else e for e in extra]
        quiet = [] if '-v' in extra else ['-q']
        result = run_main(capsys, *quiet, *options, *extra, out, *paths)
        assert result.status == 0, result.err
        outputs[name] = tifffile.imread(out)
    for name, image in outputs.items():
        np.testing.assert_array_equal(image, outputs['plain'], err_msg=name)


def test_frame_counts_keep_the_fast_paths_value():
    # a point where the window core's sums round differently from the fast
    # path's: with the counts asked for (-v, --frame-stats) the value was
    # the window core's, one unit in the last place away
    x = np.array([0, 2, 2, 5, 5, 0, 6, 1, 3, 0, 3, 5, 3, 6, 0, 3, 1, 2, 4, 1, 2, 1, 6, 0, 4, 2],
                 np.float32)[:, None]
    method = imgstack.Settings.from_options(center='median', sigma=2.5).method
    plain = imgstack._clip_points(x, None, method)
    counted = imgstack._clip_points(x, None, method, frame_counts=True)
    assert counted.result.tobytes() == plain.result.tobytes()
    assert counted.frame_low.sum() + counted.frame_high.sum() == plain.rejected.sum()
