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
from itertools import accumulate, compress
from operator import attrgetter, not_

from megamed.data.deid import gates, lexicon, native

# Letters in any script ("José Núñez"); apostrophes and hyphens inside a name.
_TOKEN = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_TOKEN_SPLIT = re.compile("(" + _TOKEN.pattern + ")")      # gap, token, gap, ..., gap
# the same on ASCII text, 3x faster (no Unicode category lookups; ’ is not ASCII)
_TOKEN_SPLIT_ASCII = re.compile(r"([A-Za-z]+(?:['-][A-Za-z]+)*)")
_DOSE_AFTER = re.compile(r"\s*\d+(?:\.\d+)?\s*(?:mg|mcg|g|ml|units?|meq|mmol|%|tabs?|puffs?)\b",
                         re.I)

_SENTENCE_BREAK = re.compile(r"[.!?:;\n•*>|(\[\"]|\d|^\s*-|\s\s")

_DIGIT_BEFORE = re.compile(r"\d\s*$")
_DIGIT_AFTER = re.compile(r"\W{0,3}\d")
_AND_BEFORE = re.compile(r"\b(?:and|or|&)\s+$")
_INITIAL_GAP = re.compile(r"[ .]{0,2}")
# text[end:end + 3].lstrip(" ,") starts with a digit (on the gap after the token: the text
# after a gap shorter than that is the next token's letters; the usual gap, " ", never matches)
_DIGIT_FOLLOWS = re.compile(r"[ ,]{0,2}\d")


class _GapTest(dict):
    """gap -> test(gap), computed on first sight (gaps repeat): a pass lists the tokens next
    to the gaps that pass with one map() at C speed."""
    def __init__(self, test):
        super().__init__()
        self.test = test

    def __missing__(self, gap: str) -> bool:
        if len(self) >= 1 << 16:
            self.clear()
        v = self[gap] = bool(self.test(gap))
        return v


_DIGIT_GAP = _GapTest(_DIGIT_FOLLOWS.match)


class _Word:
    """What the lexicon says about one token's text: a function of the text alone, so built once
    per distinct text and shared by its every occurrence (positions live in _Doc).
    The fields after `length` are the per-token tests of the rules, precomputed."""
    __slots__ = ("text", "lower", "cap", "word", "first", "surname_rank", "possessive", "length",
                 "kind", "function", "abbreviation", "initial", "lower_name", "label_end",
                 "may_veto", "no_verdict", "veto_call", "veto_head", "facility_head", "title_rule", "relation_rule", "dictionary_rule", "joins_name",
                 "and_rule", "and_end", "credential_shape", "kin", "place_cue", "field_label", "column_head", "cue")

    def __init__(self, text, lower, cap, word, first, surname_rank, possessive, length):
        self.text, self.lower, self.cap, self.word = text, lower, cap, word
        self.first, self.surname_rank, self.possessive, self.length = \
            first, surname_rank, possessive, length
        self.kind = _lower_kind(lower)
        self.function = _function(self)
        self.abbreviation = _abbreviation(self)
        self.initial = _is_initial(self)
        self.lower_name = _lower_name(self)
        self.label_end = (lower.rsplit("-", 1)[-1] if "-" in lower else lower) in _LABEL_LAST_WORDS
        # which tokens each pass can act on at all (the rest it skips without a look)
        self.may_veto = cap or not word or first or bool(surname_rank)
        # (_vetoes: the word says nothing about a veto / its veto takes the rules)
        self.no_verdict = self.may_veto and self.kind == _NO_VERDICT
        self.veto_call = self.may_veto and self.kind not in (_NO_VERDICT, _ALWAYS)
        self.facility_head = lower in lexicon.FACILITY_HEADS or lower in lexicon.SCORE_HEADS or \
            lower in lexicon.TEST_HEADS or lower in lexicon.ORGANISATION_HEADS
        # a veto rule looks at the token before it (a facility word: the 3 before, _far_veto)
        self.veto_head = lower in lexicon.EPONYM_HEADS or lower in lexicon.EPONYM_VETO_HEADS or \
            self.facility_head
        # (a credential's shape: the last rule of _titles_and_credentials)
        self.credential_shape = (text[0].isupper() and (text.isupper() or
                                                        text in _MIXED_CREDENTIALS)) or \
            lower in ("md", "rn", "np")
        self.title_rule = lower in lexicon.TITLES or text in _ROLE_BEFORE or self.credential_shape
        named = first or surname_rank or not word
        self.relation_rule = cap and named and not self.function and not self.abbreviation
        self.dictionary_rule = not self.function and len(text) >= 2 and \
            (first or surname_rank > 0) and \
            not (cap and (self.abbreviation or (text.isupper() and len(text) <= 4)))
        self.joins_name = cap and not word and not self.function and not self.abbreviation
        self.and_rule = cap and named and not self.abbreviation
        self.and_end = lower.endswith(("and", "or"))     # (may end an _AND_BEFORE: "and", "or")
        self.kin = lower in lexicon.RELATIVES
        self.place_cue = text in _PLACE_CUES or lower in lexicon.ORGANISATIONS
        self.field_label = lower in _FIELD_WORDS
        self.column_head = lower in _COLUMN_WORDS
        # any of the four above: find_names lists these tokens once for their rules
        self.cue = self.kin or self.place_cue or self.field_label or self.column_head


class _Doc:
    """The tokens of one text: toks[i] (a shared _Word), its span start[i]:end[i], and
    gap[k], the text between token k-1 and token k (gap[0] before the first, gap[n] after
    the last)."""
    __slots__ = ("text", "toks", "start", "end", "gap")


_SHOUTED_LINE = re.compile(r"^[^a-z\n]*[A-Z]{2}[^a-z\n]*$", re.M)


def _uncased_regions_python(text: str) -> list[tuple[int, int]]:
    """Lines written all in capitals: there a capital letter says nothing about a name."""
    return [m.span() for m in _SHOUTED_LINE.finditer(text)
            if sum(map(str.isalpha, m.group(0))) >= 24]


# csrc/deid_scan.cpp's transcriptions for ASCII text, where the extension is built
_native_uncased = native.function("deid_uncased_regions", "uncased_regions", _SHOUTED_LINE,
                                  _uncased_regions_python)
_split_ascii = native.function("deid_split_tokens", "split_tokens", _TOKEN_SPLIT_ASCII) or \
    _TOKEN_SPLIT_ASCII.split


def _token_parts_python(text: str) -> tuple[list[str], list[str], list[int], list[int]]:
    """(gaps, tokens, starts, ends) of one split of the text (C speed): gap k before token k,
    the last gap after the last token; positions from the running sum of the part lengths."""
    parts = _split_ascii(text) if text.isascii() else _TOKEN_SPLIT.split(text)
    bounds = list(accumulate(map(len, parts)))
    return parts[0::2], parts[1::2], bounds[0:-1:2], bounds[1::2]


# the same lists built in C++ from the token bounds (ASCII text)
_native_parts = native.function("deid_token_parts", "token_parts", _TOKEN_SPLIT_ASCII,
                                _token_parts_python)


def _uncased_regions(text: str) -> list[tuple[int, int]]:
    if _native_uncased is not None and text.isascii():
        return _native_uncased(text)
    return _uncased_regions_python(text)


def _tokens(text: str) -> _Doc:
    """One split of the text into gaps and tokens (_token_parts_python), token texts looked
    up in the _Word cache."""
    if _native_parts is not None and text.isascii():
        gaps, raw, starts, ends = _native_parts(text)
    else:
        gaps, raw, starts, ends = _token_parts_python(text)
    toks = list(map(_TOKEN_INFO.get, raw))
    if None in toks:
        toks = [w or _token_info(t) for w, t in zip(toks, raw)]
    d = _Doc()
    d.text, d.toks, d.start, d.gap, d.end = text, toks, starts, gaps, ends
    fix = []
    if "'" in text or "’" in text:                      # "Smith's": the token ends before 's
        fix = list(compress(range(len(toks)), map(attrgetter("possessive"), toks)))
        for k in fix:
            d.end[k] = d.start[k] + toks[k].length
    shouted = _uncased_regions(text) if text.isupper() or "\n" in text else []
    for a, b in shouted:
        for k in range(bisect.bisect_left(d.start, a), bisect.bisect_left(d.start, b)):
            if len(raw[k]) > 1:
                toks[k] = _shouted_word(raw[k])
                d.end[k] = d.start[k] + len(raw[k])
                fix.append(k)
    for k in fix:
        d.gap[k + 1] = text[d.end[k]:d.start[k + 1] if k + 1 < len(toks) else len(text)]
    return d


def _shouted_word(t: str) -> _Word:
    """A token on an all-capitals line, read as lower case."""
    w = _SHOUTED_INFO.get(t)
    if w is None:
        words, first, ranks = lexicon.english_words(), lexicon.first_names(), lexicon.surname_rank()
        low = t.lower()
        parts = low.split("-")
        named = len(parts) == 1 or any((p in first or p in ranks) and p not in words
                                       for p in parts)
        is_first = named and any(p in first for p in parts)
        rank = min((ranks[p] for p in parts if p in ranks), default=0) if named else 0
        if not (is_first or rank) and low not in words:      # "ADAEZE": the world lists
            is_first, rank = _world_name(low)
        if low in lexicon.places():
            is_first, rank = False, 0
        w = _Word(t, low, False, low in words or low in lexicon.places(), is_first, rank, False, len(t))
        # next to a name, a word in no list joins it as a capitalised one would ("ADAEZE
        # NWACHUKWU"; capitals say nothing on such a line)
        w.joins_name = not w.word and not w.function and len(t) > 2 and \
            low not in lexicon.CLINICAL_ABBREVIATIONS
        if len(_SHOUTED_INFO) >= 1 << 17:
            _SHOUTED_INFO.clear()
        _SHOUTED_INFO[t] = w
    return w


# letters that NFKD leaves whole ("Łukasz", "Bjørn", "Sigurðardóttir")
_UNDECOMPOSED = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "æ": "ae",
                               "œ": "oe", "ß": "ss", "ı": "i"})


def _token_info(t: str) -> _Word:
    """What the lexicon says about one token (a function of its text alone, so memoised)."""
    words, first, ranks = lexicon.english_words(), lexicon.first_names(), lexicon.surname_rank()
    original, e = t, len(t)
    possessive = False
    low = t.lower()
    if not low.isascii():                          # josé -> jose for the census lists
        low = "".join(c for c in unicodedata.normalize("NFKD", low)
                      if not unicodedata.combining(c)).translate(_UNDECOMPOSED)
    key = low
    if "'" in t or "’" in t:
        if low.endswith(("'s", "’s")) and len(t) > 2:
            possessive, t, e, low = True, t[:-2], e - 2, low[:-2]
        key = low.replace("'", "").replace("’", "")     # O'Brien -> obrien (census)
    is_first, rank = key in first, ranks.get(key, 0)
    cap = t[0].isupper()
    contraction = ("'" in t or "’" in t) and bool(_CONTRACTION.search(t))
    if contraction:
        is_first, rank = False, 0              # "I'm", "We'll": a pronoun, not "I. M."
    if cap and not (is_first or rank) and not (len(t) <= 4 and t.isupper()):
        is_first, rank = _world_name(key)        # (not "UA", "LI": short capitals are acronyms)
    word = low in words or low in lexicon.FOREIGN_FUNCTION_WORDS or \
        (low in lexicon.foreign_words() and (not cap or not (is_first or 0 < rank <= 3000))) or \
        contraction
    if "-" in key and not (is_first or rank) and \
            (all(p[:1].isupper() for p in t.split("-")) or    # Nakamura-Lee, Mary-Kate
             all((p in first or p in ranks) and len(p) > 2 for p in key.split("-"))):
        # (lower case: every part a census name, as in dictation's "abernathy-cole", not "co-pay")
        parts = key.split("-")
        if any((p in first or p in ranks) and p not in words for p in parts):
            is_first = any(p in first for p in parts)
            rank = min((ranks[p] for p in parts if p in ranks), default=0)
    if "-" in t and t.isupper() and any(p in words and p not in first and p not in ranks
                                        for p in key.split("-")):
        is_first, rank = False, 0                # "AM-PAC", "HAS-BLED": an acronym
    if "-" in t and cap and not word and \
            any(p[:1].islower() and p.lower() in words for p in t.split("-")[1:]):
        word, is_first, rank = True, False, 0    # "Ex-husband", "AM-PAC" stays no name
    if "-" in t and cap and not word and any(p[:1].islower() for p in t.split("-")[1:]) and \
            not _romanised_given(t):
        word, is_first, rank = True, False, 0    # "Webster-pak", "Medi-span": a brand or word
    if key in lexicon.places():
        word, is_first, rank = True, False, 0   # "Louisiana plate", "crossing from Sonora"
    if "-" in t and cap and not is_first and _romanised_given(t):
        # "Ji-woo", "Seo-Yeon", "Shu-fen": a given name; one that has an English word in it
        # ("Ji-woo") needs support as Hope or Will does (a surname after it, a label)
        is_first, word = True, any(p in words for p in key.split("-"))
    info = _Word(original[:e], low, cap, word, is_first, rank, possessive, e)
    if len(_TOKEN_INFO) >= 1 << 17:     # bounded: a corpus of odd tokens must not grow it forever
        _TOKEN_INFO.clear()
    _TOKEN_INFO[original] = info
    return info


_CONTRACTION = re.compile(r"['’](?:m|ll|re|ve|d|t)$", re.I)


def _romanised_given(t: str) -> bool:
    """Two syllables of romanised Korean or Chinese joined by a hyphen, the first capitalised,
    the second all lower case or capitalised too ("Ji-woo", "Min-Jun", "Chia-hui")."""
    parts = t.split("-")
    if len(parts) != 2 or not (parts[1].islower() or parts[1].istitle()) or \
            not parts[0].istitle():
        return False
    syllables = lexicon.romanised_syllables()
    return parts[0].lower() in syllables and parts[1].lower() in syllables


# census rank given to a surname of the world lists: rarer than any census rank, so that
# lower-case text never takes one for a name without a cue
_WORLD_RANK = 100000


def _world_name(key: str) -> tuple[bool, int]:
    """(given name?, surname rank) from the world lists for a capitalised token ("Ngozi",
    "Wiśniewski", "Adeyemi") that the census lists lack; hyphenated parts count too, unless one
    is an English word ("AM-PAC")."""
    world_first, world_last = lexicon.world_first_names(), lexicon.world_surnames()
    parts = key.split("-") if "-" in key else (key,)
    if len(parts) > 1 and any(p in lexicon.english_words() for p in parts):
        return False, 0
    return (any(p in world_first for p in parts),
            _WORLD_RANK if any(p in world_last for p in parts) else 0)


_TOKEN_INFO: dict[str, _Word] = {}
_SHOUTED_INFO: dict[str, _Word] = {}


def _indices(toks: list[_Word], flag: str, first: int = 0):
    """The indices i >= first whose token has `flag` (at C speed)."""
    return compress(range(first, len(toks)), map(attrgetter(flag), toks[first:]))


def find_names(text: str, blocked: list[tuple[int, int]] = ()) -> list[tuple[int, int, str]]:
    """Spans (start, end, 'NAME'): adjacent name tokens and their initials merged."""
    d = _tokens(text)
    n = len(d.toks)
    if not n:
        return []
    toks = d.toks
    veto = _vetoes(d)
    cues = list(_indices(toks, "cue"))        # (one pass for the four rules that need one)
    _kinship_vetoes(d, veto, cues)
    _place_vetoes(d, veto, cues)
    name = [False] * n
    _titles_and_credentials(d, veto, name)
    _labels(d, veto, name)
    _signature_marks(d, veto, name)
    _fields(d, veto, name, cues)
    _name_columns(d, name, cues)
    _dictionary(d, veto, name)
    _propagate(d, veto, name)
    _initial_before(d, name)
    _particles(d, name)
    _reference_initials(d, name)
    _closing_initials(d, name)
    return _merge(d, name, blocked)


def _vetoes(d: _Doc) -> list[bool]:
    """veto[i] for every token. Only tokens that could be a name get the (slower) veto rules:
    a lower-case English word in no name list is never a name. A token whose word says
    nothing (no_verdict) has no veto, what _vetoed says without the call, unless a veto head
    follows it, a digit follows closely, or a facility word comes 2-3 after it (_far_veto):
    those and the tokens whose word needs the rules (veto_call) get _vetoed, the rest are
    settled at C speed."""
    toks, n = d.toks, len(d.toks)
    veto = list(map(not_, map(attrgetter("no_verdict"), toks)))
    ask = _far_veto(toks)
    ask.update([k - 1 for k in _indices(toks, "veto_head", 1)])
    ask.update(compress(range(n), map(_DIGIT_GAP.__getitem__, d.gap[1:])))
    ask = [i for i in ask if 0 <= i < n and toks[i].no_verdict]
    ask.extend(_indices(toks, "veto_call"))
    for i in ask:                           # (_vetoed reads no veto: any order)
        veto[i] = _vetoed(d, i)
    return veto


def _kinship_vetoes(d: _Doc, veto, cues) -> None:
    """A kinship word is the label of a name, not part of it: "nan", "son" in lower case, and
    "Son Will", "Mother Rosa" where a capitalised word follows (a kinship word that is no
    English word stays a possible name there: "Nana Mensah")."""
    toks, gap = d.toks, d.gap
    n = len(toks)
    for i in cues:
        if not toks[i].kin:
            continue
        t = toks[i]
        if not t.cap or (t.word and i + 1 < n and toks[i + 1].cap and gap[i + 1] == " "):
            veto[i] = True


# "the" before a given name and a surname, "St." / "Saint" / "Mount" / "Fort" before a
# capitalised word: a place named after a person ("the John Radcliffe", "Providence St.
# Vincent", "Mount Sinai")
_PLACE_CUES = frozenset(["the", "St", "ST", "Saint", "Ste", "Sainte", "Mount", "Mt", "Fort",
                         "Ft", "Port"])


def _place_vetoes(d: _Doc, veto, cues) -> None:
    toks, gap = d.toks, d.gap
    n = len(toks)
    for i in cues:
        if not toks[i].place_cue or i + 1 >= n or not toks[i + 1].cap:
            continue
        if toks[i].lower in lexicon.ORGANISATIONS:
            if gap[i + 1] == " " and not toks[i + 1].first:
                veto[i + 1] = True           # a maker's product: "Hill-Rom Centrella bed"
        elif toks[i].text == "the":
            if toks[i + 1].first and gap[i + 1] == " " and i + 2 < n and toks[i + 2].cap and \
                    gap[i + 2] == " ":
                veto[i + 1] = veto[i + 2] = True
        elif gap[i + 1] in (" ", ". ") and not toks[i + 1].kin and \
                not (i and toks[i - 1].cap and not toks[i - 1].word and gap[i] == " "):
            veto[i] = veto[i + 1] = True    # (not the surname of "Percival St. John Ashdown")


_SIGNATURE_MARK = re.compile(r"(?:^|\n)[ \t]*(?:--+|\u2014|\u2013|/s/)[ \t]*(?=[^\W\d_])")
# the same after a newline, and at the start of the text: a literal first char makes the scan
# fast (_SIGNATURE_MARK tries its alternation at every position)
_SIGNATURE_MARK_NEWLINE = re.compile(_SIGNATURE_MARK.pattern.replace(r"(?:^|\n)", r"\n", 1))
_SIGNATURE_MARK_START = re.compile(_SIGNATURE_MARK.pattern.replace(r"(?:^|\n)", "", 1))


def _signature_mark_ends(text: str) -> list[int]:
    """[m.end() for m in _SIGNATURE_MARK.finditer(text)]: a mark at the very start (which has
    no newline in it), then those after a newline."""
    m = _SIGNATURE_MARK_START.match(text)
    return ([m.end()] if m else []) + [m.end() for m in _SIGNATURE_MARK_NEWLINE.finditer(text)]


_SIGNATURE_GATE = gates.literals("--", "/s/", "\u2014", "\u2013")


def _signature_marks(d: _Doc, veto, name) -> None:
    """A line that starts with "--", a dash or "/s/" and then a name: a signature
    ("-- A. Kowalczyk", "/s/ R. Patel"). Looked for only where such a mark occurs."""
    text = d.text
    if not _SIGNATURE_GATE(text):
        return
    toks = d.toks
    for end in _signature_mark_ends(text):
        i = bisect.bisect_left(d.start, end)
        if i >= len(toks) or d.start[i] != end:
            continue
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.initial and text[d.end[i]:d.end[i] + 1] == "." and nxt is not None and nxt.cap:
            _take_forward(d, veto, name, i, strict=True)
        elif t.cap and not veto[i] and not t.function and not t.abbreviation and \
                (t.first or not t.word) and nxt is not None and nxt.cap and \
                d.gap[i + 1] == " " and (nxt.surname_rank or not nxt.word):
            _take_forward(d, veto, name, i, strict=True, first_ok=True)


# Name fields of structured text. HL7 / DICOM person names: FAMILY^GIVEN^MIDDLE, maybe after an
# ID component ("HOLLOWAY^MAXINE^R", "1234^SMITH^JOHN^^^DR").
_CARET_NAME = re.compile(r"(?<![\w^])(?:[\w-]*\d[\w-]*\^)?([^\W\d_][^\W\d_' -]*(?:['’ -][^\W\d_]+)*)"
                         r"\^([^\W\d_][^\W\d_'’ -]*)((?:\^[^\W\d_]*)*)")
# "Surname, Given" or "Surname, I." alone in a quoted CSV cell
# (a literal first: the scan is fast; the cell must start the line or follow a delimiter)
_QUOTED_NAME = re.compile(r'"([^\W\d_][^",\n]{0,40}), ([^\W\d_][^",\n]{0,40})"')
# a log's user field ("operator=jmorales", "user: kbaptiste"): the label's token, then
_USER_WORDS = frozenset("user username userid operator author login tech".split())
_USER_VALUE = re.compile(r"[=:] ?([a-z][a-z.]{3,20})\b")
_NOT_USERS = frozenset("admin administrator system root service interface auto guest none null "
                       "unknown batch".split())
# labels of one part of a name ("Given names: Aroha Mere", "Surname: TE HIRA", "MI: E")
# (looked for only where a token that ends such a label stands: _FIELD_WORDS)
_NAME_PART_LABEL = re.compile(r"(?:^|(?<=[\s|]))(?:given names?(?:\(s\))?|first names?|first|forenames?|"
                              r"surname|last names?|last|family names?|middle names?|"
                              r"middle initial|mi|nombres?|apellidos?|pr[ée]noms?|nom de famille|"
                              r"vorname|nachname)[ \t]*:[ \t]*", re.I)
_FIELD_END = re.compile(r"[ \t]{2,}|\t|\n|$|[ \t]*\|")
# a message signed with a dash at the end of its line ("... at 10:00. -KB", "-Ivy")
_DASH_SIGNATURE = re.compile(r"-[ \t]?([A-Z][A-Za-z]{1,11})[ \t]*$", re.M)
# the line that introduces a quoted e-mail: its author's name before "wrote:"
_QUOTE_HEADER = re.compile(r"[> \t]*On [^\n]{3,80}?,\s+((?:[^\W\d_][\w.'’-]*\s){0,3}"
                           r"[^\W\d_][\w'’-]*)\s*(?:<[^>\n]*>\s*)?wrote:")
_FIELD_WORDS = _USER_WORDS | frozenset("""name names first last surname forename forenames mi
initial nombre nombres apellido apellidos prenom prenoms famille vorname nachname""".split())


def _mark_chars(d: _Doc, name, s: int, e: int) -> None:
    """Every token inside text[s:e] is a name."""
    for k in range(bisect.bisect_left(d.start, s), bisect.bisect_left(d.start, e)):
        name[k] = True


def _token_at(d: _Doc, s: int):
    k = bisect.bisect_left(d.start, s)
    return k if k < len(d.toks) and d.start[k] == s else None


def _fields(d: _Doc, veto, name, cues) -> None:
    """Names that the structure of the text marks, whatever the words: HL7 caret names, quoted
    CSV "Surname, Given" cells, log user fields, name-part labels, dash signatures."""
    text, toks = d.text, d.toks
    if "^" in text:
        for m in _CARET_NAME.finditer(text):
            family, given = m.group(1).split(), m.group(2).split()
            fk, gk = _token_at(d, m.start(1)), _token_at(d, m.start(2))
            if fk is None or gk is None or not family or not given:
                continue
            fk = bisect.bisect_left(d.start, m.end(1)) - 1     # the family name's last word
            f, g = toks[fk], toks[gk]
            if (g.first or (not g.word and len(g.text) > 2)) and (f.surname_rank or not f.word) \
                    and not veto[gk] and not veto[fk] and \
                    g.lower not in lexicon.CLINICAL_ABBREVIATIONS and \
                    f.lower not in lexicon.CLINICAL_ABBREVIATIONS:
                _mark_chars(d, name, m.start(1), m.end())
    if '"' in text:
        for m in _QUOTED_NAME.finditer(text):
            fk, gk = _token_at(d, m.start(1)), _token_at(d, m.start(2))
            if fk is None or gk is None or "," in m.group(1) or \
                    (m.start() and text[m.start() - 1] not in ",;\t\n"):
                continue
            f, g = toks[fk], toks[gk]
            if f.cap and g.cap and not veto[fk] and not f.abbreviation and \
                    (f.surname_rank or not f.word) and (g.first or g.initial or not g.word) and \
                    len(m.group(1).split()) <= 3 and len(m.group(2).split()) <= 3:
                _mark_chars(d, name, m.start(1), m.end(2))
    for i in cues:
        if not toks[i].field_label:
            continue
        e = d.end[i]
        if text[e:e + 1] in ("=", ":") and toks[i].lower in _USER_WORDS:
            m = _USER_VALUE.match(text, e)
            k = _token_at(d, m.start(1)) if m else None
            t = toks[k] if k is not None else None
            if t is not None and not t.word and t.lower not in _NOT_USERS and \
                    t.lower not in lexicon.CLINICAL_ABBREVIATIONS and t.kind != _ALWAYS:
                name[k] = True
        elif ":" in text[e:e + 5]:
            for k in range(max(0, i - 2), i + 1):     # the longest label first
                m = _NAME_PART_LABEL.match(text, d.start[k])
                if m and m.end() > e:
                    _name_part(d, veto, name, m)
                    break
    k = text.find(" wrote:")
    while k >= 0:                           # '> On Tue, 3 Mar 2026, Anan Chaiyasit wrote:'
        m = _QUOTE_HEADER.match(text, text.rfind("\n", 0, k) + 1, k + 7)
        if m and all(w[0].isupper() or w.lower() in lexicon.PARTICLES
                     for w in m.group(1).split()):
            _mark_chars(d, name, m.start(1), m.end(1))
        k = text.find(" wrote:", k + 7)
    if "-" in text:
        for m in _DASH_SIGNATURE.finditer(text):
            k = _token_at(d, m.start(1))
            t = toks[k] if k is not None else None
            if t is None or veto[k] or (m.start() and text[m.start() - 1] not in " \t\n."):
                continue
            if (t.text.isupper() and len(t.text) <= 3 and not t.word and
                    t.lower not in lexicon.CLINICAL_ABBREVIATIONS) or \
                    (t.cap and t.first and not t.text.isupper()):
                name[k] = True


# Columns of a table (pipe, comma or tab separated) whose header names people
_NAME_COLUMNS = frozenset("""patient|patient name|pt name|full name|initials|subject initials|
patient initials|pt initials|provider|physician|operator|user|staff|nurse|clinician|author|
attending|ordering provider|referring physician|next of kin|guardian|caller|signed by|tech|
technologist|radiologist|surgeon|contact name|name|names""".replace("\n", "").split("|"))
_COLUMN_WORDS = frozenset(w for h in _NAME_COLUMNS for w in h.split())
# a bare "Name" column names people when the header also has a person's other fields
PERSON_COLUMNS = frozenset("""dob|date of birth|birth date|mrn|age|sex|gender|phone|ssn|
patient id|pt id|room|bed|subject id|subject|address""".replace("\n", "").split("|"))
_NAME_CELL = re.compile(r"[^\W\d_][^\d@/\\:;=<>#|]{0,60}")
_NULL_CELLS = frozenset("n/a na none unknown pending tbd nil".split())
def _beside_delimiter(gap: str) -> bool:
    return "|" in gap or "," in gap or "\t" in gap or "\n" in gap


def _cells(line: str, delim: str) -> list[tuple[int, int]]:
    """(start, end) of each cell of a table row; a comma or tab inside double quotes is no
    delimiter."""
    if delim == "|" or '"' not in line:         # (at C speed: no quotes to honour)
        ends = list(accumulate(len(c) + 1 for c in line.split(delim)))
        return [(b - n - 1, b - 1) for b, n in zip(ends, map(len, line.split(delim)))]
    out, start, quoted = [], 0, False
    for k, c in enumerate(line):
        if c == '"' and delim != "|":
            quoted = not quoted
        elif c == delim and not quoted:
            out.append((start, k))
            start = k + 1
    out.append((start, len(line)))
    return out


def _header(line: str):
    """(delimiter, cells) of a line that can be a table's header, or None."""
    for delim in ("|", "\t", ","):
        if line.count(delim) >= 2:
            return delim, _cells(line, delim)
    return None


def _name_columns(d: _Doc, name, cues) -> None:
    """The cells under a header that names people ("Initials", "patient_name", "Provider"):
    letters only, marked whatever the words ("R.K.H.", "Littlebear, Summer")."""
    text, seen = d.text, set()
    gap = d.gap
    for i in cues:
        if not d.toks[i].column_head or ":" in gap[i + 1] or \
                not (i == 0 or _beside_delimiter(gap[i]) or _beside_delimiter(gap[i + 1])):
            continue                         # (a label "Patient:", or prose: no delimiter)
        line_start = text.rfind("\n", 0, d.start[i]) + 1
        if line_start in seen:
            continue
        seen.add(line_start)
        line_end = text.find("\n", line_start)
        line_end = len(text) if line_end < 0 else line_end
        found = _header(text[line_start:line_end])
        if found is None:
            continue
        delim, heads = found
        labels = [text[line_start + a:line_start + b].strip(' "').lower().replace("_", " ")
                  for a, b in heads]
        person = any(h in PERSON_COLUMNS for h in labels)
        cols = [c for c, h in enumerate(labels) if h in _NAME_COLUMNS and
                (person or h not in ("name", "names"))]
        if cols:
            _mark_column(d, name, line_end + 1, delim, len(heads), cols)


def _mark_column(d: _Doc, name, pos: int, delim: str, width: int, cols: list[int]) -> None:
    text = d.text
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        row = text[pos:end]
        if not row.strip():
            break
        cells = _cells(row, delim)
        if abs(len(cells) - width) > 1:
            break
        for c in cols:
            if c < len(cells):
                a, b = cells[c]
                value = row[a:b].strip(' "')
                if value and _NAME_CELL.fullmatch(value) and value.lower() not in _NULL_CELLS \
                        and not set(value) <= set("-=:+ "):
                    _mark_chars(d, name, pos + a, pos + b)
        pos = end + 1


def _name_part(d: _Doc, veto, name, m) -> None:
    """The value of a name-part label up to the end of its field: capitalised words (even
    English words: "Aroha Mere"), or the middle initial."""
    text, toks = d.text, d.toks
    end = _FIELD_END.search(text, m.end()).start()
    value = text[m.end():end]
    k0 = _token_at(d, m.end())
    if k0 is None or not value or len(value) > 60:
        return
    ks = list(range(k0, bisect.bisect_left(d.start, end)))
    if m.group(0).strip(" \t:").lower() in ("mi", "middle initial"):
        if len(ks) == 1 and toks[k0].initial and toks[k0].text not in ("Y", "N"):
            name[k0] = True
        return
    if len(ks) > 4 or any(c.isdigit() for c in value) or \
            any(not (toks[k].cap or toks[k].lower in lexicon.PARTICLES) or toks[k].function or
                toks[k].kind in (_ALWAYS, _CALENDAR) for k in ks):
        return
    for k in ks:
        name[k] = True


# Dictation reference initials at the end of a line: the author's, then the typist's ("JRS/mtw")
_REFERENCE_END = re.compile(r"[ \t]*(?:$|\n)|[ \t]{2,}")


def _reference_initials(d: _Doc, name) -> None:
    toks, text = d.toks, d.text
    if "/" not in text:
        return                                  # (no "/" gap)
    for k in compress(range(len(toks)), map("/".__eq__, d.gap)):
        a, b = toks[k - 1], toks[k]
        if k and 2 <= len(a.text) <= 4 and 2 <= len(b.text) <= 4 and a.text.isupper() and \
                b.text.islower() and b.lower not in lexicon.UNITS and \
                a.lower not in lexicon.CLINICAL_ABBREVIATIONS and \
                (k < 2 or not d.gap[k - 1].endswith("/")) and _REFERENCE_END.match(text, d.end[k]):
            name[k - 1] = name[k] = True                 # (not "IU/ml", "PT/inr")


def _closing_initials(d: _Doc, name) -> None:
    """The note's last token, 2-4 capitals after a sentence or on its own line, is its
    author's initials ("... at bedside 15:20. DAL")."""
    t = d.toks[-1]
    if 2 <= len(t.text) <= 4 and t.text.isupper() and not t.word and not t.first and \
            t.lower not in lexicon.CLINICAL_ABBREVIATIONS and not d.gap[-1].strip() and \
            (". " in d.gap[-2] or "\n" in d.gap[-2]) and len(d.toks) > 1:
        name[-1] = True


def _particles(d: _Doc, name) -> None:
    """Particles between a name (or an initial) and a name are the name's ("J. de la Cruz",
    "María de los Ángeles Ochoa"); capitalised ones start it ("Van der Berg, Pieter")."""
    toks, gap = d.toks, d.gap
    if lexicon.PARTICLES.isdisjoint(map(attrgetter("lower"), toks)):
        return
    for i in [i for i in compress(range(len(toks)), name) if i and toks[i - 1].lower in
              lexicon.PARTICLES and not name[i - 1]]:
        k = i - 1
        while k >= 0 and toks[k].lower in lexicon.PARTICLES and gap[k + 1] == " " and \
                not name[k]:
            k -= 1
        if k == i - 1:
            continue
        if k >= 0 and ((name[k] and gap[k + 1] == " ") or
                       (toks[k].initial and gap[k + 1] == ". ")):
            for j in range(k, i):
                name[j] = True
        elif toks[k + 1].text.istitle() and (k < 0 or _sentence_start(d, k + 1) or
                                             not toks[k].cap):
            for j in range(k + 1, i):
                name[j] = True


_AFTER_LETTER = frozenset(["fib", "flutter", "line", "wave", "waves"])


def _initial_before(d: _Doc, name) -> None:
    """"A. Kowalczyk": an initial with its period just before a name found by any rule;
    "Marisol T.": one just after a given name (the family name's initial)."""
    toks, gap = d.toks, d.gap
    n = len(toks)
    for i in compress(range(n), name):
        if i and not name[i - 1] and toks[i - 1].initial and gap[i] == ". " and \
                not gap[i - 1][-1:].isdigit() and not gap[i - 1][-1:].isalpha():
            name[i - 1] = True
        if i + 1 < n and not name[i + 1] and toks[i + 1].initial and toks[i].first and \
                gap[i + 1] == " " and gap[i + 2][:1] == "." and toks[i + 1].text != "I" and \
                not (i + 2 < n and toks[i + 2].lower in _AFTER_LETTER):     # "A. fib"
            name[i + 1] = True
        if i + 1 < n and not name[i + 1] and toks[i].text.islower() and \
                len(toks[i + 1].text) == 1 and toks[i + 1].text.islower() and \
                toks[i + 1].text not in "ai" and gap[i + 1] == " " and \
                (gap[i + 2][:1] == "." or _LINE_END.match(gap[i + 2])):
            name[i + 1] = True               # "charge rn: bev k.", "thanks, ryan k"


def _far_veto(toks: list[_Word]) -> set[int]:
    """The tokens 2 or 3 before a facility word: _facility_follows may veto them, so they do
    not take find_names' no-verdict shortcut (the token just before has veto_head)."""
    return {k - back for k in _indices(toks, "facility_head", 1) for back in (2, 3)}


def _sentence_start(d: _Doc, i: int) -> bool:
    return i == 0 or bool(_SENTENCE_BREAK.search(d.gap[i]))


_SCORE_AFTER = re.compile(r"^\s*(?:\d|(?:I{1,3}|IV|VI{0,2})\b|class\b|grade\b|stage\b|score\b|negative\b|positive\b|"
                          r"neg\b|pos\b|equivocal\b)", re.I)
_SIZE_BEFORE = re.compile(r"\d\s?(?:G|g|ga|Fr|fr|French|gauge)\s$")    # "25G Whitacre", "19 Fr Blake"
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
    elif low in standalone_eponyms() or low in lexicon.DEVICE_EPONYMS or \
            low in lexicon.PROCEDURE_EPONYMS or low in lexicon.ORGANISATIONS:
        kind = _ALWAYS        # (checked after the eponym rules in _vetoed: all of them veto)
    elif any(p in lexicon.EPONYMS for p in parts):
        kind = _EPONYM_COMPOUND if len(parts) > 1 else _EPONYM
    else:
        kind = _NO_VERDICT
    if len(_LOWER_KIND) >= 1 << 17:
        _LOWER_KIND.clear()
    _LOWER_KIND[low] = kind
    return kind


def _vetoed(d: _Doc, i: int) -> bool:
    text, toks, gap, t_end = d.text, d.toks, d.gap, d.end[i]
    t = toks[i]
    kind = t.kind
    if kind == _ALWAYS:
        return True
    nxt = toks[i + 1].lower if i + 1 < len(toks) else ""
    if kind == _CALENDAR:
        # "June Gold", "Jacqueline May, NP" are people; "June 5", "in June" are dates
        following = toks[i + 1] if i + 1 < len(toks) else None
        preceding = toks[i - 1] if i else None
        if following is not None and following.kind == _CALENDAR and gap[i + 1] in (" ", ", "):
            return True                  # "Thu Nov 21", "Sun, June 2"
        if t.first and preceding is not None and \
                preceding.lower.replace("-", " ") in lexicon.RELATIVES and \
                gap[i] == " " and not _DIGIT_AFTER.match(text, t_end):
            return False                 # "daughter june", "wife April": a relative's name
        return not (t.first and t.cap and (
            (following is not None and following.cap and gap[i + 1] == " " and
             (not following.word or following.surname_rank)) or
            (preceding is not None and preceding.cap and preceding.first and
             not preceding.word and gap[i] == " ")))
    adjacent = i + 1 < len(toks) and d.start[i + 1] - t_end <= 3
    if kind == _EPONYM_COMPOUND:
        # "Wolff-Parkinson-White", "Guillain-Barre"; but "Gwendolyn Ostrowski-Bell" is a person:
        # a given name just before and no eponym head just after
        return not (_after_given_name(d, i) and
                    not (adjacent and nxt in lexicon.EPONYM_HEADS))
    if kind == _EPONYM:
        # Parkinson's, Guillain-Barre, Bell palsy, Gleason 3+4, Killip class II
        if (t.possessive and not _after_given_name(d, i)) or \
                (adjacent and nxt in lexicon.EPONYM_HEADS) or \
                _SIZE_BEFORE.search(text, max(0, d.start[i] - 12), d.start[i]) or \
                _SCORE_AFTER.match(text[t_end:t_end + 12]):
            return True
        if _eponym_list(d, i):
            return True                  # a list of eponyms: "Hashimoto, Graves, Addison"
    if t.cap and adjacent and (nxt in lexicon.EPONYM_VETO_HEADS or (
            nxt in lexicon.TEST_HEADS and toks[i + 1].text.islower() and gap[i + 1] == " ")):
        return True
    if t.cap and i + 2 < len(toks) and gap[i + 1] == " " and gap[i + 2] == " " and \
            toks[i + 1].cap and toks[i + 2].lower in lexicon.TEST_HEADS and \
            toks[i + 2].text.islower():
        return True                    # "Austin Moore prosthesis", "St. Jude Regent valve"
    # (both rules below need a next token after the usual gap: tested here, without a call)
    g1 = gap[i + 1] if i + 1 < len(toks) else None
    if g1 in _FACILITY_GAPS and t.text[0].isupper() and _facility_follows(d, i):
        return True                    # "Brigham Clinic", "Mercy Hospital" (also in capitals)
    if g1 == " " and t.cap and toks[i + 1].cap and _score_name_follows(d, i):
        return True                    # "Harris Hip Score", "Morse Fall Scale"
    # a state before its ZIP code, a drug before its dose: only when a digit follows closely
    follow = text[t_end:t_end + 3].lstrip(" ,")
    if not follow or not follow[0].isdigit():
        return False
    if t.lower in lexicon.HOSPITAL_PLACES:
        return True                                    # "Ward 5", "Bed 12": a place, not Mr Ward
    return bool(_ZIP_AFTER.match(text, t_end) or _DOSE_AFTER.match(text, t_end))


def _eponym_list(d: _Doc, i: int) -> bool:
    """Eponyms before token i, separated by commas or slashes, the first an eponym that is
    rarely a surname ("Hashimoto, Graves, Addison"; not "Drs. Bell, Addison")."""
    toks, gap = d.toks, d.gap
    k = i
    while k and gap[k] in (", ", "/") and toks[k - 1].lower in lexicon.EPONYMS:
        k -= 1
        if toks[k].kind == _ALWAYS:
            return True
    return False


def _after_given_name(d: _Doc, i: int) -> bool:
    """A capitalised given name that is no English word comes just before token i
    ("Marcus Bell's", "Gwendolyn Ostrowski-Bell"): the eponym is a family name here."""
    prev = d.toks[i - 1] if i else None
    return prev is not None and prev.cap and prev.first and not prev.word and \
        (d.gap[i] == " " or d.gap[i] in _NICKNAME_CLOSE)        # ('Marcus "Mack" Delacroix-Hill')


_FACILITY_GAPS = frozenset([" ", "'s ", "\u2019s ", " & ", ", "])    # ("Hargrove, Pelletier & Associates")


def _facility_follows(d: _Doc, i: int) -> bool:
    """A facility word ends the run of capitalised words (at most 3) that token i starts
    ("Harbor Light shelter", "Willow Creek Assisted Living")."""
    toks = d.toks
    listed = False
    for k in range(i + 1, min(i + 4, len(toks))):
        if d.gap[k] not in _FACILITY_GAPS:
            return False
        listed = listed or d.gap[k] == " & "
        if toks[k].facility_head and toks[k].lower not in lexicon.SCORE_HEADS and \
                toks[k].lower not in lexicon.TEST_HEADS:
            # (the word itself may be lower case; after a comma only in a list of partners
            # that "&" ends: not "Dr Hamish Drummond, Seaside Family Practice")
            return listed or ", " not in d.gap[i + 1:k + 1]
        if not toks[k].cap:
            return False
    return False


def _score_name_follows(d: _Doc, i: int) -> bool:
    """One or two capitalised English words, then a word that names a score or test: token i
    is the eponym of a named instrument ("Harris Hip Score", "Glasgow Coma Scale")."""
    toks = d.toks
    for k in range(i + 1, min(i + 4, len(toks))):
        if d.gap[k] != " ":
            return False
        if k > i + 1 and toks[k].lower in lexicon.SCORE_HEADS:
            return True
        if not (toks[k].cap and (toks[k].word or toks[k].abbreviation) and not toks[k].first):
            return False                # ("Melbourne ACL criteria")
    return False


_STANDALONE = None


def standalone_eponyms() -> frozenset[str]:
    """Eponyms that are rarely a person's surname in the US (census rank past 3000 or absent)."""
    global _STANDALONE
    if _STANDALONE is None:
        ranks = lexicon.surname_rank()
        _STANDALONE = frozenset(e for e in lexicon.EPONYMS if not 0 < ranks.get(e, 0) <= 3000)
    return _STANDALONE


def _abbreviation(t: _Word) -> bool:
    return (t.text.isupper() and len(t.text) <= 4 and not (t.first or 0 < t.surname_rank <= 5000)) \
        or _odd_capitals(t.text) or _credential_token(t)


def _credential_token(t: _Word) -> bool:
    """A credential written after a name ("PMHNP-BC", "FRANZCO", the "Au" of "Au.D."): in
    capitals or a known mixed case, it is no name and joins none."""
    return t.lower in lexicon.CREDENTIALS and (t.text.isupper() or t.text in _MIXED_CREDENTIALS)


def _odd_capitals(text: str) -> bool:
    """A capital after the first letter that no lower-case letter follows ("METs", "PsyD",
    "mEq"): a unit or a credential. Names put a capital only before lower case (McDonald,
    DeShawn, O'Brien)."""
    if text.isupper() or text.islower() or set(filter(str.islower, text)) == {"l"}:
        return False                    # ("DUBOlS": an OCR'd capital I)
    return any(c.isupper() and (k + 1 == len(text) or not text[k + 1].islower())
               for k, c in enumerate(text) if k)


def _lower_name(t: _Word) -> bool:
    """A lower-case token that reads as a name in dictation ("daughter mary", "pt john")."""
    return (t.first and t.lower not in lexicon.LOWER_AMBIGUOUS_FIRST) or \
        (t.surname_rank > 0 and not t.word)


def _is_initial(t: _Word) -> bool:
    return len(t.text) == 1 and t.text.isupper()


def _function(t: _Word) -> bool:
    """A function word, unless capitalised and a census name ("Name: Will Young")."""
    return t.lower in lexicon.FUNCTION_WORDS and (t.lower in lexicon.PRONOUNS or not (t.cap and (
        t.first or t.surname_rank)))


def _take_forward(d: _Doc, veto, name, i: int, strict: bool, limit: int = 4,
                  first_ok: bool = False, comma_first: bool = False) -> None:
    """Mark up to `limit` name-like tokens from i on (initials and particles in between).
    first_ok: the caller has vouched for token i; comma_first: "SMITH, JOHN" continues."""
    toks = d.toks
    taken = 0
    vouched = False
    j = i
    while j < len(toks) and taken < limit:
        t = toks[j]
        if j > i:
            gap = d.gap[j]
            if gap in _NICKNAME_QUOTES and t.cap and taken and j + 1 < len(toks) and \
                    d.gap[j + 1] in _NICKNAME_CLOSE and not veto[j]:
                name[j] = True              # 'Benjamin "Ben" Adeyemi': the nickname, then on
                j += 1
                vouched = True
                continue
            if gap in _NICKNAME_CLOSE and vouched and t.cap:
                pass                        # the family name after the nickname
            elif gap.strip(" .,") or "\n" in gap or "  " in gap or "\t" in gap:
                break
            if "." in gap and not toks[j - 1].initial:
                break                       # "husband Bao. Strength 5/5"
            if not t.cap and toks[j - 1].cap and not toks[j - 1].initial and \
                    t.lower not in lexicon.PARTICLES:
                break                       # "Dr Szymanski pulm": a name keeps its case
        if t.initial and d.text[d.end[j]:d.end[j] + 1].isdigit():
            break                           # "G2P1001": not an initial
        if t.initial or (t.lower in lexicon.PARTICLES and
                         (taken or (j + 1 < len(toks) and d.gap[j + 1] == " " and
                                    toks[j + 1].lower in lexicon.PARTICLES))):
            # (first: "Dr. de la Cruz"; particles that no name follows are let go below)
            name[j] = True
            j += 1
            continue
        after_title = not strict and t.cap and taken == 0   # "Dr. May", "Dr. Foley"
        if (veto[j] and not after_title) or t.function or t.text in _LOWER_HONORIFICS or \
                t.lower in lexicon.MEDICAL_WORDS or t.lower in lexicon.TITLES:
            break       # a title is not the name ("officer Ofc. Brennan", "thorne nurse pract.")
        if (taken == 0 and first_ok) or vouched:
            ok = True
            vouched = False
        elif t.cap:
            ok = not t.abbreviation and (not strict or taken == 0 or t.first or
                                           t.surname_rank > 0 or not t.word)
        else:
            ok = (t.lower_name or (not strict and taken == 0) or
                  (taken > 0 and 0 < t.surname_rank <= 10000) or   # "dean long", "yuki strand"
                  (not t.word and len(t.text) >= 3 and (not strict or taken and toks[j - 1].first)))
            # ("mister jerome achterberg", "patient winston achebe")
        if not ok:
            break
        name[j] = True
        taken += 1
        if j + 1 < len(toks) and "," in d.gap[j + 1]:
            nxt = toks[j + 1]
            if not (comma_first and taken == 1 and (nxt.cap or nxt.text.isupper()) and
                    (nxt.first or (not nxt.word and len(nxt.text) > 1)) and
                    d.gap[j + 1].strip() == ","):
                break
            vouched = True                  # the given name after "LAST," is vouched for
        j += 1
    while j > i and name[j - 1] and taken == 0 and \
            (toks[j - 1].initial or toks[j - 1].lower in lexicon.PARTICLES):
        j -= 1
        name[j] = False                     # a lone initial after a label is not a name


def _after_initial(d: _Doc, j: int) -> bool:
    """Short capitals just after an initial ("M. OSEI RN"): a family name, not an acronym."""
    t = d.toks[j]
    return j > 0 and d.toks[j - 1].initial and d.gap[j] == ". " and t.text.isupper() and \
        len(t.text) >= 3 and t.lower not in lexicon.CLINICAL_ABBREVIATIONS and not t.word


def _take_backward(d: _Doc, veto, name, i: int) -> None:
    toks = d.toks
    j, taken = i, 0
    while j >= 0 and taken < 4:
        t = toks[j]
        if j < i:
            gap = d.gap[j + 1]
            if gap.strip(" .,") or "\n" in gap or ("." in gap and not t.initial):
                break
            if t.initial and "," in gap:
                break                               # "I, Chidinma Okeke, RN"
        if t.initial or (t.lower in lexicon.PARTICLES and taken):
            name[j] = True
            j -= 1
            continue
        if veto[j] or not t.cap or t.function or (t.abbreviation and not _after_initial(d, j)):
            break
        if t.word and not (t.first or t.surname_rank):
            break
        name[j] = True
        taken += 1
        j -= 1


# Credentials written after a name ("Jane Doe, MD", "J. Roe M.D.", "Kim Lee PA-C").
_CREDENTIAL = re.compile(r"(?:M\.D\.|D\.O\.|Ph\.D\.|R\.N\.|N\.P\.|P\.A\.|PA-C|FNP-C|MD|DO|RN|NP|PA|"
                         r"PhD|DDS|DMD|LPN|CNM|CRNA|MSW|LCSW|PharmD|RPh|MBBS|FACC|FACS|FACP|DNP|"
                         r"APRN|FNP|CNA|BSN|MSN|DPT|RRT|md|rn|np|Au\.D\.|AuD|M\.S\.|CCC-SLP|CCC-A|"
                         r"[A-Z]{2,6}-BC|EMT(?:-[BPI])?|NREMT|Paramedic|RPSGT|FRANZCO|FRAC[PS]|FRCS|"
                         r"FRCPC?|FRCR|MRCP|MRCS|MRCGP|FRCOG|CCRN|OTR/L|OTR|RDN|LMFT|BCBA|CRNP|"
                         r"IBCLC|CPNP)(?![\w-])")
_MIXED_CREDENTIALS = frozenset(["PhD", "PharmD", "RPh", "Ph", "Au", "AuD", "Paramedic"])
_ROLE_BEFORE = frozenset(["RN", "NP", "PA", "MD", "LPN", "CNA", "RT", "PT"])


# a gap before a credential that the rule below may accept (memoised: gaps repeat)
_CREDENTIAL_GAP = _GapTest(lambda g: (g.strip() in ("", ",", ".") or g == " (") and "\n" not in g)


def _titles_and_credentials(d: _Doc, veto, name) -> None:
    text, toks, gap, start = d.text, d.toks, d.gap, d.start
    for i in _indices(toks, "title_rule"):       # every rule below needs a title / credential
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.text in ("MR", "MS") and i and toks[i - 1].lower in lexicon.SEVERITY_WORDS:
            continue                                 # "mild MR. Wolff-Parkinson-White ..."
        if t.lower in lexicon.TITLES and nxt is not None and \
                not (t.text.islower() and _DIGIT_BEFORE.search(text[max(0, start[i] - 3):start[i]])):
            g = gap[i + 1]                               # (not "402 ms. Will follow up")
            if g.strip() in ("", ".") and "\n" not in g:
                if t.lower in ("sister", "nurse", "doctor", "professor") and not nxt.cap and \
                        not (t.text.islower() and ((nxt.lower_name and nxt.first) or
                                                   _unknown_lower(nxt) or
                                                   _unknown_lower_pair(d, i + 1))):
                    continue          # ("nurse practitioner"; "doctor ngozi eze" is a name)
                _take_forward(d, veto, name, i + 1, strict=False)
                continue
        if t.text in _ROLE_BEFORE and nxt is not None and nxt.cap and not nxt.word and \
                gap[i + 1] == " ":
            _take_forward(d, veto, name, i + 1, strict=True)   # "RN Walker"
        elif t.text in _ROLE_BEFORE and nxt is not None and nxt.cap and \
                (nxt.first or nxt.surname_rank) and gap[i + 1] == " ":
            _take_forward(d, veto, name, i + 1, strict=True)
        g = gap[i]          # (the gap's tests before the credential's regex: they are cheaper)
        if i and t.credential_shape and _CREDENTIAL_GAP[g]:
            in_parens = g == " (" and text[d.end[i]:d.end[i] + 1] == ")"     # "Olamide (RN)"
            if (g.strip() in ("", ",", ".") or in_parens) and "\n" not in g and \
                    not (t.text in ("PT", "OT", "PA", "RT", "DO", "NP") and "," not in g and
                         not in_parens and not _initial_and_word_before(d, i)) and \
                    _CREDENTIAL.match(text, start[i]):
                _take_backward(d, veto, name, i - 1)


def _unknown_lower(t: _Word) -> bool:
    """A lower-case token in no word list, not a clinical abbreviation: a name in dictation
    after "doctor" ("doctor ngozi")."""
    return not t.word and not t.function and len(t.text) >= 3 and t.kind != _ALWAYS and \
        t.lower not in lexicon.CLINICAL_ABBREVIATIONS and not lexicon.starts_a_word(t.lower)


def _unknown_lower_pair(d: _Doc, i: int) -> bool:
    """Two lower-case tokens in no word list after "doctor" ("doctor amara okonkwo"): a name
    even when the first starts a longer word (amara, amaranth)."""
    toks = d.toks
    return i + 1 < len(toks) and d.gap[i + 1] == " " and all(
        not t.word and not t.function and len(t.text) >= 3 and t.text.islower() and
        t.kind != _ALWAYS and t.lower not in lexicon.CLINICAL_ABBREVIATIONS
        for t in (toks[i], toks[i + 1]))


def _initial_and_word_before(d: _Doc, i: int) -> bool:
    """"J. Oyelaran NP": an initial and a capitalised word before the credential make it one,
    where "NP" or "PT" alone may be the role ("called PT")."""
    return i >= 2 and d.toks[i - 2].initial and d.gap[i - 1] == ". " and d.gap[i] == " " and \
        d.toks[i - 1].cap and not d.toks[i - 1].abbreviation and not d.toks[i - 1].function


_RELATION_AFTER = re.compile(r"^\s*[,(]\s*(?:his |her |the pt's |patient's )?"
                             r"(?:great-|great |step-?|half-|grand-?)?(?:son|daughter|wife|"
                             r"husband|mother|father|brother|sister|spouse|partner|friend|"
                             r"niece|nephew|grandson|granddaughter|caregiver|guardian|neighbor|"
                             r"neighbour|aunt|uncle|cousin|fianc[eé]e?|boyfriend|girlfriend|"
                             r"roommate|mom|dad|parent|child|hcp|poa|midwife|doula|carer|"
                             r"interpreter|translator|chaplain|dietitian|dietician|physio|"
                             r"physiotherapist|social worker|case manager|pharmacist|paralegal|"
                             r"[a-z]+(?:ologist|iatrist|ician))\b", re.I)


def _labels(d: _Doc, veto, name) -> None:
    text, toks, end, gap = d.text, d.toks, d.end, d.gap
    # (the comma or bracket of _RELATION_AFTER is in the gap after the token: the tokens
    # before such a gap are listed at C speed, the gaps' tests memoised)
    for i in compress(range(len(toks)), map(_COMMA_OR_BRACKET.__getitem__, gap[1:])):
        if toks[i].relation_rule and not veto[i] and \
                toks[i].lower not in lexicon.PEOPLES and \
                _RELATION_AFTER.match(text[end[i]:end[i] + 30]):
            _take_backward(d, veto, name, i)          # "Padraig Miller, son"

    # a label phrase can end only with one of its last words: the rest skip _label_before
    for i in compress(range(1, len(toks)), map(attrgetter("label_end"), toks)):
        if name[i] or (veto[i] and not toks[i].initial):
            continue
        label = _label_before(d, i)
        if label is None or ("(" in d.gap[i] and label not in lexicon.RELATIVES):
            continue                                # ("son (Tendai)", not "with (Cr 1.2)")
        t = toks[i]
        if label in lexicon.INITIALS_LABELS and t.initial:
            m = _DOTTED_INITIALS.match(text, d.start[i])
            if m:                                   # "per A.K.", "by K.M.W." (K: potassium)
                for k in range(i, bisect.bisect_left(d.start, m.end(), i)):
                    name[k] = True
                continue
        if veto[i]:
            continue
        if label in lexicon.INITIALS_LABELS and _initials(d, i, label):
            name[i] = True                          # "Transcribed: tmw", "per MK"
            continue
        if t.lower in lexicon.PARTICLES and i + 1 < len(toks) and d.gap[i + 1] == " " and \
                toks[i + 1].lower in lexicon.PARTICLES and label not in _GENERIC_LABELS:
            _take_forward(d, veto, name, i, strict=True, first_ok=True,   # "DE LA CRUZ, MARIA"
                          comma_first=label in _PATIENT_LABELS)
            continue
        if label in lexicon.RELATIVES and t.text.islower() and t.first and \
                (t.function or t.lower in lexicon.LOWER_AMBIGUOUS_FIRST) and _no_verb_follows(d, i):
            name[i] = True                          # "his son will after a fall"
            continue
        if label in _NICKNAME_LABELS:
            if t.cap and not t.function and not t.abbreviation:
                name[i] = True                      # 'preferred name "Sky"', 'AKA: "Iggy"'
            continue
        if label in lexicon.NAME_IS_LABELS:
            if _name_is(d, i):
                _take_forward(d, veto, name, i, strict=True, first_ok=True)
            continue
        generic = label in ("from", "to", "by", "with", "per", "re") and not (
            label in ("from", "to") and _header_label(d, i))      # "From: Okonkwo, C."
        if veto[i] or t.function or (t.lower in lexicon.PEOPLES and not _surname_follows(d, i)):
            continue                                # ("Interpreter: Vietnamese")
        if t.initial and text[end[i]:end[i] + 1] == ".":
            _take_forward(d, veto, name, i, strict=True)     # "PHYSICIAN: J. Miller"
            continue
        if t.cap and (t.abbreviation or (t.text.isupper() and len(t.text) <= 5 and
                                         not (t.first or t.surname_rank) and
                                         text[end[i]:end[i] + 1] != ",")):
            continue            # "regarding DMARD therapy": an acronym ("MBEKI, TENZIN" is a name)
        if generic:
            ok = t.cap and (t.first or t.surname_rank) and not t.word
        elif label in lexicon.OBJECT_VERBS:
            ok = (t.first or not t.word or 0 < t.surname_rank <= _RARE_SURNAME) if t.cap \
                else t.lower_name
        elif t.cap:     # an English word must be a name or a common surname ("Attn: Utilization")
            ok = t.first or not t.word or 0 < t.surname_rank <= _RARE_SURNAME or \
                (label in lexicon.RELATIVES and (_surname_follows(d, i) or
                                                 _possessed_relative(d, i, label)))
        elif label in lexicon.VOUCHING_LABELS or label in lexicon.RELATIVES:
            ok = t.first or (not t.word and len(t.text) >= 3 and        # "daughter summer"
                             not t.lower.endswith(_ROLE_SUFFIXES))
        elif label in ("patient", "pt", "name", "patient name", "pt name"):
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            ok = t.lower_name or ((0 < t.surname_rank <= 20000 or not t.word) and
                                  nxt is not None and d.gap[i + 1] == ", " and
                                  (nxt.first or not nxt.word))           # WRIGHT, SANDY
        else:           # a role ("resident priya"): also a lower-case word in no list
            ok = t.lower_name or (label in lexicon.ROLE_LABELS and not t.word and
                                  len(t.text) >= 3 and t.lower not in lexicon.CLINICAL_ABBREVIATIONS
                                  and not t.lower.endswith(_ROLE_SUFFIXES))
        if ok:
            _take_forward(d, veto, name, i, strict=True, first_ok=True,
                          comma_first=label in ("patient", "pt", "name", "patient name", "pt name"))


_COMMA_OR_BRACKET = _GapTest(lambda g: "," in g or "(" in g)
_CLOSES = re.compile(r"\s*(?:$|\n|[.,;:)/]|\d)")
_DOTTED_INITIALS = re.compile(r"(?:[A-Z]\.){2,4}(?![A-Za-z])")
_LINE_END = re.compile(r"[ \t.;]*(?:$|\n)")
_NOT_AFTER_MODAL = frozenset("""after at in from and who is was has had with for on by of
about""".split())


# endings of the names of specialists ("attending neonatologist", "physiatrist")
_ROLE_SUFFIXES = ("ologist", "iatrist", "ician", "ographer", "apist", "ist")
_GENERIC_LABELS = frozenset(["from", "to", "by", "with", "per", "re"])
_PATIENT_LABELS = frozenset(["patient", "pt", "name", "patient name", "pt name"])


_HYPHENATED_INITIALS = re.compile(r"[A-Z](?:-[A-Z]){1,3}")


def _initials(d: _Doc, i: int, label: str) -> bool:
    """Token i, after a signature label, is a person's initials: 2-4 letters all in one case,
    no word or clinical abbreviation ("tmw", "JRS"; not "per GI", "by mouth"); after the
    common words ("per", "by", "signed") only at the end of a phrase ("per MK, ...")."""
    t = d.toks[i]
    if label == "initials" and _HYPHENATED_INITIALS.fullmatch(t.text):
        return True                                  # "Initials: D-K-L"
    if not 2 <= len(t.text) <= 4 or t.word or t.lower in lexicon.CLINICAL_ABBREVIATIONS or \
            not (t.text.isupper() or t.text.islower()) or (t.first and t.text.islower()):
        return False
    if label in ("initials", "transcribed", "transcriptionist", "typed", "typist", "scribe"):
        return True
    if t.text.isupper():        # "per MK" (2 letters), "signed JRS" ending its line; not
        return len(t.text) == 2 or (  # "by IHC,", "memory per GPU"
            len(t.text) == 3 and (label not in ("per", "by") or _verb_by(d, i)) and
            bool(_CLOSES.match(d.text, d.end[i])))
    return bool(_CLOSES.match(d.text, d.end[i]))


def _verb_by(d: _Doc, i: int) -> bool:
    """A past participle before "by" ("Grossed by KMT", "seen by"): a person acts."""
    return i >= 2 and d.toks[i - 1].lower == "by" and d.toks[i - 2].lower.endswith("ed") and \
        d.toks[i - 2].lower not in ("dosed", "based", "adjusted", "measured", "calculated")


def _no_verb_follows(d: _Doc, i: int) -> bool:
    """What follows token i cannot follow a modal verb ("son will after a fall", "daughter
    may, who"): the token is a name, not "will"/"may"."""
    if _CLOSES.match(d.text, d.end[i]):
        return True
    return i + 1 < len(d.toks) and d.toks[i + 1].lower in _NOT_AFTER_MODAL and \
        d.gap[i + 1] == " "


def _name_is(d: _Doc, i: int) -> bool:
    """After "patient is" / "name is": a given name (lower case: one that is no everyday
    word, or any given name followed by a census surname: "frank hall"), or a capitalised
    word in no word list."""
    t = d.toks[i]
    if t.function:
        return False
    if t.cap:       # (not "Patient is Spanish-speaking", "is Jehovah's Witness")
        return t.first or (not t.word and not t.abbreviation and
                           t.lower.split("-")[0] not in lexicon.PEOPLES)
    if t.lower_name:
        return True
    nxt = d.toks[i + 1] if i + 1 < len(d.toks) else None
    return t.first and nxt is not None and not nxt.cap and d.gap[i + 1] == " " and \
        not nxt.function and 0 < nxt.surname_rank <= _RARE_SURNAME


_POSSESSORS = frozenset("his her their my your our pt patient".split())
_NICKNAME_LABELS = frozenset(["preferred name", "aka", "a k a", "goes by", "known as", "nickname"])
# what a family history says of a relative ("her father Deceased at 60")
_KIN_STATUS = frozenset("""deceased died alive living healthy unknown adopted estranged present
absent passed none well""".split())


def _possessed_relative(d: _Doc, i: int, label: str) -> bool:
    """"with his granddaughter Poppy", "Pt's husband Tor": after a possessive and a kinship
    word in lower case, a capitalised word that is no clinical word is the relative's name
    (not "FH: mother Diabetes")."""
    k = i - 1 - label.count(" ")
    t = d.toks[i]
    return k >= 1 and d.gap[i] == " " and d.toks[k].text.islower() and \
        (d.toks[k - 1].lower in _POSSESSORS) and d.gap[k] in (" ", "'s ", "’s ") and \
        t.kind == _NO_VERDICT and t.lower not in lexicon.PEOPLES and not t.abbreviation and \
        t.lower not in _KIN_STATUS and not (     # ("her sister Breast cancer")
            i + 1 < len(d.toks) and d.gap[i + 1] == " " and d.toks[i + 1].text.islower() and
            not d.toks[i + 1].function)


def _surname_follows(d: _Doc, i: int) -> bool:
    """A capitalised word in no word list follows token i: "granddaughter Temperance
    Goodenough" is a given name that is also a word, then the family name."""
    nxt = d.toks[i + 1] if i + 1 < len(d.toks) else None
    return nxt is not None and nxt.cap and not nxt.word and not nxt.abbreviation and \
        d.gap[i + 1] == " "


def _header_label(d: _Doc, i: int) -> bool:
    """Token i-1, the label, starts its line and a colon follows it: a header field (From:,
    To:, Cc:)."""
    label_start = d.start[i - 1]
    line_start = d.text.rfind("\n", 0, label_start) + 1
    return not d.text[line_start:label_start].strip() and d.gap[i].lstrip().startswith(":")


_RARE_SURNAME = 20000     # census rank past which an English word is read as the word
_LABEL_GAP = re.compile(r"\.?[ \t]*[:,(-]?\s{0,4}[\"“]?")      # ("(": only after kin, in _labels)
_LABEL_SET = frozenset(w.replace("-", " ") for w in lexicon.LABEL_WORDS)
_LABEL_LAST_WORDS = frozenset(w.split(" ")[-1] for w in _LABEL_SET)


# the word-final parts of every label ("name", "patient name"): a phrase that is none of them
# cannot grow into a label by taking words before it
_LABEL_TAILS = frozenset(" ".join(w.split(" ")[k:]) for w in _LABEL_SET
                         for k in range(len(w.split(" "))))


def _label_before(d: _Doc, i: int) -> str | None:
    """The longest label phrase (1-3 words) ending right before token i, or None."""
    if not _LABEL_GAP.fullmatch(d.gap[i]):
        return None
    best = None
    phrase = ""
    for k in range(i - 1, max(-1, i - 4), -1):
        if k < i - 1 and not d.gap[k + 1].isspace():
            break
        word = d.toks[k].lower.replace("-", " ")
        phrase = word + " " + phrase if phrase else word
        if phrase not in _LABEL_TAILS:
            break                   # (no longer phrase is a label either)
        if phrase in _LABEL_SET:
            best = phrase
    return best


def _dictionary(d: _Doc, veto, name) -> None:
    text, toks, gap, end = d.text, d.toks, d.gap, d.end
    n = len(toks)
    # (a function word, a single letter, a word in no name list, short capitals: "PEG", "AMY"
    # need context, not just a list: not a dictionary_rule token)
    for i in _indices(toks, "dictionary_rule"):
        if veto[i] or name[i]:
            continue
        t = toks[i]
        in_list = t.first or t.surname_rank > 0
        nxt = toks[i + 1] if i + 1 < n and gap[i + 1] in (" ", ", ") else None
        if t.cap:
            prev = toks[i - 1] if i else None
            if t.lower in lexicon.PEOPLES:
                pass                      # "(Spanish)": a name only by context or a pair
            elif in_list and not t.word:
                name[i] = True
            elif in_list and not (t.word and t.text.isupper()) and \
                    not _sentence_start(d, i) and prev is not None and \
                    (not prev.cap or name[i - 1] or (not prev.word and not veto[i - 1] and
                                                      not prev.abbreviation and
                                                      (prev.first or prev.surname_rank))) and \
                    text[end[i]:end[i] + 1] != ":" and t.lower not in lexicon.FUNCTION_WORDS and \
                    t.lower not in _TIME_WORDS and \
                    not (t.word and _title_case_follows(d, i)):
                name[i] = True            # a capital inside a lower-case sentence
            if t.first and nxt is not None and nxt.cap and not veto[i + 1] and \
                    not nxt.function and not nxt.abbreviation and \
                    (not nxt.word or nxt.surname_rank):
                name[i] = name[i + 1] = True  # "Maria Ketterman", "Frank Brown", "Will Nguyen"
        else:
            alone = in_list and not t.word and len(t.text) >= 3 and \
                (t.first or t.surname_rank <= 30000)
            pair = t.first and t.lower not in lexicon.LOWER_AMBIGUOUS_FIRST and nxt is not None \
                and not nxt.cap and not veto[i + 1] and \
                nxt.lower not in lexicon.FUNCTION_WORDS and 0 < nxt.surname_rank <= 20000
            if (alone or pair) and _lower_eponym_phrase(d, i):
                continue                  # "harvey bradshaw index", "wells score" in dictation
            if alone:
                name[i] = True
            if pair:
                name[i] = name[i + 1] = True  # "john smith" in dictation
        if t.cap and t.first and _sentence_start(d, i) and \
                _REPORTING_VERB.match(text, end[i]):
            name[i] = True                # "Dawn reports chest pain"
    # a capitalised word in no list that reports or denies is a person ("Oluwaseun reports")
    for i in _indices(toks, "joins_name"):
        if i + 1 < n and toks[i + 1].lower in _REPORTING_WORDS and not name[i] and \
                not veto[i] and gap[i + 1].isspace() and _not_people(toks[i]):
            name[i] = True
    # "Hill, Dylan": a census surname before ", <given name>"
    for i in compress(range(n - 1), map(", ".__eq__, gap[1:n])):    # (gap[i + 1] == ", ")
        t = toks[i]
        if t.cap and t.surname_rank and not name[i] and not veto[i] and name[i + 1] and \
                toks[i + 1].first:
            name[i] = True
    # a name next to a capitalised unknown word takes it along ("Ketterman, Maria")
    for i in compress(range(n), name):           # (reads `name` as it grows)
        for j in (i - 1, i + 1):
            if 0 <= j < n and not name[j] and not veto[j] and toks[j].joins_name and \
                    gap[max(i, j)] in (" ", ", "):
                name[j] = True


_NAMED_THING_HEADS = lexicon.SCORE_HEADS | lexicon.TEST_HEADS | lexicon.EPONYM_VETO_HEADS | \
    frozenset("""fracture fractures ulcer ulcers reflex phenomenon triad murmur dementia node
nodes cyst cysts syndromes diseases""".split())


def _lower_eponym_phrase(d: _Doc, i: int) -> bool:
    """Lower-case token i, maybe with one more lower-case word, then the word of a score, test
    or disease: an eponym in dictation ("harvey bradshaw index", "homans sign")."""
    toks, gap, n = d.toks, d.gap, len(d.toks)
    for k in (i + 1, i + 2):
        if k >= n or gap[k] not in (" ", "-") or toks[k].cap:
            return False
        if toks[k].lower in _NAMED_THING_HEADS:
            return True
    return False


# capitalised words of a shift or time of day that are census surnames ("Night to Day")
_TIME_WORDS = frozenset("day days night nights evening evenings morning noon week".split())


def _short_code(t: _Word) -> bool:
    """2-4 letters in one case in no name list: initials or an acronym ("JRS", "tmw", "GPU")."""
    return len(t.text) <= 4 and (t.text.isupper() or not (t.first or t.surname_rank or t.cap))


def _not_people(t: _Word) -> bool:
    """Not a language or nation ("Somali reports" is not a person) and not a stub."""
    return t.lower not in lexicon.PEOPLES and len(t.text) > 2


def _title_case_follows(d: _Doc, i: int) -> bool:
    """A capitalised English word that is no name follows token i: a heading or an office
    ("Prior Authorization", "Anticoagulation Service"), not "Brown today"."""
    nxt = d.toks[i + 1] if i + 1 < len(d.toks) else None
    return nxt is not None and d.gap[i + 1] == " " and nxt.cap and nxt.word and \
        not (nxt.first or nxt.surname_rank)


def _propagate(d: _Doc, veto, name) -> None:
    """Other mentions of a name found with evidence; a sentence-initial word is left alone
    ("Rose to 38.9" in the note of a patient called Rose)."""
    text, toks, start, end = d.text, d.toks, d.start, d.end
    # (initials and short capitals found by a label stay where they are: "per GPU" must not
    # make every GPU a name)
    found = {toks[i].lower for i in compress(range(len(toks)), name)
             if len(toks[i].text) > 1 and not _short_code(toks[i])}
    lows = map(attrgetter("lower"), toks)
    for i in list(compress(range(len(toks)), map(found.__contains__, lows))) if found else ():
        t = toks[i]
        if name[i] or veto[i] or not (t.cap or not t.word) or d.gap[i][-1:].isdigit():
            continue                        # ("3rd" is no mention of a Mr. Rd)
        if t.word and _sentence_start(d, i) and not (
                (i + 1 < len(toks) and name[i + 1]) or t.possessive or
                _PERSON_VERB.match(text[end[i]:end[i] + 20])):
            continue
        name[i] = True
    _short_forms(d, veto, name, {toks[i].lower for i in compress(range(len(toks)), name)
                                 if toks[i].first and len(toks[i].text) >= 5})
    # "Mbeki (pharmacy) and Frost": a census name joined to a name by "and" / "or" / "&"
    # (_AND_BEFORE ends with the token before, which ends with "and" / "or", or with a "&" in
    # the gap: only the tokens after those are looked at, in order)
    after = compress(range(1, len(toks)), map(attrgetter("and_end"), toks))
    if "&" in text:
        after = sorted(set(after).union(k for k in range(1, len(toks)) if "&" in d.gap[k]))
    for i in after:
        s = start[i]
        if toks[i].and_rule and not name[i] and not veto[i] and \
                _AND_BEFORE.search(text[s - 6:s]):
            window = text[max(0, s - 30):s]
            if any(name[j] and end[j] > s - 30 for j in range(max(0, i - 6), i)) and \
                    "\n" not in window:
                name[i] = True
    # 'Marcus "Mookie" Tillery': a quoted capitalised word between two names is a nickname
    gap = d.gap
    n = len(toks)
    opens = list(compress(range(1, n - 1), map(_NICKNAME_OPEN.__contains__, gap[1:n - 1])))
    for i in opens:
        if not name[i] and name[i - 1] and name[i + 1] and toks[i].cap and \
                gap[i + 1] in _NICKNAME_CLOSE:      # (name read as it grows, as before)
            name[i] = True
    # 'Eleanor "Nell" Whitcombe': the family name after a quoted nickname (the quotes are
    # among the openings)
    for i in (i for i in opens if gap[i] in _NICKNAME_QUOTES):
        j = i + 1
        if name[i] and name[i - 1] and gap[j] in _NICKNAME_CLOSE and not name[j] and \
                not veto[j] and toks[j].cap and (toks[j].joins_name or toks[j].surname_rank):
            name[j] = True


def _short_forms(d: _Doc, veto, name, found) -> None:
    """"Sky" in the note of Skylar, "Theo" in Theodora's: the start (3-4 letters) of a given
    name found in the document, capitalised, is the same person when no word ("Xan") or when
    a person's verb follows ("Sky returned ...")."""
    toks = d.toks
    prefixes = {f[:k] for f in found for k in (3, 4)}     # (found: given names of 5+ letters)
    if not prefixes:
        return
    for i in compress(range(len(toks)), map(prefixes.__contains__, map(attrgetter("lower"), toks))):
        t = toks[i]
        if name[i] or veto[i] or not t.cap or t.abbreviation or t.function or \
                t.text.isupper() or t.kind != _NO_VERDICT:
            continue
        if not t.word or _PERSON_VERB.match(d.text[d.end[i]:d.end[i] + 20]):
            name[i] = True


_NICKNAME_OPEN = frozenset([' "', " '", " \u201c", " ("])
_LOWER_HONORIFICS = frozenset(["don", "doña", "dona", "dom"])     # "esposo don Ernesto"
_NICKNAME_QUOTES = frozenset([' "', " '", " \u201c"])
_NICKNAME_CLOSE = frozenset(['" ', "' ", "\u201d ", ") "])


_REPORTING_WORDS = frozenset("""reports reported states stated says said denies denied complains
presents presented notes endorses describes admits agrees declined lives returns returned
underwent""".split())
_REPORTING_VERB = re.compile(r"\s+(?:" + "|".join(sorted(_REPORTING_WORDS)) + r")\b")
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


_TITLE_GAP_END = (" ", "\n")
_CREDENTIAL_GAP_START = (",", " ")


def _with_title_and_credential(text: str, s: int, e: int) -> list[int]:
    """Widen a name span over the title before it and the credentials after it: gold
    annotations differ on whether "Dr." / ", MD" belong to the name, and a span that covers
    them is never wrong about the name itself. Replacement keeps them verbatim."""
    # (each pattern needs the character next to the name: a space, or "$"'s newline / a comma)
    m = _TITLE_BEFORE.search(text, max(0, s - 6), s) if text[s - 1:s] in _TITLE_GAP_END else None
    if m:
        s = m.start()
    m = _CREDENTIAL_AFTER.match(text, e) if text[e:e + 1] in _CREDENTIAL_GAP_START else None
    if m:
        e = m.end()
    return [s, e]


def _merge(d: _Doc, name, blocked) -> list[tuple[int, int, str]]:
    text, toks, start, end = d.text, d.toks, d.start, d.end
    spans: list[list[int]] = []
    prev = None
    for i in compress(range(len(toks)), name):
        # (_INITIAL_GAP takes at most 2 characters: a longer gap is not sliced)
        if spans and start[i] - spans[-1][1] <= 2 and \
                _INITIAL_GAP.fullmatch(gap := text[spans[-1][1]:start[i]]) and \
                ("." not in gap or prev.initial):
            spans[-1][1] = end[i]
        else:
            spans.append([start[i], end[i]])
        prev = toks[i]
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
