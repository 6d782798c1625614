"""A demo archive: a local Orthanc loaded with real films, for `make pacs-demo`, the tests and the bench.

    python -m core.pacs.demo [--port 8042] [--films 6]

Paediatric films: real Kaggle test films (both classes), each wrapped as a DX study of an invented child aged 2-5.
Out of scope, each with its reason: the shipped adult PA CR (its header gives the birth date), the same adult film
without any age in its header (the image checks must catch it), a film whose header says lateral (no real lateral
film is shipped: a header-only case), and a CR of an extremity (field case). Patients and accession numbers are
invented; no real identifier is added.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import config
from core.pacs import films

logger = logging.getLogger(__name__)

FIELD_CASES = config.PROJECT_ROOT / "tests" / "fixtures" / "field_cases"  # real-world inputs (their README)


@dataclass(frozen=True)
class DemoFilm:
    """One object for the demo archive and what is expected of it ('scored' or the kind of refusal)."""

    label: str
    expected: str
    dataset: Any
    truth: str = ""


def _renewed(path: Path, *, accession: str) -> Any:
    """A shipped DICOM with new UIDs (so that copies of one film are separate studies) and an invented accession number."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.AccessionNumber = accession
    meta = ds.file_meta
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:  # a field case written without it: store it as what it is
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def demo_films(data_root: str | Path | None = None, *, per_class: int = 3, today: dt.date | None = None) -> list[DemoFilm]:
    """The demo archive's objects (pydicom Datasets) with what each should give."""
    root = Path(data_root) if data_root else config.data_root()
    today = today or dt.date.today()
    found: list[DemoFilm] = []
    number = 0
    for label in config.CLASS_NAMES:
        for path in sorted((root / "test" / label).glob("*.jpeg"))[:per_class]:
            number += 1
            ds = films.wrap_film(path, patient_id=f"DEMO-CHILD-{number:02d}", age_years=2 + number % 4,
                                 accession=f"DEMO{number:04d}", study_date=today, view="AP")
            ds.StudyDescription = "XR CHEST 1 VIEW"
            found.append(DemoFilm(f"child, Kaggle test {label} {path.name}", "scored", ds, label))
    adult = config.SAMPLES_DIR / "RG1_UNCI.dcm"
    if adult.is_file():
        found.append(DemoFilm("adult PA chest CR (age from the header)", "refused: header (adult)",
                              _renewed(adult, accession="DEMO0901")))
    no_age = FIELD_CASES / "dicom_no_transfer_syntax_uid.dcm"
    if no_age.is_file():
        found.append(DemoFilm("adult PA chest CR, no age in the header", "refused: image checks",
                              _renewed(no_age, accession="DEMO0902")))
    extremity = FIELD_CASES / "dicom_extremity_not_chest.dcm"
    if extremity.is_file():
        found.append(DemoFilm("CR of an extremity", "refused: header (not the chest)", _renewed(extremity, accession="DEMO0903")))
    lateral = sorted((root / "test" / "NORMAL").glob("*.jpeg"))[per_class:per_class + 1]
    for path in lateral:
        ds = films.wrap_film(path, patient_id="DEMO-CHILD-LAT", age_years=3, accession="DEMO0904", study_date=today, view="LL")
        found.append(DemoFilm("child, header says lateral (a frontal film relabelled: no real lateral is shipped)",
                              "refused: header (lateral)", ds))
    return found


def load(archive: Any, demo: Sequence[DemoFilm]) -> None:
    """Store every demo object in a LocalOrthanc (its REST upload)."""
    for film in demo:
        archive.upload(films.to_bytes(film.dataset))


def main(argv: Sequence[str] | None = None) -> int:
    """Start a demo Orthanc on loopback, load it, print how to use it, and keep it running until Ctrl+C."""
    from core.pacs.orthanc import LocalOrthanc

    parser = argparse.ArgumentParser(prog="python -m core.pacs.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8042)
    parser.add_argument("--films", type=int, default=3, help="paediatric films per class (default 3)")
    parser.add_argument("--storage", default=None, help="keep the archive in this folder (default: temporary, removed on exit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    demo = demo_films(per_class=args.films)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # stop Orthanc on SIGTERM too
    with LocalOrthanc(port=args.port, storage=args.storage, name="PNEUMONIA-DEMO") as archive:
        load(archive, demo)
        print(f"Demo archive (Orthanc) on {archive.url} with {len(demo)} studies:")
        for film in demo:
            print(f"  - {film.label}: expected {film.expected}")
        print("\nPoint the dashboard at it (Prediction page, 'From PACS'), or the command line:\n"
              f"  export PNEUMONIA_PACS_URL={archive.dicomweb_url}\n"
              f"  .venv/bin/python -m core.pacs --url {archive.dicomweb_url} query\n"
              f"  .venv/bin/python -m core.pacs --url {archive.dicomweb_url} watch --once\n"
              f"Orthanc's own viewer: {archive.url}/app/explorer.html . Ctrl+C stops it.")
        try:
            while archive.process is not None and archive.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
