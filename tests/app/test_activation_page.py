"""Activation maps page through AppTest, with the tiny real-data CNN as the only model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.harness import open_page as open_app_page

from core import explain, predict
from core.imaging import decode_xray

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/6_Activation_maps.py"


@pytest.fixture()
def models_root(tiny_cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tiny_cnn_dir.parent))
    return tiny_cnn_dir.parent


def _open_page() -> AppTest:
    return open_app_page(PAGE, timeout=60)


def test_layers_are_grouped_and_maps_are_sorted_by_mean_activation(models_root: Path, data_root: Path) -> None:
    at = _open_page()
    blocks = at.selectbox(key="activation_block")
    assert blocks.options == ["stage 1 · 64×64", "stage 2 · 32×32", "stage 3 · 16×16"]
    assert blocks.value == "stage 3 · 16×16"
    layer_box = next(s for s in at.selectbox if s.label.startswith("Layer"))
    assert layer_box.value == "conv3 (Conv2D, 16×16×32)"
    # first sample in the gallery: the first NORMAL test image
    scorer = predict.load_scorer(models_root / "tiny_cnn")
    first = predict.gallery(data_root)[0].path
    activations = explain.layer_activations(scorer.model, "conv3", scorer.prepare(decode_xray(first)))
    expected = np.argsort(-activations.mean(axis=(0, 1)), kind="stable")[:16]
    captions = [caption for image in at.image[1:] for caption in image.captions]
    assert [int(c.split(" ")[0].lstrip("#")) for c in captions] == list(expected)  # strongest mean activation first
    assert captions[0].endswith(f"mean {activations[:, :, expected[0]].mean():.2f}")
    assert any("Feature maps of conv3" in h.value for h in at.subheader)
    assert len(at.image) == 1 + 16  # the input and one page of 16 maps


def test_paging_and_filter_visualisation(models_root: Path) -> None:
    at = _open_page()
    at.number_input(key="activation_page").set_value(2).run()
    assert not at.exception, at.exception
    assert len(at.image) == 1 + 16  # conv3 has 32 filters: two full pages
    at.selectbox(key="activation_block").set_value("stage 1 · 64×64").run()
    layer_key = "activation_layer_stage 1 · 64×64"
    at.selectbox(key=layer_key).set_value("conv1 (Conv2D, 64×64×8)").run()
    assert not at.exception, at.exception
    at.get("form_submit_button")[0].click().run()
    assert not at.exception, at.exception
    assert any("gradient" in c.value.lower() for c in at.caption)
    assert len(at.image) >= 1 + 8 + 4  # input, 8 maps, 4 filter images


def test_a_bad_upload_is_reported(models_root: Path) -> None:
    at = _open_page()
    at.radio(key="activation_source").set_value("Upload").run()
    at.file_uploader(key="activation_upload").set_value(("scan.png", b"", "image/png")).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "empty" in at.error[0].value
