"""core.report.examples: example X-rays with Grad-CAM written next to a model, read back without TensorFlow, refused when stale."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.report import examples
from core.models import registry
from core import report
from core.imaging import decode_xray, resize_for_display, to_uint8
from tests.conftest import PROJECT_ROOT


@pytest.fixture()
def model_copy(tiny_cnn_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny CNN's folder inside its own models folder (tests write examples into it)."""
    target = tmp_path / "models" / tiny_cnn_dir.name
    shutil.copytree(tiny_cnn_dir, target)
    return target


def _png(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_written_examples_are_the_typical_cases_with_heatmaps(model_copy: Path, data_root: Path) -> None:
    folder = examples.write_examples(model_copy, data_root)
    assert folder == model_copy / "examples"
    assert not [p for p in model_copy.iterdir() if p.name.startswith(".examples-")]  # no staging folder left behind
    manifest = json.loads((folder / "examples.json").read_text())
    entry = registry.inspect_model(model_copy)
    picked = report.pick_examples(registry.load_predictions(entry), entry.threshold)
    assert [row["path"] for row in manifest["examples"]] == list(picked["path"])
    assert manifest["threshold"] == entry.threshold and manifest["split"] == "test"

    stored = examples.load_examples(model_copy, threshold=entry.threshold)
    assert [e.kind for e in stored] == list(picked["kind"])
    for example, row in zip(stored, picked.itertuples()):
        assert example.score == row.score and example.label == row.label and example.heatmap
        # The stored X-ray is the dataset's own image, as displayed (known pixels).
        expected = to_uint8(resize_for_display(decode_xray(data_root / row.path).pixels, report.EXAMPLE_IMAGE_SIDE), rgb=True)
        np.testing.assert_array_equal(_png(example.xray_png), expected)
        overlay = _png(example.heatmap_png)
        assert overlay.shape == expected.shape and not np.array_equal(overlay, expected)
        assert example.png == example.heatmap_png


def test_missing_stale_and_broken_examples_are_refused_with_the_command(model_copy: Path, data_root: Path) -> None:
    with pytest.raises(examples.ExamplesUnavailableError, match=r"python -m core\.report\.examples"):
        examples.load_examples(model_copy)
    examples.write_examples(model_copy, data_root)
    with pytest.raises(examples.ExamplesUnavailableError, match="threshold"):
        examples.load_examples(model_copy, threshold=0.25)
    predictions = model_copy / "predictions.csv"
    predictions.write_text(predictions.read_text().replace("0.", "0.0", 1))
    with pytest.raises(examples.ExamplesUnavailableError, match="earlier version"):
        examples.load_examples(model_copy)
    examples.write_examples(model_copy, data_root)  # written again: replaces the old folder, readable again
    assert len(examples.load_examples(model_copy)) == 3
    next((model_copy / "examples").glob("*-heatmap.png")).unlink()
    with pytest.raises(examples.ExamplesUnavailableError, match="cannot be read"):
        examples.load_examples(model_copy)


def test_cli_writes_into_out_and_reports_failures(model_copy: Path, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "trial"
    assert examples.main([str(model_copy), "--data", str(data_root), "--out", str(out)]) == 0
    assert (out / model_copy.name / "examples" / "examples.json").is_file()
    assert not (model_copy / "examples").exists()
    assert examples.main([str(tmp_path / "no-such-model"), "--data", str(data_root), "--out", str(out)]) == 1


def test_report_uses_stored_examples_without_tensorflow(model_copy: Path, data_root: Path) -> None:
    examples.write_examples(model_copy, data_root)
    script = (
        "import sys\n"
        "from core import report\n"
        f"html = report.build_report({str(model_copy.parent)!r}, {str(data_root)!r}, heatmaps=True, n_resamples=50)\n"
        "assert 'with the Grad-CAM heatmap' in html, 'stored heatmaps not used'\n"
        "print('TF_LOADED' if any(m == 'tensorflow' or m.startswith(('tensorflow.', 'keras')) for m in sys.modules) else 'TF_ABSENT')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TF_ABSENT" in result.stdout
