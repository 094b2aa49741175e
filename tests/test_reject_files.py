# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Every rejection and combination through files and the command line.

The in-memory methods are tested against an independent reference in
tests/test_methods.py; here the file job must give the in-memory result for
every method, layout and band height, with NaN, alpha and a valid range;
the command line must refuse a parameter of another method, and warn when
a method suits the frame count poorly.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import imgstack

METHODS = ['sigma', 'mad', 'winsorized', 'linear', 'percentile', 'minmax', 'gesd', 'none']
COMBINES = ['mean', 'median', 'min', 'max']
LAYOUTS = {
    'strips': {'rowsperstrip': 3},
    'tiles': {'tile': (16, 16)},
    'planar': {'planarconfig': 'separate', 'rowsperstrip': 5},
    'one strip deflate': {'compression': 'zlib', 'rowsperstrip': 1000},
}


def night(n: int, shape: tuple[int, ...], dtype: str = 'uint16', seed: int = 0,
          drift: float = 60.0) -> np.ndarray:
    """Frames of one scene with a drifting sky, noise and outliers."""
    rng = np.random.default_rng(seed)
    scene = rng.uniform(900, 1500, shape)
    frames = scene + rng.normal(0, 20, (n, *shape)) + rng.uniform(-drift, drift, n).reshape(
        (n,) + (1,) * len(shape))
    hits = rng.random(frames.shape) < 0.03
    frames[hits] = rng.uniform(5000, 20000, hits.sum())
    if dtype == 'uint16':
        return np.rint(frames).astype(np.uint16)
    out = frames.astype(dtype)
    out[rng.random(out.shape) < 0.02] = np.nan
    return out


def write(tmp_path, stack: np.ndarray, **kwargs) -> list[str]:
    paths = []
    for i, frame in enumerate(stack):
        paths.append(str(tmp_path / f'in{i:02d}.tif'))
        photometric = 'rgb' if frame.ndim == 3 and frame.shape[-1] in (3, 4) else 'minisblack'
        extra = {'extrasamples': [2]} if frame.ndim == 3 and frame.shape[-1] == 4 else {}
        tifffile.imwrite(paths[-1], frame, photometric=photometric, metadata=None,
                         **extra, **kwargs)
    return paths


@pytest.mark.parametrize('layout', list(LAYOUTS))
@pytest.mark.parametrize('reject', METHODS)
def test_streamed_equals_in_memory_every_method(tmp_path, reject, layout):
    stack = night(11, (23, 37, 3))
    paths = write(tmp_path, stack, **LAYOUTS[layout])
    combine = COMBINES[METHODS.index(reject) % 4]
    for rows in (1, 7, 1000):
        out = str(tmp_path / f'out{rows}.tif')
        imgstack.stack_files(paths, out, reject=reject, combine=combine, rows=rows,
                             memory='64M', force=True)
        want, _ = imgstack.stack_array(stack, reject=reject, combine=combine)
        np.testing.assert_array_equal(tifffile.imread(out), imgstack.to_dtype(want, stack.dtype))


@pytest.mark.parametrize('combine', COMBINES)
@pytest.mark.parametrize('reject', METHODS)
def test_valid_values_every_method(tmp_path, reject, combine):
    """NaN, a valid range and alpha mark values that no method sees."""
    stack = night(9, (14, 19), dtype='float32', seed=3)
    paths = write(tmp_path, stack, rowsperstrip=4)
    out = str(tmp_path / 'out.tif')
    imgstack.stack_files(paths, out, reject=reject, combine=combine, rows=5,
                         valid_range=(800.0, 4000.0))
    want, _ = imgstack.stack_array(stack, reject=reject, combine=combine,
                                   valid_range=(800.0, 4000.0))
    got = tifffile.imread(out)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)
    # the valid range took the outliers out: what is left is the scene's level
    assert np.nanmax(got) < 4000
    # alpha: transparent pixels count in no statistic
    rgba = np.concatenate([night(9, (14, 19, 3), seed=4),
                           np.full((9, 14, 19, 1), 65535, np.uint16)], axis=-1)
    rgba[2, 5:9, :, 3] = 0  # frame 2 transparent in rows 5-8
    rgba[2, 5:9, :, :3] = 60000
    (tmp_path / 'rgba').mkdir()
    paths = write(tmp_path / 'rgba', rgba, rowsperstrip=3)
    imgstack.stack_files(paths, out, reject=reject, combine=combine, rows=4, force=True)
    valid = np.broadcast_to(rgba[..., 3:] == 65535, rgba.shape)
    want, _ = imgstack.stack_array(rgba, reject=reject, combine=combine, valid=valid)
    got = tifffile.imread(out)
    np.testing.assert_array_equal(got[..., :3], imgstack.to_dtype(want, rgba.dtype)[..., :3])
    assert got[5:9, :, :3].max() < 20000  # the transparent 60000 is not there


@pytest.mark.parametrize(
    ('args', 'words'),
    [
        (['--percentile', '0.2:0.1'], '--percentile applies to --reject percentile only'),
        (['--reject', 'sigma', '--minmax', '1:1'], '--minmax applies to --reject minmax only'),
        (['--reject', 'mad', '--gesd', '0.05:0.3'], '--gesd applies to --reject gesd only'),
        (['--reject', 'minmax', '-s', '3'], 'do not apply to --reject minmax'),
        (['--reject', 'percentile', '--sigma-low', '2'], 'do not apply to --reject percentile'),
        (['--reject', 'mad', '--center', 'median'], '--center applies to --reject sigma only'),
        (['--percentile', '1.5:0.1', '--reject', 'percentile'], None),
        (['--minmax', '1', '--reject', 'minmax'], 'LOW:HIGH'),
        (['--reject', 'median'], 'invalid choice'),
        (['--combine', 'average'], 'invalid choice'),
    ],
)
def test_parameters_of_another_method_are_usage_errors(tmp_path, capsys, args, words):
    paths = write(tmp_path, night(8, (6, 7)))
    out = tmp_path / 'out.tif'
    with pytest.raises(SystemExit) as exc:
        code = imgstack.main([*args, str(out), *paths])
        raise SystemExit(code)
    err = capsys.readouterr().err
    if words is None:  # a bad value in range: one error line, status 1
        assert exc.value.code == 1 and 'percentile must be' in err
    else:
        assert exc.value.code == 2 and words in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ('n', 'args', 'words'),
    [
        (5, [], 'with 5 frames, sigma clipping can never reject a value: try --reject percentile'),
        (4, ['--reject', 'mad'], 'with 4 frames, MAD clipping rarely tells an outlier from noise: '
                                 'try --reject percentile'),
        (10, ['--reject', 'gesd'], 'with 10 frames, generalized ESD has little power: '
                                   'try --reject winsorized'),
        (3, ['--reject', 'gesd'], 'with 3 frames, generalized ESD can never reject a value'),
        (2, ['--reject', 'minmax'], 'with 2 frames, --minmax 1:1 keeps no value'),
    ],
)
def test_poorly_suited_methods_are_named_with_advice(tmp_path, capsys, n, args, words):
    paths = write(tmp_path, night(n, (6, 7)))
    assert imgstack.main([*args, str(tmp_path / 'out.tif'), *paths]) == 0
    assert words in capsys.readouterr().err
    with pytest.warns(imgstack.ImgstackWarning, match=words.split(':')[0]):
        reject = args[1] if args else 'sigma'
        imgstack.stack_files(paths, str(tmp_path / 'lib.tif'), reject=reject)


@pytest.mark.parametrize('args', [[], ['--reject', 'winsorized'], ['--reject', 'percentile']])
def test_well_suited_methods_say_nothing(tmp_path, capsys, args):
    paths = write(tmp_path, night(24 if not args else 10, (6, 7), drift=0.0))
    assert imgstack.main([*args, str(tmp_path / 'out.tif'), *paths]) == 0
    assert 'warning' not in capsys.readouterr().err


def test_median_stack_removes_a_person_standing_still(tmp_path):
    """Issue 12's photographer: a figure in 4 of 15 frames survives every
    sigma clip, and a median stack removes it."""
    rng = np.random.default_rng(9)
    scene = rng.uniform(2000, 3000, (30, 40))
    stack = scene + rng.normal(0, 80, (15, 30, 40))
    stack[3:7, 10:20, 10:20] = 9000  # the person, in frames 3 to 6
    stack = np.rint(stack).astype(np.uint16)
    paths = write(tmp_path, stack)
    for args, worst in ((['--reject', 'none', '--combine', 'median'], 300), ([], None)):
        out = tmp_path / 'out.tif'
        assert imgstack.main(['-q', '-f', *args, str(out), *paths]) == 0
        error = np.abs(tifffile.imread(out).astype(float) - scene)[10:20, 10:20].mean()
        if worst is None:
            assert error > 1000  # sigma clipping keeps it
        else:
            assert error < worst


@pytest.mark.parametrize(
    ('args', 'recorded'),
    [
        ([], '-s 2.5 -i 5 --center mean; 8 frames'),
        (['--reject', 'minmax'], ': --reject minmax --minmax 1:1; 8 frames'),
        (['--reject', 'winsorized', '-s', '3'], ': --reject winsorized -s 3 -i 5; 8 frames'),
        (['--reject', 'none', '--combine', 'median'], ': --reject none --combine median; 8 frames'),
    ],
)
def test_description_is_a_command_line_that_works(tmp_path, args, recorded):
    """ImageDescription records the options that apply, so that they can be
    given again: no -s or --center for a method that refuses them."""
    paths = write(tmp_path, night(8, (6, 7), drift=0.0))
    out = tmp_path / 'out.tif'
    assert imgstack.main(['-q', *args, str(out), *paths]) == 0
    with tifffile.TiffFile(out) as tif:
        description = tif.pages.first.tags['ImageDescription'].value
    assert description.endswith(recorded), description
    options = description.split(': ', 1)[1].rsplit(';', 1)[0].split()
    assert imgstack.main(['-q', '-f', *options, str(out), *paths]) == 0
