"""Progress bars for long-running loops (feature extraction, scoring, training epochs)."""

from __future__ import annotations

from typing import Any


def progress_bar(*, total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A tqdm bar (rate and ETA) on stderr, or a silent stand-in when ``enabled`` is False."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)
