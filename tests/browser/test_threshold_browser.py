"""The live threshold widget in headless Debian chromium against a real `streamlit run` server: the handle is dragged
with the mouse and the numbers read in mid-drag (pointer still down) are scikit-learn's on the model's stored test
predictions at the threshold the widget displays; on release the server stores that operating point and prints the
same numbers; the keyboard (arrows, PageUp/PageDown, Home/End) and the presets move it too."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from core.models import registry
from tests.browser.helpers import exceptions, open_page
from tests.browser.threshold_widget import (COUNT_KEYS, SHOWN_KEYS, SLIDER, parse_server_caption, read_widget,
                                            server_caption, track_point, wait_for_widget)


@pytest.fixture()
def page(chromium_browser, dashboard):
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(120_000)
    yield tab
    context.close()


def _test_predictions() -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores of the page's default model (the recommended one) on the test split, from predictions.csv."""
    from core import config, report

    entry = report.recommend_model(config.models_dir())
    frame = registry.load_predictions(entry, split="test")
    return frame["label"].to_numpy(), frame["score"].to_numpy()


def _sklearn_shown(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, str]:
    """What the widget must show at `threshold`, by scikit-learn, formatted like the widget (3 decimals, counts)."""
    pred = (scores >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(labels, pred, labels=[0, 1]).ravel()
    values = {
        "recall": skm.recall_score(labels, pred, zero_division=0.0),
        "specificity": skm.recall_score(labels, pred, pos_label=0, zero_division=0.0),
        "precision": skm.precision_score(labels, pred, zero_division=0.0),
        "npv": skm.precision_score(labels, pred, pos_label=0, zero_division=0.0),
        "f1": skm.f1_score(labels, pred, zero_division=0.0),
        "accuracy": skm.accuracy_score(labels, pred),
    }
    return {**{k: f"{v:.3f}" for k, v in values.items()}, "tn": str(tn), "fp": str(fp), "fn": str(fn), "tp": str(tp)}


def _shown(reading: dict) -> dict[str, str]:
    return {k: reading[k] for k in (*SHOWN_KEYS, *COUNT_KEYS)}


def _wait_for_agreement(page, timeout_s: float = 60, *, changed_from: str | None = None) -> tuple[dict, dict]:
    """After a release: wait until the widget says the server agrees (on a threshold other than `changed_from`),
    return (widget reading, server caption numbers)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reading = read_widget(page)
        caption = server_caption(page)
        if reading["server"] in ("agrees", "differs") and caption:
            server = parse_server_caption(caption)
            if server["threshold"] == reading["threshold"] != changed_from:
                return reading, server
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never caught up: widget {reading}, caption {caption!r}")
        page.wait_for_timeout(100)


def test_dragging_the_handle_moves_every_number_and_the_server_agrees_on_release(page, dashboard, artifacts_dir: Path) -> None:
    labels, scores = _test_predictions()
    open_page(page, dashboard.url, "Threshold_explorer")
    wait_for_widget(page)
    caption_before = server_caption(page)
    readings = []
    page.mouse.move(*track_point(page, 0.15))
    page.mouse.down()
    for fraction in np.linspace(0.15, 0.9, 16):
        page.mouse.move(*track_point(page, float(fraction)), steps=2)
        readings.append(read_widget(page))
    # Mid-drag (pointer still down): the server has heard nothing, the widget answered every move itself.
    assert server_caption(page) == caption_before
    page.screenshot(path=str(artifacts_dir / "threshold_mid_drag.png"), full_page=True)
    thresholds = [float(r["threshold"]) for r in readings]
    assert thresholds == sorted(thresholds) and len(set(thresholds)) >= 12, thresholds
    for reading in readings:
        assert reading["server"] == "dragging"
        assert _shown(reading) == _sklearn_shown(labels, scores, float(reading["threshold"])), reading["threshold"]
        assert reading["aria"]["role"] == "slider" and reading["aria"]["text"] == reading["threshold"]
    assert len({tuple(r["roc_point"]) for r in readings}) > 1 and len({r["histogram_x"] for r in readings}) >= 12
    page.mouse.up()

    reading, server = _wait_for_agreement(page)
    assert reading["server"] == "agrees", reading["status"]
    assert reading["threshold"] == readings[-1]["threshold"]
    assert {k: server[k] for k in SHOWN_KEYS} == {k: reading[k] for k in SHOWN_KEYS}
    assert "set by hand" in server_caption(page)
    # Per 1,000 screened at the split's own prevalence: natural frequencies from scikit-learn's sensitivity/specificity.
    t = float(reading["threshold"])
    sens = skm.recall_score(labels, scores >= t)
    spec = skm.recall_score(labels, scores >= t, pos_label=0)
    p = labels.mean()
    assert f"{1000 * p * sens:.0f} cases caught" in reading["per_1000"]
    assert f"{1000 * (1 - p) * (1 - spec):.0f} false alarms" in reading["per_1000"]
    assert not exceptions(page)


def test_keyboard_and_presets_move_the_handle(page, dashboard, artifacts_dir: Path) -> None:
    labels, scores = _test_predictions()
    open_page(page, dashboard.url, "Threshold_explorer")
    wait_for_widget(page)
    slider = page.locator(SLIDER)
    slider.focus()
    start = float(read_widget(page)["aria"]["now"])  # the model's own threshold, off the 0.001 grid
    for _ in range(3):
        slider.press("ArrowRight")
    reading, server = _wait_for_agreement(page)
    after_arrows = float(reading["aria"]["now"])
    assert after_arrows == pytest.approx(round((start + 0.001) * 1000) / 1000 + 0.002, abs=1e-9)  # onto the grid
    assert _shown(reading) == _sklearn_shown(labels, scores, after_arrows)
    slider.press("PageDown")
    reading, _ = _wait_for_agreement(page)
    assert float(reading["aria"]["now"]) == pytest.approx(after_arrows - 0.010, abs=1e-9)
    slider.press("Home")
    reading, server = _wait_for_agreement(page)
    assert reading["threshold"] == "0.0000" and reading["recall"] == "1.000" and reading["specificity"] == "0.000"
    slider.press("End")
    reading, server = _wait_for_agreement(page)
    assert float(reading["threshold"]) == pytest.approx(float(reading["aria"]["max"]), abs=5e-5)
    assert _shown(reading) == _sklearn_shown(labels, scores, float(reading["aria"]["now"]))

    button = page.locator('[data-testid="stButton"] button', has_text="Youden J").first
    target = float(button.inner_text().rsplit("·", 1)[1])
    button.click()
    reading, server = _wait_for_agreement(page, changed_from=reading["threshold"])
    assert float(reading["threshold"]) == pytest.approx(target, abs=5e-4)
    assert "Youden J" in server_caption(page)
    assert _shown(reading) == _sklearn_shown(labels, scores, float(reading["aria"]["now"]))
    page.screenshot(path=str(artifacts_dir / "threshold_keyboard_preset.png"), full_page=True)
    assert not exceptions(page)
