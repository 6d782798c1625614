"""From the archive and back: one study scored and its results stored; the watcher that does it for every new study.

The audit trail is the watcher's memory: a film is claimed (a 'pending' row keyed by the HMAC of its SOP Instance
UID) before it is scored and finished ('done', with the result and where it was sent) in one transaction after the
archive accepted the results. A watcher killed in between leaves a pending row: the next run redoes that film, and
because the result objects' UIDs are fixed by the source image and the model, the archive ends up with one copy.
A film whose row is done is never scored again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from core import trail as audit
from core.pacs.client import Archive, ArchiveError
from core.pacs.scoring import FilmResult, ScoringModel, assess_dataset, choose_frontal

logger = logging.getLogger(__name__)

SOURCE = "pacs"


@dataclass
class StudyOutcome:
    """What happened to one study: the result (None when nothing could be assessed), notes, where results went, errors."""

    study_uid: str
    result: FilmResult | None = None
    notes: list[str] = field(default_factory=list)
    sent_to: str = ""
    error: str = ""
    skipped: bool = False  # already done by an earlier run
    seconds: dict[str, float] = field(default_factory=dict)
    dataset: Any = field(default=None, repr=False)  # the retrieved image, in memory only (to send its results later)

    def line(self) -> str:
        """One plain line for the command line (the study is named by its date-free position only by the caller)."""
        if self.skipped:
            return "already scored earlier: skipped"
        if self.error:
            return f"error: {self.error}"
        if self.result is None:
            return "nothing to score: " + " ".join(self.notes)
        text = (f"{self.result.decision} p={self.result.probability:.3f} (threshold {self.result.threshold:.3f})"
                if self.result.scored else f"not scored ({self.result.decided_by}): {' '.join(self.result.reasons)}")
        return text + (f"; results stored in {self.sent_to}" if self.sent_to else "; results not sent")


def record_for(result: FilmResult, *, source: str, film_key: str, sent_to: str = "") -> audit.Record:
    """The trail row of a result (no UIDs: the key is a keyed hash)."""
    return audit.Record(
        source=source, film_key=film_key, model=result.model, fingerprint=result.fingerprint, threshold=result.threshold,
        threshold_source=result.threshold_source, score=result.probability, decision=result.decision,
        guard_status=result.guard_status, guard_reasons="; ".join(result.guard_reasons),
        scope_reasons=" ".join(result.scope.reasons), decided_by=result.decided_by, sent=bool(sent_to), sent_to=sent_to)


def send_results(archive: Archive, result: FilmResult, source_dataset: Any, *, seconds: dict | None = None) -> str:
    """Store the SR (and the Secondary Capture when scored) in the source's study; returns where, in words.

    `seconds`, when given, receives the time spent building the objects ('results') and storing them ('store').
    """
    from core.pacs import results

    tick = time.perf_counter()
    objects = results.result_objects(result, source_dataset)
    built = time.perf_counter()
    archive.store(objects)
    if seconds is not None:
        seconds["results"], seconds["store"] = built - tick, time.perf_counter() - built
    kinds = "a structured report" + (" and a secondary capture" if len(objects) > 1 else "")
    return f"{archive.url}: {kinds} in the image's study, new series '{results.DISCLAIMER}'"


def process_study(archive: Archive, study_uid: str, model: ScoringModel, trail: audit.Trail | None, *, send: bool = True,
                  rescore: bool = False) -> StudyOutcome:
    """Choose the study's frontal image, retrieve it (in memory), score it, store the results, record it in the trail.

    With a trail, a film already done is skipped unless `rescore`; a failure leaves no finished row (ArchiveError and
    TrailError become the outcome's `error`).
    """
    outcome = StudyOutcome(study_uid)
    started = time.perf_counter()
    try:
        chosen, outcome.notes = choose_frontal(archive.instances(study_uid))
        outcome.seconds["query"] = time.perf_counter() - started
        if chosen is None:
            return outcome
        film_key = audit.pseudonymous_key(chosen.sop_uid)
        row_id = None
        if trail is not None:
            tick = time.perf_counter()
            row_id = trail.claim(SOURCE, film_key, model.name, model.fingerprint)
            outcome.seconds["trail"] = time.perf_counter() - tick
            if row_id is None and not rescore:
                outcome.skipped = True
                return outcome
        tick = time.perf_counter()
        dataset = outcome.dataset = archive.retrieve(chosen)
        outcome.seconds["retrieve"] = time.perf_counter() - tick
        tick = time.perf_counter()
        outcome.result = assess_dataset(dataset, model)
        outcome.seconds["score"] = time.perf_counter() - tick
        outcome.seconds.update({f"score: {k}": v for k, v in outcome.result.seconds.items()})
        if send:
            outcome.sent_to = send_results(archive, outcome.result, dataset, seconds=outcome.seconds)
        if trail is not None and row_id is not None:
            tick = time.perf_counter()
            trail.complete(row_id, record_for(outcome.result, source=SOURCE, film_key=film_key, sent_to=outcome.sent_to))
            outcome.seconds["trail"] += time.perf_counter() - tick
    except (ArchiveError, audit.TrailError) as error:
        outcome.error = str(error)
        logger.error("Study not finished: %s", error)
    return outcome


def watch_once(archive: Archive, model: ScoringModel, trail: audit.Trail, *, since: str = "", send: bool = True,
               limit: int = 1000) -> list[StudyOutcome]:
    """Score every CR/DX study (from `since`, YYYYMMDD, when given) whose frontal film is not done yet; one pass."""
    studies = archive.find_studies(date_from=since, limit=limit)
    outcomes = []
    for study in studies:
        outcome = process_study(archive, study.study_uid, model, trail, send=send)
        outcomes.append(outcome)
        if not outcome.skipped:
            logger.info("Study of %s: %s", study.date or "unknown date", outcome.line())
    return outcomes


def rolling_since(days: int, today: dt.date | None = None) -> str:
    """The first study date (YYYYMMDD) of a window of the last `days` days, today included."""
    return ((today or dt.date.today()) - dt.timedelta(days=max(0, days - 1))).strftime("%Y%m%d")


def watch(archive: Archive, model: ScoringModel, trail: audit.Trail, *, since: str = "", days: int = 2, send: bool = True,
          interval_s: float = 30.0, passes: int | None = None) -> None:
    """Follow the archive: a pass every `interval_s` seconds (for ever, or `passes` times); archive faults are retried.

    Each pass queries the studies from `since` (YYYYMMDD) or, without it, of the last `days` days (a window that moves
    with the date, so that a long-running watcher does not list the whole archive every pass).
    """
    done = 0
    while passes is None or done < passes:
        try:
            outcomes = watch_once(archive, model, trail, since=since or rolling_since(days), send=send)
            new = [o for o in outcomes if not o.skipped]
            logger.info("Pass %d: %d new stud%s, %d already done", done + 1, len(new), "y" if len(new) == 1 else "ies",
                        len(outcomes) - len(new))
        except (ArchiveError, audit.TrailError) as error:
            logger.error("Pass %d failed, retrying in %.0f s: %s", done + 1, interval_s, error)
        done += 1
        if passes is None or done < passes:
            time.sleep(interval_s)
