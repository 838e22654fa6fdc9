"""Person names in clinical text: context first (titles, credentials, labels, relatives), then the
census dictionaries, then propagation of every name found to its other mentions.

Evidence, strongest first:
1. a title before ("Dr.", "Mrs") or a credential after ("Smith, MD", "J. Doe RN");
2. a label or role before ("Patient:", "seen by", "Dear", "his wife", "Sincerely,");
3. a given name next to a capitalised word that is not an English word ("Maria Ketterman");
4. a census name that is not an English word ("Nguyen", "Kowalski"); a name that IS a word
   (Hope, Will, Frank, Brown) only with support: a neighbouring name, or a capital in the
   middle of a lower-case sentence ("discussed with Brown today");
5. once a token is a name somewhere in the document, its other mentions are too.
Vetoes: eponyms before disease/sign/score or with "'s" (Parkinson's, Bell palsy), drugs, words
before a dose, clinical abbreviations.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from megamed.data.deid import lexicon

_TOKEN = re.compile(r"[A-Za-z](?:[A-Za-z]|['’-](?=[A-Za-z]))*")
_DOSE_AFTER = re.compile(r"^\s*\d+(?:\.\d+)?\s*(?:mg|mcg|g|ml|units?|meq|mmol|%|tabs?|puffs?)\b",
                         re.I)
FUNCTION_WORDS = frozenset("""a an and or but nor of to in on at by for with from into onto
was is are were be been being has have had will would can could may might should must shall
did does do done not no yes he she his her him hers they them their it its this that these those
who whom which what when where why how today yesterday tomorrow also then here there as if so
per via patient pt pts mr mrs ms dr md rn all any each some such than too very just only
again back up down out over under after before during while since until because about
i me my we our us you your one two three four five six seven eight nine ten""".split())
# Given names that are everyday words in lower-case dictation ("will", "may", "art line").
_LOWER_AMBIGUOUS_FIRST = frozenset("""will may mark bill pat sue guy art don gene grant chase page
long rose hope frank joy faith grace dawn ray max jack dean drew case lane miles son
king young major sunny summer autumn april june august star sky river rocky""".split())
_LABELS = re.compile(
    r"(?:\b(?:patient|pt|name|pt name|patient name|seen by|signed by|electronically signed|"
    r"signed|dictated by|transcribed by|attending|attending physician|resident|fellow|intern|"
    r"pcp|primary care(?: physician| provider)?|referring(?: physician| provider| md)?|"
    r"referred by|cc|dear|sincerely|regards|respectfully|best|thanks|thank you|surgeon|"
    r"assistant|anesthesiologist|anesthesia|reviewed by|read by|interpreted by|verified by|"
    r"ordered by|approved by|performed by|cosigned by|co-signed by|discussed with|spoke with|"
    r"d/w|contact|emergency contact|next of kin|nok|husband|wife|son|daughter|mother|father|"
    r"brother|sister|friend|partner|spouse|grandson|granddaughter|grandmother|grandfather|"
    r"niece|nephew|caregiver|guardian|accompanied by|boyfriend|girlfriend|fianc[eé]e?|aunt|"
    r"uncle|cousin|roommate|neighbor|provider|physician|technologist|tech|sonographer|"
    r"consultant|consulting|covering|on-call|pharmacist|therapist|chaplain|social worker|"
    r"case manager|care coordinator|mom|dad|translator|interpreter|from|to|by|with|per|"
    r"attn|attention|re|regarding|signature)\b\.?\s*[:,-]?\s*)$", re.I)
_STRONG_LABEL = re.compile(r"(?:dear|sincerely|regards|signed|by|cc|attn|attention|name|"
                           r"signature|pcp|attending|resident|surgeon)\W*$", re.I)
_SENTENCE_BREAK = re.compile(r"[.!?:;\n•*>|]|^\s*$|\d\)")
_EPONYM_VETO_HEADS = frozenset("disease syndrome sign palsy lymphoma sarcoma criteria".split())


@dataclass
class _Tok:
    start: int
    end: int
    text: str
    lower: str
    cap: bool
    word: bool
    first: bool
    surname_rank: int
    possessive: bool


def _tokens(text: str) -> list[_Tok]:
    words, first, ranks = lexicon.english_words(), lexicon.first_names(), lexicon.surname_rank()
    out = []
    for m in _TOKEN.finditer(text):
        s, e = m.start(), m.end()
        t = m.group(0)
        possessive = t.endswith(("'s", "’s")) and len(t) > 2
        if possessive:
            t, e = t[:-2], e - 2
        low = t.lower()
        out.append(_Tok(s, e, t, low, t[0].isupper(), low in words, low in first,
                        ranks.get(low, 0), possessive))
    return out


def find_names(text: str, blocked: list[tuple[int, int]] = ()) -> list[tuple[int, int, str]]:
    """Spans (start, end, 'NAME'): adjacent name tokens and their initials merged."""
    toks = _tokens(text)
    n = len(toks)
    if not n:
        return []
    veto = [_vetoed(text, toks, i) for i in range(n)]
    name = [False] * n
    _titles_and_credentials(text, toks, veto, name)
    _labels(text, toks, veto, name)
    _dictionary(text, toks, veto, name)
    _propagate(toks, veto, name)
    return _merge(text, toks, name, blocked)


def _gap(text: str, a: _Tok, b: _Tok) -> str:
    return text[a.end:b.start]


def _sentence_start(text: str, toks: list[_Tok], i: int) -> bool:
    before = text[toks[i - 1].end:toks[i].start] if i else text[:toks[i].start]
    return i == 0 or bool(_SENTENCE_BREAK.search(before))


def _vetoed(text: str, toks: list[_Tok], i: int) -> bool:
    t = toks[i]
    if t.lower in lexicon.MEDICAL_WORDS or t.lower in lexicon.NOT_NAMES:
        return True
    if t.lower in lexicon.MONTHS or t.lower in lexicon.WEEKDAYS:
        return True
    nxt = toks[i + 1].lower if i + 1 < len(toks) else ""
    adjacent = i + 1 < len(toks) and len(_gap(text, t, toks[i + 1])) <= 3
    parts = t.lower.split("-")
    if all(p in lexicon.EPONYMS for p in parts):
        if t.possessive or len(parts) > 1 or (adjacent and nxt in lexicon.EPONYM_HEADS):
            return True
    if t.cap and adjacent and nxt in _EPONYM_VETO_HEADS:
        return True
    if t.lower in standalone_eponyms():
        return True
    return bool(_DOSE_AFTER.match(text[t.end:t.end + 16]))


_STANDALONE = None


def standalone_eponyms() -> frozenset[str]:
    """Eponyms that are rarely a person's surname in the US (census rank past 3000 or absent)."""
    global _STANDALONE
    if _STANDALONE is None:
        ranks = lexicon.surname_rank()
        _STANDALONE = frozenset(e for e in lexicon.EPONYMS if not 0 < ranks.get(e, 0) <= 3000)
    return _STANDALONE


def _abbreviation(t: _Tok) -> bool:
    return t.text.isupper() and len(t.text) <= 4 and not (t.first or 0 < t.surname_rank <= 5000)


def _lower_name(t: _Tok) -> bool:
    """A lower-case token that reads as a name in dictation ("daughter mary", "pt john")."""
    return (t.first and t.lower not in _LOWER_AMBIGUOUS_FIRST) or \
        (t.surname_rank > 0 and not t.word)


def _is_initial(text: str, t: _Tok) -> bool:
    return len(t.text) == 1 and t.text.isupper()


def _take_forward(text: str, toks, veto, name, i: int, strict: bool, limit: int = 4) -> None:
    """Mark up to `limit` name-like tokens from i on (initials and particles in between)."""
    taken = 0
    j = i
    while j < len(toks) and taken < limit:
        t = toks[j]
        if j > i and len(_gap(text, toks[j - 1], t).strip(" .,")) > 0:
            break
        if j > i and ("\n" in _gap(text, toks[j - 1], t) or "  " in _gap(text, toks[j - 1], t)
                      or "\t" in _gap(text, toks[j - 1], t)):
            break
        if _is_initial(text, t) or t.lower in ("van", "von", "de", "der", "del", "da", "di",
                                                "la", "le", "st", "mac", "bin", "al", "el"):
            name[j] = True if _is_initial(text, t) or taken else name[j]
            j += 1
            continue
        if veto[j] or t.lower in FUNCTION_WORDS or t.lower in lexicon.MEDICAL_WORDS:
            break
        if t.cap:
            ok = not _abbreviation(t) and (not strict or taken == 0 or t.first or
                                           t.surname_rank > 0 or not t.word)
        else:
            ok = _lower_name(t) or (not strict and taken == 0)
        if not ok:
            break
        name[j] = True
        taken += 1
        if j + 1 < len(toks) and "," in _gap(text, t, toks[j + 1]):
            break
        j += 1


def _take_backward(text: str, toks, veto, name, i: int) -> None:
    j, taken = i, 0
    while j >= 0 and taken < 4:
        t = toks[j]
        if j < i and len(_gap(text, t, toks[j + 1]).strip(" .,")) > 0:
            break
        if _is_initial(text, t):
            name[j] = True
            j -= 1
            continue
        if veto[j] or not t.cap or t.lower in FUNCTION_WORDS:
            break
        if t.word and not (t.first or t.surname_rank):
            break
        name[j] = True
        taken += 1
        j -= 1


def _titles_and_credentials(text, toks, veto, name) -> None:
    for i, t in enumerate(toks):
        if t.lower in lexicon.TITLES and i + 1 < len(toks):
            gap = _gap(text, t, toks[i + 1])
            if gap.strip() in ("", ".") and "\n" not in gap:
                if t.lower in ("sister", "nurse", "doctor", "professor") and not toks[i + 1].cap:
                    continue
                _take_forward(text, toks, veto, name, i + 1, strict=False)
        elif t.lower in lexicon.CREDENTIALS or t.lower.replace(".", "") in lexicon.CREDENTIALS:
            upper = t.text.isupper() or t.lower in ("md", "rn", "phd", "np", "do")
            if not upper or i == 0:
                continue
            gap = _gap(text, toks[i - 1], t)
            if t.lower in ("pt", "ot", "pa", "rt", "do", "np") and "," not in gap:
                continue
            if gap.strip() in ("", ",", ".") and "\n" not in gap:
                _take_backward(text, toks, veto, name, i - 1)


def _labels(text, toks, veto, name) -> None:
    for i, t in enumerate(toks):
        if i == 0:
            continue
        before = text[max(0, t.start - 40):t.start]
        m = _LABELS.search(before)
        if not m:
            continue
        strong = bool(_STRONG_LABEL.search(m.group(0).strip()))
        generic = m.group(0).strip(" :,-.").lower() in ("from", "to", "by", "with", "per", "re")
        if veto[i] or t.lower in FUNCTION_WORDS:
            continue
        if generic and not (t.cap and (t.first or t.surname_rank) and not t.word):
            continue
        if t.cap and _abbreviation(t):
            continue
        if (not t.cap and _lower_name(t)) or (t.cap and (t.first or t.surname_rank or
                                                         not t.word or strong)):
            _take_forward(text, toks, veto, name, i, strict=True)


def _dictionary(text, toks, veto, name) -> None:
    n = len(toks)
    for i, t in enumerate(toks):
        if veto[i] or name[i] or t.lower in FUNCTION_WORDS or len(t.text) < 2:
            continue
        in_list = t.first or t.surname_rank > 0
        nxt = toks[i + 1] if i + 1 < n and _gap(text, t, toks[i + 1]) in (" ", ", ") else None
        if t.cap and _abbreviation(t):
            continue
        if t.cap:
            if in_list and not t.word:
                name[i] = True
            elif in_list and not _sentence_start(text, toks, i) and i and \
                    not toks[i - 1].cap and not text[t.end:t.end + 1] == ":":
                name[i] = True            # a capital inside a lower-case sentence
            if t.first and nxt is not None and nxt.cap and not veto[i + 1] and \
                    nxt.lower not in FUNCTION_WORDS and (not nxt.word or nxt.surname_rank):
                name[i] = name[i + 1] = True  # "Maria Ketterman", "Frank Brown"
        else:
            if in_list and not t.word and len(t.text) >= 3 and \
                    (t.first or t.surname_rank <= 30000):
                name[i] = True
            if t.first and t.lower not in _LOWER_AMBIGUOUS_FIRST and nxt is not None and \
                    not nxt.cap and not veto[i + 1] and nxt.lower not in FUNCTION_WORDS and \
                    0 < nxt.surname_rank <= 20000:
                name[i] = name[i + 1] = True  # "john smith" in dictation
    # a name next to a capitalised unknown word takes it along ("Ketterman, Maria")
    for i, t in enumerate(toks):
        if not name[i]:
            continue
        for j in (i - 1, i + 1):
            if 0 <= j < n and not name[j] and not veto[j] and toks[j].cap and \
                    not toks[j].word and toks[j].lower not in FUNCTION_WORDS and \
                    not _abbreviation(toks[j]):
                a, b = (toks[j], t) if j < i else (t, toks[j])
                if _gap(text, a, b) in (" ", ", "):
                    name[j] = True


def _propagate(toks, veto, name) -> None:
    found = {t.lower for t, is_name in zip(toks, name) if is_name and len(t.text) > 1}
    for i, t in enumerate(toks):
        if not name[i] and not veto[i] and t.lower in found and (t.cap or not t.word):
            name[i] = True


def _merge(text, toks, name, blocked) -> list[tuple[int, int, str]]:
    spans: list[list[int]] = []
    for t, is_name in zip(toks, name):
        if not is_name:
            continue
        if spans and re.fullmatch(r"[ .,]{0,2}", text[spans[-1][1]:t.start]) and \
                "," not in text[spans[-1][1]:t.start]:
            spans[-1][1] = t.end
        else:
            spans.append([t.start, t.end])
    return [(s, e, "NAME") for s, e in spans
            if not any(bs <= s and e <= be for bs, be in blocked)]
