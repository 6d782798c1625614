"""bench/streamlit_client.py (the browserless client of bench load) against a real dashboard server: two protocol
sessions at once, each uploading a different real X-ray, each get their own file's probability (the model's own
prediction, formatted as the page does), their file name as the heading and a Grad-CAM overlay. Timings are measured by
bench/bench_load.py, never asserted here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.streamlit_client import ProtocolResult, run_protocol_sessions, upload_session
from tests.browser.load import conv_model_server, files_with_distinct_scores, pick_files
from tests.browser.server import free_port


def _run(coroutine):
    """asyncio.run in a thread of its own: the sync Playwright API of other browser tests may own this thread's loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def conv_server(tmp_path_factory: pytest.TempPathFactory):
    """A server whose only model is the first convolutional shipped model (so the default heatmap is Grad-CAM)."""
    try:
        server, model = conv_model_server(tmp_path_factory.mktemp("protocol_models"))
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server, model
    server.stop()


def test_two_protocol_sessions_each_get_their_own_result(conv_server, data_root: Path) -> None:
    server, model = conv_server
    chosen = files_with_distinct_scores(model, data_root, 2, pool=10)  # distinct shown probabilities: cross-talk shows
    files, expected = list(chosen), {f.name: shown for f, shown in chosen.items()}
    assert len(files) == 2
    results = _run(run_protocol_sessions(server.url, files, timeout_s=240))
    assert [r.file for r in results] == [f.name for f in files]
    for result in results:
        assert result.error is None and not result.exceptions, result
        assert result.heading == result.file, f"a session shows another session's file: {result}"
        assert result.probability == expected[result.file], f"cross-talk or wrong score: {result} vs {expected}"
        assert result.overlay_caption.startswith("Grad-CAM") and "red = most influential" in result.overlay_caption, result
        assert result.images == 2 and result.image_bytes > 0, result  # the original and the overlay, fetched from /media
        assert result.seconds is not None and result.seconds_to_overlay is not None, result
    assert "Traceback" not in server.log()


def test_a_session_reports_an_unreachable_server_instead_of_raising(data_root: Path) -> None:
    path = pick_files(data_root, 1)[0]
    result = _run(upload_session(f"http://127.0.0.1:{free_port()}", path, timeout_s=20))
    assert isinstance(result, ProtocolResult) and result.file == path.name
    assert result.error and "Connection" in result.error, result
    assert result.seconds is None and result.probability is None
