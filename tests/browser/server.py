"""Start and stop the dashboard like `make serve` does (streamlit run on a free loopback port), for browser tests and
bench/bench_load.py. Output goes to a log file so tests can search it (e.g. for patient data)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class DashboardServer:
    """`streamlit run streamlit_app.py` on 127.0.0.1:<free port>; use as a context manager."""

    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 120.0
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL of the app, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DashboardServer":
        """Start the server and wait for /_stcore/health; raise RuntimeError with the server log if it does not come up."""
        self.port = self.port or free_port()
        # serve.py is `make serve`: streamlit run streamlit_app.py with the pages' libraries imported first.
        command = [sys.executable, "serve.py", "--server.headless", "true",
                   "--server.address", "127.0.0.1", "--server.port", str(self.port), "--browser.gatherUsageStats", "false",
                   "--server.fileWatcherType", "none"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + self.startup_timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The dashboard server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"The dashboard server did not answer /_stcore/health within {self.startup_timeout:.0f} s:\n"
                           f"{self.log()[-3000:]}")

    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "DashboardServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
