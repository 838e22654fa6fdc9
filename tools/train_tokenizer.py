"""Trains the sentencepiece BPE tokenizer (byte fallback; pad, unk, bos, eos and the
<image> <ecg> <eeg> placeholders) on text files or on the reports inside WebDataset shards.

    python tools/train_tokenizer.py OUT/ --out tok/megamed --profile demo
    python tools/train_tokenizer.py notes/*.txt --out tok/megamed --vocab-size 32000

A directory argument means its shard-*.tar files; a .tar file is a shard; anything else is
a UTF-8 text file. Writes OUT.model and OUT.vocab; prints the vocabulary size reached.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from tqdm import tqdm

from megamed.config import ConfigError, load_config
from megamed.data.tokenizer import (Tokenizer, TokenizerError, texts_from_files,
                                    texts_from_shards, train_tokenizer)


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("inputs", nargs="+", help="text files, shard .tar files or shard folders")
    a.add_argument("--out", required=True, help="model prefix: writes PREFIX.model, PREFIX.vocab")
    a.add_argument("--vocab-size", type=int, help="upper bound (default: the profile's vocab_size)")
    a.add_argument("--profile", default="demo", help="profile giving vocab_size (default demo)")
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--quiet", action="store_true", help="no progress bar or training log")
    args = a.parse_args(argv)
    try:
        vocab = args.vocab_size or load_config(args.profile).model.vocab_size
        shards, texts = [], []
        for item in map(Path, args.inputs):
            if item.is_dir():
                shards += sorted(item.glob("shard-*.tar"))
            elif item.suffix == ".tar":
                shards.append(item)
            else:
                texts.append(item)
        documents = tqdm(itertools.chain(texts_from_files(texts), texts_from_shards(shards)),
                         unit="doc", desc="reading", disable=args.quiet, file=sys.stderr)
        model = train_tokenizer(documents, args.out, vocab, threads=args.threads,
                                verbose=not args.quiet)
        tokenizer = Tokenizer(model)
    except (ConfigError, TokenizerError) as e:
        print(f"train_tokenizer: {e}", file=sys.stderr)
        return 2
    print(f"wrote {model}: vocab_size {tokenizer.vocab_size} (asked {vocab}), "
          f"specials {tokenizer.special_ids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
