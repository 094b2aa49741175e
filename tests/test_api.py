# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""The library's surface (README, Library use): ``__all__`` is the public
API, and `main` leaves the calling process as it found it."""

import inspect
import logging
import signal
import sys
import typing

import numpy as np
import pytest
import tifffile

import imgstack


def test_all_is_sorted_and_defined():
    assert imgstack.__all__ == sorted(imgstack.__all__)
    assert all(hasattr(imgstack, name) for name in imgstack.__all__)
    assert not [name for name in imgstack.__all__ if name.startswith('_')]


def test_every_other_function_and_class_is_internal():
    """What is not exported carries a leading underscore: a reader of the
    module tells the API from its helpers by the name alone."""
    public = {name for name, obj in vars(imgstack).items()
              if not name.startswith('_') and (inspect.isfunction(obj) or inspect.isclass(obj))
              and getattr(obj, '__module__', None) == 'imgstack'}
    assert public == set(imgstack.__all__)


def _own_classes(annotation):
    """imgstack's classes named in a resolved annotation."""
    found = set()
    stack = [annotation]
    while stack:
        item = stack.pop()
        if inspect.isclass(item) and getattr(item, '__module__', '') == 'imgstack':
            found.add(item.__name__)
        stack.extend(typing.get_args(item))
    return found


def test_what_the_api_takes_and_returns_is_exported():
    missing = {}
    for name in imgstack.__all__:
        obj = getattr(imgstack, name)
        functions = [obj] if inspect.isfunction(obj) else [
            f for _, f in inspect.getmembers(obj, inspect.isfunction)
            if not f.__name__.startswith('_')] + (
            [obj.__init__] if inspect.isclass(obj) and '__init__' in vars(obj) else [])
        for function in functions:
            hints = typing.get_type_hints(function, vars(imgstack))
            for hint in hints.values():
                for cls in _own_classes(hint) - set(imgstack.__all__):
                    missing.setdefault(cls, set()).add(f'{name}.{function.__name__}')
    assert not missing, missing


def test_main_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], np.full((4, 5), i, np.uint16), metadata=None)
    tuned = []
    monkeypatch.setattr(imgstack, '_tune_allocator', tuned.append)
    logger = logging.getLogger('tifffile')
    before = (sys.getswitchinterval(), logger.level,
              {s: signal.getsignal(s) for s in imgstack.SIGNALS})
    assert imgstack.main(['-q', str(tmp_path / 'out.tif'), *paths]) == 0
    assert imgstack.main(['-q', str(tmp_path / 'out.tif'), *paths]) == 1  # exists: an error
    after = (sys.getswitchinterval(), logger.level,
             {s: signal.getsignal(s) for s in imgstack.SIGNALS})
    assert after == before
    assert tuned == []


def test_settings_are_checked_once_and_carried(tmp_path):
    settings = imgstack.Settings.from_options(reject='mad', sigma=3, memory='256M')
    assert settings.method.sigma_low == settings.method.sigma_high == 3
    assert settings.memory == 256 << 20
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f'in{i}.tif'))
        tifffile.imwrite(paths[-1], np.full((4, 5), i, np.uint16), metadata=None)
    out = str(tmp_path / 'out.tif')
    stats = imgstack.stack_files(paths, out, settings=settings)
    assert stats.frames == 3
    assert 'imgstack 0.2.0: --reject mad -s 3' in tifffile.TiffFile(out).pages.first.description
    with pytest.raises(TypeError, match='settings or options, not both'):
        imgstack.stack_files(paths, out, settings=settings, force=True)
    with pytest.raises(TypeError, match='unexpected keyword'):
        imgstack.stack_files(paths, out, sigmaa=3)
