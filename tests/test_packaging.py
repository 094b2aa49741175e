# Copyright 2026 The imgstack developers
# SPDX-License-Identifier: Apache-2.0
"""Installing and testing: the requirements, the script's shebang and inline
metadata, pyproject.toml, a missing dependency, and the commands README
gives (README, Install and Testing).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import sys
from pathlib import Path

import pytest
import tomllib

import imgstack
from tests.helpers import IMGSTACK, REPO, child

# -- install -----------------------------------------------------------------


def _minimums(requirements: list[str]) -> dict[str, str]:
    """name -> minimum version of requirement strings like 'numpy>=1.24'."""
    found = {}
    for text in requirements:
        match = re.match(r'\s*([A-Za-z0-9._-]+)\s*>=\s*([0-9][^,;\s]*)', text)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


REQUIRED = _minimums(Path(REPO, 'requirements.txt').read_text().splitlines())


def test_requirements_name_the_three():
    assert set(REQUIRED) == {'numpy', 'tifffile', 'imagecodecs'}, REQUIRED


def test_shebang_and_executable_bit():
    with open(IMGSTACK, encoding='utf-8') as fh:
        assert fh.readline().rstrip('\n') == '#!/usr/bin/env python3'
    assert os.stat(IMGSTACK).st_mode & stat.S_IXUSR, 'imgstack.py is not executable'
    # run through the shebang, with this interpreter's folder first on PATH
    bindir = os.path.dirname(sys.executable)
    if not os.path.exists(os.path.join(bindir, 'python3')):
        pytest.skip(f'no python3 beside {sys.executable}')
    done = child(IMGSTACK, '--version', env={'PATH': f'{bindir}{os.pathsep}{os.environ["PATH"]}'})
    assert done.returncode == 0, done.stderr
    assert imgstack.__version__ in done.stdout + done.stderr


def test_inline_script_metadata():
    """PEP 723: ``pipx run imgstack.py`` / ``uv run`` need no set-up."""
    text = Path(IMGSTACK).read_text(encoding='utf-8')
    pattern = r'(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$'
    blocks = [m for m in re.finditer(pattern, text) if m.group('type') == 'script']
    assert len(blocks) == 1, 'no (or more than one) "# /// script" block'
    block = blocks[0]
    content = ''.join(line[2:] if line.startswith('# ') else line[1:]
                      for line in block.group('content').splitlines(keepends=True))
    metadata = tomllib.loads(content)
    assert _minimums(metadata['dependencies']) == REQUIRED
    first_import = re.search(r'(?m)^(import|from) ', text)
    assert first_import and block.start() < first_import.start(), 'the block is not at the top'


def test_pyproject():
    path = Path(REPO, 'pyproject.toml')
    assert path.exists(), 'no pyproject.toml: pip install . fails'
    data = tomllib.loads(path.read_text(encoding='utf-8'))
    project = data['project']
    assert project['name'] == 'imgstack'
    assert project['scripts']['imgstack'] == 'imgstack:_cli'
    assert _minimums(project['dependencies']) == REQUIRED
    if 'version' in project:
        assert project['version'] == imgstack.__version__
    else:
        assert 'version' in project.get('dynamic', [])
    assert 'build-system' in data
    assert data['tool']['setuptools']['py-modules'] == ['imgstack']


@pytest.mark.parametrize('module', ['numpy', 'tifffile', 'imagecodecs'])
def test_missing_dependency_one_line(tmp_path, module):
    """Without numpy, tifffile or imagecodecs even -h printed a traceback."""
    fake = tmp_path / 'fake' / module
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text(
        f'raise ModuleNotFoundError("No module named {module!r}", name={module!r})\n')
    done = child(sys.executable, IMGSTACK, '-h', env={'PYTHONPATH': str(tmp_path / 'fake')})
    assert 'Traceback' not in done.stderr, done.stderr
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stderr.count('\n') == 1, done.stderr
    assert done.stderr.startswith('imgstack: error:'), done.stderr
    assert module in done.stderr and 'pip install' in done.stderr, done.stderr


# -- README's commands -------------------------------------------------------


def readme_test_command():
    text = Path(REPO, 'README.rst').read_text(encoding='utf-8')
    block = text.split('.. test-command', 1)[1]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip().startswith('python')]
    return lines[0]


def test_readme_test_command_is_what_ci_runs():
    command = readme_test_command()
    assert command.startswith('python -m pytest')
    ci = Path(REPO, '.ci', 'run').read_text(encoding='utf-8')
    run_lines = [ln for ln in ci.splitlines()
                 if '-m pytest' in ln and not ln.lstrip().startswith('#')]
    assert len(run_lines) == 1
    # .ci/run calls the same command with its own environment's python
    ci_args = shlex.split(run_lines[0])[1:]
    assert ci_args == shlex.split(command)[1:]


def test_readme_opens_with_the_two_setup_commands():
    text = Path(REPO, 'README.rst').read_text(encoding='utf-8')
    head = text[:2500]
    assert re.search(r'pip install -r requirements.txt.*&&.*imgstack.py --demo', head, re.S)
    assert 'requirements-test.txt' in head and readme_test_command() in head
