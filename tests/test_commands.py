"""Every command the README and the Makefile name (`python -m core....`) exists and answers --help: a module that moves
takes its documentation with it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

DOCUMENTED = sorted({name for path in ("README.md", "Makefile", "docs/ARCHITECTURE.md")
                     for name in re.findall(r"python -m (core(?:\.[a-z_]+)*)", (PROJECT_ROOT / path).read_text())})


def test_the_documents_name_commands():
    assert {"core.predict", "core.guard", "core.report"} <= set(DOCUMENTED), DOCUMENTED


@pytest.mark.parametrize("module", DOCUMENTED)
def test_every_documented_command_answers_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, f"python -m {module} --help failed:\n{result.stderr[-2000:]}"
    assert "usage:" in result.stdout, result.stdout[:500]
