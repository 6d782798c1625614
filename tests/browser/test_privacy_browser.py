"""Privacy in the real browser: a real DICOM carrying known patient values is uploaded on the Prediction page; the
values appear nowhere in the page (text, HTML, the opened file-information panel, the JSON download) nor in the
server's stdout/stderr."""

from __future__ import annotations

from pathlib import Path

from tests.browser.helpers import exceptions, metric_value, open_page, upload, wait_until_idle
from tests.test_privacy import leaks, private_dicom


def test_uploaded_dicom_patient_tags_never_reach_the_page_or_the_server_log(chromium_browser, dashboard, samples_dir: Path,
                                                                           tmp_path: Path, artifacts_dir: Path) -> None:
    dicom = tmp_path / "chest.dcm"
    dicom.write_bytes(private_dicom(samples_dir))
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(180_000)
    try:
        open_page(page, dashboard.url, "Prediction")
        upload(page, dicom)
        # An adult's film: outside the models' scope, no decision; the raw score shown on request is searched too.
        assert metric_value(page, "Decision") == "Withheld"
        page.get_by_text("Show the raw score anyway (meaningless for this image)").click()
        page.get_by_text("Raw model output").first.wait_for()
        probability = page.get_by_text("Raw model output").first.inner_text().split("Raw model output ", 1)[1].split(":", 1)[0]
        page.get_by_text("File information (non-identifying)").first.click()
        page.get_by_text("MONOCHROME1").first.wait_for()  # the panel is open and shows the technical metadata
        wait_until_idle(page, timeout_ms=180_000)
        page.screenshot(path=str(artifacts_dir / "privacy_dicom.png"), full_page=True)
        shown = page.inner_text("body") + page.content()
        assert not exceptions(page), exceptions(page)
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download this result (JSON)").click()
        result_json = Path(download_info.value.path()).read_bytes()
    finally:
        context.close()
    assert 0.0 <= float(probability) <= 1.0
    assert b'"probability_pneumonia": null' in result_json and b'"decision": "WITHHELD"' in result_json
    assert not leaks(shown), "patient values shown in the page"
    assert not leaks(result_json), "patient values in the downloaded result"
    assert not leaks(dashboard.log()), "patient values in the server log"
