"""Playwright helpers for the live threshold widget (widgets/threshold_explorer.*), shared by the browser test and
bench/bench_threshold_browser.py. Playwright's CSS locators pierce the widget's shadow root."""

from __future__ import annotations

import re

WIDGET = '[data-testid="threshold-explorer"]'
SLIDER = '[data-testid="threshold-slider"]'
SHOWN_KEYS = ("recall", "specificity", "precision", "npv", "f1", "accuracy")
COUNT_KEYS = ("tn", "fp", "fn", "tp")
SERVER_CAPTION = re.compile(r"^Threshold \d+\.\d{4}:")
SERVER_LABELS = {"sensitivity": "recall", "specificity": "specificity", "PPV": "precision", "NPV": "npv", "F1": "f1",
                 "accuracy": "accuracy"}

# Everything the widget shows, read in one evaluation (through the shadow root) so a pointer move cannot interleave.
READ_JS = """
() => {
  const host = [...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')]
      .find(h => h.shadowRoot && h.shadowRoot.querySelector('[data-testid="threshold-explorer"]'));
  if (!host) return null;
  const root = host.shadowRoot;
  const text = (id) => { const el = root.querySelector(`[data-testid="${id}"]`); return el ? el.textContent.trim() : null; };
  const out = {threshold: text('threshold-value'), server: root.querySelector('[data-testid="threshold-explorer"]').dataset.server,
               status: text('threshold-status')};
  for (const k of ['recall', 'specificity', 'precision', 'npv', 'f1', 'accuracy', 'ppv_at_prevalence', 'npv_at_prevalence'])
    out[k] = text(`threshold-metric-${k}`);
  for (const k of ['tn', 'fp', 'fn', 'tp']) out[k] = text(`threshold-${k}`);
  const point = root.querySelector('[data-testid="threshold-roc-point"]');
  out.roc_point = point ? [point.getAttribute('cx'), point.getAttribute('cy')] : null;
  const line = root.querySelector('[data-testid="threshold-histogram-line"]');
  out.histogram_x = line ? line.getAttribute('x1') : null;
  const per = root.querySelector('[data-testid="threshold-per-1000"]');
  out.per_1000 = per ? per.textContent.replace(/\\s+/g, ' ').trim() : null;
  const slider = root.querySelector('[data-testid="threshold-slider"]');
  out.aria = {role: slider.getAttribute('role'), now: slider.getAttribute('aria-valuenow'),
              text: slider.getAttribute('aria-valuetext'), max: slider.getAttribute('aria-valuemax')};
  return out;
}
"""

SERVER_JS = """
() => {
  const el = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .find(e => /^Threshold \\d+\\.\\d{4}:/.test(e.innerText));
  return el ? el.innerText : '';
}
"""


def wait_for_widget(page, *, timeout_ms: int = 120_000) -> None:
    """Wait until the widget has drawn its numbers (after the page's first run)."""
    page.locator(f'{WIDGET}[data-ready="true"]').wait_for(state="attached", timeout=timeout_ms)
    page.wait_for_function(f"() => {{ const r = ({READ_JS})(); return r && r.recall; }}", timeout=timeout_ms)


def read_widget(page) -> dict:
    """What the widget shows right now: threshold, metrics, counts, figure point, ARIA attributes, server status."""
    return page.evaluate(READ_JS)


def server_caption(page) -> str:
    """The server's caption under the widget ('Threshold 0.4230: ... Server numbers (TEST): sensitivity ...')."""
    return page.evaluate(SERVER_JS)


def parse_server_caption(caption: str) -> dict[str, str]:
    """{"threshold": "0.4230", "recall": "0.992", ...} from the server's caption."""
    threshold = caption.split()[1].rstrip(":")
    listed = caption.split("Server numbers", 1)[1].split(":", 1)[1].strip().rstrip(".")
    pairs = (item.strip().rsplit(" ", 1) for item in listed.split("·"))
    return {"threshold": threshold, **{SERVER_LABELS[label]: value for label, value in pairs}}


def track_point(page, fraction: float) -> tuple[float, float]:
    """Viewport coordinates of `fraction` (0..1) along the slider's track."""
    box = page.locator(SLIDER).bounding_box()
    return box["x"] + fraction * box["width"], box["y"] + box["height"] / 2
