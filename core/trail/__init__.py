"""The audit trail: one row per film scored, from any source (upload, command line, archive), and no patient data, ever.

An embedded SQLite file by default (`.cache/audit-trail.sqlite`), or any SQLAlchemy URL (PostgreSQL for a hospital):
the `PNEUMONIA_AUDIT_DB` environment variable, a file path or a database URL. A film is known only by a pseudonymous
key: HMAC-SHA256 of its SOP Instance UID (or of its bytes, for a PNG/JPEG) with the site secret
(`PNEUMONIA_SITE_SECRET`, else the file `PNEUMONIA_SITE_SECRET_FILE`, else `.cache/site-secret`, created on first use).
Rows hold the model and its card fingerprint, threshold and provenance, score, decision, guard verdict and reasons,
whether the result was sent and where, and the clinician's own reading when entered.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import config

logger = logging.getLogger(__name__)

ENV_DB = "PNEUMONIA_AUDIT_DB"
ENV_SECRET = "PNEUMONIA_SITE_SECRET"
ENV_SECRET_FILE = "PNEUMONIA_SITE_SECRET_FILE"
DEFAULT_DB = config.CACHE_DIR / "audit-trail.sqlite"
DEFAULT_SECRET_FILE = config.CACHE_DIR / "site-secret"
SOURCES = ("upload", "cli", "pacs")
LABELS = ("NORMAL", "PNEUMONIA")
STATE_PENDING, STATE_DONE = "pending", "done"
NOT_SCORED = "NOT SCORED"  # the decision recorded for a film refused (out of scope, flagged, unreadable)
SQLITE_BUSY_TIMEOUT_S = 5


class TrailError(ValueError):
    """The trail could not be read or written (locked, read-only, unreachable); nothing was half-written."""


def database_url(location: str | Path | None = None) -> str:
    """A SQLAlchemy URL from a file path or URL (default: $PNEUMONIA_AUDIT_DB, else the SQLite file under .cache/)."""
    location = str(location or os.environ.get(ENV_DB) or DEFAULT_DB)
    if "://" in location:
        return location
    return f"sqlite:///{Path(location).expanduser().resolve()}"


def site_secret() -> bytes:
    """The site's secret key for pseudonymous keys (environment, else a 0600 file created once)."""
    if os.environ.get(ENV_SECRET):
        return os.environ[ENV_SECRET].encode()
    path = Path(os.environ.get(ENV_SECRET_FILE) or DEFAULT_SECRET_FILE)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        logger.info("Created the site secret %s (keep it: without it the trail's keys cannot be matched again)", path)
    return path.read_text().strip().encode()


def pseudonymous_key(identifier: str | bytes, secret: bytes | None = None) -> str:
    """HMAC-SHA256 (hex) of a SOP Instance UID or of a file's bytes with the site secret: never reversible to the UID."""
    data = identifier.encode() if isinstance(identifier, str) else hashlib.sha256(identifier).digest()
    return hmac.new(secret or site_secret(), data, hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=32)
def _fingerprint(model_dir: str, signature: tuple) -> str:
    digest = hashlib.sha256()
    for name in ("card.json", "model.keras"):
        with (Path(model_dir) / name).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def card_fingerprint(model_dir: str | Path) -> str:
    """First 16 hex digits of SHA-256 over card.json and model.keras: the exact model version (cached per file state)."""
    paths = [Path(model_dir) / name for name in ("card.json", "model.keras")]
    return _fingerprint(str(Path(model_dir).resolve()), tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths))


def film_key(name: str, data: bytes) -> str:
    """The pseudonymous key of an uploaded file: of its SOP Instance UID when it is DICOM, else of its bytes."""
    from core.imaging import sniff_format

    if sniff_format(data[:8192]) == "DICOM":
        import io

        import pydicom

        try:
            uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True,
                                  specific_tags=["SOPInstanceUID"]).get("SOPInstanceUID")
        except Exception:  # noqa: BLE001 - any unreadable header falls back to the bytes
            uid = None
        if uid:
            return pseudonymous_key(str(uid))
    return pseudonymous_key(data)


def _table(metadata: Any) -> Any:
    """The `films` table (SQLAlchemy Core)."""
    import sqlalchemy as sa

    return sa.Table(
        "films", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("film_key", sa.String(64), nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float),
        sa.Column("threshold_source", sa.Text),
        sa.Column("score", sa.Float),
        sa.Column("decision", sa.String(32)),
        sa.Column("guard_status", sa.String(64)),
        sa.Column("guard_reasons", sa.Text),
        sa.Column("scope_reasons", sa.Text),
        sa.Column("decided_by", sa.Text),
        sa.Column("sent", sa.Boolean, nullable=False, default=False),
        sa.Column("sent_to", sa.Text),
        sa.Column("reading", sa.String(16)),
        sa.Column("final_label", sa.String(16)),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("source", "film_key", "fingerprint", name="one_row_per_film_model_source"),
    )


@dataclass
class Record:
    """What is written for one film (no patient data: the key is a keyed hash)."""

    source: str
    film_key: str
    model: str
    fingerprint: str
    threshold: float | None = None
    threshold_source: str = ""
    score: float | None = None
    decision: str = ""
    guard_status: str = ""
    guard_reasons: str = ""
    scope_reasons: str = ""
    decided_by: str = ""
    sent: bool = False
    sent_to: str = ""

    def values(self) -> dict[str, Any]:
        """The row's column values."""
        if self.source not in SOURCES:
            raise ValueError(f"Unknown source {self.source!r}; use one of {', '.join(SOURCES)}.")
        return dict(self.__dict__)


class Trail:
    """The audit trail database: `record`, `claim` + `complete` (resumable), `record_reading`, `frame`."""

    def __init__(self, location: str | Path | None = None) -> None:
        import sqlalchemy as sa

        self.url = database_url(location)
        options: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        self.engine = sa.create_engine(self.url, **options)
        self.table = _table(sa.MetaData())
        self._run("opening", lambda: self.table.metadata.create_all(self.engine))

    @property
    def where(self) -> str:
        """The database's location for messages (a URL's password hidden)."""
        import sqlalchemy as sa

        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def _run(self, what: str, function: Any) -> Any:
        """Run one database operation; failures become TrailError with what to do."""
        import sqlalchemy as sa

        try:
            return function()
        except sa.exc.OperationalError as error:
            text = str(error.orig if getattr(error, "orig", None) is not None else error).lower()
            if "locked" in text or "busy" in text:
                raise TrailError(f"The audit trail ({self.where}) is locked by another program while {what}; nothing was "
                                 "written. Close the other program or try again.") from error
            if "readonly" in text or "read-only" in text or "permission" in text:
                raise TrailError(f"The audit trail ({self.where}) is read-only while {what}; nothing was written. Give this "
                                 f"program write access, or point {ENV_DB} at a writable location.") from error
            raise TrailError(f"The audit trail ({self.where}) failed while {what}: {text[:200]}. Nothing was written; "
                             f"check {ENV_DB}.") from error
        except sa.exc.SQLAlchemyError as error:
            raise TrailError(f"The audit trail ({self.where}) failed while {what}: {error.__class__.__name__}. Nothing was "
                             "written.") from error

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def record(self, record: Record) -> int | None:
        """Write one finished row, once: the same film, model and source again is left as it is (None returned)."""
        import sqlalchemy as sa

        def write() -> int | None:
            with self.engine.begin() as connection:
                existing = connection.execute(sa.select(self.table.c.id).where(
                    self.table.c.source == record.source, self.table.c.film_key == record.film_key,
                    self.table.c.fingerprint == record.fingerprint)).first()
                if existing is not None:
                    return None
                inserted = connection.execute(self.table.insert().values(
                    created=self._now(), state=STATE_DONE, **record.values()))
                return int(inserted.inserted_primary_key[0])

        return self._run("recording a film", write)

    def claim(self, source: str, film_key: str, model: str, fingerprint: str) -> int | None:
        """Start work on a film: its row id (a new or an unfinished 'pending' row), or None when it is already done."""
        import sqlalchemy as sa

        def write() -> int | None:
            with self.engine.begin() as connection:
                row = connection.execute(sa.select(self.table.c.id, self.table.c.state).where(
                    self.table.c.source == source, self.table.c.film_key == film_key,
                    self.table.c.fingerprint == fingerprint)).first()
                if row is not None:
                    return None if row.state == STATE_DONE else int(row.id)
                inserted = connection.execute(self.table.insert().values(
                    created=self._now(), source=source, state=STATE_PENDING, film_key=film_key, model=model,
                    fingerprint=fingerprint, sent=False))
                return int(inserted.inserted_primary_key[0])

        return self._run("claiming a film", write)

    def complete(self, row_id: int, record: Record) -> None:
        """Finish a claimed row with every value in one transaction (state 'done')."""
        values = record.values()
        values.pop("source"), values.pop("film_key")
        self._run("finishing a film", lambda: self._update(row_id, created=self._now(), state=STATE_DONE, **values))

    def _update(self, row_id: int, **values: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.table.update().where(self.table.c.id == row_id).values(**values))

    def mark_sent(self, row_id: int, sent_to: str) -> None:
        """Record that a row's result was stored in an archive (`sent_to`: where, no identifiers)."""
        self._run("recording where a result was sent", lambda: self._update(row_id, sent=True, sent_to=sent_to))

    def find(self, source: str, film_key: str, fingerprint: str) -> int | None:
        """The id of a finished row for this film, model and source, or None."""
        import sqlalchemy as sa

        def read() -> int | None:
            with self.engine.connect() as connection:
                row = connection.execute(sa.select(self.table.c.id).where(
                    self.table.c.source == source, self.table.c.film_key == film_key,
                    self.table.c.fingerprint == fingerprint, self.table.c.state == STATE_DONE)).first()
                return None if row is None else int(row.id)

        return self._run("looking a film up", read)

    def record_reading(self, row_id: int, *, agree: bool | None = None, final_label: str | None = None) -> None:
        """The clinician's own reading of a scored film: agree / disagree with the decision, and the final label."""
        if final_label is not None and final_label not in LABELS:
            raise ValueError(f"The final label must be one of {', '.join(LABELS)}, got {final_label!r}.")
        values: dict[str, Any] = {"read_at": self._now()}
        if agree is not None:
            values["reading"] = "agree" if agree else "disagree"
        if final_label is not None:
            values["final_label"] = final_label
        self._run("recording the clinician's reading", lambda: self._update(row_id, **values))

    def frame(self, *, include_pending: bool = False) -> Any:
        """Every row as a pandas DataFrame (oldest first); pending rows only when asked."""
        import pandas as pd
        import sqlalchemy as sa

        def read() -> Any:
            query = sa.select(self.table).order_by(self.table.c.id)
            if not include_pending:
                query = query.where(self.table.c.state == STATE_DONE)
            with self.engine.connect() as connection:
                return pd.DataFrame(connection.execute(query).mappings().all(), columns=[c.name for c in self.table.columns])

        return self._run("reading the trail", read)

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()


def record_uploads(trail: "Trail", files: Any, results: Any, *, model_dir: str | Path, threshold_source: str,
                   source: str = "upload") -> int:
    """One row per scored file of an upload (core.predict.ImageResult list beside its (name, bytes) list), written once
    per file and model version; returns how many rows were new."""
    fingerprint = card_fingerprint(model_dir)
    data = dict(files)
    new = 0
    for result in results:
        if result.status != "ok" or result.probability is None or result.name not in data:
            continue
        verdict = result.verdict
        record = Record(source=source, film_key=film_key(result.name, data[result.name]), model=Path(model_dir).name,
                        fingerprint=fingerprint, threshold=float(result.threshold), threshold_source=threshold_source,
                        score=float(result.probability), decision=result.decision,
                        guard_status=getattr(verdict, "status", "") or "",
                        guard_reasons="; ".join(getattr(verdict, "reasons", ()) or ()), decided_by="model")
        new += trail.record(record) is not None
    return new
