"""The audit's card section, the robustness summary across models and plain-language findings."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from core.audit._dataset import write_json_atomic
from core.audit._films import BORDER_RELIANT_MASS, REGION_WORDS, REGIONS
from core.audit._regions import statistic_words
from core.imaging import perturbations

AUDIT_HEADING = "## Audit: what the model relies on"


def audit_markdown(audit: dict[str, Any]) -> str:
    """The card.md section for a model audit (heading AUDIT_HEADING, sub-sections '###')."""
    lines = [AUDIT_HEADING, "",
             f"Computed {audit.get('computed', '')} with `python -m core.audit model`. Each film is scored as given and after "
             f"each acquisition change; the threshold is the card's ({audit['threshold']:.4f}). Goal: {audit['goal']}.", ""]
    for split, entry in audit["splits"].items():
        name = "validation" if split == "val" else "test (official; for information, nothing is chosen on it)" if split == "test" else split
        verdict = "**passes**" if entry["robust"] else f"**fails** ({', '.join(entry['failing'])})"
        lines += [f"### Acquisition changes on {entry['n']} {name} films ({entry['per_class']} per class, seed {entry['seed']})", "",
                  f"Robustness goal {verdict} on this split." if split == "val" else
                  f"Under the same rule this split would {'pass' if entry['robust'] else 'fail'} ({', '.join(entry['failing']) or 'none'}).", "",
                  "| change | mean abs change in P | decisions flipped | ROC AUC | sensitivity (change) | specificity (change) | goal |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in entry["table"]:
            goal = "" if row["passed"] is None else ("pass" if row["passed"] else "FAIL")
            lines.append(f"| {row['name']} | {row['mean_abs_delta_p']:.3f} | {row['flipped']:.1%} | {row['roc_auc']:.3f} | "
                         f"{row['sensitivity']:.3f} ({row['delta_sensitivity']:+.3f}) | {row['specificity']:.3f} "
                         f"({row['delta_specificity']:+.3f}) | {goal} |")
        edges = entry.get("edges")
        if edges:
            signs = [f"blacking out the outer 6 % band {'moves' if edges['by_black_frame'] else 'does not move'} its decisions "
                     "beyond the tolerance"] if edges["by_black_frame"] is not None else []
            if edges["by_gradcam"] is not None:
                signs.append(f"{edges['gradcam_edge_mass']:.0%} of its Grad-CAM mass over all films is on the border band "
                             f"and corners (flagged at {BORDER_RELIANT_MASS:.0%}; per group of films in the table below)")
            groups = [g.replace("_", " ") for g, part in (entry.get("gradcam") or {}).items()
                      if isinstance(part, dict) and part.get("border_reliant") and g != "all"]
            lines += ["", f"**Reads the edges of the film, over all films: {'yes' if edges['reliant'] else 'no'}** "
                          f"({'; '.join(signs)})" + (f"; **on {', '.join(groups)} films it does**" if groups else "") + "."]
        cam = entry.get("gradcam")
        if cam:
            lines += ["", f"Grad-CAM (layer `{cam['layer']}`, {cam['target']}): share of the heatmap mass per region "
                          "(area = share of the film).", "",
                      "| films | " + " | ".join(REGION_WORDS[r] for r in REGIONS)
                      + f" | edges and corners ≥ {BORDER_RELIANT_MASS:.0%} |",
                      "| --- | " + " | ".join("---" for _ in REGIONS) + " | --- |"]
            for group in ("all", "normal", "pneumonia", "false_positive"):
                part = cam.get(group)
                if not part or part["mass"]["lungs"] is None:
                    continue
                cells = " | ".join(f"{part['mass'][r]:.2f}" for r in REGIONS)
                lines.append(f"| {group.replace('_', ' ')} ({part['n'] - part['empty']}) | {cells} | {'yes' if part['border_reliant'] else 'no'} |")
            area = cam["all"]["area"]
            lines.append("| area | " + " | ".join(f"{area[r]:.2f}" for r in REGIONS) + " | |")
            found = cam["all"]["lungs_found"]
            if set(found) <= {"heuristic", "mixed", "boxes"}:
                lines += ["", f"Lung fields: Otsu heuristic per half (`core.audit.lung_fields`) found both lungs on "
                              f"{found.get('heuristic', 0):.0%} of films, one on {found.get('mixed', 0):.0%}; fixed boxes stand in for a lung it missed."]
            else:
                lines += ["", "Lung fields: " + ", ".join(f"{source} on {share:.0%} of films" for source, share in found.items())
                          + " (human masks: data/lung_masks, V7 Labs; lung model: core/assets/lungs-unet)."]
        elif "gradcam" in entry:
            lines += ["", "Grad-CAM: not applicable (the model has no convolution)."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _replace_section(markdown: str, section: str) -> str:
    """`markdown` with its AUDIT_HEADING section (up to the next '## ' heading) replaced by `section`, or appended."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == AUDIT_HEADING), None)
    if start is None:
        return markdown.rstrip() + "\n\n" + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "\n".join(lines[end:])
    head = "\n".join(lines[:start]).rstrip()
    return head + "\n\n" + section + ("\n" + rest.rstrip() + "\n" if rest.strip() else "")


def shown_card_markdown(entry: Any) -> str | None:
    """A model's card.md as pages and the report show it: no HTML comments (registry.load_card_markdown), and the audit
    section rendered again from card.json's `audit` by the current wording (None when the folder has no card.md)."""
    from core.models import registry

    markdown = registry.load_card_markdown(entry)
    audit = (getattr(entry, "card", None) or {}).get("audit")
    if markdown is None or not audit:
        return markdown
    return _replace_section(markdown, audit_markdown(audit))


def write_card_audit(model_dir: str | os.PathLike, audit: dict[str, Any]) -> None:
    """Add (or replace) the `audit` key of card.json and the audit section of card.md, each written atomically."""
    model_dir = Path(model_dir)
    card_path = model_dir / "card.json"
    if not card_path.is_file():
        raise ValueError(f"No card.json in {model_dir}; audit a folder written by train.py.")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["audit"] = audit
    write_json_atomic(card_path, card)
    md_path = model_dir / "card.md"
    markdown = md_path.read_text(encoding="utf-8") if md_path.is_file() else f"# {card.get('name', model_dir.name)}\n"
    handle, tmp = tempfile.mkstemp(prefix=".tmp-card.md-", dir=model_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(_replace_section(markdown, audit_markdown(audit)))
        os.replace(tmp, md_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def robustness_summary(models_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per model in `models_dir` (default config.models_dir()) whose card has an audit: robustness goal on
    validation (pass/fail, failing changes), largest |change| of sensitivity and of specificity under a goal change,
    whether it reads the film's edges, and the Grad-CAM share on the lung fields. Empty when none is audited."""
    from core.models import registry

    rows = []
    for entry in registry.list_models(models_dir):
        found = (entry.card or {}).get("audit") if entry.available else None
        val = (found or {}).get("splits", {}).get("val")
        if not val:
            continue
        goal = [row for row in val["table"] if row["goal"]]
        cam = (val.get("gradcam") or {}).get("all") or {}
        rows.append({
            "model": entry.name,
            "robust (VALIDATION)": "pass" if val["robust"] else "fail",
            "failing changes": ", ".join(val["failing"]),
            "max |change| sensitivity": max((abs(r["delta_sensitivity"]) for r in goal), default=float("nan")),
            "max |change| specificity": max((abs(r["delta_specificity"]) for r in goal), default=float("nan")),
            "reads the edges": None if "edges" not in val else ("yes" if val["edges"]["reliant"] else "no"),
            "Grad-CAM on lung fields": (cam.get("mass") or {}).get("lungs"),
            "films": val["n"],
            "audited": found.get("computed", ""),
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- plain words


def gradcam_verdict(cam: dict[str, Any]) -> str:
    """One plain sentence judging a Grad-CAM region summary (core.audit gradcam 'all' entry: mass, area, edge_mass)."""
    edges = float(cam["edge_mass"])
    edge_area = float(cam["area"]["border"]) + float(cam["area"]["corners"])
    lungs, lung_area = float(cam["mass"]["lungs"]), float(cam["area"]["lungs"])
    if edges >= BORDER_RELIANT_MASS:
        return (f"{edges:.0%} of the evidence lies on the film's edges and corners: the model is mostly reading the film "
                "(its framing and markers), not the lungs.")
    if edges > edge_area:
        return (f"{edges:.0%} of the evidence lies on the film's edges and corners, more than their {edge_area:.0%} share of "
                "the film: the model is partly reading the film, not the lungs.")
    if lungs > lung_area:
        return f"The evidence sits mostly where the lungs are ({lungs:.0%} on {lung_area:.0%} of the film)."
    return "The evidence is spread over the film rather than concentrated on the lungs."


def plain_findings(dataset: dict[str, Any] | None, model_name: str | None = None, model: dict[str, Any] | None = None) -> list[str]:
    """Short sentences for people who never saw a ROC curve: the dataset audit, then one model's audit (either may be None)."""
    out = []
    if dataset:
        small = min((row for row in dataset.get("baselines", []) if row.get("variant", "film") == "film"),
                    key=lambda row: row["size"], default=None)
        if small and "val_roc_auc" in small:
            out.append(
                f"A trivial program that sees each X-ray shrunk to just {small['size']}×{small['size']} grey squares "
                f"({small['features']} numbers) already separates pneumonia from normal well on the validation images "
                f"(ROC AUC {small['val_roc_auc']:.2f}; 1.0 is perfect, 0.5 is guessing) but less well on the test images "
                f"({small.get('test_roc_auc', float('nan')):.2f}). Much of the validation task can be solved from the overall "
                "brightness and layout of the film, without looking at the lungs.")
        edges = max((row for row in dataset.get("baselines", []) if row.get("variant") == "edges" and "val_roc_auc" in row),
                    key=lambda row: row["val_roc_auc"], default=None)
        if edges:
            out.append(
                f"Even with the middle of every X-ray blacked out, leaving only its edges and no lungs, the same kind of "
                f"program ({edges['size']}×{edges['size']} squares) reaches ROC AUC {edges['val_roc_auc']:.2f} on the "
                "validation images: the edges of the film (how it was framed and exposed) carry the label too.")
        normal = dataset.get("domain", {}).get("normal")
        if normal:
            moving = [row for row in normal["profile"] if row.get("test_normals_move_towards_pneumonia")]
            words = "; ".join(dict.fromkeys(statistic_words(row["statistic"]) if "statistic" in row else row["words"]
                                            for row in (moving or normal["profile"])[:3]))
            out.append(
                f"The healthy children's test X-rays look measurably different from the healthy validation X-rays: "
                f"a simple classifier tells them apart with ROC AUC {normal['roc_auc']:.2f}. The clearest differences: {words}"
                + (" — and on these the test normals look more like the pneumonia films the models learned from." if moving else "."))
    if model:
        val = model.get("splits", {}).get("val")
        if val:
            rows = {row["name"]: row for row in val["table"]}
            worst = max((row for row in val["table"] if row["goal"]), key=lambda row: abs(row["delta_specificity"]), default=None)
            if worst is not None:
                change = worst["delta_specificity"]
                out.append(
                    f"Changing only how an X-ray is taken moves {model_name or 'the model'}'s decisions: after '{worst['description']}', "
                    f"it {'wrongly flags' if change < 0 else 'flags'} {abs(change) * 100:.0f} {'more' if change < 0 else 'fewer'} of "
                    f"every 100 healthy children (validation images). "
                    + ("Every such change stays within the goal of 5 in 100." if val["robust"] else
                       f"{len(val['failing'])} of {sum(1 for r in rows.values() if r['goal'])} such changes exceed the goal of 5 in 100."))
            changes = [row for row in val["table"] if row["name"] != "identity"]
            worse = sum(row["delta_specificity"] < -0.02 for row in changes)
            better = sum(row["delta_specificity"] > 0.02 for row in changes)
            if changes and worse > len(changes) / 2:
                keeps = min(row["delta_sensitivity"] for row in changes) >= -perturbations.ROBUSTNESS_TOLERANCE
                out.append(f"Of the {len(changes)} changes tried, {worse} make it call more healthy children sick and "
                           f"{better} fewer{', while it keeps finding the sick ones' if keeps else ''}: anything unfamiliar "
                           "about a film pushes it towards 'pneumonia', as happens with the test X-rays.")
            largest = max(val["table"], key=lambda row: abs(row["delta_specificity"]), default=None)
            if largest is not None and worst is not None and largest["name"] != worst["name"] and abs(largest["delta_specificity"]) > 0.05:
                change = largest["delta_specificity"]
                out.append(f"The largest effect of all comes from '{largest['description']}': it "
                           f"{'wrongly flags' if change < 0 else 'flags'} {abs(change) * 100:.0f} {'more' if change < 0 else 'fewer'} "
                           "of every 100 healthy children (validation images).")
            cam = (val.get("gradcam") or {}).get("all")
            if cam and cam["mass"]["lungs"] is not None:
                out.append(
                    f"Where it looks (Grad-CAM): {cam['mass']['lungs']:.0%} of the heatmap falls on the lung fields, "
                    f"{cam['edge_mass']:.0%} on the edges and corners of the film, {cam['mass']['lower']:.0%} on the abdomen. "
                    + gradcam_verdict(cam))
    return out
