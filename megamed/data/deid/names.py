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

import bisect
import re
import unicodedata
from dataclasses import dataclass

from megamed.data.deid import lexicon

# Letters in any script ("José Núñez"); apostrophes and hyphens inside a name.
_TOKEN = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_DOSE_AFTER = re.compile(r"\s*\d+(?:\.\d+)?\s*(?:mg|mcg|g|ml|units?|meq|mmol|%|tabs?|puffs?)\b",
                         re.I)

_SENTENCE_BREAK = re.compile(r"[.!?:;\n•*>|(\[\"]|\d|^\s*-|\s\s")

_DIGIT_BEFORE = re.compile(r"\d\s*$")
_DIGIT_AFTER = re.compile(r"\W{0,3}\d")
_AND_BEFORE = re.compile(r"\b(?:and|or|&)\s+$")
_INITIAL_GAP = re.compile(r"[ .]{0,2}")

@dataclass(slots=True)
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


_SHOUTED_LINE = re.compile(r"^[^a-z\n]*[A-Z]{2}[^a-z\n]*$", re.M)


def _uncased_regions(text: str) -> list[tuple[int, int]]:
    """Lines written all in capitals: there a capital letter says nothing about a name."""
    return [m.span() for m in _SHOUTED_LINE.finditer(text)
            if sum(c.isalpha() for c in m.group(0)) >= 24]


def _tokens(text: str) -> list[_Tok]:
    words, first, ranks = lexicon.english_words(), lexicon.first_names(), lexicon.surname_rank()
    out = []
    append = out.append
    shouted = _uncased_regions(text) if text.isupper() or "\n" in text else []
    if not shouted:                          # the common case, kept lean: one cached tuple a token
        cache = _TOKEN_INFO
        for m in _TOKEN.finditer(text):
            t = m.group()
            info = cache.get(t) or _token_info(t)
            s = m.start()
            append(_Tok(s, s + info[0], *info[1]))
        return out
    region = 0                               # tokens come in order: the first region not passed
    for m in _TOKEN.finditer(text):
        t = m.group(0)
        s, e = m.span()
        while region < len(shouted) and shouted[region][1] <= s:
            region += 1
        if region < len(shouted) and shouted[region][0] <= s and len(t) > 1:
            low = t.lower()                    # read an all-capitals line as lower case
            parts = low.split("-")
            named = len(parts) == 1 or any((p in first or p in ranks) and p not in words
                                           for p in parts)
            append(_Tok(s, e, t, low, False, low in words,
                        named and any(p in first for p in parts),
                        min((ranks[p] for p in parts if p in ranks), default=0) if named else 0,
                        False))
            continue
        info = _TOKEN_INFO.get(t) or _token_info(t)
        append(_Tok(s, s + info[0], *info[1]))
    return out


def _token_info(t: str) -> tuple:
    """What the lexicon says about one token (a function of its text alone, so memoised):
    (its length without a possessive 's, (that text, lower-case form, capitalised, English word,
    first name, surname rank, possessive)): the _Tok fields after start and end."""
    words, first, ranks = lexicon.english_words(), lexicon.first_names(), lexicon.surname_rank()
    original, e = t, len(t)
    possessive = False
    low = t.lower()
    if not low.isascii():                          # josé -> jose for the census lists
        low = "".join(c for c in unicodedata.normalize("NFKD", low)
                      if not unicodedata.combining(c))
    key = low
    if "'" in t or "’" in t:
        if low.endswith(("'s", "’s")) and len(t) > 2:
            possessive, t, e, low = True, t[:-2], e - 2, low[:-2]
        key = low.replace("'", "").replace("’", "")     # O'Brien -> obrien (census)
    is_first, rank = key in first, ranks.get(key, 0)
    if "-" in key and not (is_first or rank) and \
            (all(p[:1].isupper() for p in t.split("-")) or    # Nakamura-Lee, Mary-Kate
             all((p in first or p in ranks) and len(p) > 2 for p in key.split("-"))):
        # (lower case: every part a census name, as in dictation's "abernathy-cole", not "co-pay")
        parts = key.split("-")
        if any((p in first or p in ranks) and p not in words for p in parts):
            is_first = any(p in first for p in parts)
            rank = min((ranks[p] for p in parts if p in ranks), default=0)
    info = (e, (original[:e], low, t[0].isupper(), low in words, is_first, rank, possessive))
    if len(_TOKEN_INFO) >= 1 << 17:     # bounded: a corpus of odd tokens must not grow it forever
        _TOKEN_INFO.clear()
    _TOKEN_INFO[original] = info
    return info


_TOKEN_INFO: dict[str, tuple] = {}


def find_names(text: str, blocked: list[tuple[int, int]] = ()) -> list[tuple[int, int, str]]:
    """Spans (start, end, 'NAME'): adjacent name tokens and their initials merged."""
    toks = _tokens(text)
    n = len(toks)
    if not n:
        return []
    # only tokens that could be a name get the (slower) veto rules: a lower-case English word
    # in no name list is never a name
    veto = [_vetoed(text, toks, i) if (t.cap or not t.word or t.first or t.surname_rank)
            else True for i, t in enumerate(toks)]
    name = [False] * n
    _titles_and_credentials(text, toks, veto, name)
    _labels(text, toks, veto, name)
    _dictionary(text, toks, veto, name)
    _propagate(text, toks, veto, name)
    return _merge(text, toks, name, blocked)


def _gap(text: str, a: _Tok, b: _Tok) -> str:
    return text[a.end:b.start]


def _sentence_start(text: str, toks: list[_Tok], i: int) -> bool:
    before = text[toks[i - 1].end:toks[i].start] if i else text[:toks[i].start]
    return i == 0 or bool(_SENTENCE_BREAK.search(before))


_SCORE_AFTER = re.compile(r"^\s*(?:\d|class\b|grade\b|stage\b|score\b)", re.I)
_ZIP_AFTER = re.compile(r",?\s+\d{5}\b")


# What a token's lower-case form alone says about a veto (memoised: tokens repeat).
_NO_VERDICT, _ALWAYS, _CALENDAR, _EPONYM, _EPONYM_COMPOUND = range(5)
_LOWER_KIND: dict[str, int] = {}


def _lower_kind(low: str) -> int:
    kind = _LOWER_KIND.get(low)
    if kind is not None:
        return kind
    parts = low.split("-") if "-" in low else (low,)
    if low in lexicon.MEDICAL_WORDS or low in lexicon.NOT_NAMES:
        kind = _ALWAYS
    elif low in lexicon.MONTHS or low in lexicon.WEEKDAYS:
        kind = _CALENDAR
    elif low in standalone_eponyms() or low in lexicon.DEVICE_EPONYMS:
        kind = _ALWAYS        # (checked after the eponym rules in _vetoed: all of them veto)
    elif any(p in lexicon.EPONYMS for p in parts):
        kind = _EPONYM_COMPOUND if len(parts) > 1 else _EPONYM
    else:
        kind = _NO_VERDICT
    if len(_LOWER_KIND) >= 1 << 17:
        _LOWER_KIND.clear()
    _LOWER_KIND[low] = kind
    return kind


def _vetoed(text: str, toks: list[_Tok], i: int) -> bool:
    t = toks[i]
    kind = _lower_kind(t.lower)
    if kind == _ALWAYS:
        return True
    nxt = toks[i + 1].lower if i + 1 < len(toks) else ""
    if kind == _CALENDAR:
        # "June Gold", "Jacqueline May, NP" are people; "June 5", "in June" are dates
        following = toks[i + 1] if i + 1 < len(toks) else None
        preceding = toks[i - 1] if i else None
        if t.first and preceding is not None and preceding.lower in lexicon.RELATIVES and \
                _gap(text, preceding, t) == " " and not _DIGIT_AFTER.match(text, t.end):
            return False                 # "daughter june", "wife April": a relative's name
        return not (t.first and t.cap and (
            (following is not None and following.cap and _gap(text, t, following) == " " and
             (not following.word or following.surname_rank)) or
            (preceding is not None and preceding.cap and preceding.first and
             not preceding.word and _gap(text, preceding, t) == " ")))
    adjacent = i + 1 < len(toks) and toks[i + 1].start - t.end <= 3
    if kind == _EPONYM_COMPOUND:
        # "Wolff-Parkinson-White", "Guillain-Barre"; but "Gwendolyn Ostrowski-Bell" is a person:
        # a given name just before and no eponym head just after
        return not (_after_given_name(text, toks, i) and
                    not (adjacent and nxt in lexicon.EPONYM_HEADS))
    if kind == _EPONYM:
        # Parkinson's, Guillain-Barre, Bell palsy, Gleason 3+4, Killip class II
        if (t.possessive and not _after_given_name(text, toks, i)) or \
                (adjacent and nxt in lexicon.EPONYM_HEADS) or \
                _SCORE_AFTER.match(text[t.end:t.end + 8]):
            return True
    if t.cap and adjacent and nxt in lexicon.EPONYM_VETO_HEADS:
        return True
    if t.cap and _facility_follows(text, toks, i):
        return True                    # "Brigham Clinic", "Mercy Hospital"
    # a state before its ZIP code, a drug before its dose: only when a digit follows closely
    follow = text[t.end:t.end + 3].lstrip(" ,")
    if not follow or not follow[0].isdigit():
        return False
    if t.lower in lexicon.HOSPITAL_PLACES:
        return True                                    # "Ward 5", "Bed 12": a place, not Mr Ward
    return bool(_ZIP_AFTER.match(text, t.end) or _DOSE_AFTER.match(text, t.end))


def _after_given_name(text: str, toks, i: int) -> bool:
    """A capitalised given name that is no English word comes just before token i
    ("Marcus Bell's", "Gwendolyn Ostrowski-Bell"): the eponym is a family name here."""
    prev = toks[i - 1] if i else None
    return prev is not None and prev.cap and prev.first and not prev.word and \
        _gap(text, prev, toks[i]) == " "


def _facility_follows(text: str, toks, i: int) -> bool:
    """A facility word ends the run of capitalised words (at most 3) that token i starts
    ("Harbor Light shelter", "Willow Creek Assisted Living")."""
    for k in range(i + 1, min(i + 4, len(toks))):
        if _gap(text, toks[k - 1], toks[k]) != " ":
            return False
        if toks[k].lower in lexicon.FACILITY_HEADS:
            return True                               # (the word itself may be lower case)
        if not toks[k].cap:
            return False
    return False


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
    return (t.first and t.lower not in lexicon.LOWER_AMBIGUOUS_FIRST) or \
        (t.surname_rank > 0 and not t.word)


def _is_initial(t: _Tok) -> bool:
    return len(t.text) == 1 and t.text.isupper()


def _function(t: _Tok) -> bool:
    """A function word, unless capitalised and a census name ("Name: Will Young")."""
    return t.lower in lexicon.FUNCTION_WORDS and (t.lower in lexicon.PRONOUNS or not (t.cap and (
        t.first or t.surname_rank)))


def _take_forward(text: str, toks, veto, name, i: int, strict: bool, limit: int = 4,
                  first_ok: bool = False, comma_first: bool = False) -> None:
    """Mark up to `limit` name-like tokens from i on (initials and particles in between).
    first_ok: the caller has vouched for token i; comma_first: "SMITH, JOHN" continues."""
    taken = 0
    vouched = False
    j = i
    while j < len(toks) and taken < limit:
        t = toks[j]
        if j > i:
            gap = _gap(text, toks[j - 1], t)
            if gap.strip(" .,") or "\n" in gap or "  " in gap or "\t" in gap:
                break
            if "." in gap and not _is_initial(toks[j - 1]):
                break                       # "husband Bao. Strength 5/5"
        if _is_initial(t) or (t.lower in lexicon.PARTICLES and taken):
            name[j] = True
            j += 1
            continue
        after_title = not strict and t.cap and taken == 0   # "Dr. May", "Dr. Foley"
        if (veto[j] and not after_title) or _function(t) or \
                t.lower in lexicon.MEDICAL_WORDS or t.lower in lexicon.TITLES:
            break       # a title is not the name ("officer Ofc. Brennan", "thorne nurse pract.")
        if (taken == 0 and first_ok) or vouched:
            ok = True
            vouched = False
        elif t.cap:
            ok = not _abbreviation(t) and (not strict or taken == 0 or t.first or
                                           t.surname_rank > 0 or not t.word)
        else:
            ok = (_lower_name(t) or (not strict and taken == 0) or
                  (taken > 0 and 0 < t.surname_rank <= 10000) or   # "dean long", "yuki strand"
                  (not t.word and len(t.text) >= 3 and (not strict or taken and toks[j - 1].first)))
            # ("mister jerome achterberg", "patient winston achebe")
        if not ok:
            break
        name[j] = True
        taken += 1
        if j + 1 < len(toks) and "," in _gap(text, t, toks[j + 1]):
            nxt = toks[j + 1]
            if not (comma_first and taken == 1 and (nxt.cap or nxt.text.isupper()) and
                    (nxt.first or (not nxt.word and len(nxt.text) > 1)) and
                    _gap(text, t, nxt).strip() == ","):
                break
            vouched = True                  # the given name after "LAST," is vouched for
        j += 1
    while j > i and name[j - 1] and _is_initial(toks[j - 1]) and taken == 0:
        j -= 1
        name[j] = False                     # a lone initial after a label is not a name


def _take_backward(text: str, toks, veto, name, i: int) -> None:
    j, taken = i, 0
    while j >= 0 and taken < 4:
        t = toks[j]
        if j < i:
            gap = _gap(text, t, toks[j + 1])
            if gap.strip(" .,") or "\n" in gap or ("." in gap and not _is_initial(t)):
                break
        if _is_initial(t) or (t.lower in lexicon.PARTICLES and taken):
            name[j] = True
            j -= 1
            continue
        if veto[j] or not t.cap or _function(t) or _abbreviation(t):
            break
        if t.word and not (t.first or t.surname_rank):
            break
        name[j] = True
        taken += 1
        j -= 1


# Credentials written after a name ("Jane Doe, MD", "J. Roe M.D.", "Kim Lee PA-C").
_CREDENTIAL = re.compile(r"(?:M\.D\.|D\.O\.|Ph\.D\.|R\.N\.|N\.P\.|P\.A\.|PA-C|FNP-C|MD|DO|RN|NP|PA|"
                         r"PhD|DDS|DMD|LPN|CNM|CRNA|MSW|LCSW|PharmD|RPh|MBBS|FACC|FACS|FACP|DNP|"
                         r"APRN|FNP|CNA|BSN|MSN|DPT|RRT|md|rn|np)(?![\w-])")
_MIXED_CREDENTIALS = frozenset(["PhD", "PharmD", "RPh", "Ph"])
_TITLE_OR_CREDENTIAL = lexicon.TITLES | {"md", "rn", "np"}
_ROLE_BEFORE = frozenset(["RN", "NP", "PA", "MD", "LPN", "CNA", "RT", "PT"])


def _titles_and_credentials(text, toks, veto, name) -> None:
    for i, t in enumerate(toks):
        if t.lower not in _TITLE_OR_CREDENTIAL and not t.text[0].isupper():
            continue                     # every rule below needs one or the other
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.lower in lexicon.TITLES and nxt is not None and \
                not (t.text.islower() and _DIGIT_BEFORE.search(text[max(0, t.start - 3):t.start])):
            gap = _gap(text, t, nxt)                     # (not "402 ms. Will follow up")
            if gap.strip() in ("", ".") and "\n" not in gap:
                if t.lower in ("sister", "nurse", "doctor", "professor") and not nxt.cap:
                    continue
                _take_forward(text, toks, veto, name, i + 1, strict=False)
                continue
        if t.text in _ROLE_BEFORE and nxt is not None and nxt.cap and not nxt.word and \
                _gap(text, t, nxt) == " ":
            _take_forward(text, toks, veto, name, i + 1, strict=True)   # "RN Walker"
        elif t.text in _ROLE_BEFORE and nxt is not None and nxt.cap and \
                (nxt.first or nxt.surname_rank) and _gap(text, t, nxt) == " ":
            _take_forward(text, toks, veto, name, i + 1, strict=True)
        if i and (t.text[0].isupper() and (t.text.isupper() or t.text in _MIXED_CREDENTIALS)
                  or t.lower in ("md", "rn", "np")) and _CREDENTIAL.match(text, t.start):
            gap = _gap(text, toks[i - 1], t)
            if t.text in ("PT", "OT", "PA", "RT", "DO", "NP") and "," not in gap:
                continue
            if gap.strip() in ("", ",", ".") and "\n" not in gap:
                _take_backward(text, toks, veto, name, i - 1)


_RELATION_AFTER = re.compile(r"^\s*[,(]\s*(?:his |her |the pt's |patient's )?(?:son|daughter|wife|"
                             r"husband|mother|father|brother|sister|spouse|partner|friend|"
                             r"niece|nephew|grandson|granddaughter|caregiver|guardian|neighbor)\b",
                             re.I)


def _labels(text, toks, veto, name) -> None:
    for i, t in enumerate(toks):
        if t.cap and not veto[i] and (t.first or t.surname_rank or not t.word) and \
                not _function(t) and not _abbreviation(t) and \
                _RELATION_AFTER.match(text[t.end:t.end + 30]):
            _take_backward(text, toks, veto, name, i)          # "Padraig Miller, son"

    # a label phrase can end only with one of its last words: the rest skip _label_before
    ends = [(t.lower.rsplit("-", 1)[-1] if "-" in t.lower else t.lower) in _LABEL_LAST_WORDS
            for t in toks]
    for i, t in enumerate(toks):
        if i == 0 or not ends[i - 1] or name[i] or veto[i]:
            continue
        label = _label_before(text, toks, i)
        if label is None:
            continue
        generic = label in ("from", "to", "by", "with", "per", "re") and not (
            label in ("from", "to") and _header_label(text, toks[i - 1], t))  # "From: Okonkwo, C."
        if veto[i] or _function(t):
            continue
        if _is_initial(t) and text[t.end:t.end + 1] == ".":
            _take_forward(text, toks, veto, name, i, strict=True)     # "PHYSICIAN: J. Miller"
            continue
        if t.cap and (_abbreviation(t) or (t.text.isupper() and len(t.text) <= 5 and
                                           not (t.first or t.surname_rank) and
                                           text[t.end:t.end + 1] != ",")):
            continue            # "regarding DMARD therapy": an acronym ("MBEKI, TENZIN" is a name)
        if generic:
            ok = t.cap and (t.first or t.surname_rank) and not t.word
        elif label in lexicon.OBJECT_VERBS:
            ok = (t.first or not t.word or 0 < t.surname_rank <= _RARE_SURNAME) if t.cap \
                else _lower_name(t)
        elif t.cap:     # an English word must be a name or a common surname ("Attn: Utilization")
            ok = t.first or not t.word or 0 < t.surname_rank <= _RARE_SURNAME or \
                (label in lexicon.RELATIVES and _surname_follows(text, toks, i))
        elif label in lexicon.VOUCHING_LABELS or label in lexicon.RELATIVES:
            ok = t.first or (not t.word and len(t.text) >= 3)        # "daughter summer"
        elif label in ("patient", "pt", "name", "patient name", "pt name"):
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            ok = _lower_name(t) or ((0 < t.surname_rank <= 20000 or not t.word) and
                                    nxt is not None and _gap(text, t, nxt) == ", " and
                                    (nxt.first or not nxt.word))           # WRIGHT, SANDY
        else:
            ok = _lower_name(t)
        if ok:
            _take_forward(text, toks, veto, name, i, strict=True, first_ok=True,
                          comma_first=label in ("patient", "pt", "name", "patient name", "pt name"))


def _surname_follows(text: str, toks, i: int) -> bool:
    """A capitalised word in no word list follows token i: "granddaughter Temperance
    Goodenough" is a given name that is also a word, then the family name."""
    nxt = toks[i + 1] if i + 1 < len(toks) else None
    return nxt is not None and nxt.cap and not nxt.word and not _abbreviation(nxt) and \
        _gap(text, toks[i], nxt) == " "


def _header_label(text: str, label: _Tok, t: _Tok) -> bool:
    """The label starts its line and a colon follows it: a header field (From:, To:, Cc:)."""
    line_start = text.rfind("\n", 0, label.start) + 1
    return not text[line_start:label.start].strip() and \
        text[label.end:t.start].lstrip().startswith(":")


_RARE_SURNAME = 20000     # census rank past which an English word is read as the word
_LABEL_GAP = re.compile(r"\.?[ \t]*[:,-]?\s{0,4}")
_LABEL_SET = frozenset(w.replace("-", " ") for w in lexicon.LABEL_WORDS)
_LABEL_LAST_WORDS = frozenset(w.split(" ")[-1] for w in _LABEL_SET)


def _label_before(text: str, toks, i: int) -> str | None:
    """The longest label phrase (1-3 words) ending right before token i, or None."""
    gap = text[toks[i - 1].end:toks[i].start]
    if not _LABEL_GAP.fullmatch(gap):
        return None
    best = None
    words = []
    for k in range(i - 1, max(-1, i - 4), -1):
        if k < i - 1 and not text[toks[k].end:toks[k + 1].start].isspace():
            break
        words.insert(0, toks[k].lower.replace("-", " "))
        phrase = " ".join(words)
        if phrase in _LABEL_SET:
            best = phrase
    return best


def _dictionary(text, toks, veto, name) -> None:
    n = len(toks)
    for i, t in enumerate(toks):
        if veto[i] or name[i] or _function(t) or len(t.text) < 2:
            continue
        in_list = t.first or t.surname_rank > 0
        nxt = toks[i + 1] if i + 1 < n and _gap(text, t, toks[i + 1]) in (" ", ", ") else None
        if t.cap and (_abbreviation(t) or (t.text.isupper() and len(t.text) <= 4)):
            continue            # "PEG", "AMY": short capitals need context, not just a list
        if t.cap:
            prev = toks[i - 1] if i else None
            if t.lower in lexicon.PEOPLES:
                pass                      # "(Spanish)": a name only by context or a pair
            elif in_list and not t.word:
                name[i] = True
            elif in_list and not (t.word and t.text.isupper()) and \
                    not _sentence_start(text, toks, i) and prev is not None and \
                    (not prev.cap or name[i - 1] or (not prev.word and not veto[i - 1])) and \
                    text[t.end:t.end + 1] != ":" and t.lower not in lexicon.FUNCTION_WORDS:
                name[i] = True            # a capital inside a lower-case sentence
            if t.first and nxt is not None and nxt.cap and not veto[i + 1] and \
                    not _function(nxt) and not _abbreviation(nxt) and \
                    (not nxt.word or nxt.surname_rank):
                name[i] = name[i + 1] = True  # "Maria Ketterman", "Frank Brown", "Will Nguyen"
        else:
            if in_list and not t.word and len(t.text) >= 3 and \
                    (t.first or t.surname_rank <= 30000):
                name[i] = True
            if t.first and t.lower not in lexicon.LOWER_AMBIGUOUS_FIRST and nxt is not None and \
                    not nxt.cap and not veto[i + 1] and nxt.lower not in lexicon.FUNCTION_WORDS and \
                    0 < nxt.surname_rank <= 20000:
                name[i] = name[i + 1] = True  # "john smith" in dictation
        if t.cap and t.first and _sentence_start(text, toks, i) and \
                _REPORTING_VERB.match(text, t.end):
            name[i] = True                # "Dawn reports chest pain"
    # "Hill, Dylan": a census surname before ", <given name>"
    for i, t in enumerate(toks[:-1]):
        nxt = toks[i + 1]
        if not name[i] and not veto[i] and t.cap and t.surname_rank and name[i + 1] and \
                nxt.first and _gap(text, t, nxt) == ", ":
            name[i] = True
    # a name next to a capitalised unknown word takes it along ("Ketterman, Maria")
    for i, t in enumerate(toks):
        if not name[i]:
            continue
        for j in (i - 1, i + 1):
            if 0 <= j < n and not name[j] and not veto[j] and toks[j].cap and \
                    not toks[j].word and not _function(toks[j]) and \
                    not _abbreviation(toks[j]):
                a, b = (toks[j], t) if j < i else (t, toks[j])
                if _gap(text, a, b) in (" ", ", "):
                    name[j] = True


def _propagate(text, toks, veto, name) -> None:
    """Other mentions of a name found with evidence; a sentence-initial word is left alone
    ("Rose to 38.9" in the note of a patient called Rose)."""
    found = {t.lower for t, is_name in zip(toks, name) if is_name and len(t.text) > 1}
    for i, t in enumerate(toks):
        if name[i] or veto[i] or t.lower not in found or not (t.cap or not t.word):
            continue
        if t.word and _sentence_start(text, toks, i) and not (
                (i + 1 < len(toks) and name[i + 1]) or t.possessive or
                _PERSON_VERB.match(text[t.end:t.end + 20])):
            continue
        name[i] = True
    # "Mbeki (pharmacy) and Frost": a census name joined to a name by "and" / "or" / "&"
    for i, t in enumerate(toks):
        if not name[i] and not veto[i] and t.cap and (t.first or t.surname_rank or not t.word) and \
                not _abbreviation(t) and _AND_BEFORE.search(text[t.start - 6:t.start]):
            window = text[max(0, t.start - 30):t.start]
            if any(name[j] and toks[j].end > t.start - 30 for j in range(max(0, i - 6), i)) and \
                    "\n" not in window:
                name[i] = True
    # 'Marcus "Mookie" Tillery': a quoted capitalised word between two names is a nickname
    for i in range(1, len(toks) - 1):
        if not name[i] and name[i - 1] and name[i + 1] and toks[i].cap and \
                _gap(text, toks[i - 1], toks[i]) in _NICKNAME_OPEN and \
                _gap(text, toks[i], toks[i + 1]) in _NICKNAME_CLOSE:
            name[i] = True


_NICKNAME_OPEN = frozenset([' "', " '", " \u201c", " ("])
_NICKNAME_CLOSE = frozenset(['" ', "' ", "\u201d ", ") "])


_REPORTING_VERB = re.compile(r"\s+(?:reports|reported|states|stated|says|said|denies|denied|"
                             r"complains|presents|presented|notes|endorses|describes|admits|"
                             r"agrees|declined|lives|returns|returned|underwent)\b")
_PERSON_VERB = re.compile(r"^\s+(?:is|was|has|had|reports|reported|states|stated|says|said|"
                          r"denies|denied|presents|presented|lives|lived|returns|returned|notes|"
                          r"complains|underwent|will|would|called|came|comes|feels|felt|"
                          r"tolerated|agrees|agreed|declined|understands|requests|wants|arrived|"
                          r"went|did|does|and|who|continues|remains|appears|describes|asks|asked|"
                          r"wishes|wished|prefers|preferred|knows|knew|visits|visited)\b", re.I)


_TITLE_BEFORE = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|DR|MR|MRS|MS|dr|mr|mrs|ms)\.?[ ]{1,2})$")
_CREDENTIAL_AFTER = re.compile(r",?[ ]{1,2}(?:M\.D\.|D\.O\.|Ph\.D\.|R\.N\.|N\.P\.|PA-C|FNP-C|MD|DO|RN|NP|"
                               r"PA|PhD|DDS|DMD|DVM|LPN|CRNA|LCSW|PharmD|MBBS|DNP|APRN|FNP)"
                               r"(?![\w-])(?:,?[ ]?(?:MD|PhD|FACC|FACS|FACP|MPH|MBA|MS))*")


# A name span split into (title, name, credentials), for replacements that keep the first and last.
TITLE_CREDENTIAL = re.compile(r"((?:(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|DR|MR|MRS|MS|dr|mr|mrs|ms)\.?[ ]{1,2})?)"
                              r"(.+?)(" + _CREDENTIAL_AFTER.pattern + r")?", re.S)


def _with_title_and_credential(text: str, s: int, e: int) -> list[int]:
    """Widen a name span over the title before it and the credentials after it: gold
    annotations differ on whether "Dr." / ", MD" belong to the name, and a span that covers
    them is never wrong about the name itself. Replacement keeps them verbatim."""
    m = _TITLE_BEFORE.search(text, max(0, s - 6), s)
    if m:
        s = m.start()
    m = _CREDENTIAL_AFTER.match(text, e)
    if m:
        e = m.end()
    return [s, e]


def _merge(text, toks, name, blocked) -> list[tuple[int, int, str]]:
    spans: list[list[int]] = []
    prev = None
    for t, is_name in zip(toks, name):
        if not is_name:
            continue
        gap = text[spans[-1][1]:t.start] if spans else ""
        if spans and _INITIAL_GAP.fullmatch(gap) and ("." not in gap or _is_initial(prev)):
            spans[-1][1] = t.end
        else:
            spans.append([t.start, t.end])
        prev = t
    spans = [_with_title_and_credential(text, s, e) for s, e in spans]
    blocked = sorted(blocked)
    starts = [b[0] for b in blocked]
    out = []
    for s, e in spans:
        k = bisect.bisect_right(starts, s) - 1      # the last blocked span starting at or before s
        inside = False
        while k >= 0 and not inside:
            inside = blocked[k][1] >= e
            k = k - 1 if blocked[k][0] == s else -1
        if not inside:
            out.append((s, e, "NAME"))
    return out
