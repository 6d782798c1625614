"""Numbers for people: natural frequencies (of 100 children), icon arrays, dataset bars."""
from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from core import config
from core.evaluation import metrics
from core.report._texts import SPLIT_NAMES


@dataclass(frozen=True)
class NaturalFrequencies:
    """'Of 100 children with pneumonia it flags `caught`; of 100 without, it wrongly flags `false_alarms`', with 95% CIs."""

    caught: float
    caught_low: float
    caught_high: float
    false_alarms: float
    false_alarms_low: float
    false_alarms_high: float
    split: str
    n_pneumonia: int
    n_normal: int

    def sentences(self) -> tuple[str, str]:
        """The two plain sentences (rounded to whole children), naming the split and the 95% CI."""
        split = SPLIT_NAMES.get(self.split, self.split.upper())
        return (
            f"Of 100 X-rays showing pneumonia, it flags {self.caught:.0f} "
            f"(95% CI {self.caught_low:.0f}–{self.caught_high:.0f}; {split} split, {self.n_pneumonia} X-rays with pneumonia).",
            f"Of 100 X-rays without pneumonia, it wrongly flags {self.false_alarms:.0f} "
            f"(95% CI {self.false_alarms_low:.0f}–{self.false_alarms_high:.0f}; {split} split, {self.n_normal} X-rays without).",
        )


def natural_frequencies(summary: dict, *, split: str, n_pneumonia: int, n_normal: int) -> NaturalFrequencies:
    """Natural frequencies per 100 sick / 100 healthy children from a summary with recall/specificity and CIs.

    `summary` is a registry.model_summary row (keys recall, recall_ci_low, ...) or a metrics.summarize_with_ci
    dict ({"recall": {"value", "ci_low", "ci_high"}, ...}). Uses metrics.per_population with 100 + 100 children.
    """
    def triple(key: str) -> tuple[float, float, float]:
        if isinstance(summary.get(key), dict):
            item = summary[key]
            return float(item["value"]), float(item["ci_low"]), float(item["ci_high"])
        return float(summary[key]), float(summary[f"{key}_ci_low"]), float(summary[f"{key}_ci_high"])

    recall, specificity = triple("recall"), triple("specificity")
    # 200 children, half of them with pneumonia: `caught` is per 100 sick, `false_alarms` per 100 healthy.
    per = [metrics.per_population(r, s, 0.5, population=200) for r, s in zip(recall, specificity)]
    return NaturalFrequencies(
        caught=per[0]["caught"], caught_low=per[1]["caught"], caught_high=per[2]["caught"],
        # The false-alarm rate is 1 - specificity, so the specificity CI's low end gives the high end.
        false_alarms=per[0]["false_alarms"], false_alarms_low=per[2]["false_alarms"], false_alarms_high=per[1]["false_alarms"],
        split=split, n_pneumonia=int(n_pneumonia), n_normal=int(n_normal),
    )


def icon_array_html(count: float, *, total: int = 100, colour: str = "#d1242f", label: str = "") -> str:
    """A 10-per-row grid of `total` person icons, the first round(count) filled with `colour` (HTML + inline CSS)."""
    filled = int(round(count))
    cells = "".join(
        f'<span style="display:inline-block;width:1.05em;height:1.05em;margin:0.08em;border-radius:50% 50% 20% 20%;'
        f'background:{colour if i < filled else "#d0d7de"}"></span>'
        + ("<br>" if (i + 1) % 10 == 0 else "")
        for i in range(total)
    )
    caption = f'<div style="font-size:0.9em;margin-top:0.3em">{html.escape(label)}</div>' if label else ""
    return f'<div class="icon-array" role="img" aria-label="{filled} of {total}" style="line-height:0">{cells}</div>{caption}'


def dataset_bars_html(images: pd.DataFrame, patients: pd.DataFrame | None = None) -> str:
    """dataset_figure as plain HTML + inline CSS (no JavaScript): one stacked bar per split, widths to scale.

    For the landing page, which then needs no plotly.js in the browser. images/patients: dataset_counts frames.
    """
    splits = [s for s in ("train", "val", "test") if s in images.index]
    colours = dict(zip(config.CLASS_NAMES, ("#1f6feb", "#d1242f")))
    largest = max(int(sum(int(images.at[s, c]) for c in config.CLASS_NAMES)) for s in splits) if splits else 1
    rows = []
    for split in splits:
        total = sum(int(images.at[split, c]) for c in config.CLASS_NAMES)
        segments = []
        for class_name in config.CLASS_NAMES:
            count = int(images.at[split, class_name])
            children = f" from {int(patients.at[split, class_name]):,} children" if patients is not None else ""
            segments.append(
                f'<span title="{class_name}: {count:,} X-rays{children}" style="display:inline-block;height:100%;'
                f'width:{100 * count / max(1, total):.3f}%;background:{colours[class_name]};color:#fff;text-align:center;'
                f'overflow:hidden;white-space:nowrap">{count:,}</span>')
        rows.append(
            f'<div style="display:flex;align-items:center;gap:0.6em;margin:0.35em 0">'
            f'<span style="width:6.5em;text-align:right">{SPLIT_NAMES[split].title()}</span>'
            f'<span role="img" aria-label="{SPLIT_NAMES[split].title()}: {total:,} X-rays" style="display:flex;height:1.8em;'
            f'width:{100 * total / largest:.3f}%;line-height:1.8em;font-size:0.9em">{"".join(segments)}</span>'
            f'<span style="white-space:nowrap">{total:,}</span></div>')
    legend = " ".join(f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{colour};'
                      f'vertical-align:middle"></span> {name.title()}' for name, colour in colours.items())
    return (f'<div class="dataset-bars"><div style="font-weight:600">X-rays per split (validation carved from train, '
            f'grouped by child)</div>{"".join(rows)}<div style="font-size:0.9em">{legend}</div></div>')
