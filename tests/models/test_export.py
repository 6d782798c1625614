"""core.models.export: the SavedModel (what TensorFlow Serving loads) scores real films exactly like model.keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.models import export
from core.imaging import decode_xray
from core.predict import load_scorer


def _films(data_root: Path, scorer, n: int = 3) -> np.ndarray:
    files = [*sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:n], *sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:n]]
    return np.stack([scorer.prepare(decode_xray(f)) for f in files])


def test_exported_saved_model_gives_the_same_scores(tiny_cnn_dir: Path, data_root: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    out = export.export_saved_model(tiny_cnn_dir, tmp_path / "serving" / "tiny_cnn" / "1")
    assert (out / "saved_model.pb").is_file() and (out / "assets.extra" / "card.json").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    scorer = load_scorer(tiny_cnn_dir)
    batch = _films(data_root, scorer)
    expected = scorer.model.predict(batch, verbose=0)
    loaded = tf.saved_model.load(str(out))
    np.testing.assert_allclose(loaded.serve(tf.constant(batch)).numpy(), expected, rtol=0, atol=1e-6)
    # TensorFlow Serving calls the serving_default signature (a dict of named outputs).
    (served,) = loaded.signatures["serving_default"](tf.constant(batch)).values()
    np.testing.assert_allclose(served.numpy(), expected, rtol=0, atol=1e-6)
    assert len(np.unique(np.round(expected, 4))) > 1  # real, differing scores were compared


def test_export_refuses_a_used_folder_and_a_missing_model(tiny_cnn_dir: Path, tmp_path: Path) -> None:
    used = tmp_path / "1"
    used.mkdir()
    (used / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty"):
        export.export_saved_model(tiny_cnn_dir, used)
    assert export.main([str(tmp_path / "no-model"), str(tmp_path / "out")]) == 1
