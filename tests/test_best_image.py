# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""The best image without expert knowledge (README, A night of frames and
What is computed): points with no valid value keep their plain mean, zero
borders and drifting levels are named in the data's own terms."""

import re

import numpy as np
import pytest
import tifffile

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
