"""Read and verify a megamed audit log (SQLite path or postgresql:// URL).

    python tools/audit.py show DB [--json] [--action ACTION]
    python tools/audit.py verify DB [--expect-head SEQ:HASH] [--json]

`verify` recomputes the whole hash chain, names every edited, inserted or deleted record and
exits 1 if there is any; it prints the recomputed head to keep elsewhere (--expect-head).
"""
import argparse
import json
import sys
from dataclasses import asdict

from megamed.audit import ACTIONS, AuditError, AuditLog, verify


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="list the records")
    show.add_argument("db")
    show.add_argument("--action", choices=ACTIONS, help="only records of this action")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    check = sub.add_parser("verify", help="recompute the hash chain")
    check.add_argument("db")
    check.add_argument("--expect-head", help="SEQ:HASH taken earlier from a trusted copy")
    check.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        log = AuditLog(args.db, create=False)
    except AuditError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _show(log, args) if args.command == "show" else _verify(log, args)
    except AuditError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        log.close()


def _show(log: AuditLog, args) -> int:
    for r in log.records():
        if args.action and r.action != args.action:
            continue
        if args.json:
            print(json.dumps({**asdict(r), "details": json.loads(r.details)}))
        else:
            print(f"{r.seq:>6}  {r.recorded_at}  {r.actor}@{r.host}  {r.action:<16} "
                  f"{r.details}")
    return 0


def _verify(log: AuditLog, args) -> int:
    result = verify(log, args.expect_head)
    if args.json:
        print(json.dumps({"ok": result.ok, "records": result.records, "head": result.head,
                          "problems": result.problems}))
    else:
        for problem in result.problems:
            print(f"TAMPERED: {problem}")
        state = "OK" if result.ok else f"FAILED ({len(result.problems)} problems)"
        print(f"audit chain {state}: {result.records} records, head {result.head}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
