"""De-identifies a folder of clinical text (.txt ...), DICOM and WFDB files into another folder.

    python tools/deid.py SRC DST --key-file KEY [--no-date-shift] [--clean-descriptors]
                         [--retain-patient-characteristics] [--allow-burned-in] [--quiet]
                         [--audit-db DB]

The key comes from --key-file or $MEGAMED_DEID_KEY_FILE; there is no default. DST gets the
same relative paths, with the parts of file and folder names that may identify someone
replaced by keyed tokens, and `deid_report.json` (counts per PHI category and per DICOM
action, refused files and why, the key id). Finished outputs are skipped when run again; a
half-written one is redone. Symbolic links are not followed; DST may lie inside SRC (it is
left out of the input).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megamed.audit import AuditError, record_event  # noqa: E402
from megamed.data.deid import DeidError, Pseudonymizer, key_id, load_key  # noqa: E402
from megamed.data.deid.folder import REPORT, deidentify_folder  # noqa: E402

EXIT_STATUS = """exit status: 0 every file was de-identified (or was already done); 1 some files
were refused (each is on stderr and in deid_report.json with the reason; the others were
written); 2 nothing was done: no key, a bad key file, SRC not a folder, DST is SRC or holds it,
or DST was made under another key."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXIT_STATUS)
    ap.add_argument("src", help="folder to read")
    ap.add_argument("dst", help="folder to write (created)")
    ap.add_argument("--key-file", help="secret key file (else $MEGAMED_DEID_KEY_FILE)")
    ap.add_argument("--no-date-shift", action="store_true",
                    help="DICOM: remove dates (basic profile) instead of the per-patient shift")
    ap.add_argument("--clean-descriptors", action="store_true",
                    help="DICOM: keep free-text descriptors after text de-identification")
    ap.add_argument("--retain-patient-characteristics", action="store_true",
                    help="DICOM: keep sex, age, size, weight")
    ap.add_argument("--allow-burned-in", action="store_true",
                    help="DICOM: accept images that may carry burned-in text (pixels scrubbed)")
    ap.add_argument("--pseudonymize-file-names", action="store_true",
                    help="replace each part of a file or folder name that may identify someone "
                         "(a first name, a common surname, a non-English word, 5+ digits) by a "
                         "keyed token; by default outputs keep their relative paths and the "
                         "report counts such names (names_that_may_identify)")
    ap.add_argument("--quiet", action="store_true",
                    help="no progress bar (by default a byte-counting bar on stderr)")
    ap.add_argument("--audit-db", help="record the run (key id, folders, counts; no PHI) in "
                    "this audit log: a SQLite path or postgresql://...")
    args = ap.parse_args(argv)
    try:
        key = load_key(args.key_file)
        ps = Pseudonymizer(key)
        report = deidentify_folder(
            args.src, args.dst, ps, progress=not args.quiet,
            rename_files=args.pseudonymize_file_names,
            retain_dates=not args.no_date_shift, clean_descriptors=args.clean_descriptors,
            retain_patient_characteristics=args.retain_patient_characteristics,
            allow_burned_in=args.allow_burned_in)
        if args.audit_db:
            record_event(args.audit_db, "deid_run", deid_key_id=key_id(key), source=args.src,
                         output=args.dst, records=report["files"],
                         status="refused some" if report["refused"] else "ok")
    except (DeidError, AuditError) as e:
        print(f"deid: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("files", "text_categories", "dicom_actions")},
                     sort_keys=True))
    for refused in report["refused"]:
        print(f"refused: {refused['reason']}", file=sys.stderr)
    if report["names_that_may_identify"]:
        print(f"deid: {report['names_that_may_identify']} file or folder names kept as they were "
              "may carry PHI (a name, a long number); --pseudonymize-file-names replaces them",
              file=sys.stderr)
    print(f"report: {Path(args.dst) / REPORT}")
    return 1 if report["refused"] else 0


if __name__ == "__main__":
    sys.exit(main())
