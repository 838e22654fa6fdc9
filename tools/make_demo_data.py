"""Builds the demo corpus from the real DICOM files and 12-lead ECG that ship inside pydicom
(plus generated reports with planted PHI) and shards it, in seconds.

    python tools/make_demo_data.py DIR [--studies 12] [--key-file K] [--tokenizer]

Writes DIR/raw (the raw layout), DIR/shards (make_shards' output) and, with --tokenizer,
DIR/tokenizer.model trained on the shards' reports. Without --key-file or
$MEGAMED_DEID_KEY_FILE a random key is created once as DIR/demo.key (demo data only).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from megamed.config import load_config
from megamed.data.deid import load_key
from megamed.data.demo import build_raw
from megamed.data.preprocess import preset
from megamed.data.shards import make_shards, merge_manifest
from megamed.data.tokenizer import texts_from_shards, train_tokenizer


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
    root = Path(args.dir)
    key_file = args.key_file or os.environ.get("MEGAMED_DEID_KEY_FILE") or root / "demo.key"
    if not Path(key_file).exists() and Path(key_file) == root / "demo.key":
        root.mkdir(parents=True, exist_ok=True)
        Path(key_file).write_text(secrets.token_hex(32))
        os.chmod(key_file, 0o600)
    corpus = build_raw(root / "raw", args.studies, bad_inputs=args.bad_inputs)
    summary = make_shards(corpus.raw, root / "shards", load_key(key_file), preset("demo"),
                          samples_per_shard=4, workers=args.workers, progress=False)
    if args.tokenizer:
        model = train_tokenizer(texts_from_shards(sorted((root / "shards").glob("shard-*.tar"))),
                                root / "tokenizer", load_config("demo").model.vocab_size)
        merge_manifest(root / "shards", tokenizer=str(model))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
