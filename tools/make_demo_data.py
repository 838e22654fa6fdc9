"""Builds the demo corpus from the real DICOM files and 12-lead ECG that ship inside pydicom
(plus generated reports with planted PHI) and shards it, in seconds.

    python tools/make_demo_data.py DIR [--studies 12] [--key-file K] [--tokenizer] [--bad-inputs]

Writes DIR/raw (the raw layout), DIR/shards (make_shards' output) and, with --tokenizer,
DIR/tokenizer.model trained on the shards' reports. Without --key-file or
$MEGAMED_DEID_KEY_FILE a random key is created once as DIR/demo.key (demo data only).
"""
from __future__ import annotations

import argparse
import json
import sys

from megamed.data.demo import make_demo


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("dir", help="folder for raw/, shards/ (and demo.key, tokenizer.model)")
    a.add_argument("--studies", type=int, default=12)
    a.add_argument("--key-file", help="default: $MEGAMED_DEID_KEY_FILE, else DIR/demo.key")
    a.add_argument("--bad-inputs", action="store_true",
                   help="add corrupt/truncated DICOM, a gap in a series, non-UTF-8, empty study")
    a.add_argument("--tokenizer", action="store_true", help="train DIR/tokenizer.model")
    a.add_argument("--workers", type=int, default=1)
    args = a.parse_args(argv)
    summary = make_demo(args.dir, args.studies, key_file=args.key_file,
                        bad_inputs=args.bad_inputs, tokenizer=args.tokenizer,
                        workers=args.workers)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
