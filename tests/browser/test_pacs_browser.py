"""From PACS in headless Debian chromium: a real Orthanc holding a real film, the dashboard served like `make serve`
pointed at it; search, score with the recommended model, send the result, then the SR read back from Orthanc and
checked against what the page showed. Screenshot in tests/artifacts/pacs.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import config
from core import trail as audit
from core.pacs import films, results
from core.pacs.client import Archive
from core.pacs.orthanc import LocalOrthanc
from tests.browser.helpers import exceptions, metric_value, open_page, wait_until_idle
from tests.browser.server import DashboardServer


@pytest.fixture()
def archive_and_server(tmp_path: Path):
    film = sorted((config.data_root() / "test" / "PNEUMONIA").glob("*.jpeg"))[3]
    source = films.wrap_film(film, patient_id="BROWSER-1", age_years=4, accession="BRW0001")
    with LocalOrthanc() as orthanc:
        orthanc.upload(films.to_bytes(source))
        server = DashboardServer(log_path=tmp_path / "streamlit.log", env={
            "PNEUMONIA_PACS_URL": orthanc.dicomweb_url, audit.ENV_DB: str(tmp_path / "trail.sqlite"),
            audit.ENV_SECRET: "browser-test"})
        server.start()
        try:
            yield orthanc, server, source, tmp_path / "trail.sqlite"
        finally:
            server.stop()


def test_from_pacs_score_send_and_the_sr_in_the_archive(chromium_browser, archive_and_server, artifacts_dir: Path) -> None:
    orthanc, server, source, database = archive_and_server
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    try:
        open_page(page, server.url, "Prediction")
        page.get_by_text("From PACS", exact=True).click()
        page.get_by_role("button", name="Search the archive").click()
        wait_until_idle(page)
        page.get_by_role("button", name="Score this study").click()
        probability = metric_value(page, "Probability of pneumonia")
        page.get_by_role("button", name="Send result to PACS").click()
        page.get_by_text("Sent to", exact=False).first.wait_for(state="visible", timeout=120_000)
        assert exceptions(page) == []
        page.screenshot(path=str(artifacts_dir / "pacs.png"), full_page=True)
    finally:
        context.close()
    assert "BROWSER-1" not in server.log()
    archive = Archive(orthanc.dicomweb_url)
    [report] = [archive.retrieve(i) for i in archive.instances(source.StudyInstanceUID) if i.modality == "SR"]
    values = results.read_report(report)
    assert f"{values['Probability of pneumonia']:.3f}" == probability
    assert values["Source of Measurement"] == source.SOPInstanceUID and values["Disclaimer"] == results.DISCLAIMER
    assert [i.modality for i in archive.instances(source.StudyInstanceUID)].count("OT") == 1
    rows = audit.Trail(database).frame()
    assert len(rows) == 1 and bool(rows["sent"].iloc[0])
