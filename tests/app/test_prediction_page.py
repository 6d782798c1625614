"""Prediction page through AppTest, with the tiny real-data CNN as the only model in the models folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.harness import open_page as open_app_page

from core import predict
from core.imaging import decode_xray

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/5_Prediction.py"
NORMAL_FILE = "test/NORMAL/IM-0001-0001.jpeg"
PNEUMONIA_FILE = "test/PNEUMONIA/person100_bacteria_475.jpeg"


@pytest.fixture()
def models_root(tiny_cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PNEUMONIA_MODELS", str(tiny_cnn_dir.parent))
    return tiny_cnn_dir.parent


def _open_page() -> AppTest:
    return open_app_page(PAGE, timeout=60)


def _metric(at: AppTest, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def _upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="prediction_upload").set_value([(name, data, "application/octet-stream") for name, data in files])
    at.run()
    assert not at.exception, at.exception
    return at


def test_shown_probability_is_the_models_own_for_each_class_and_the_dicom(models_root: Path, data_root: Path,
                                                                          samples_dir: Path) -> None:
    scorer = predict.load_scorer(models_root / "tiny_cnn")
    at = _open_page()
    for path in (data_root / NORMAL_FILE, data_root / PNEUMONIA_FILE):
        data = path.read_bytes()
        _upload(at, (path.name, data))
        expected = scorer.probability(decode_xray(data, name=path.name))
        assert _metric(at, "Pneumonia score") == f"{expected:.3f}"
        assert _metric(at, "Decision at threshold 0.500") == predict.decision_label(expected, 0.5)
        assert not at.error
        assert len(at.get("download_button")) == 2  # overlay PNG and result JSON
        assert any("deletion" in m.value for m in at.markdown)
    # An adult's film (the DICOM) is outside what the models know: no decision, the raw score only on request.
    dicom = (samples_dir / "RG1_UNCI.dcm").read_bytes()
    _upload(at, ("RG1_UNCI.dcm", dicom))
    assert _metric(at, "Decision") == "Withheld" and not any(m.label.startswith("Pneumonia score") for m in at.metric)
    assert at.error[0].value.startswith("No decision") and len(at.get("download_button")) == 1  # the JSON, no overlay
    raw = scorer.probability(decode_xray(dicom, name="RG1_UNCI.dcm"))
    assert not any(f"{raw:.3f}" in c.value for c in at.caption)
    at.toggle(key="prediction_raw_score").set_value(True).run()
    assert any(f"Raw model output {raw:.3f}" in c.value and "not a score of pneumonia" in c.value for c in at.caption)
    _upload(at, (Path(PNEUMONIA_FILE).name, (data_root / PNEUMONIA_FILE).read_bytes()))
    # The deletion test runs on demand (one model pass per step), then stays on for the next images.
    assert not any(s.value.startswith(("Faithful", "Weakly", "Not faithful", "The model gives")) for s in [*at.success, *at.warning])
    at.toggle(key="prediction_deletion").set_value(True).run()
    assert not at.exception, at.exception
    assert any(s.value.startswith(("Faithful", "Weakly", "Not faithful", "The model gives")) for s in [*at.success, *at.warning, *at.info])


def test_bad_uploads_show_the_decoders_message_and_the_next_good_upload_works(models_root: Path, data_root: Path) -> None:
    good = (data_root / PNEUMONIA_FILE).read_bytes()
    at = _open_page()
    for name, data, words in (("empty.png", b"", "empty"), ("notes.png", b"patient notes\n" * 40, "text file"),
                              ("cut.jpeg", good[: len(good) // 3], "truncated")):
        _upload(at, (name, data))
        assert len(at.error) == 1 and name in at.error[0].value and words in at.error[0].value
        assert "Traceback" not in at.error[0].value and not at.metric
    _upload(at, ("good.jpeg", good))
    assert not at.error and _metric(at, "Pneumonia score")


def test_several_files_give_a_table_with_per_file_errors(models_root: Path, data_root: Path) -> None:
    scorer = predict.load_scorer(models_root / "tiny_cnn")
    normal, pneumonia = (data_root / NORMAL_FILE).read_bytes(), (data_root / PNEUMONIA_FILE).read_bytes()
    at = _upload(_open_page(), ("a.jpeg", normal), ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50), ("b.jpeg", pneumonia))
    table = at.dataframe[0].value
    assert list(table["file"]) == ["a.jpeg", "broken.png", "b.jpeg"]
    assert list(table["status"]) == ["ok", "error", "ok"]
    assert table.loc[1, "error"] and table.loc[0, "error"] == ""
    assert table.loc[2, "score"] == pytest.approx(scorer.probability(decode_xray(pneumonia)), abs=1e-6)
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    labels = [b.label for b in at.get("download_button")]
    assert "Download the results (CSV)" in labels


def test_threshold_from_the_threshold_page_is_used_and_named(models_root: Path) -> None:
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["operating_point"] = {"model": "tiny_cnn", "threshold": 0.9, "source": "max F1 on val"}
    at.switch_page(PAGE)
    at.run()
    at.radio(key="prediction_source").set_value("Real samples").run()
    assert not at.exception, at.exception
    assert any("Threshold explorer" in i.value and "0.900" in i.value and "max F1 on val" in i.value for i in at.info)
    assert any(m.label == "Decision at threshold 0.900" for m in at.metric)
    # One click goes back to the model's own threshold, and says so.
    own = predict.load_scorer(models_root / "tiny_cnn").threshold
    at.button(key="prediction_back_to_own").click().run()
    assert not at.exception, at.exception
    assert "operating_point" not in at.session_state
    assert any(m.label == f"Decision at threshold {own:.3f}" for m in at.metric)
    assert any("the model's own" in c.value for c in at.caption)


@pytest.mark.parametrize("method", ["gradcam++", "scorecam", "smoothgrad"])
def test_other_explanation_methods_render(models_root: Path, method: str) -> None:
    at = _open_page()
    at.radio(key="prediction_source").set_value("Real samples").run()
    at.selectbox(key="prediction_method_tiny_cnn").set_value(method).run()
    assert not at.exception, at.exception
    assert len(at.image) >= 2
    at.slider(key="prediction_opacity").set_value(0.8).run()
    assert not at.exception, at.exception


def test_opacity_and_threshold_changes_recompute_nothing_and_sessions_share_work(models_root: Path, data_root: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Per image bytes and model, decoding + scoring, the guard and the heatmap run once for every session; moving the
    opacity slider or the threshold runs none of them again."""
    from core import explain, guard as ood

    calls = {"score": 0, "explain": 0, "guard": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(predict, "score_uploads", counting("score", predict.score_uploads))
    monkeypatch.setattr(explain, "explain", counting("explain", explain.explain))
    from core.guard import _verdict  # where assess() calls the model check

    monkeypatch.setattr(_verdict, "check", counting("guard", _verdict.check))
    data = (data_root / "test" / "PNEUMONIA" / "person1_virus_6.jpeg").read_bytes()  # used by no other test here
    at = _upload(_open_page(), ("first.jpeg", data))
    after_upload = dict(calls)
    assert after_upload["score"] == 1 and after_upload["explain"] == 1
    at.slider(key="prediction_opacity").set_value(0.8).run()
    assert not at.exception, at.exception
    assert calls == after_upload
    other = _upload(_open_page(), ("first.jpeg", data))  # another session, same file
    assert calls == after_upload
    assert _metric(other, "Pneumonia score") == _metric(at, "Pneumonia score")
    other.session_state["operating_point"] = {"model": "tiny_cnn", "threshold": 0.99, "source": "test"}
    other.run()
    assert calls == after_upload and any(m.label == "Decision at threshold 0.990" for m in other.metric)


def test_reruns_keep_keras_and_tensorflow_state(models_root: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's reset of Keras after every script run (a full garbage collection and a cleared TensorFlow kernel
    cache, so the next model call rebuilds its kernels) is skipped in the dashboard; other callers still reset."""
    import keras
    from tensorflow.python.eager import context

    cleared = []
    original = context.Context.clear_kernel_cache
    monkeypatch.setattr(context.Context, "clear_kernel_cache", lambda self: cleared.append(1) or original(self))
    at = _upload(_open_page(), ("x.jpeg", (data_root / PNEUMONIA_FILE).read_bytes()))
    at.slider(key="prediction_opacity").set_value(0.7).run()
    at.toggle(key="prediction_deletion").set_value(True).run()
    assert not at.exception, at.exception
    assert not cleared, "a rerun reset Keras and TensorFlow's kernel cache"
    keras.backend.clear_session()
    assert cleared
