"""The tests of imgstack (test_imgstack.py, at the top, holds the core ones).

A package, so that ``tests.helpers`` is this folder's module whatever else is
installed; the fixtures are in ../conftest.py.
"""
