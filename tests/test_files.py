# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Every TIFF users have, in and out (README, Files): what is read, what is
written and what other programs read back.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tifffile

import imgstack
from imgstack import ImgstackError
from tests.helpers import frame, inputs_in, remove_tags, run_main, tag_values, write, write_frames

LIBTIFF = shutil.which('tiffcp') and shutil.which('tiffinfo')
needs_libtiff = pytest.mark.skipif(not LIBTIFF, reason='libtiff-tools not installed')


def frames(n=9, shape=(37, 29), dtype='uint16', seed=0):
    """Frames with noise and a few outliers, as a stack."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == 'f':
        stack = rng.normal(0.5, 0.05, (n, *shape))
        stack[rng.random(stack.shape) < 0.02] = 5.0
    else:
        info = np.iinfo(dtype)
        mid, spread = (info.min + info.max) / 2, (info.max - info.min) / 50
        stack = rng.normal(mid, spread, (n, *shape))
        stack[rng.random(stack.shape) < 0.02] = info.max
        stack = np.rint(np.clip(stack, info.min, info.max))
    return stack.astype(dtype)


def stacked(tmp_path, paths, name='out.tif', **kwargs):
    out = str(tmp_path / name)
    kwargs.setdefault('iterations', 3)
    kwargs.setdefault('sigma', 2.0)
    imgstack.stack_files(paths, out, **kwargs)
    return out


def no_leftovers(directory):
    return [f for f in os.listdir(directory) if f.endswith(('.part', '.raw'))]


RGB = {'photometric': 'rgb'}
INPUTS = {
    'deflate': RGB | {'compression': 'zlib', 'rowsperstrip': 8},
    'deflate-predictor': RGB | {'compression': 'zlib', 'predictor': True, 'rowsperstrip': 8},
    'lzw': RGB | {'compression': 'lzw', 'rowsperstrip': 16},
    'lzw-single-strip': RGB | {'compression': 'lzw', 'rowsperstrip': 1000},
    'zstd': RGB | {'compression': 'zstd', 'rowsperstrip': 5},
    'lzma': RGB | {'compression': 'lzma'},
    'packbits': RGB | {'compression': 'packbits', 'rowsperstrip': 3},
    'tiles': RGB | {'tile': (16, 16)},
    'tiles-deflate': RGB | {'tile': (16, 32), 'compression': 'zlib'},
    'strips': RGB | {'rowsperstrip': 7},
    'bigtiff': RGB | {'bigtiff': True, 'rowsperstrip': 10},
    'big-endian': RGB | {'byteorder': '>', 'rowsperstrip': 10},
    'big-endian-lzw': RGB | {'byteorder': '>', 'compression': 'lzw', 'predictor': True},
}


@pytest.mark.parametrize('kind', list(INPUTS))
def test_input_kinds_equal_uncompressed(tmp_path, kind):
    stack = frames(shape=(37, 29, 3))
    plain = stacked(tmp_path, write_frames(tmp_path, stack, 'plain', **RGB), 'plain.tif', rows=9)
    other = stacked(tmp_path, write_frames(tmp_path, stack, 'other', **INPUTS[kind]), 'other.tif',
                    rows=9)
    np.testing.assert_array_equal(tifffile.imread(other), tifffile.imread(plain))
    assert not no_leftovers(tmp_path)


@pytest.mark.parametrize(
    'dtype', ['uint8', 'uint16', 'uint32', 'int8', 'int16', 'int32', 'float32', 'float64'])
@pytest.mark.parametrize('layout', ['gray', 'rgb', 'planar'])
def test_dtypes_and_layouts(tmp_path, dtype, layout):
    shape = {'gray': (21, 19), 'rgb': (21, 19, 3), 'planar': (3, 21, 19)}[layout]
    kwargs = {'gray': {}, 'rgb': RGB, 'planar': RGB | {'planarconfig': 'separate'}}[layout]
    stack = frames(7, shape, dtype)
    paths = write_frames(tmp_path, stack, compression='zlib', rowsperstrip=4, **kwargs)
    out = stacked(tmp_path, paths, rows=5)
    want, _ = imgstack.sigma_clipped_mean(stack, sigma=2.0, iterations=3)
    got = tifffile.imread(out)
    assert got.dtype == np.dtype(dtype) and got.shape == shape
    np.testing.assert_array_equal(got, imgstack._to_dtype(want, np.dtype(dtype)))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.planarconfig == (2 if layout == 'planar' else 1)
        assert page.photometric == (1 if layout == 'gray' else 2)


def test_jpeg_inputs(tmp_path):
    stack = frames(6, (32, 48, 3), 'uint8')
    paths = write_frames(tmp_path, stack, photometric='rgb', compression='jpeg', rowsperstrip=16)
    decoded = np.stack([tifffile.imread(p) for p in paths])
    plain = stacked(tmp_path, write_frames(tmp_path, decoded, 'plain', **RGB), 'plain.tif')
    out = stacked(tmp_path, paths)
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(plain))


def test_jpeg_ycbcr_subsampled_inputs(tmp_path):
    stack = frames(5, (32, 48, 3), 'uint8')
    paths = write_frames(tmp_path, stack, photometric='ycbcr', compression='jpeg',
                  subsampling=(2, 2), rowsperstrip=16)
    decoded = np.stack([tifffile.imread(p) for p in paths])
    plain = stacked(tmp_path, write_frames(tmp_path, decoded, 'plain', **RGB), 'plain.tif')
    out = stacked(tmp_path, paths)
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(plain))
    with tifffile.TiffFile(out) as tif:
        assert tif.pages.first.photometric == 2  # written as RGB


def test_alpha_marks_invalid_pixels(tmp_path):
    stack = frames(8, (10, 12, 4), 'uint16')
    stack[..., 3] = 65535
    stack[2, 3, 4, 3] = 0  # transparent: its colour must not count
    stack[2, 3, 4, :3] = 7
    stack[:, 5, 6, 3] = 100  # transparent in every frame
    paths = write_frames(tmp_path, stack, photometric='rgb', extrasamples=['unassalpha'])
    out = stacked(tmp_path, paths, iterations=0)
    got = tifffile.imread(out)
    keep = np.ones(8, bool)
    keep[2] = False
    want = np.rint(stack[keep, 3, 4, :3].astype(np.float64).mean(axis=0))
    np.testing.assert_array_equal(got[3, 4, :3], want)
    assert got[3, 4, 3] == 65535
    # transparent in every frame: no valid value, the plain mean, alpha too
    plain = np.rint(stack[:, 5, 6].astype(np.float64).mean(axis=0))
    assert got[5, 6].tolist() == plain.tolist() and got[5, 6, 3] == 100
    with tifffile.TiffFile(out) as tif:
        assert tuple(tif.pages.first.extrasamples) == (2,)
    # --no-alpha: the 4th channel is data
    paths = write_frames(tmp_path, stack, 'na', photometric='rgb', extrasamples=['unassalpha'])
    out2 = stacked(tmp_path, paths, 'na.tif', iterations=0, no_alpha=True)
    assert tifffile.imread(out2)[3, 4, 0] == np.rint(stack[:, 3, 4, 0].mean())


def test_planar_float_alpha(tmp_path):
    stack = frames(6, (4, 9, 11), 'float32')
    stack[:, 3] = 1.0
    stack[1, 3, 2, 2] = 0.5
    stack[1, :3, 2, 2] = 100.0
    paths = write_frames(tmp_path, stack, photometric='rgb', planarconfig='separate',
                         extrasamples=['assocalpha'])
    out = stacked(tmp_path, paths, rows=3)
    got = tifffile.imread(out)
    want = np.delete(stack[:, :3, 2, 2], 1, axis=0).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(got[:3, 2, 2], want.astype(np.float32))
    assert got[3, 2, 2] == 1.0


def test_extra_sample_that_is_not_alpha_is_data(tmp_path):
    stack = frames(6, (8, 9, 2), 'uint16')
    stack[:, :, :, 1] = 3  # would make every pixel transparent if it were alpha
    paths = write_frames(tmp_path, stack, photometric='minisblack', extrasamples=['unspecified'])
    out = stacked(tmp_path, paths)
    got = tifffile.imread(out)
    assert (got[..., 1] == 3).all() and got[..., 0].min() > 0


def test_multipage_input_stacks_every_page(tmp_path, capsys):
    """README, Files: each page of a multi-page input is a frame."""
    stack = frames(4, (6, 7))
    paths = write_frames(tmp_path, stack[1:])
    with tifffile.TiffWriter(paths[0], bigtiff=False) as tw:
        tw.write(stack[0], metadata=None)
        tw.write(stack[1], metadata=None)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['--reject', 'none', out, *paths]) == 0
    assert 'only the first' not in capsys.readouterr().err
    want = imgstack.stack_array(np.stack([stack[0], stack[1], stack[2], stack[3]]),
                                reject='none')[0]
    np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(want, stack.dtype))


@pytest.mark.parametrize('codec', ['zlib', 'zlib:9', 'lzw', 'zstd', 'zstd:19', 'lzma', 'packbits'])
@pytest.mark.parametrize('dtype', ['uint16', 'int8', 'float32'])
def test_output_codecs(tmp_path, codec, dtype):
    stack = frames(6, (40, 23, 3), dtype)
    paths = write_frames(tmp_path, stack, **RGB)
    plain = stacked(tmp_path, paths, 'plain.tif', rows=7)
    out = stacked(tmp_path, paths, 'out.tif', rows=7, compress=codec)
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(plain))
    name = codec.split(':')[0]
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.compression == imgstack.CODECS[name]
        want = 1 if name == 'packbits' else (3 if dtype == 'float32' else 2)
        assert page.predictor == want
        assert len(page.dataoffsets) > 1  # written as several strips
    if LIBTIFF:
        assert_libtiff_reads(tmp_path, out, tifffile.imread(plain))


def assert_libtiff_reads(tmp_path, path, want):
    """libtiff's tools read the file and decode the same pixels."""
    info = subprocess.run(['tiffinfo', '-D', path], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert 'error' not in info.stderr.lower(), info.stderr
    copy = str(tmp_path / 'libtiff-copy.tif')
    done = subprocess.run(['tiffcp', '-c', 'none', path, copy], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(tifffile.imread(copy), want)
    os.unlink(copy)


@needs_libtiff
@pytest.mark.parametrize('layout', ['gray', 'rgb', 'planar', 'rgba'])
def test_libtiff_reads_output(tmp_path, layout):
    shape = {'gray': (30, 20), 'rgb': (30, 20, 3), 'planar': (3, 30, 20),
             'rgba': (30, 20, 4)}[layout]
    kwargs = {'gray': {}, 'rgb': RGB, 'planar': RGB | {'planarconfig': 'separate'},
              'rgba': RGB | {'extrasamples': ['unassalpha']}}[layout]
    stack = frames(5, shape, 'uint16')
    if layout == 'rgba':
        stack[..., 3] = 65535
    out = stacked(tmp_path, write_frames(tmp_path, stack, **kwargs), compress='zstd', rows=9)
    assert_libtiff_reads(tmp_path, out, tifffile.imread(out))


@needs_libtiff
@pytest.mark.parametrize('options', [['-c', 'lzw:2'], ['-c', 'zip:2', '-t', '-w', '16', '-l', '16'],
                                     ['-p', 'separate', '-c', 'packbits'],
                                     ['-r', '1', '-c', 'zip']])
def test_inputs_written_by_libtiff(tmp_path, options):
    # uint8: tiffcp converts to planar only 8-bit samples
    stack = frames(6, (33, 35, 3), 'uint8')
    plain_paths = write_frames(tmp_path, stack, 'plain', **RGB)
    paths = []
    for i, p in enumerate(plain_paths):
        paths.append(str(tmp_path / f'cp{i}.tif'))
        subprocess.run(['tiffcp', *options, p, paths[-1]], check=True)
    plain = stacked(tmp_path, plain_paths, 'plain.tif')
    out = stacked(tmp_path, paths, 'out.tif', rows=4)
    got = tifffile.imread(out)
    if 'separate' in options:  # the output keeps the planar layout
        got = np.moveaxis(got, 0, -1)
    np.testing.assert_array_equal(got, tifffile.imread(plain))


def test_metadata_kept(tmp_path):
    stack = frames(4, (12, 10, 3), 'uint8')
    icc = b'\x00\x00\x02\x0cFAKE-ICC-PROFILE' + bytes(100)
    paths = write_frames(tmp_path, stack, photometric='rgb', iccprofile=icc,
                  resolution=(300, 300), resolutionunit='INCH')
    out = stacked(tmp_path, paths, compress='lzw')
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.iccprofile == icc
        assert page.tags['XResolution'].value == (300, 1)
        assert page.tags['YResolution'].value == (300, 1)
        assert page.tags['ResolutionUnit'].value == 2
        assert page.photometric == 2


def test_miniswhite_kept(tmp_path):
    stack = frames(4, (5, 6), 'uint8')
    out = stacked(tmp_path, write_frames(tmp_path, stack, photometric='miniswhite'))
    with tifffile.TiffFile(out) as tif:
        assert tif.pages.first.photometric == 0


def test_bigtiff_threshold():
    assert not imgstack._needs_bigtiff(2**31)
    assert imgstack._needs_bigtiff(2**32)
    assert imgstack._needs_bigtiff(2**32 - 2**20)  # no room left for the header


def test_bigtiff_when_large(tmp_path, monkeypatch):
    # writing 4 GiB is too slow for a test: lower the threshold instead and
    # check that the decision reaches the writer
    monkeypatch.setattr(imgstack, '_needs_bigtiff', lambda size: size > 1000)
    stack = frames(3, (30, 40))
    out = stacked(tmp_path, write_frames(tmp_path, stack))
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(stacked(
        tmp_path, write_frames(tmp_path, stack, 'b'), 'b.tif')))


def test_mismatch_names_both_files(tmp_path):
    a = write_frames(tmp_path, frames(2, (5, 6)), 'a')
    b = write_frames(tmp_path, frames(1, (5, 7)), 'b')
    with pytest.raises(ImgstackError, match=r'shape 5x7 differs from 5x6 of .*a00.tif') as exc:
        stacked(tmp_path, a + b)
    assert exc.value.file == b[0]
    c = write_frames(tmp_path, frames(1, (5, 6), 'int16'), 'c')
    with pytest.raises(ImgstackError, match='data type int16 differs from uint16'):
        stacked(tmp_path, a + c)
    d = write_frames(tmp_path, frames(1, (3, 5, 6)), 'd', photometric='rgb',
                     planarconfig='separate')
    e = write_frames(tmp_path, frames(1, (5, 6, 3)), 'e', **RGB)
    with pytest.raises(ImgstackError, match='layout chunky differs from planar'):
        stacked(tmp_path, d + e)
    with pytest.raises(ImgstackError, match='samples per pixel 3 differs from 1'):
        stacked(tmp_path, a + e)
    assert not os.path.exists(tmp_path / 'out.tif')


def test_force_replaces_and_output_not_input(tmp_path):
    paths = write_frames(tmp_path, frames(3, (5, 6)))
    out = tmp_path / 'out.tif'
    out.write_bytes(b'precious')
    with pytest.raises(ImgstackError, match='exists'):
        stacked(tmp_path, paths)
    assert out.read_bytes() == b'precious'
    stacked(tmp_path, paths, force=True)
    assert tifffile.imread(out).shape == (5, 6)
    with pytest.raises(ImgstackError, match='is an input'):
        imgstack.stack_files(paths, str(tmp_path / '.' / 'in00.tif'), force=True)
    link = tmp_path / 'link.tif'
    link.symlink_to(paths[1])
    with pytest.raises(ImgstackError, match='is an input'):
        imgstack.stack_files(paths, str(link), force=True)
    assert not no_leftovers(tmp_path)


def test_single_strip_decoded_once_to_temporary_file(tmp_path, monkeypatch):
    stack = frames(5, (60, 20, 3))
    paths = write_frames(tmp_path, stack, compression='lzw', rowsperstrip=60, **RGB)
    made = []
    real = imgstack._predecode

    def spy(frame, fd, stream=False, cancel=None, directory=None):
        raw = real(frame, fd, stream, cancel, directory)
        made.append(raw.fd)
        # the decoded copy has no name: nothing to leave behind, even after SIGKILL
        assert os.fstat(raw.fd).st_nlink == 0
        assert not [p for p in os.listdir(tmp_path) if p.startswith('.imgstack-')]
        return raw

    monkeypatch.setattr(imgstack, '_predecode', spy)
    out = stacked(tmp_path, paths, rows=8)
    assert len(made) == 5
    plain = stacked(tmp_path, write_frames(tmp_path, stack, 'plain', **RGB), 'plain.tif', rows=8)
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(plain))


def test_temporary_files_removed_on_error(tmp_path):
    stack = frames(4, (60, 20))
    paths = write_frames(tmp_path, stack, compression='zlib', rowsperstrip=60)
    # corrupt the data of the last input: the earlier ones are decoded first
    with open(paths[-1], 'r+b') as fh:
        with tifffile.TiffFile(paths[-1]) as tif:
            offset = tif.pages.first.dataoffsets[0]
        fh.seek(offset)
        fh.write(b'\xff' * 40)
    with pytest.raises(ImgstackError, match=r'in03.tif: corrupt data in rows 0-59'):
        stacked(tmp_path, paths, rows=8)
    assert not no_leftovers(tmp_path)
    assert not os.path.exists(tmp_path / 'out.tif')


@pytest.mark.parametrize(
    ('dtype', 'kwargs'),
    [
        ('uint16', {'compression': 'zlib', 'predictor': True}),
        ('int16', {'compression': 'zlib'}),
        ('float32', {'compression': 'zlib', 'predictor': True}),
        pytest.param('uint8', {'compression': 'lzma', 'predictor': True}, marks=pytest.mark.slow),
        ('uint16', {'compression': 'zlib', 'predictor': True, 'byteorder': '>'}),
        ('float64', {'compression': 'zlib', 'predictor': True, 'byteorder': '>'}),
        ('uint8', {'compression': 'lzw', 'predictor': True}),
        pytest.param('uint16', {'compression': 'lzw', 'byteorder': '>'}, marks=pytest.mark.slow),
    ],
    ids=['deflate-predictor', 'deflate', 'float-predictor', 'lzma', 'big-endian',
         'big-endian-float', 'lzw-predictor', 'lzw-big-endian'],
)
def test_strip_decoded_in_pieces_equals_whole(tmp_path, dtype, kwargs):
    # strips of several pieces of about 2 MiB each (LZW, slow here: fewer)
    rows = 500 if kwargs['compression'] == 'lzw' else 1000
    image = frames(1, (rows, 1500, 3), dtype)[0]
    path = str(tmp_path / 'in.tif')
    tifffile.imwrite(path, image, photometric='rgb', rowsperstrip=600, metadata=None, **kwargs)
    frame = imgstack.open_frame(path)
    assert frame.streamable
    raw_path = str(tmp_path / 'raw')
    fd = os.open(raw_path, os.O_RDWR | os.O_CREAT)
    try:
        raw = imgstack._predecode(frame, fd, stream=True)
    finally:
        os.close(fd)
    decoded = np.fromfile(raw_path, frame.dtype).reshape(image.shape)
    np.testing.assert_array_equal(decoded, image)
    assert raw.raw and raw.fd == fd and raw.path == path


def test_corrupt_stream_names_rows(tmp_path):
    image = frames(1, (300, 400), 'uint16')[0]
    path = str(tmp_path / 'in.tif')
    tifffile.imwrite(path, image, compression='zlib', rowsperstrip=300, metadata=None)
    frame = imgstack.open_frame(path)
    with open(path, 'r+b') as fh:
        fh.seek(int(frame.offsets[0]) + int(frame.bytecounts[0]) // 2)
        fh.write(b'\x00\xff' * 64)
    frame = imgstack.open_frame(path)  # the file changed: read its header again
    fd = os.open(tmp_path / 'raw', os.O_RDWR | os.O_CREAT)
    with pytest.raises(ImgstackError, match=r'in.tif: corrupt .*data in rows \d+-299'):
        imgstack._predecode(frame, fd, stream=True)
    os.close(fd)


@pytest.mark.parametrize('block', [1, 1000, 1 << 21])
def test_lzw_pieces_equal_imagecodecs(block):
    import imagecodecs

    rng = np.random.default_rng(8)
    # noise fills the code table (clear codes), runs make long entries
    data = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes() + bytes(200_000) + b'ab' * 50_000
    encoded = imagecodecs.lzw_encode(data)
    chunks = [encoded[i:i + 4096] for i in range(0, len(encoded), 4096)]
    pieces = list(imgstack._lzw_pieces(iter(chunks), block))
    assert b''.join(pieces) == data
    if block == 1000:
        assert max(len(p) for p in pieces) < 1000 + 4096 and len(pieces) > 100


def test_lzw_code_beyond_table_is_corrupt():
    # 9-bit code 300 right after a clear: beyond the table
    code = (256 << 9 | 300) << 6  # two 9-bit codes, padded to 24 bits
    with pytest.raises(ValueError, match='beyond the table'):
        list(imgstack._lzw_pieces(iter([code.to_bytes(3, 'big')]), 100))


def test_slow_lzw_pieces_are_announced(tmp_path, capsys, monkeypatch):
    # shrink the fixed costs so that a small strip is "too large": the same
    # decisions as for a 360 MB strip under -m 256M, in a fraction of a second
    monkeypatch.setattr(imgstack, 'RESERVE_BYTES', 256 << 10)
    monkeypatch.setattr(imgstack, 'CHUNK_BYTES', 256 << 10)
    monkeypatch.setattr(imgstack, 'STREAM_BYTES', 128 << 10)
    monkeypatch.setattr(imgstack, 'LZW_TABLE_BYTES', 64 << 10)  # the table, counted apart
    stack = frames(3, (400, 500))
    paths = write_frames(tmp_path, stack, compression='lzw', rowsperstrip=400)
    out = str(tmp_path / 'out.tif')
    assert imgstack.main(['-m', str(1 << 20), '-r', '10', out, *paths]) == 0
    err = capsys.readouterr().err
    assert err.count('decoding it slowly in pieces') == 3
    plain = stacked(tmp_path, write_frames(tmp_path, stack, 'plain'), 'plain.tif', sigma=2.5,
                    iterations=1)
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(plain))


def test_cmyk_kept(tmp_path):
    stack = frames(5, (9, 8, 4), 'uint8')
    out = stacked(tmp_path, write_frames(tmp_path, stack, photometric='separated'))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.photometric == 5 and page.samplesperpixel == 4 and not page.extrasamples
    want, _ = imgstack.sigma_clipped_mean(stack, sigma=2.0, iterations=3)
    np.testing.assert_array_equal(tifffile.imread(out), imgstack._to_dtype(want, stack.dtype))


@pytest.mark.parametrize('tag', ['missing', 'unspecified'])
def test_unspecified_extra_sample_stays_unspecified(tmp_path, capsys, tag):
    """OpenCV's BGRA frames: RGB with 4 samples and no ExtraSamples tag.  The
    4th channel is stacked as data and the output leaves it unspecified
    (ExtraSamples = 0), not unassociated alpha."""
    paths = []
    for i in range(3):
        path = write(tmp_path / f'in{i}.tif', frame(i, shape=(20, 30, 4), dtype=np.uint8),
                     photometric='rgb', extrasamples=['unspecified'])
        if tag == 'missing':
            remove_tags(path, {338})
            with tifffile.TiffFile(path) as tif:
                assert tif.pages.first.extrasamples == ()
        paths.append(path)
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', out, *paths)
    assert result.status == 0, result.err
    assert tifffile.imread(out).shape == (20, 30, 4)
    value = tag_values(out).get(338)
    values = tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))
    assert values == (0,), f'ExtraSamples {value!r}'


@pytest.mark.parametrize('resolution', ['none', '300 dpi'])
def test_resolution_only_when_the_input_has_one(tmp_path, capsys, resolution):
    """No resolution tags in the output when the first input had none (not
    tifffile's 1/1 without unit, which ImageMagick shows as 1x1 dpi)."""
    paths = []
    for i in range(3):
        if resolution == 'none':
            path = write(tmp_path / f'in{i}.tif', frame(i))
            remove_tags(path, {282, 283, 296})
        else:
            path = write(tmp_path / f'in{i}.tif', frame(i), resolution=(300, 300),
                         resolutionunit='INCH')
        paths.append(path)
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', out, *paths)
    assert result.status == 0, result.err
    tags = tag_values(out)
    if resolution == 'none':
        assert 282 not in tags and 283 not in tags, {k: tags[k] for k in (282, 283) if k in tags}
    else:
        assert tags[282] == (300, 1) and tags[283] == (300, 1) and int(tags[296]) == 2


@pytest.mark.parametrize(('args', 'settings'),
                         [([], '-s 2.5 -i 5'), (['--center', 'median'], '--center median')],
                         ids=['defaults', 'median'])
def test_output_says_how_it_was_made(tmp_path, capsys, args, settings):
    paths = inputs_in(tmp_path / 'in')
    out = tmp_path / 'out.tif'
    result = run_main(capsys, '-q', *args, out, *paths)
    assert result.status == 0, result.err
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages.first.tags
        software = tags['Software'].value
        description = tags['ImageDescription'].value
    assert software == f'imgstack {imgstack.__version__}'
    assert description.startswith(f'imgstack {imgstack.__version__}'), description
    assert description.endswith('; 3 frames'), description
    assert settings in description, description


def test_without_positioned_io(tmp_path, monkeypatch):
    # Windows has no os.pread, os.preadv or os.pwrite: the same files must
    # come out of the seek-and-read fallback
    stack = frames(6, (40, 30, 3))
    sets = {
        'plain': write_frames(tmp_path, stack, 'plain', **RGB),
        'lzw1': write_frames(tmp_path, stack, 'lzw1', compression='lzw', rowsperstrip=40, **RGB),
        'zlib': write_frames(tmp_path, stack, 'zlib', compression='zlib', rowsperstrip=4, **RGB),
    }
    want = {k: stacked(tmp_path, p, f'{k}-want.tif', rows=8,
                       rejection_map=str(tmp_path / f'{k}-wmap.tif'))
            for k, p in sets.items()}
    for name in ('pread', 'preadv', 'pwrite'):
        monkeypatch.delattr(os, name, raising=False)
    for k, p in sets.items():
        got = stacked(tmp_path, p, f'{k}-got.tif', rows=8,
                      rejection_map=str(tmp_path / f'{k}-gmap.tif'))
        np.testing.assert_array_equal(tifffile.imread(got), tifffile.imread(want[k]))
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f'{k}-gmap.tif'),
                                      tifffile.imread(tmp_path / f'{k}-wmap.tif'))
    assert not no_leftovers(tmp_path)
