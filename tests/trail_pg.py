"""A throwaway PostgreSQL server (Debian `postgresql`) for the trail tests: initdb in a temporary folder, loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from core.pacs.orthanc import free_port


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class LocalPostgres:
    """initdb + pg_ctl start on 127.0.0.1 (trust authentication, as the `postgres` user when run as root); stop removes it."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+pg8000://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> "LocalPostgres":
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make pacs-tools does it).")
        if self.as_user:
            shutil.chown(self.folder, "postgres")
        data = str(self.folder / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-w", "-l", str(self.folder / "log"), "-o",
                  f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        finally:
            time.sleep(0.1)
            shutil.rmtree(self.folder, ignore_errors=True)
