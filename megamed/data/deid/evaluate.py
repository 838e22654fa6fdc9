"""Token-level recall and precision of `find_phi` on a labelled corpus.

    python -m megamed.data.deid.evaluate CORPUS.jsonl [--top 15] [--json OUT]

CORPUS.jsonl: one {"text": ..., "spans": [[start, end, category], ...]} per line. A token is a
run of letters/digits; a gold PHI token is found when a predicted span overlaps it (the issue's
rule), whatever category was predicted. Precision counts predicted tokens that overlap gold.
A title or credential beside a gold name ("Dr.", "MD", "RN") counts neither way: the issue
lets it be inside the span or not.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from typing import Iterable

from megamed.data.deid.text import CATEGORIES, find_phi

_TOKEN = re.compile(r"\w+")


_TITLES_AND_CREDENTIALS = frozenset("""dr mr mrs ms miss mx prof md do rn np pa c phd dds dmd
dvm lpn crna lcsw pharmd mbbs dnp aprn fnp facc facs facp mph m d o n p h""".split())


def _beside_name(token: str, start: int, end: int, names: list) -> bool:
    if token.lower() not in _TITLES_AND_CREDENTIALS:
        return False
    return any(0 <= ns - end <= 6 or 0 <= start - ne <= 8 for ns, ne in names
               if not (ns <= start and end <= ne)) or \
        any(ns <= start and end <= ne for ns, ne in names)


def _overlaps(spans: list, start: int, end: int):
    for s, e, c in spans:
        if s < end and start < e:
            return c
    return None


def score(documents: Iterable[dict], detector=find_phi) -> dict:
    """{'overall': {...}, 'per_category': {cat: {...}}, 'misses': Counter, 'false_positives': ...}"""
    gold_n = collections.Counter()
    found_n = collections.Counter()
    pred_n = collections.Counter()
    pred_ok = collections.Counter()
    misses, false_pos = collections.Counter(), collections.Counter()
    for doc in documents:
        text = doc["text"]
        gold = sorted(tuple(s) for s in doc["spans"])
        pred = sorted(tuple(s) for s in detector(text))
        names = [(s, e) for s, e, c in gold if c == "NAME"]
        for m in _TOKEN.finditer(text):
            s, e = m.start(), m.end()
            if _beside_name(m.group(0), s, e, names):
                continue     # "Dr." / "MD" beside a name: inside the span or not (the issue)
            g, p = _overlaps(gold, s, e), _overlaps(pred, s, e)
            if g:
                gold_n[g] += 1
                if p:
                    found_n[g] += 1
                else:
                    misses[(g, _context(text, s, e))] += 1
            if p:
                pred_n[p] += 1
                if g:
                    pred_ok[p] += 1
                else:
                    false_pos[(p, _context(text, s, e))] += 1
    per = {}
    for cat in CATEGORIES:
        if gold_n[cat] or pred_n[cat]:
            per[cat] = _metrics(found_n[cat], gold_n[cat], pred_ok[cat], pred_n[cat])
    overall = _metrics(sum(found_n.values()), sum(gold_n.values()),
                       sum(pred_ok.values()), sum(pred_n.values()))
    return {"overall": overall, "per_category": per, "misses": misses,
            "false_positives": false_pos}


def _metrics(found, gold, ok, pred) -> dict:
    return {"gold_tokens": gold, "found": found, "predicted_tokens": pred,
            "recall": found / gold if gold else None,
            "precision": ok / pred if pred else None}


def _context(text: str, s: int, e: int) -> str:
    left = text[max(0, s - 20):s].replace("\n", " ")
    right = text[e:e + 20].replace("\n", " ")
    return f"{left}[{text[s:e]}]{right}"


def table(result: dict) -> str:
    rows = ["| category | PHI tokens | recall | predicted | precision |", "|---|---|---|---|---|"]

    def fmt(x):
        return "-" if x is None else f"{x:.4f}"
    for cat, m in sorted(result["per_category"].items()):
        rows.append(f"| {cat} | {m['gold_tokens']} | {fmt(m['recall'])} | "
                    f"{m['predicted_tokens']} | {fmt(m['precision'])} |")
    m = result["overall"]
    rows.append(f"| **overall** | {m['gold_tokens']} | {fmt(m['recall'])} | "
                f"{m['predicted_tokens']} | {fmt(m['precision'])} |")
    return "\n".join(rows)


def read_corpus(path: str) -> list[dict]:
    docs = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                doc["text"], doc["spans"]  # noqa: B018
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"{path}:{i}: not a {{\"text\", \"spans\"}} JSON line ({e})")
            docs.append(doc)
    return docs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m megamed.data.deid.evaluate",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="JSONL: {\"text\": ..., \"spans\": [[start, end, cat], ...]}")
    ap.add_argument("--top", type=int, default=15, help="how many misses / false positives")
    ap.add_argument("--json", help="also write the metrics here")
    args = ap.parse_args(argv)
    result = score(read_corpus(args.corpus))
    print(table(result))
    for title, key in (("most frequent misses", "misses"),
                       ("most frequent false positives", "false_positives")):
        print(f"\n{title}:")
        for (cat, ctx), n in result[key].most_common(args.top):
            print(f"  {n:4d}  {cat:<11} {ctx}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: result[k] for k in ("overall", "per_category")}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
