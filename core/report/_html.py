"""The self-contained HTML report: tables, figures, examples and the site section in one file."""
from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import audit, config
from core.evaluation import metrics
from core.models import registry
from core.report._figures import (
    comparison_rows,
    curve_figures,
    curve_frames,
    dataset_counts,
    dataset_figure,
)
from core.report._changes import recommendation_change
from core.report._frequencies import icon_array_html, natural_frequencies
from core.report._picking import (
    example_images,
    pick_examples,
)
from core.report._recommendation import (
    rank_models,
    recommendation_reason,
    recommended_name,
)
from core.report._texts import (
    DATA_CENTRE,
    DATA_CITATION,
    DATA_DOI,
    DATA_DOI_URL,
    DATA_LICENCE,
    DATA_LICENCE_URL,
    GLOSSARY,
    INTENDED_USE,
    LIMITATIONS,
    PUBLISHED_BASELINE,
    SPLIT_NAMES,
    logger,
)


def _examples_for_report(chosen: registry.ModelEntry, predictions: pd.DataFrame, data_root: str | Path, *, split: str,
                         heatmaps: bool) -> list:
    """The examples stored with the model (core.report.examples: no TensorFlow) when `heatmaps` and they match it, else
    computed here (example_images: TensorFlow when `heatmaps`)."""
    if heatmaps and split == "test":
        from core.report import examples

        try:
            return examples.load_examples(chosen.path, threshold=chosen.threshold)
        except examples.ExamplesUnavailableError as exc:
            logger.info("Computing the example heatmaps here: %s", exc)
    return example_images(chosen, pick_examples(predictions, chosen.threshold, split=split), data_root, heatmaps=heatmaps)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1f24;max-width:1100px;margin:0 auto;padding:1.5em;line-height:1.5}
h1{font-size:2em;margin-bottom:0.2em}h2{border-bottom:2px solid #d0d7de;padding-bottom:0.2em;margin-top:2em}
.note{background:#fff8c5;border-left:4px solid #bf8700;padding:0.6em 1em}.muted{color:#57606a;font-size:0.9em}
table{border-collapse:collapse;font-size:0.85em;width:100%}th,td{border:1px solid #d0d7de;padding:0.3em 0.5em;text-align:right}
th{background:#f3f6fa}td:first-child,th:first-child{text-align:left}tr.recommended td{font-weight:bold;background:#ddf4ff}
.row{display:flex;flex-wrap:wrap;gap:1.5em}.row>div{flex:1 1 300px}.row.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr))}.charts>div{min-width:0}.big{font-size:1.3em}
figure{margin:0;flex:1 1 300px}figure img{width:100%;max-width:340px;border-radius:4px}figcaption{font-size:0.9em}
dl dt{font-weight:bold;margin-top:0.5em}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_html(fig, *, first: bool, div_id: str) -> str:
    """One plotly figure as a <div>; plotly.js is inlined with the first figure only (never a CDN)."""
    return fig.to_html(full_html=False, include_plotlyjs=True if first else False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _table_html(frame: pd.DataFrame, *, highlight_row: int | None = None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cls = ' class="recommended"' if i == highlight_row else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def comparison_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Display frame of comparison rows (comparison_rows): one line per model, metrics as 'value (low–high)'."""
    shown = pd.DataFrame({"Model": rows["display_name"], "Threshold (chosen on validation)": rows["threshold"].map("{:.3f}".format)})
    for key, label in (("roc_auc", "ROC AUC"), ("recall", "Sensitivity"), ("specificity", "Specificity"),
                       ("precision", "PPV"), ("npv", "NPV"), ("accuracy", "Accuracy"), ("f1", "F1"), ("brier", "Brier")):
        shown[label] = [metrics.format_ci({"value": r[key], "ci_low": r[f"{key}_ci_low"], "ci_high": r[f"{key}_ci_high"]})
                        for _, r in rows.iterrows()]
    return shown


def build_report(
    models_dir: str | Path,
    data_root: str | Path,
    *,
    heatmaps: bool = True,
    model: str | None = None,
    split: str = "test",
    n_resamples: int = config.BOOTSTRAP_RESAMPLES,
    site: dict | None = None,
) -> str:
    """The whole results report as one self-contained HTML string (plotly.js inline, images as data URIs).

    `site` (core.site.SiteReport.to_dict(), e.g. the JSON of `python -m core.site validate --out`) adds a
    "Your site" section with every model's numbers on the site's own films.

    `model` overrides the recommended model (default: :func:`recommended_name`, chosen on validation); `split` is the split reported
    (thresholds and the model choice always come from validation); `heatmaps=False` skips TensorFlow.
    """
    started = time.perf_counter()
    ranking = rank_models(models_dir)
    if ranking.empty:
        raise ValueError(f"No usable trained model in {models_dir}; train one with `make models` before writing a report.")
    chosen = registry.get_model(model or recommended_name(ranking), models_dir)
    if not chosen.available:
        raise ValueError(f"Model {chosen.name} cannot be used: {chosen.reason}")
    split_name = SPLIT_NAMES.get(split, split.upper())

    rows = comparison_rows(models_dir, split=split, n_resamples=n_resamples)
    chosen_row = rows[rows["model"] == chosen.name].iloc[0].to_dict()
    predictions = registry.load_predictions(chosen)
    split_rows = predictions[predictions["split"] == split]
    freq = natural_frequencies(chosen_row, split=split, n_pneumonia=int((split_rows["label"] == 1).sum()),
                               n_normal=int((split_rows["label"] == 0).sum()))
    examples = _examples_for_report(chosen, predictions, data_root, split=split, heatmaps=heatmaps)
    images, patients, n_patients = dataset_counts(data_root)
    frames = curve_frames(models_dir, split=split)
    figures = curve_figures(frames, split=split, highlight=chosen.name)
    card_md = audit.shown_card_markdown(chosen)

    parts: list[str] = []
    add = parts.append
    add(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Pneumonia X-ray model report</title><style>{_CSS}</style></head><body>")
    add("<h1>Pneumonia detection from children's chest X-rays: results report</h1>")
    add(f"<p class='muted'>Generated {time.strftime('%Y-%m-%d %H:%M %Z')} from <code>{_esc(Path(models_dir).name or models_dir)}</code> "
        f"and <code>{_esc(Path(data_root).name or data_root)}</code>. Opens offline: everything is inside this file.</p>")
    add(f"<p class='note'><b>What this is, and is not.</b> {_esc(INTENDED_USE)}</p>")

    add("<h2>1. The data</h2>")
    add(f"<p>{int(images['total'].sum())} chest X-rays of {n_patients} children (distinct patient ids), from {_esc(DATA_CENTRE)}. "
        "The validation split is carved from the training images and grouped by child, so no child is in two splits.</p>")
    add(_figure_html(dataset_figure(images, patients), first=True, div_id="dataset-chart"))
    table = images.rename(index=SPLIT_NAMES).reset_index().rename(columns={"split": "Split"})
    table.columns = [str(c).title() for c in table.columns]
    table["Children"] = patients["total"].to_numpy()
    add(_table_html(table))

    add("<h2>2. The recommended model</h2>")
    add(f"<p class='big'><b>{_esc(chosen.display_name)}</b> (<code>{_esc(chosen.name)}</code>)</p>")
    how = "It was chosen by you." if model else recommendation_reason(ranking, chosen.name).replace("**", "")
    add(f"<p>{_esc(how)} The test split played no part in the choice. It flags an X-ray when its score is at least "
        f"<b>{chosen.threshold:.3f}</b>, a threshold chosen on the validation split ({_esc(chosen.threshold_rule)}).</p>")

    add(f"<h2>3. What that means per 100 X-rays ({split_name} split)</h2>")
    sick, healthy = freq.sentences()
    add("<div class='row'>")
    add(f"<div><p class='big'>{_esc(sick)}</p>{icon_array_html(freq.caught, colour='#1a7f37', label='green = pneumonia flagged; grey = missed')}</div>")
    add(f"<div><p class='big'>{_esc(healthy)}</p>{icon_array_html(freq.false_alarms, colour='#d1242f', label='red = false alarm; grey = correctly not flagged')}</div>")
    add("</div>")
    add(f"<p>{_esc(PUBLISHED_BASELINE)}</p>")
    change = None if model else recommendation_change(models_dir, chosen.name, split=split, n_resamples=n_resamples)
    if change:
        add("<h3>What changed with the last recommendation</h3><ul>"
            + "".join(f"<li>{_esc(sentence)}</li>" for sentence in change.sentences()) + "</ul>")
    add(f"<p class='muted'>Counts are per 100 X-rays in each group (a child can have several), from the {split_name} split; intervals are 95% bootstrap "
        f"confidence intervals ({n_resamples} resamples over the test images). How many flagged children really have pneumonia "
        "(PPV) depends on how common pneumonia is where the tool is used.</p>")

    add(f"<h2>4. All models compared ({split_name} split, 95% CI)</h2>")
    highlight = int(np.flatnonzero(rows["model"].to_numpy() == chosen.name)[0])
    add(_table_html(comparison_table(rows), highlight_row=highlight))
    add(f"<p class='muted'>Each model at its own threshold chosen on the validation split; values on the {split_name} split "
        f"with 95% stratified bootstrap confidence intervals. Validation ROC AUC (used for the choice): "
        + ", ".join(f"{_esc(r.display_name)} {r.val_roc_auc:.3f}" for r in ranking.itertuples()) + ".</p>")
    add("<div class='row charts'>")
    for key, fig in figures.items():
        add(f"<div>{_figure_html(fig, first=False, div_id=f'{key}-chart')}</div>")
    add("</div>")
    add("<p class='muted'>× marks each model's operating point. Calibration: on the diagonal, a predicted 0.8 means pneumonia "
        "80% of the time.</p>")

    add(f"<h2>5. Example X-rays from the {split_name} split</h2>")
    if not examples:
        add("<p>No example could be shown (the images were not found in the dataset folder).</p>")
    else:
        kind_note = "with the Grad-CAM heatmap of the recommended model" if any(e.heatmap for e in examples) else "without heatmaps"
        notes = "".join(f" <span class='muted'>Shown without heatmap: {_esc(n)}</span>" for n in sorted({e.note for e in examples if e.note}))
        add(f"<p>One typical case of each outcome at the model's threshold, {kind_note}.{notes}</p><div class='row'>")
        for ex in examples:
            truth = config.CLASS_NAMES[ex.label]
            extra = ""
            add(f"<figure><img alt='{_esc(ex.kind)}: {_esc(ex.path)}' src='{_data_uri(ex.png)}'>"
                f"<figcaption><b>{_esc(ex.kind.capitalize())}</b>: {_esc(ex.caption)} Truth {truth}, score {ex.score:.3f} "
                f"(threshold {chosen.threshold:.3f}). <span class='muted'>{_esc(ex.path)}</span>{extra}</figcaption></figure>")
        add("</div>")

    if site:
        add(site_section_html(site))

    add("<h2>6. Limitations</h2><ul>")
    for item in LIMITATIONS:  # the card's own list (in its section) restates the same points
        add(f"<li>{_esc(item)}</li>")
    add("</ul>")

    add("<h2>7. Glossary</h2><dl>" + "".join(f"<dt>{_esc(t)}</dt><dd>{_esc(d)}</dd>" for t, d in GLOSSARY) + "</dl>")

    add("<h2>8. Data provenance and licence</h2>")
    add(f"<p>{_esc(DATA_CITATION)} doi:<a href='{DATA_DOI_URL}'>{DATA_DOI}</a>. Licence: "
        f"<a href='{DATA_LICENCE_URL}'>{DATA_LICENCE}</a>. Images resized to 224×224 for this project; the Kaggle "
        "train/test folders are kept, the 16-image Kaggle validation folder is folded into training.</p>")
    if card_md:
        add(f"<details><summary>Model card of {_esc(chosen.display_name)}</summary><pre style='white-space:pre-wrap'>{_esc(card_md)}</pre></details>")
    add(f"<p class='muted'>Report built in {time.perf_counter() - started:.1f} s by <code>python -m core.report</code>.</p>")
    add("</body></html>")
    return "\n".join(parts)


def _site_cell(entry: dict | None) -> str:
    """'0.930 (0.910–0.950), width 0.040' from a site metric entry."""
    if not entry:
        return "—"
    width = entry.get("ci_width")
    return metrics.format_ci(entry) + (f", width {width:.3f}" if isinstance(width, (int, float)) else "")


def site_section_html(site: dict) -> str:
    """The "Your site" section: every model at its own threshold and at the site operating point, on the site's films."""
    parts = [f"<h2 id='site'>Your site: {_esc(site.get('site', '?'))}</h2>",
             f"<p>{int(site.get('films', 0))} labelled films of the site scored (labels from {_esc(site.get('labels_from', '?'))}; "
             f"patients from {_esc(site.get('patients_from', '?'))}; set fingerprint <code>{_esc(site.get('fingerprint', '?'))}</code>; "
             f"{len(site.get('problems') or [])} file(s) not used). 95% CIs resample patients; none of these films played any "
             "part in training, thresholds or model choice, except where a row says the model was adapted on them.</p>"]
    rows, op_rows, notes = [], [], []
    for r in site.get("results") or []:
        m = r.get("metrics") or {}
        counts = r.get("counts") or {}
        ood_counts = r.get("ood") or {}
        rows.append({"Model": r.get("display_name", r.get("model")), "Films (N / P)": f"{counts.get('NORMAL', 0)} / {counts.get('PNEUMONIA', 0)}",
                     "Patients": counts.get("patients", 0), "Threshold (card)": f"{r.get('threshold', math.nan):.3f}",
                     **({"ROC AUC": _site_cell(m.get("roc_auc")), "Sensitivity": _site_cell(m.get("recall")),
                         "Specificity": _site_cell(m.get("specificity"))} if m else
                        {"ROC AUC": "not reported", "Sensitivity": "not reported", "Specificity": "not reported"}),
                     "OOD flagged": f"{ood_counts.get('flagged', 0)} / {ood_counts.get('checked', 0)}" if ood_counts.get("guard") else "no guard",
                     "Score drift (KS)": f"{(r.get('drift') or {}).get('ks_statistic') or math.nan:.2f}"})
        point = r.get("site_operating_point") or {}
        if point.get("threshold") is not None:
            pm = point.get("metrics") or {}
            op_rows.append({"Model": r.get("display_name", r.get("model")), "Site threshold": f"{point['threshold']:.3f}",
                            "Rule": point.get("rule_text", ""), "Evaluation films": (point.get("evaluation") or {}).get("films"),
                            "Sensitivity": _site_cell(pm.get("recall")), "Specificity": _site_cell(pm.get("specificity")),
                            "PPV": _site_cell(pm.get("precision"))})
        for text in (r.get("refusal"), point.get("refusal"), r.get("adaptation")):
            if text:
                notes.append(f"{r.get('display_name', r.get('model'))}: {text}")
    parts.append("<p>Each model at its own threshold, chosen on the training hospital's VALIDATION split:</p>")
    parts.append(_table_html(pd.DataFrame(rows)))
    if op_rows:
        parts.append("<p>The <b>site operating point</b>: a threshold chosen by the card's own rule on one half of the site's "
                     "films (calibration half, grouped by patient) and reported on the other half (evaluation half):</p>")
        parts.append(_table_html(pd.DataFrame(op_rows)))
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(parts)


def write_report(out: str | Path, models_dir: str | Path, data_root: str | Path, **options) -> Path:
    """build_report(...) written to `out` (UTF-8, written to a temporary file then renamed); returns the path."""
    out = Path(out)
    text = build_report(models_dir, data_root, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
