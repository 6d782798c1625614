"""Privacy: a real DICOM whose patient tags hold known unique values goes through the Prediction and Activation maps
pages (AppTest) and the batch CLI (with --heatmaps and --out); the values never appear in what the page shows or
serves (every element, image and download), in the logs, or in any file written meanwhile (outputs, .cache, temp).
The browser version is tests/browser/test_privacy_browser.py."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from tests.reliability.fixtures import guarded_models_root  # noqa: F401  (fixture)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PATIENT_TAGS = {
    "PatientName": "Qzxjohnson^Wilhelmina",
    "PatientID": "PID-7Q3X9Z",
    "PatientBirthDate": "19230417",
    "PatientAddress": "42 Quillfeather Lane",
    "InstitutionName": "Zorblatt Memorial Infirmary",
    "AccessionNumber": "ACC98765Q",
    "ReferringPhysicianName": "Drvxkowalski^Hortensia",
    "OtherPatientIDs": "OPID-55Z1W",
}
# What to look for: each value and its parts (a viewer may show "Wilhelmina Qzxjohnson" or "1923-04-17").
SECRETS = ("Qzxjohnson", "Wilhelmina", "PID-7Q3X9Z", "19230417", "1923-04-17", "Quillfeather", "Zorblatt", "ACC98765Q",
           "Drvxkowalski", "Hortensia", "OPID-55Z1W")


def private_dicom(samples_dir: Path, *, with_pixels: bool = True) -> bytes:
    """The real RG1_UNCI.dcm radiograph with the known patient values above (optionally without its pixel data)."""
    import pydicom

    ds = pydicom.dcmread(samples_dir / "RG1_UNCI.dcm")
    for keyword, value in PATIENT_TAGS.items():
        setattr(ds, keyword, value)
    if not with_pixels:
        del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def leaks(text: str | bytes) -> list[str]:
    """The secret values found in `text` (bytes are searched as Latin-1 and as UTF-16)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1") + text.decode("utf-16-le", errors="ignore")
    lowered = text.lower()
    return [secret for secret in SECRETS if secret.lower() in lowered]


def files_written_since(start: float, roots: list[Path], skip: set[Path]) -> list[Path]:
    """Regular files under `roots` modified after `start` (at most 64 MB each), except those in `skip`."""
    found = []
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in (".git", ".venv", "node_modules", "__pycache__")]
            for name in names:
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if stat.st_mtime >= start and stat.st_size < 64 << 20 and path.resolve() not in skip and path.is_file():
                    found.append(path)
    return found


def leaking_files(paths: list[Path]) -> list[str]:
    """The files among `paths` holding a secret value (files deleted meanwhile are skipped)."""
    found = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if leaks(data):
            found.append(f"{path}: {leaks(data)}")
    return found


def test_private_dicom_really_carries_the_values(samples_dir: Path) -> None:
    data = private_dicom(samples_dir)
    assert set(leaks(data)) >= {"Qzxjohnson", "PID-7Q3X9Z", "19230417", "Zorblatt", "ACC98765Q"}


def _element_text(at: AppTest) -> str:
    """The protobuf text of every element on the page, walked recursively."""
    out: list[str] = []

    def walk(node) -> None:
        if getattr(node, "proto", None) is not None:
            out.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


@pytest.fixture()
def served_media(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """Every image and download the app hands to the browser, as (mimetype, bytes)."""
    served: list[tuple[str, bytes]] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        data = Path(path_or_data).read_bytes() if isinstance(path_or_data, str) else bytes(path_or_data)
        served.append((f"{mimetype} {filename or ''}", data))
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return served


def test_pages_never_show_log_or_write_patient_tags(guarded_models_root: Path, samples_dir: Path, served_media: list,
                                                    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(guarded_models_root))
    temp = tmp_path / "temp"  # the app's temporary folder for this test, searched afterwards
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    start = time.time() - 1
    image, report = private_dicom(samples_dir), private_dicom(samples_dir, with_pixels=False)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=180)
        at.switch_page("pages/5_Prediction.py")
        at.run()
        for name, data in (("chest.dcm", image), ("sr.dcm", report), ("chest.dcm", image)):
            at.file_uploader(key="prediction_upload").set_value([(name, data, "application/dicom")])
            at.run()
            assert not at.exception, at.exception
            texts.append(_element_text(at))
        # An adult's film: outside the models' scope, so no decision; its raw score and heatmap on request, so that
        # everything the page can show or serve for it is searched too.
        assert any(m.label == "Decision" and m.value == "Withheld" for m in at.metric)
        at.toggle(key="prediction_raw_score").set_value(True)
        at.toggle(key="prediction_heatmap_anyway").set_value(True)
        at.run()
        assert not at.exception, at.exception
        assert any("Raw model output" in c.value for c in at.caption) and len(at.image) >= 2  # really scored
        texts.append(_element_text(at))
        assert any("sr.dcm" in t and "Pixel Data" in t for t in texts)  # and the pixel-less one really refused
        at.switch_page("pages/6_Activation_maps.py")
        at.run()
        at.radio(key="activation_source").set_value("Upload").run()
        at.file_uploader(key="activation_upload").set_value([("chest.dcm", image, "application/dicom")])
        at.run()
        assert not at.exception, at.exception
        texts.append(_element_text(at))
    assert len(served_media) >= 4 and any(kind.startswith("application/json") for kind, _ in served_media)
    assert not leaks("\n".join(texts)), "patient values shown on a page"
    for kind, data in served_media:
        assert not leaks(data), f"patient values in a served file ({kind})"
    assert caplog.records and not leaks(caplog.text), "patient values in the logs"
    written = files_written_since(start, [PROJECT_ROOT, temp], set())
    assert not leaking_files(written), "patient values written to disk"


def test_batch_cli_never_writes_or_logs_patient_tags(guarded_models_root: Path, samples_dir: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "chest.dcm").write_bytes(private_dicom(samples_dir))
    (inbox / "sr.dcm").write_bytes(private_dicom(samples_dir, with_pixels=False))
    out, heatmaps = tmp_path / "out" / "results.csv", tmp_path / "out" / "heatmaps"
    temp = tmp_path / "temp"  # the CLI's temporary folder, searched afterwards
    temp.mkdir()
    start = time.time() - 1
    completed = subprocess.run(
        [sys.executable, "-m", "core.predict", "--model", str(guarded_models_root / "tiny_cnn"), str(inbox), "--out", str(out),
         "--heatmaps", str(heatmaps), "--raw-scores"],  # an adult's film: its score and heatmap only on request
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(temp)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = out.read_text()
    assert "chest.dcm" in rows and ",ok," in rows and ",error," in rows
    assert list(heatmaps.glob("*.png")), "the DICOM was scored with a heatmap"
    assert not leaks(completed.stdout + completed.stderr), "patient values in the CLI's output or logs"
    inputs = {(inbox / "chest.dcm").resolve(), (inbox / "sr.dcm").resolve()}
    written = files_written_since(start, [tmp_path / "out", temp, PROJECT_ROOT / ".cache"], inputs)
    assert out in written and len(written) >= 2
    assert not leaking_files(written), "patient values written to disk"
