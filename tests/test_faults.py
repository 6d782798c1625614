"""Faults: broken model folders on every page, nothing untrusted unpickled or deserialised, and a train.py run killed
with SIGKILL (mid-epoch, then between writing its artifacts and publishing them) never makes an incomplete model
visible to core.models.registry.list_models while it runs, and still finishes when started again.

tests/test_training.py already checks the folder after a kill and the resumed history; here the models folder is
polled *while* the runs are alive, and the kill also lands in the publishing step.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models import registry
from core.report import RECOMMENDED_MARK

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "pages").glob("*.py"))
MODEL_PAGES = ("pages/3_Model_comparison.py", "pages/4_Threshold_explorer.py", "pages/5_Prediction.py", "pages/6_Activation_maps.py")
BROKEN = ("broken-card", "corrupt-weights", "lambda-layer", "no-predictions", "truncated-keras")


# ----------------------------------------------------------------------------------------------- broken model folders
def _lambda_model_bytes(tmp_path: Path, marker: Path) -> bytes:
    """A .keras archive with a Lambda layer (stored as Python bytecode) that writes `marker` whenever it runs."""
    import keras

    inputs = keras.Input((64, 64, 1))
    touched = keras.layers.Lambda(lambda x, path=str(marker): (open(path, "w").write("ran"), x)[1])(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(touched))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once
    return path.read_bytes()


def _corrupt_weights(archive: bytes) -> bytes:
    """The same .keras zip with its weights file cut in half (the zip itself stays valid)."""
    source, out = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[: len(data) // 2] if item.filename.endswith(".h5") else data)
    return out.getvalue()


@pytest.fixture(scope="module")
def faulty_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A models folder: symlinks to every real available model plus five broken copies of the smallest one."""
    real = [entry for entry in registry.list_models(PROJECT_ROOT / "models") if entry.available]
    if not real:
        pytest.fail("No available model under models/; train the shipped models first with `make models`.")
    root = tmp_path_factory.mktemp("faulty") / "models"
    root.mkdir()
    for entry in real:
        (root / entry.name).symlink_to(entry.path.resolve(), target_is_directory=True)
    smallest = min(real, key=lambda e: (e.path / "model.keras").stat().st_size)
    for name in BROKEN:
        shutil.copytree(smallest.path, root / name, ignore=shutil.ignore_patterns("ood.npz"))
        card = json.loads((root / name / "card.json").read_text())
        (root / name / "card.json").write_text(json.dumps({**card, "name": name, "display_name": name}))
    archive = (smallest.path / "model.keras").read_bytes()
    (root / "truncated-keras" / "model.keras").write_bytes(archive[: len(archive) // 2])
    (root / "corrupt-weights" / "model.keras").write_bytes(_corrupt_weights(archive))
    (root / "no-predictions" / "predictions.csv").unlink()
    (root / "broken-card" / "card.json").write_text('{"name": "broken-card", "threshold": {"value": 0.5,')
    marker = root.parent / "lambda-ran.txt"
    (root / "lambda-layer" / "model.keras").write_bytes(_lambda_model_bytes(root.parent, marker))
    return {"root": root, "real": [e.name for e in real], "marker": marker}


def test_registry_marks_each_broken_folder_with_its_reason(faulty_models: dict) -> None:
    entries = {e.name: e for e in registry.list_models(faulty_models["root"])}
    assert set(entries) == set(BROKEN) | set(faulty_models["real"])
    assert all(entries[name].available for name in faulty_models["real"])
    reasons = {name: entries[name].reason for name in BROKEN if not entries[name].available}
    assert "truncated" in reasons["truncated-keras"] or "damaged" in reasons["truncated-keras"]
    assert "predictions.csv" in reasons["no-predictions"]
    assert "card.json" in reasons["broken-card"] and "JSON" in reasons["broken-card"]


@pytest.mark.parametrize("name", ["corrupt-weights", "lambda-layer", "truncated-keras"])
def test_loading_a_bad_model_file_raises_a_readable_error_and_runs_no_code(faulty_models: dict, name: str) -> None:
    with pytest.raises(registry.ModelUnavailableError) as error:
        registry.load_keras_model(faulty_models["root"] / name)
    assert "model.keras" in str(error.value)
    assert not faulty_models["marker"].exists(), "a Lambda layer's code ran while loading a model"


def test_lambda_layer_is_refused_by_safe_mode(faulty_models: dict) -> None:
    with pytest.raises(registry.ModelUnavailableError, match="(?i)lambda") as error:
        registry.load_keras_model(faulty_models["root"] / "lambda-layer")
    assert "safe_mode" in str(error.value.__cause__)  # refused by Keras's safe mode, not by some other failure


def _page(path: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=180)
    at.switch_page(path)
    at.run()
    return at


def _all_text(at: AppTest) -> str:
    """The proto text of every element, walked recursively (what the browser would receive)."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_keeps_working_with_broken_model_folders(faulty_models: dict, monkeypatch: pytest.MonkeyPatch,
                                                            page: str) -> None:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(faulty_models["root"]))
    at = _page(page)
    assert not at.exception, f"{page}: {at.exception}"
    text = _all_text(at)
    assert "Traceback" not in text
    if page in MODEL_PAGES:
        entries = {e.name: e for e in registry.list_models(faulty_models["root"])}
        for name in ("broken-card", "no-predictions", "truncated-keras"):
            assert name in text, f"{page} does not say that model {name!r} is unavailable"
            assert entries[name].reason.split(" (")[0][:40] in text, f"{page} does not give the reason {name!r} is unavailable"


@pytest.mark.parametrize("page,key", [("pages/5_Prediction.py", "prediction_model"), ("pages/6_Activation_maps.py", "activation_model")])
@pytest.mark.parametrize("name", ["corrupt-weights", "lambda-layer"])
def test_choosing_a_model_that_fails_to_load_shows_the_reason(faulty_models: dict, monkeypatch: pytest.MonkeyPatch,
                                                              page: str, key: str, name: str) -> None:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(faulty_models["root"]))
    at = _page(page)
    assert not at.exception, at.exception
    offered = [option.removeprefix(f"{RECOMMENDED_MARK} · ") for option in at.selectbox(key=key).options]
    if name not in offered:  # the recommended model is listed with its mark
        pytest.fail(f"{name} is not offered on {page}; a model that passed list_models should be offered or explained")
    at.selectbox(key=key).set_value(name).run()
    # The page stops at the model picker when the model fails to load (the first render's default, the recommended
    # model, may be one of the broken ones too); when it got further, also ask it to score the real samples.
    if page.endswith("5_Prediction.py") and any(radio.key == "prediction_source" for radio in at.radio):
        at.radio(key="prediction_source").set_value("Real samples").run()
    assert not at.exception, f"{page} with {name}: {at.exception}"
    shown = " ".join(e.value for e in [*at.error, *at.warning])
    assert "model.keras" in shown, f"{page} with {name} shows no reason: {shown!r}"
    assert not faulty_models["marker"].exists()


# ----------------------------------------------------------------------------------------------- nothing unpickled
SOURCES = sorted([*(PROJECT_ROOT / "core").glob("*.py"), *(PROJECT_ROOT / "pages").glob("*.py"),
                  PROJECT_ROOT / "streamlit_app.py", PROJECT_ROOT / "train.py"])
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
UNSAFE_CALLS = {"read_pickle", "enable_unsafe_deserialization", "eval", "exec"}


def _unsafe_uses(path: Path) -> list[str]:
    """Lines of `path` that could run code from a file: pickle-like imports, pickled loads, unsafe Keras loading."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where} from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if name in UNSAFE_CALLS:
                found.append(f"{where} {name}(...)")
            if name == "load" and isinstance(keywords.get("allow_pickle"), ast.Constant) and keywords["allow_pickle"].value:
                found.append(f"{where} np.load(allow_pickle=True)")
            if name == "load_model":
                safe = keywords.get("safe_mode")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append(f"{where} load_model without safe_mode=True")
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "yaml":
                found.append(f"{where} yaml.load")
    return found


def test_unsafe_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = PROJECT_ROOT / "tests" / "artifacts" / "unsafe_sample.py"
    sample.parent.mkdir(exist_ok=True)
    sample.write_text("import pickle\nimport numpy as np\nnp.load('a.npy', allow_pickle=True)\n"
                      "keras.saving.load_model('m.keras')\nkeras.saving.load_model('m.keras', safe_mode=False)\n")
    try:
        assert len(_unsafe_uses(sample)) == 4
    finally:
        sample.unlink()


def test_nothing_untrusted_is_unpickled_or_loaded_unsafely() -> None:
    assert len(SOURCES) > 10
    found = [use for path in SOURCES for use in _unsafe_uses(path)]
    assert not found, "code paths that can execute code from a file:\n" + "\n".join(found)


# ----------------------------------------------------------------------------------------------- SIGKILL while training
RUN = """
import pathlib, runpy, sys, time
sys.argv = ["train.py", *sys.argv[1:]]
mark = pathlib.Path({mark!r})
if mark.name:
    import core.models.cards as cards
    write = cards.write_artifacts
    def write_then_wait(folder, **kwargs):
        write(folder, **kwargs)
        mark.with_suffix(".part").write_text(str(folder))
        mark.with_suffix(".part").rename(mark)
        time.sleep(600)  # killed here: artifacts written to models/.tmp-*, not yet published
    cards.write_artifacts = write_then_wait
runpy.run_path("train.py", run_name="__main__")
"""


def _start(args: list[str], mark: str, log: Path) -> subprocess.Popen:
    """train.py in a child process (optionally stopping right after writing its artifacts), output to `log`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-c", RUN.format(mark=mark), *args], cwd=PROJECT_ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _watch(process: subprocess.Popen, models_dir: Path, until, seen: list, timeout: float = 240) -> None:
    """Poll list_models every 20 ms while `process` runs: whatever is listed must be complete. Stop when until() holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for entry in registry.list_models(models_dir):
            seen.append(entry.name)
            assert entry.available, f"incomplete model visible while training: {entry.name}: {entry.reason}"
            assert process.poll() is not None or all((entry.path / f).is_file() for f in registry.REQUIRED_FILES)
        if until() or process.poll() is not None:
            return
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"train.py did not reach the expected point within {timeout:.0f} s")


def test_killed_training_never_shows_an_incomplete_model(tmp_path: Path, data_root: Path) -> None:
    """Run 1 is polled through every epoch and killed after writing its artifacts, before publishing them (the
    mid-epoch kill itself is tests/test_training.py's); run 2 resumes from the backup and publishes a complete model."""
    models_dir = tmp_path / "models"
    args = ["--model", "cnn_reference", "--img-size", "32", "--epochs", "3", "--patience", "10", "--limit", "16",
            "--batch-size", "8", "--data", str(data_root), "--models-dir", str(models_dir), "--cache-dir", str(tmp_path / "cache"),
            "--name", "killed", "--bootstrap", "20", "--no-progress", "-v"]
    mark = tmp_path / "artifacts-written"
    seen: list[str] = []

    first = _start(args, str(mark), tmp_path / "first.log")
    try:
        _watch(first, models_dir, mark.is_file, seen)
        assert mark.is_file(), (tmp_path / "first.log").read_text()[-2000:]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert "train epoch 3:" in (tmp_path / "first.log").read_text()
    assert Path(mark.read_text()).name.startswith(".tmp-killed-")  # complete but hidden
    assert registry.list_models(models_dir) == [] and not seen

    second = _start(args, "", tmp_path / "second.log")
    _watch(second, models_dir, lambda: False, seen)
    log = (tmp_path / "second.log").read_text()
    assert second.wait(timeout=60) == 0, log[-3000:]
    assert "train epoch" not in log  # resumed from the finished stage, not retrained
    entries = registry.list_models(models_dir)
    assert [(e.name, e.available) for e in entries] == [("killed", True)]
    assert registry.load_history(entries[0])["epoch"].tolist() == [0, 1, 2]
    assert set(seen) <= {"killed"}


def test_resume_survives_a_backup_torn_by_the_kill(tmp_path: Path, data_root: Path) -> None:
    """A SIGKILL that lands while Keras's BackupAndRestore writes latest.weights.h5 leaves a torn file (seen with a real
    kill in the test above); the next run must still finish (resume from an earlier state or restart the stage)."""
    from core import training

    cfg = training.TrainConfig(model="cnn_reference", img_size=32, epochs=2, batch_size=8, limit=8, data=str(data_root),
                               models_dir=str(tmp_path / "models"), cache_dir=str(tmp_path / "cache"), bootstrap=20,
                               progress=False, name="torn")
    backup = Path(cfg.models_dir) / ".backup-torn" / "backup-train"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 4096)  # the start of an HDF5 file, cut off
    result = training.train(cfg)
    assert [(e.name, e.available) for e in registry.list_models(cfg.models_dir)] == [("torn", True)]
    assert result.folder.name == "torn"


def test_a_torn_backup_falls_back_to_the_previous_epochs_double_checkpoint(tmp_path: Path) -> None:
    """With BackupAndRestore's double checkpoint, a kill that tears latest.weights.h5 resumes from the epoch before
    (the *.bkp pair) instead of restarting the stage; without a readable *.bkp the backup is removed (restart)."""
    import h5py

    from core.training import fitting

    backup = tmp_path / "backup-train"
    backup.mkdir()
    with h5py.File(backup / "latest.weights.h5.bkp", "w") as handle:
        handle.create_dataset("w", data=[1.0, 2.0])
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 2, "batch": 0}')
    (backup / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 4096)  # torn mid-write
    fitting._discard_torn_state(backup, tmp_path / "best.weights.h5")
    assert (backup / "latest.weights.h5").read_bytes() == (backup / "latest.weights.h5.bkp").read_bytes()
    assert (backup / "training_metadata.json").read_text() == '{"epoch": 2, "batch": 0}'

    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 4096)
    (backup / "latest.weights.h5.bkp").write_bytes(b"torn too")
    fitting._discard_torn_state(backup, tmp_path / "best.weights.h5")
    assert not backup.exists()
