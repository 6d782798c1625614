"""Three browser sessions at once on one server, each uploading a different real X-ray: every session gets its own
file's probability (the model's own prediction for that file) and a Grad-CAM overlay; no cross-talk through the
shared cached model or cached results. Timings are measured by bench/bench_load.py, not asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.load import (
    conv_model_server,
    files_with_distinct_scores,
    run_sessions,
)


@pytest.fixture(scope="module")
def conv_server(tmp_path_factory: pytest.TempPathFactory, chromium_browser):
    """A server whose only model is the first convolutional shipped model (so the default heatmap is Grad-CAM)."""
    try:
        server, model = conv_model_server(tmp_path_factory.mktemp("conv_models"))
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server, model
    server.stop()


def test_concurrent_sessions_each_get_their_own_result(conv_server, data_root: Path) -> None:
    server, model = conv_server
    chosen = files_with_distinct_scores(model, data_root, 3, pool=12)  # distinct shown probabilities: cross-talk shows
    files, expected = list(chosen), {f.name: shown for f, shown in chosen.items()}
    assert len(files) == 3
    results = run_sessions(server.url, files, timeout_s=240)
    assert [r.file for r in results] == [f.name for f in files]
    for result in results:
        assert result.error is None and not result.exceptions, results
        assert result.heading == result.file, f"a session shows another session's file: {result}"
        assert result.probability == expected[result.file], f"cross-talk or wrong score: {result} vs {expected}"
        assert result.overlay_caption.startswith("Grad-CAM") and result.images >= 2, result
    assert "Traceback" not in server.log()
