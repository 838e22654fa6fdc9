"""find_phi's spans, input by input, against those of another checkout (e.g. main before a
speed-up or a rule port): the same spans in the same order, or a list of the differences.

    python benchmarks/deid_same_spans.py --baseline /work/main [--mutations 3000] [--show 5]

Both checkouts run in their own subprocess (each imports its own megamed) over one input set:
the generated corpus (megamed.data.deid.corpus, seeds 1..5), tests/data/deid_heldout.jsonl,
the hand-written sets benchmarks/data/deid_*.jsonl (and their marked-up sources deid_*.txt
with "### " document headers and [[CATEGORY:value]] marks, read with and without the marks), every string
literal of the text tests (tests/data/test_deid_text.py, test_deid_hostile.py), and
--mutations random mutations of those (lines shuffled, case changed, characters inserted or
deleted, digits replaced, documents cut or joined; a fixed seed). Prints the number of inputs
compared and of those that differ with the first --show diffs; exit status 1 if any differ.
Writes benchmarks/results/deid_same_spans.json.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "deid_same_spans.json"

# Run in the checkout's own interpreter path: reads inputs (JSON list), writes spans.
WORKER = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from megamed.data.deid import find_phi
texts = json.load(open(sys.argv[2]))
out = []
for t in texts:
    try:
        out.append([list(s) for s in find_phi(t)])
    except Exception as e:                      # an exception is an output too
        out.append(f"{type(e).__name__}: {e}")
json.dump(out, open(sys.argv[3], "w"))
'''

_MARK = re.compile(r"\[\[[A-Z_]+:(.*?)\]\]", re.S)


def _jsonl_texts(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def _marked_texts(path: str) -> list[str]:
    """Documents of a "### id kind" file, with and without their [[CAT:value]] marks."""
    raw = Path(path).read_text(encoding="utf-8")
    docs = [d for d in re.split(r"^### .*$", raw, flags=re.M) if d.strip()]
    return [_MARK.sub(r"\1", d) for d in docs] + docs


def _literals(path: Path) -> list[str]:
    """Every string constant of a test module that is at least 3 characters long."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sorted({n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str) and
                   len(n.value) >= 3})


def base_inputs() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from megamed.data.deid.corpus import generate
    texts = [d["text"] for seed in range(1, 6) for d in generate(350, seed=seed)]
    for path in [ROOT / "tests/data/deid_heldout.jsonl",
                 *sorted((ROOT / "benchmarks/data").glob("deid_*.jsonl"))]:
        texts += _jsonl_texts(str(path))
    for path in sorted((ROOT / "benchmarks/data").glob("deid_*.txt")):
        texts += _marked_texts(str(path))
    for name in ("test_deid_text.py", "test_deid_hostile.py", "test_deid_rules_intl.py",
                 "test_deid_names_more.py", "test_deid_names_context.py",
                 "test_deid_rules_places_ids.py"):
        if (ROOT / "tests/data" / name).exists():
            texts += _literals(ROOT / "tests/data" / name)
    return texts


def _mutate(rng: random.Random, text: str, others: list[str]) -> str:
    kind = rng.randrange(7)
    if kind == 0:                                       # lines shuffled
        lines = text.split("\n")
        rng.shuffle(lines)
        return "\n".join(lines)
    if kind == 1:                                       # case changed
        how = rng.choice([str.upper, str.lower, str.swapcase, str.title])
        return how(text)
    if kind == 2:                                       # digits replaced
        return re.sub(r"\d", lambda m: str(rng.randrange(10)) if rng.random() < 0.5
                      else m.group(0), text)
    if kind == 6:                                       # cut, or joined to another input
        if rng.random() < 0.5 and text:
            a = rng.randrange(len(text))
            return text[a:a + rng.randrange(1, 400)]
        return text + rng.choice(["\n", " ", "\n\n", ""]) + rng.choice(others)
    chars = list(text)
    for _ in range(rng.randrange(1, 12)):
        i = rng.randrange(len(chars) + 1)
        if kind == 3 and chars:                         # characters deleted
            del chars[min(i, len(chars) - 1)]
        else:                                           # characters inserted
            chars.insert(i, rng.choice(" \n\t.,:;/-()#'0123456789AaZzé’\r|^~@+"))
    return "".join(chars)


def mutations(texts: list[str], n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [_mutate(rng, rng.choice(texts), texts) for _ in range(n)]


def spans_of(checkout: str, texts: list[str]) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(src, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        subprocess.run([sys.executable, "-c", WORKER, os.path.abspath(checkout), src, dst],
                       check=True, cwd=checkout, timeout=1800)
        with open(dst, encoding="utf-8") as f:
            return json.load(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, metavar="CHECKOUT",
                    help="the other checkout whose find_phi gives the expected spans")
    ap.add_argument("--mutations", type=int, default=3000,
                    help="random mutations of the inputs added to the set (fixed seed)")
    ap.add_argument("--show", type=int, default=5, help="how many differences to print")
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.baseline, "megamed", "data", "deid", "text.py")):
        print(f"deid_same_spans: {args.baseline}: no megamed/data/deid/text.py there",
              file=sys.stderr)
        return 2
    texts = base_inputs()
    texts += mutations(texts, args.mutations)
    ours, theirs = spans_of(str(ROOT), texts), spans_of(args.baseline, texts)
    diffs = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    for i in diffs[:args.show]:
        a, b = ours[i], theirs[i]
        only_ours = [s for s in a if s not in b] if isinstance(a, list) else a
        only_theirs = [s for s in b if s not in a] if isinstance(b, list) else b
        print(f"input {i} ({len(texts[i])} chars): only here {only_ours[:6]}, "
              f"only in baseline {only_theirs[:6]}")
        for s in (only_ours[:3] + only_theirs[:3]) if isinstance(a, list) and \
                isinstance(b, list) else ():
            print(f"    {s}: {texts[i][s[0]:s[1]]!r}")
    print(f"deid_same_spans: {len(texts)} inputs compared with {args.baseline}, "
          f"{len(diffs)} differ")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"baseline": args.baseline, "inputs": len(texts),
                                   "mutations": args.mutations, "differ": len(diffs),
                                   "first_differing": diffs[:args.show]}, indent=1) + "\n")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
