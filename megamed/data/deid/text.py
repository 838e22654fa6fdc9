"""Find PHI in clinical text and replace it with keyed surrogates; text that is not PHI is kept
character for character (the model learns from it)."""
from __future__ import annotations

import re
from operator import itemgetter

from megamed.data.deid import names, patterns, surrogates
from megamed.data.deid.pseudonym import DeidError, Pseudonymizer

CATEGORIES = ("NAME", "DATE", "AGE", "PHONE", "FAX", "EMAIL", "SSN", "MRN", "ACCOUNT",
              "HEALTH_PLAN", "LICENSE", "VEHICLE", "DEVICE", "URL", "IP", "ADDRESS", "ZIP",
              "OTHER_ID")
# When spans of two categories overlap, the merged span takes the stronger category.
_PRIORITY = {c: i for i, c in enumerate(("EMAIL", "URL", "IP", "SSN", "PHONE", "FAX", "MRN",
                                         "ACCOUNT", "HEALTH_PLAN", "LICENSE", "VEHICLE",
                                         "DEVICE", "ADDRESS", "ZIP", "DATE", "AGE", "NAME",
                                         "OTHER_ID"))}


def find_phi(text: str) -> list[tuple[int, int, str]]:
    """PHI spans (start, end, category), sorted and non-overlapping."""
    if not isinstance(text, str):
        raise DeidError(f"find_phi needs a str, got {type(text).__name__}")
    structured = patterns.find_structured(text)
    blocked = [(s, e) for s, e, c in structured if c not in ("DATE", "OTHER_ID")]
    return _resolve(structured + names.find_names(text, blocked))


def _resolve(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[list] = []
    # by start, longer first (two stable sorts at C speed: the order of sorting by (s, -e))
    spans.sort(key=itemgetter(1), reverse=True)
    spans.sort(key=itemgetter(0))
    for s, e, c in spans:
        if s >= e:
            continue
        if out and s < out[-1][1]:
            last = out[-1]
            # the category of the longer span wins, ties by priority
            if (e - s, -_PRIORITY[c]) > (last[1] - last[0], -_PRIORITY[last[2]]):
                last[2] = c
            last[1] = max(last[1], e)
        else:
            out.append([s, e, c])
    return [tuple(x) for x in out]


def deidentify_text(text: str, pseudonymizer: Pseudonymizer, *, dates: str = "year",
                    style: str = "surrogate", patient: str | None = None,
                    counts: dict | None = None) -> str:
    """`text` with every PHI span replaced.

    dates: "year" keeps only the year (Safe Harbor, default); "shift" moves every date by the
        patient's keyed offset (intervals survive), `patient` names whose offset.
    style: "surrogate" (consistent keyed fakes) or "tag" ("[NAME]", "[DATE]", ...).
    counts: if given, incremented per category found.
    """
    if dates not in ("year", "shift") or style not in ("surrogate", "tag"):
        raise DeidError(f"deidentify_text: dates must be 'year'|'shift' (got {dates!r}), "
                        f"style 'surrogate'|'tag' (got {style!r})")
    spans = find_phi(text)
    maker = surrogates.SurrogateMaker(pseudonymizer, text, dates=dates, patient=patient)
    out, pos = [], 0
    for s, e, cat in spans:
        out.append(text[pos:s])
        out.append(_tag(text[s:e], cat) if style == "tag" else maker.replace(text[s:e], cat))
        pos = e
        if counts is not None:
            counts[cat] = counts.get(cat, 0) + 1
    out.append(text[pos:])
    return "".join(out)


def _tag(value: str, category: str) -> str:
    """"[NAME]", keeping a title or credential that the name span took along ("Dr. [NAME]")."""
    if category != "NAME":
        return f"[{category}]"
    m = names.TITLE_CREDENTIAL.fullmatch(value)
    if not m:
        return "[NAME]"
    return f"{m.group(1)}[NAME]{m.group(3) or ''}"


_WFDB_COMMENT = re.compile(r"^(\s*#)(.*)$")


def deidentify_wfdb_header(text: str, pseudonymizer: Pseudonymizer, *, name: str = "<header>",
                           rename=None, counts: dict | None = None, **options) -> str:
    """A WFDB `.hea` header with its comment lines (`# ...`) de-identified.

    Comment lines (age, sex, diagnoses, sometimes names and dates) go through
    `deidentify_text`; the base date on the record line is removed (counted as DATE); the
    other record and signal fields carry no free text and stay byte for byte, except the
    record and signal file names when `rename` (a function of a name) changes them.
    A header without a record line, with a bad signal count or fewer signal (segment) lines
    than declared is a DeidError naming `name`.
    """
    lines = text.split("\n")
    body = []                           # indices of the record line and its signal lines
    for i, line in enumerate(lines):
        m = _WFDB_COMMENT.match(line)
        if m:
            lines[i] = m.group(1) + deidentify_text(m.group(2), pseudonymizer, counts=counts,
                                                    **options)
        elif line.strip():
            body.append(i)
    if not body:
        raise DeidError(f"{name}: malformed WFDB header: no record line")
    fields = lines[body[0]].split()
    record, _, segments = fields[0].partition("/")
    wanted = segments if segments else (fields[1] if len(fields) > 1 else "")
    if not wanted.isdigit():
        raise DeidError(f"{name}: malformed WFDB header: the record line has no signal "
                        "(or segment) count")
    if len(body) - 1 < int(wanted):
        raise DeidError(f"{name}: malformed WFDB header: {wanted} signal lines declared, "
                        f"{len(body) - 1} found")
    if len(fields) > 5 and counts is not None:      # base date: identifies the day
        counts["DATE"] = counts.get("DATE", 0) + 1
    if len(fields) > 5 or rename is not None:
        fields[0] = (rename(record) if rename else record) + ("/" + segments if segments else "")
        lines[body[0]] = _same_end(lines[body[0]], " ".join(fields[:5]))
    for i in body[1:1 + int(wanted)] if rename is not None else ():
        parts = lines[i].split(None, 1)
        if parts[0] not in ("~", "-"):   # no file / standard input
            lines[i] = _same_end(lines[i], " ".join([rename(parts[0])] + parts[1:]))
    return "\n".join(lines)


def _same_end(old: str, new: str) -> str:
    """`new` with the line end ("\r" of a CRLF file) that `old` had."""
    return new + "\r" if old.endswith("\r") and not new.endswith("\r") else new
