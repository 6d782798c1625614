"""The Prediction page draws the lung outline on the heatmap and says the evidence share inside the lungs (AppTest)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.app.harness import open_page


@pytest.fixture()
def models_root(tiny_cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tiny_cnn_dir.parent))
    return tiny_cnn_dir.parent


def _images(node, found: list) -> list:
    children = getattr(node, "children", None)
    for child in (children.values() if isinstance(children, dict) else children or []):
        if type(child).__name__ == "Image":
            found.append(child)
        _images(child, found)
    return found


def test_overlay_caption_gives_the_evidence_share_inside_the_lungs(models_root: Path, data_root: Path) -> None:
    at = open_page("pages/5_Prediction.py", timeout=120)
    film = data_root / "test" / "PNEUMONIA" / "person100_bacteria_475.jpeg"
    at.file_uploader(key="prediction_upload").set_value([(film.name, film.read_bytes(), "application/octet-stream")])
    at.run()
    assert not at.exception, at.exception
    captions = [img.caption for element in _images(at._tree, []) for img in element.proto.imgs]
    lung = [c for c in captions if "of the evidence lies inside the lungs" in c]
    assert len(lung) == 1, captions
    share, area = (int(v) for v in re.search(r"(\d+)% of the evidence lies inside the lungs .* cover (\d+)% of the film", lung[0]).groups())
    assert 0 <= share <= 100 and 15 <= area <= 60
