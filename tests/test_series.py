# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""A microscope series (README, "A microscope series"; "Files"; "Use"):
the pages of one file as frames, ImageJ hyperstacks and OME-TIFF along T or
Z with their channels kept, ``--group``, the output Fiji and OME readers
need, the errors, and the memory bound of a multi-page input.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

import imgstack
from tests.helpers import INTERPRETER, Guard, assert_error, frame, run_main, run_measured, write


def expected(stack: np.ndarray, dtype: np.dtype | None = None, **options) -> np.ndarray:
    """What stack_array gives for the frames on the first axis, as the
    output's type (channels are points like any other)."""
    result = imgstack.stack_array(stack, **options)[0]
    return imgstack._to_dtype(result, np.dtype(dtype or stack.dtype))


def series(shape, dtype='uint16', seed=0) -> np.ndarray:
    """Random frames with a few outliers to reject."""
    rng = np.random.default_rng(seed)
    data = rng.normal(1000, 30, shape)
    flat = data.reshape(-1)
    flat[rng.integers(0, flat.size, flat.size // 200)] = 30000
    return data.astype(dtype)


# -- frames from pages ---------------------------------------------------------


@pytest.mark.parametrize('kind', ['plain', 'bigtiff', 'zlib', 'tiled'])
def test_plain_multipage_file_stacks_its_pages(tmp_path, kind):
    """README, A microscope series: one file of several pages is a stack."""
    data = series((9, 40, 48))
    options = {'plain': {}, 'bigtiff': {'bigtiff': True}, 'zlib': {'compression': 'zlib'},
               'tiled': {'tile': (16, 16), 'compression': 'zlib'}}[kind]
    path = write(tmp_path / 'pages.tif', data, **options)
    out = tmp_path / 'out.tif'
    stats = imgstack.stack_files(path, str(out), rows=7, memory='64M')
    assert stats.frames == 9
    got = tifffile.imread(out)
    np.testing.assert_array_equal(got, expected(tifffile.imread(path)))
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == 1


def test_pages_mix_with_single_page_files(tmp_path):
    """README, A microscope series: multi-page and single-page inputs mix."""
    data = series((7, 20, 30))
    a = write(tmp_path / 'a.tif', data[:4], photometric='minisblack')
    b = write(tmp_path / 'b.tif', data[4])
    c = write(tmp_path / 'c.tif', data[5:])
    out = tmp_path / 'out.tif'
    stats = imgstack.stack_files([a, b, c], str(out), center='median', frame_stats=str(
        tmp_path / 'frames.csv'))
    assert stats.frames == 7
    np.testing.assert_array_equal(tifffile.imread(out), expected(data, center='median'))
    table = (tmp_path / 'frames.csv').read_text().splitlines()
    assert [line.split(',')[0] for line in table[1:]] == [
        f'{a}[page 0]', f'{a}[page 1]', f'{a}[page 2]', f'{a}[page 3]', b,
        f'{c}[page 0]', f'{c}[page 1]']


def test_reduced_pages_and_the_rejection_map_stay_out(tmp_path):
    """README, Files: overviews (NewSubfileType) and the rejection map's
    extra pages are not frames."""
    data = series((4, 32, 32))
    path = str(tmp_path / 'overviews.tif')
    with tifffile.TiffWriter(path) as tw:
        for image in data:
            tw.write(image, metadata=None)
        tw.write(data[0][::2, ::2], subfiletype=1, metadata=None)  # as GDAL's overviews
        tw.write(data[0][::4, ::4], subfiletype=1, metadata=None)
    out, rmap = tmp_path / 'out.tif', str(tmp_path / 'map.tif')
    imgstack.stack_files(path, str(out), rejection_map=rmap, reject='none')
    np.testing.assert_array_equal(tifffile.imread(out), expected(data, reject='none'))
    source = imgstack._open_source(rmap)
    assert len(source.frames) == 1  # page 1 of 3


# -- ImageJ hyperstacks ----------------------------------------------------------


def imagej(path, data, axes, **metadata):
    tifffile.imwrite(path, data, imagej=True, resolution=(4.0, 4.0),
                     metadata={'axes': axes, 'unit': 'um', **metadata})
    return str(path)


@pytest.mark.parametrize('dtype', ['uint16', 'float32'])
def test_imagej_channels_stay_channels(tmp_path, dtype):
    """README, A microscope series: T frames, C channels each stacked on its
    own; the output is an ImageJ hyperstack of C channels at the input's
    scale, with display ranges that still fit."""
    data = series((8, 3, 24, 20), dtype)
    path = imagej(tmp_path / 'ij.tif', data, 'TCYX', Ranges=(900, 1100, 800, 1200, 0, 2000),
                  mode='composite')
    out = tmp_path / 'out.tif'
    stats = imgstack.stack_files(path, str(out), reject='mad', rows=5)
    assert stats.frames == 8
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.series[0].axes == 'CYX'
        meta = tif.imagej_metadata
        assert meta['channels'] == 3 and meta['unit'] == 'um' and meta['mode'] == 'composite'
        assert meta['Ranges'] == (900, 1100, 800, 1200, 0, 2000)
        assert 'imgstack' in meta['Info']
        assert tif.pages.first.tags['XResolution'].value == (4, 1)
        got = tif.asarray()
    np.testing.assert_array_equal(got, expected(tifffile.imread(path), reject='mad'))


def test_imagej_ranges_follow_float32_output(tmp_path):
    data = series((5, 2, 16, 16))
    path = imagej(tmp_path / 'ij.tif', data, 'TCYX', Ranges=(0, 65535, 0, 6553.5))
    out = tmp_path / 'out.tif'
    imgstack.stack_files(path, str(out), dtype='float32', reject='none')
    with tifffile.TiffFile(out) as tif:
        assert tif.imagej_metadata['Ranges'] == pytest.approx((0, 1, 0, 0.1))
        assert tif.pages.first.dtype == np.float32


@pytest.mark.parametrize(('axis', 'kept'), [('T', 'ZCYX'), ('Z', 'TCYX')])
def test_imagej_axis_chosen_the_other_kept(tmp_path, axis, kept):
    """README, A microscope series: ``--axis`` picks the frames' axis; the
    other of T and Z is kept, as channels are."""
    data = series((4, 3, 2, 12, 10))  # TZCYX
    path = imagej(tmp_path / 'ij.tif', data, 'TZCYX', spacing=0.5, finterval=2.0)
    out = tmp_path / 'out.tif'
    imgstack.stack_files(path, str(out), axis=axis, reject='none')
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == kept
        meta = tif.imagej_metadata
        got = tif.asarray()
    stack = data if axis == 'T' else np.moveaxis(data, 1, 0)
    np.testing.assert_array_equal(got, expected(stack, reject='none'))
    assert ('spacing' in meta) == (axis == 'T') and ('finterval' in meta) == (axis == 'Z')


def test_imagej_t_and_z_is_a_usage_error(tmp_path, capsys):
    """README, A microscope series: T and Z both longer than 1 and no
    ``--axis``: a usage error that names both and how to choose."""
    path = imagej(tmp_path / 'ij.tif', series((3, 2, 8, 8)), 'TZYX')
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, tmp_path / 'out.tif', path)
    line = assert_error(result, guard, path, code=2, words=['T=3', 'Z=2', '--axis T or --axis Z'])
    assert 'Traceback' not in line


# -- OME-TIFF --------------------------------------------------------------------


def test_ome_series_keeps_scale_and_channel_names(tmp_path):
    """README, A microscope series: OME-TIFF in, OME-TIFF out, with its
    physical sizes and channel names; float stays float, NaN is missing."""
    data = series((6, 2, 20, 24), 'float32')
    data[2, 0, 3, 4] = np.nan
    data[:, 1, 5, 5] = np.nan  # no valid value: NaN
    path = str(tmp_path / 'in.ome.tif')
    tifffile.imwrite(path, data, ome=True, metadata={
        'axes': 'TCYX', 'PhysicalSizeX': 0.25, 'PhysicalSizeXUnit': 'µm', 'PhysicalSizeY': 0.25,
        'PhysicalSizeYUnit': 'µm', 'Channel': {'Name': ['DAPI', 'GFP']}})
    out = tmp_path / 'out.ome.tif'
    with pytest.warns(imgstack.ImgstackWarning, match='no valid value'):
        imgstack.stack_files(path, str(out), center='median')
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and tif.series[0].axes == 'CYX'
        xml = tif.ome_metadata
        got = tif.asarray()
    assert 'PhysicalSizeX="0.25"' in xml and 'PhysicalSizeYUnit="µm"' in xml
    assert re.search('Name="DAPI".*Name="GFP"', xml)
    # how it was made, as ImageDescription says it for other files
    assert re.search(r'<Description>imgstack [\d.]+: .*--center median.*; 6 frames</Description>',
                     xml)
    assert got.dtype == np.float32 and np.isnan(got[1, 5, 5])
    np.testing.assert_array_equal(got, expected(data, center='median'))


# -- --group ---------------------------------------------------------------------


def test_group_stacks_every_n_frames(tmp_path):
    """README, A microscope series: ``--group 3`` of 8 frames: pages of 3, 3
    and 2 frames (said in a warning); the map has three pages per group."""
    data = series((8, 2, 16, 12))
    path = imagej(tmp_path / 'ij.tif', data, 'TCYX', finterval=1.5)
    out, rmap = tmp_path / 'out.tif', str(tmp_path / 'map.tif')
    with pytest.warns(imgstack.ImgstackWarning, match='last group holds 2 frames'):
        stats = imgstack.stack_files(path, str(out), group=3, rejection_map=rmap,
                                     reject='percentile', compress='zlib')
    assert stats.frames == 8
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == 'TCYX' and tif.series[0].shape == (3, 2, 16, 12)
        assert tif.imagej_metadata['finterval'] == 4.5
        got = tif.asarray()
    for g, (a, b) in enumerate([(0, 3), (3, 6), (6, 8)]):
        np.testing.assert_array_equal(got[g], expected(data[a:b], reject='percentile'))
        _, _, kept = imgstack.stack_array(data[a:b], reject='percentile', return_mask=True)
        rejected = (~kept).sum(axis=(0, 1))
        np.testing.assert_array_equal(tifffile.imread(rmap, key=3 * g), rejected)
    with tifffile.TiffFile(rmap) as tif:
        assert len(tif.pages) == 9


def test_group_of_plain_pages_and_a_lone_last_frame(tmp_path, capsys):
    data = series((7, 10, 12))
    path = write(tmp_path / 'pages.tif', data)
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '--group', '2', '--reject', 'none', out, path)
    assert result.status == 0, result.err
    assert 'the last frame' in result.err and 'left out' in result.err
    assert 'stacked 6 frames' in result.err
    got = tifffile.imread(out)
    assert got.shape == (3, 10, 12)
    for g in range(3):
        np.testing.assert_array_equal(got[g], expected(data[2 * g:2 * g + 2], reject='none'))


@pytest.mark.parametrize('layout', ['ome tiled zlib', 'imagej one strip', 'rgb planar'])
def test_compressed_channels_in_groups(tmp_path, layout):
    """README, A microscope series: compressed, tiled or one-strip channel
    pages (decoded in band, or once beforehand) and planar RGB pages,
    per group."""
    if layout == 'rgb planar':
        data = series((6, 3, 20, 24), 'uint8')
        options = {'photometric': 'rgb', 'planarconfig': 'separate', 'metadata': None}
    else:
        data = series((6, 2, 40, 36))
        options = ({'ome': True, 'tile': (16, 16)} if layout.startswith('ome') else
                   {'imagej': True, 'rowsperstrip': 40})
        options.update(compression='zlib', metadata={'axes': 'TCYX'})
    path = str(tmp_path / 'in.tif')
    tifffile.imwrite(path, data, **options)
    out = tmp_path / 'out.tif'
    imgstack.stack_files(path, str(out), group=3, rows=5, reject='minmax', compress='zstd',
                         memory='64M')
    got = tifffile.imread(out)
    assert got.shape == (2, *data.shape[1:])
    for g in range(2):
        np.testing.assert_array_equal(got[g], expected(data[3 * g:3 * g + 3], reject='minmax'))


# -- errors ----------------------------------------------------------------------


def test_pages_of_different_shapes(tmp_path, capsys):
    path = str(tmp_path / 'mixed.tif')
    with tifffile.TiffWriter(path) as tw:
        tw.write(frame(1, (20, 30)), metadata=None)
        tw.write(frame(2, (20, 31)), metadata=None)
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, tmp_path / 'out.tif', path)
    assert_error(result, guard, path, words=['2 pages', 'differ', 'separate files'])


def test_axis_that_does_not_exist(tmp_path, capsys):
    path = imagej(tmp_path / 'ij.tif', series((4, 8, 8)), 'TYX')
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--axis', 'Z', tmp_path / 'out.tif', path)
    assert_error(result, guard, path, words=['no axis Z', 'T=4', '--axis T'])


def test_group_larger_than_the_frames(tmp_path, capsys):
    path = write(tmp_path / 'pages.tif', series((4, 8, 8)), photometric='minisblack')
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, '--group', '5', tmp_path / 'out.tif', path)
    assert_error(result, guard, path, words=['--group 5', 'larger than the 4 frames'])


def test_one_page_alone(tmp_path, capsys):
    path = write(tmp_path / 'one.tif')
    guard = Guard(tmp_path / 'out.tif')
    result = run_main(capsys, tmp_path / 'out.tif', path)
    assert_error(result, guard, path, words=['single image', 'two or more frames'])


@pytest.mark.parametrize(('value', 'words'), [('C', 'axis'), ('TT', 'axis'), ('1', 'group')])
def test_bad_axis_or_group_is_a_usage_error(tmp_path, capsys, value, words):
    path = write(tmp_path / 'pages.tif', series((4, 8, 8)), photometric='minisblack')
    flag = '--group' if words == 'group' else '--axis'
    result = run_main(capsys, flag, value, tmp_path / 'out.tif', path)
    assert result.status == 2 and words in result.err and 'Traceback' not in result.err


def test_library_checks_axis_and_group(tmp_path):
    path = write(tmp_path / 'pages.tif', series((4, 8, 8)), photometric='minisblack')
    for options in ({'axis': 'C'}, {'group': 1}, {'group': 2.0}):
        with pytest.raises(imgstack.ImgstackError, match='axis|group'):
            imgstack.stack_files(path, str(tmp_path / 'out.tif'), **options)


# -- streaming -------------------------------------------------------------------


def test_one_open_per_file_and_task():
    """README, Memory and speed: the pages of one file are read with one
    open file per band and reading thread."""
    frames = [imgstack.Frame.__new__(imgstack.Frame) for _ in range(2003)]
    for i, f in enumerate(frames):
        f.path, f.fd, f.identity = ('one.tif' if i < 2000 else f'{i}.tif'), None, (1, 2)
    tasks = imgstack._read_tasks(frames)
    assert [len(t) for t in tasks] == [1000, 1000, 1, 1, 1]


def test_multipage_bigtiff_stays_in_budget(tmp_path):
    """README, Memory and speed: a 600-page BigTIFF of 96 MiB stacked under
    -m 48M peaks under the budget plus the interpreter's footprint."""
    path = str(tmp_path / 'pages.tif')
    rng = np.random.default_rng(1)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for _ in range(600):
            tw.write(rng.integers(0, 4000, (256, 328), np.uint16), metadata=None)
    out = str(tmp_path / 'out.tif')
    status, err, peak = run_measured(['-q', '-m', '48M', out, path])
    assert status == 0, err
    assert peak <= 48 * imgstack.MIB + INTERPRETER, peak / imgstack.MIB
    assert tifffile.imread(out).shape == (256, 328)
