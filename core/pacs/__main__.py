"""Command line: search the archive, score a study, or watch the archive for new CR/DX studies.

    python -m core.pacs --url http://127.0.0.1:8042/dicom-web query [--patient-id ID] [--accession A] [--from YYYYMMDD] [--to YYYYMMDD]
    python -m core.pacs --url URL score STUDY_UID [--no-send]
    python -m core.pacs --url URL watch [--once] [--interval 30] [--since YYYYMMDD | --days 2] [--no-send]

Credentials: --user with the password in $PNEUMONIA_PACS_PASSWORD, or a bearer token in $PNEUMONIA_PACS_TOKEN.
The model is the recommended one at its own operating point unless --model names another. Every film scored is a row
in the audit trail (--audit-db, else $PNEUMONIA_AUDIT_DB, else .cache/audit-trail.sqlite).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from core import config

ENV_PASSWORD = "PNEUMONIA_PACS_PASSWORD"
ENV_TOKEN = "PNEUMONIA_PACS_TOKEN"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.pacs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the archive's DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--user", default=None, help=f"HTTP basic user (password in ${ENV_PASSWORD})")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per archive request (default 30)")
    parser.add_argument("--ca-bundle", default=None, help="CA certificates for an https archive (default: the system's)")
    parser.add_argument("--model", default=None, help="model folder (default: the recommended model, at its own threshold)")
    parser.add_argument("--audit-db", default=None, help="audit trail: a file path or database URL (default $PNEUMONIA_AUDIT_DB "
                                                         "or .cache/audit-trail.sqlite)")
    commands = parser.add_subparsers(dest="command", required=True)
    query = commands.add_parser("query", help="list CR/DX studies")
    query.add_argument("--patient-id", default="")
    query.add_argument("--accession", default="")
    query.add_argument("--from", dest="date_from", default="", help="first study date, YYYYMMDD")
    query.add_argument("--to", dest="date_to", default="", help="last study date, YYYYMMDD")
    score = commands.add_parser("score", help="score one study and store its results")
    score.add_argument("study_uid")
    score.add_argument("--no-send", action="store_true", help="score and record, but store nothing in the archive")
    watch = commands.add_parser("watch", help="score every new CR/DX study once (resumable)")
    watch.add_argument("--once", action="store_true", help="one pass over the archive, then exit")
    watch.add_argument("--interval", type=float, default=30.0, help="seconds between passes (default 30)")
    watch.add_argument("--since", default="", help="only studies from this date, YYYYMMDD (default: --once, every study; "
                                                   "following, the last --days days)")
    watch.add_argument("--days", type=int, default=2, help="following the archive: the window of study dates each pass "
                                                          "queries, in days (default 2: today and yesterday)")
    watch.add_argument("--no-send", action="store_true", help="score and record, but store nothing in the archive")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 0 on success, 1 when the archive or the trail failed, 2 on bad arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from core import trail as audit
    from core.pacs import watch as watching
    from core.pacs.client import Archive, ArchiveError

    try:
        archive = Archive(args.url, username=args.user, password=os.environ.get(ENV_PASSWORD),
                          token=os.environ.get(ENV_TOKEN), timeout=args.timeout, verify=args.ca_bundle or True)
    except ArchiveError as error:
        parser.error(str(error))
    try:
        if args.command == "query":
            studies = archive.find_studies(patient_id=args.patient_id, accession=args.accession, date_from=args.date_from,
                                           date_to=args.date_to)
            print("date\taccession\tmodalities\timages\tdescription\tstudy_uid")
            for study in studies:
                print(f"{study.date}\t{study.accession}\t{'/'.join(study.modalities)}\t{study.images or ''}\t"
                      f"{study.description}\t{study.study_uid}")
            logging.info("%d CR/DX stud%s", len(studies), "y" if len(studies) == 1 else "ies")
            return 0
        from core.pacs.scoring import load_model

        config.quiet_tensorflow()
        try:
            model = load_model(args.model)
        except ValueError as error:
            parser.error(str(error))
        trail = audit.Trail(args.audit_db)
        logging.info("Model %s (%s), threshold %.3f: %s; audit trail %s", model.name, model.fingerprint, model.threshold,
                     model.threshold_source, trail.where)
        if args.command == "score":
            outcome = watching.process_study(archive, args.study_uid, model, trail, send=not args.no_send, rescore=True)
            for note in outcome.notes:
                logging.info("%s", note)
            print(outcome.line())
            return 1 if outcome.error else 0
        if args.once:
            outcomes = watching.watch_once(archive, model, trail, since=args.since, send=not args.no_send)
            new = [o for o in outcomes if not o.skipped]
            failed = [o for o in new if o.error]
            logging.info("%d stud%s processed, %d already done earlier, %d failed", len(new), "y" if len(new) == 1 else "ies",
                         len(outcomes) - len(new), len(failed))
            return 1 if failed else 0
        watching.watch(archive, model, trail, since=args.since, days=args.days, send=not args.no_send, interval_s=args.interval)
        return 0
    except (ArchiveError, audit.TrailError) as error:
        logging.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
