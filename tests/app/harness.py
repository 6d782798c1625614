"""Shared AppTest helpers: open one page of the app, and run a page in a fresh interpreter to see what it imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from streamlit.testing.v1 import AppTest

from tests.conftest import PROJECT_ROOT

APP = str(PROJECT_ROOT / "streamlit_app.py")


def open_page(page: str, *, timeout: float = 60, session_state: dict | None = None) -> AppTest:
    """Run the app on `page` (switched to before the first run, so the landing page never runs); no exception."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in (session_state or {}).items():
        at.session_state[key] = value
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def tensorflow_imported_by(page: str, interactions: Sequence[str] = (), *, timeout: float = 180) -> bool:
    """Whether running `page` (then the AppTest statements in `interactions`, one per item, on `at`) imports TensorFlow or Keras.

    Runs in a fresh interpreter so that nothing imported by other tests counts; the page must run without exception.
    """
    script = "\n".join([
        "import sys",
        "from streamlit.testing.v1 import AppTest",
        f"at = AppTest.from_file({APP!r}, default_timeout={timeout!r})",
        f"at.switch_page({page!r})",
        "at.run()",
        *interactions,
        "assert not at.exception, at.exception",
        "print('TF_LOADED' if any(m == 'tensorflow' or m.startswith(('tensorflow.', 'keras')) for m in sys.modules)"
        " else 'TF_ABSENT')",
    ])
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=timeout + 60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TF_ABSENT" in result.stdout or "TF_LOADED" in result.stdout, result.stdout[-2000:]
    return "TF_LOADED" in result.stdout
