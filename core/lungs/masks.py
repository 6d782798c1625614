"""One film's lungs and how much of a heatmap lies inside them: the human mask where a shipped film has one
(`data/lung_masks`), else the lung model's; the outline drawn on an overlay and the sentence the page shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from core.lungs import geometry
from core.lungs.segment import segment_films, shipped_mask


@dataclass(frozen=True)
class LungEvidence:
    """One film's lung mask (film size), the lungs' share of the film and the heatmap's share inside them."""

    mask: np.ndarray
    area: float
    share: float
    source: str  # "human mask" or "lung model"

    @property
    def found(self) -> bool:
        """True when lungs were found on the film."""
        return bool(self.mask.any())

    def sentence(self) -> str:
        """A plain sentence for the page: the evidence share against the area share."""
        if not self.found:
            return "No lungs were found on this film, so the share of the evidence inside the lungs cannot be given."
        if np.isnan(self.share):
            return f"The heatmap is empty; the lungs ({self.source}) cover {self.area:.0%} of the film."
        ratio = self.share / self.area if self.area > 0 else float("nan")
        return (f"{self.share:.0%} of the evidence lies inside the lungs (outlined, {self.source}), which cover "
                f"{self.area:.0%} of the film: {ratio:.1f} times what an even spread would give.")


def outline_lungs(image: np.ndarray, found: LungEvidence | None, *, colour: tuple[int, int, int] = (0, 255, 255)) -> np.ndarray:
    """An RGB image (e.g. a heatmap overlay) with the lungs' outline drawn on it; unchanged when no lungs are known."""
    if found is None or not found.found:
        return image
    thickness = max(1, round(max(np.shape(image)[:2]) / 300))
    return geometry.draw_outline(image, found.mask, colour=colour, thickness=thickness)


def caption(found: LungEvidence | None) -> str:
    """The sentence under the overlay ('' when there is no lung model)."""
    return "" if found is None else found.sentence()


def lung_masks(pixels: Sequence[np.ndarray], relpaths: Sequence[str | None] | None = None, *,
               model: Any | None = None) -> tuple[list[np.ndarray], list[str]]:
    """(masks at each film's size, source of each) for grey films; a shipped film's human mask when there is one."""
    relpaths = list(relpaths) if relpaths is not None else [None] * len(pixels)
    masks: list[np.ndarray | None] = []
    sources: list[str] = []
    for film, rel in zip(pixels, relpaths):
        human = shipped_mask(rel) if rel else None
        masks.append(None if human is None else geometry.resize_mask(human, (np.shape(film)[1], np.shape(film)[0])))
        sources.append("human mask" if human is not None else "lung model")
    missing = [i for i, m in enumerate(masks) if m is None]
    if missing:
        for i, found in zip(missing, segment_films([pixels[i] for i in missing], model=model)):
            masks[i] = found.mask
    return [m for m in masks], sources  # type: ignore[misc]


def lung_evidence(pixels: np.ndarray, heatmap: np.ndarray, *, relpath: str | None = None, model: Any | None = None) -> LungEvidence:
    """The lungs of one film (grey (H, W)) and the share of `heatmap` (any size) inside them."""
    masks, sources = lung_masks([np.asarray(pixels)], [relpath], model=model)
    mask = masks[0]
    share = geometry.share_inside(heatmap, mask) if mask.any() else float("nan")
    return LungEvidence(mask=mask, area=geometry.area_share(mask), share=share, source=sources[0])
