"""De-identified WebDataset shards from a raw export (layout and format: README, "Data:
tokenizer and shards").

    python tools/make_shards.py RAW OUT --key-file K [--profile demo] [--workers 4]
    # one machine of N (Slurm array / Kubernetes Indexed Job), then the merge:
    python tools/make_shards.py RAW OUT --key-file K --num-workers N --worker-index $SLURM_ARRAY_TASK_ID
    python tools/make_shards.py RAW OUT --merge

Rerunning skips shards whose record, size and sha256 match and rewrites the others. The
key comes from --key-file or $MEGAMED_DEID_KEY_FILE; there is no default key.
Exit status: 0 done, 1 some inputs were skipped (see OUT/errors.jsonl), 2 usage/key errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from megamed.audit import AuditError, record_event
from megamed.config import load_config
from megamed.data.deid import DeidError, key_id, load_key
from megamed.data.preprocess import PRESETS, for_encoders, preset
from megamed.data.shards import ShardError, make_shards, merge_manifest


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("raw", help="RAW/<study>/... folders")
    a.add_argument("out", help="output folder for shard-*.tar, manifest.json, errors.jsonl")
    a.add_argument("--key-file", help="de-identification key (default: $MEGAMED_DEID_KEY_FILE)")
    a.add_argument("--profile", default="demo", choices=sorted(PRESETS),
                   help="preprocessing preset (windows, sizes, rates; default demo)")
    a.add_argument("--model-profile", help="shape the arrays for this training profile's "
                   "encoders (configs/NAME.yaml: image channels and size, waveform leads and "
                   "samples), the rest from --profile")
    a.add_argument("--samples-per-shard", type=int, default=64)
    a.add_argument("--workers", type=int, default=1, help="processes on this machine")
    a.add_argument("--num-workers", type=int,
                   default=int(os.environ.get("SLURM_ARRAY_TASK_COUNT", 1)),
                   help="machines splitting the work (default $SLURM_ARRAY_TASK_COUNT or 1)")
    a.add_argument("--worker-index", type=int,
                   default=int(os.environ.get("SLURM_ARRAY_TASK_ID",
                                              os.environ.get("JOB_COMPLETION_INDEX", 0))),
                   help="this machine's index (default $SLURM_ARRAY_TASK_ID or "
                        "$JOB_COMPLETION_INDEX or 0)")
    a.add_argument("--tokenizer", help="tokenizer model to record in the manifest")
    a.add_argument("--merge", action="store_true",
                   help="only write manifest.json + errors.jsonl from every worker's records")
    a.add_argument("--no-progress", action="store_true")
    a.add_argument("--audit-db", help="record the shards written (names, key id, "
                   "preprocessing hash; no PHI) in this audit log: SQLite path or postgresql://")
    args = a.parse_args(argv)
    try:
        if args.merge:
            print(f"wrote {merge_manifest(args.out, tokenizer=args.tokenizer)}")
            return 0
        key, config = load_key(args.key_file), preset(args.profile)
        if args.model_profile:
            config = for_encoders(load_config(args.model_profile).model.encoders(), config)
        summary = make_shards(args.raw, args.out, key, config,
                              samples_per_shard=args.samples_per_shard, workers=args.workers,
                              num_workers=args.num_workers, worker_index=args.worker_index,
                              progress=not args.no_progress, tokenizer=args.tokenizer)
        if args.audit_db:
            record_event(args.audit_db, "shard_write", deid_key_id=key_id(key),
                         source=args.raw, output=args.out, shards=summary["shards"],
                         records=summary["samples"], config_hash=config.hash(),
                         status="skipped some" if summary["errors"] else "ok")
    except (DeidError, ShardError, AuditError, ValueError, FileNotFoundError) as e:
        print(f"make_shards: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    if summary["manifest"] is None:
        print("make_shards: other workers' shards are not finished; the last worker to finish "
              "writes the manifest (or run again with --merge)", file=sys.stderr)
    if summary["errors"]:
        print(f"make_shards: {summary['errors']} inputs skipped, reasons in "
              f"{os.path.join(args.out, 'errors.jsonl')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
