"""Surrogate values for text spans, all derived from the key so they agree across documents.

A surrogate never equals a word of the document it goes into: if the keyed choice happens to
be one (a patient called Kettering whose surrogate for "Smith" is also Kettering), the next
keyed choice is taken, so any planted string found in the output was really missed.
"""
from __future__ import annotations

import datetime as dt
import re

from megamed.data.deid import lexicon, names
from megamed.data.deid.pseudonym import Pseudonymizer

_WORD = re.compile(r"[A-Za-z0-9]+")
_YEAR4 = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")
_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"]
_PIVOT = dt.date.today().year % 100


class SurrogateMaker:
    def __init__(self, ps: Pseudonymizer, text: str, *, dates: str, patient: str | None):
        self.ps = ps
        self.dates = dates
        self.shift = ps.date_shift_days(patient or "")
        self.original_words = {w.lower() for w in _WORD.findall(text)}

    def replace(self, value: str, category: str) -> str:
        if category == "NAME":
            return self._name(value)
        if category == "DATE":
            return self._date(value)
        if category == "AGE":
            return "90+"
        if category == "EMAIL":
            return f"{self.ps.token('email', value.lower())}@example.org"
        if category == "URL":
            return f"https://example.org/{self.ps.token('url', value.lower())}"
        if category == "IP":
            b = self.ps.digest("ip", value)
            return f"10.{b[0]}.{b[1]}.{b[2]}"
        if category == "ADDRESS":
            return self._address(value)
        return self._shaped(category, value)

    def _fresh(self, make) -> str:
        """make(attempt) until its words are all new to this document."""
        for attempt in range(8):
            candidate = make(attempt)
            if not any(w.lower() in self.original_words for w in _WORD.findall(candidate)
                       if not w.isdigit() or len(w) > 2):
                return candidate
        return candidate

    def _shaped(self, category: str, value: str) -> str:
        return self._fresh(lambda a: self.ps.shaped(category, value, a))

    def _name(self, value: str) -> str:
        m = names.TITLE_CREDENTIAL.fullmatch(value)      # "Dr. " and ", M.D." stay as they are
        if m and (m.group(1) or m.group(3)):
            return m.group(1) + self._name_core(m.group(2)) + (m.group(3) or "")
        return self._name_core(value)

    def _name_core(self, value: str) -> str:
        parts = re.split(r"([\s,.'’-]+)", value)
        words = [p for p in parts if p and p[0].isalpha()]
        out = []
        for p in parts:
            if not p or not p[0].isalpha() or p.lower() in _KEEP_IN_NAMES:
                out.append(p)                       # separators, titles, credentials
            elif len(p) == 1:
                out.append(self.ps.shaped("initial", p.lower()).upper() if p.isupper()
                           else self.ps.shaped("initial", p.lower()))
            else:
                role = "first" if (p.lower() in lexicon.first_names() and p is not words[-1]) \
                    else "last"
                out.append(self._fresh(lambda a, p=p, role=role: self.ps.name_part(p, role, a)))
        return "".join(out)

    def _address(self, value: str) -> str:
        def make(attempt):
            out = []
            for m in re.finditer(r"\d+|[A-Za-z]+|[^A-Za-z\d]+", value):
                w = m.group(0)
                if w.isdigit():
                    out.append(self.ps.shaped("street-number", w, attempt))
                elif w.upper() in _STATE_CODES and len(w) == 2 or w.lower() in _STATE_WORDS:
                    out.append(self._state(w, attempt))
                elif w.isalpha() and (w.lower() in _STREET_WORDS or len(w) <= 2):
                    out.append(w)
                elif w.isalpha():
                    out.append(self.ps.name_part(w, "last", attempt))
                else:
                    out.append(w)
            return "".join(out)
        return self._fresh(make)

    def _state(self, state: str, attempt: int) -> str:
        """Another state, in the same form (code or name): the state is not PHI under Safe
        Harbor, but inside an address it would narrow the search for the rest."""
        pool = _STATE_CODE_LIST if len(state) == 2 else _STATE_NAME_LIST
        n = self.ps.number("state", f"{state.lower()}\0{attempt}")
        pick = pool[n % len(pool)]
        if pick.lower() == state.lower():
            pick = pool[(n + 1) % len(pool)]
        return pick.upper() if state.isupper() else pick

    # --- dates ----------------------------------------------------------------------------
    def _date(self, value: str) -> str:
        parsed = parse_date(value)
        if self.dates == "year" or parsed is None:
            year = _year_of(value, parsed)
            return year if year else "[DATE]"
        date, fmt = parsed
        return format_date(date + dt.timedelta(days=self.shift), fmt)


_STATE_CODE_LIST = tuple(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM "
    "NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY".split())
_STATE_CODES = frozenset(_STATE_CODE_LIST)
_STATE_NAME_LIST = tuple("""Alabama Alaska Arizona Arkansas California Colorado Connecticut
Delaware Florida Georgia Hawaii Idaho Illinois Indiana Iowa Kansas Kentucky Louisiana Maine
Maryland Massachusetts Michigan Minnesota Mississippi Missouri Montana Nebraska Nevada Ohio
Oklahoma Oregon Pennsylvania Tennessee Texas Utah Vermont Virginia Washington Wisconsin
Wyoming""".split())
_STATE_WORDS = frozenset(n.lower() for n in _STATE_NAME_LIST)
_KEEP_IN_NAMES = frozenset("""dr mr mrs ms miss mx prof md do rn np pa phd dds dmd dvm lpn crna
lcsw pharmd mbbs dnp aprn fnp facc facs facp mph mba ms c""".split())
_STREET_WORDS = frozenset("""street st avenue ave road rd boulevard blvd lane ln drive dr court ct
way place pl terrace ter circle cir parkway pkwy highway hwy square sq trail trl apt apartment
suite ste unit room rm floor fl bldg building north south east west n s e w ne nw se sw po p o
box post office""".split())


def _year_of(value: str, parsed) -> str | None:
    if parsed is not None and parsed[1]["year"]:
        return str(parsed[0].year)
    m = _YEAR4.search(value)
    return m.group(1) if m else None


_NUMERIC = re.compile(r"^(\d{1,4})([/.-])(\d{1,2})\2(\d{2,4})$")
_ISO = re.compile(r"^(\d{4})([/.-])(\d{1,2})\2(\d{1,2})(.*)$")
_MD = re.compile(r"^(\d{1,2})/(\d{1,2})$")
_MONTH_FIRST = re.compile(r"^([A-Za-z]+)(\.?)(?:\s+(\d{1,2})(st|nd|rd|th)?)?(,?\s*(?:of\s+)?)('?\d{2,4})?$")
_DAY_FIRST = re.compile(r"^(\d{1,2})(st|nd|rd|th)?([\s-]*(?:of\s+)?)([A-Za-z]+)(\.?)([\s,-]*)(\d{2,4})?$")


def parse_date(value: str):
    """(date, format) for the date forms patterns.py finds, or None. The format remembers the
    separators, the order, the month spelling and which parts were present."""
    v = value.strip()
    fmt = {"kind": None, "year": True, "day": True, "sep": "/", "width": 0, "yearlen": 4,
           "month_style": None, "ord": "", "dot": "", "joint": " ", "joint2": " ", "order": "mdy",
           "rest": ""}
    try:
        m = _ISO.match(v)
        if m:
            fmt.update(kind="iso", sep=m.group(2), rest=m.group(5))
            return dt.date(int(m.group(1)), int(m.group(3)), int(m.group(4))), fmt
        m = _NUMERIC.match(v)
        if m:
            a, b, y = int(m.group(1)), int(m.group(3)), m.group(4)
            order = "dmy" if a > 12 else "mdy"
            month, day = (b, a) if order == "dmy" else (a, b)
            fmt.update(kind="numeric", sep=m.group(2), order=order, yearlen=len(y),
                       width=2 if m.group(1).startswith("0") else 0)
            return dt.date(_full_year(y), month, day), fmt
        m = _MD.match(v)
        if m:
            fmt.update(kind="md", year=False)
            return dt.date(2000, int(m.group(1)), int(m.group(2))), fmt
        m = _MONTH_FIRST.match(v)
        if m and m.group(1).lower() in lexicon.MONTHS:
            month = lexicon.MONTHS[m.group(1).lower()]
            y = (m.group(6) or "").lstrip("'")
            fmt.update(kind="month_first", month_style=_style(m.group(1)), dot=m.group(2),
                       ord=m.group(4) or "", joint=m.group(5) or " ", year=bool(y),
                       day=bool(m.group(3)), yearlen=len(y) if y else 4)
            return dt.date(_full_year(y) if y else 2000, month, int(m.group(3) or 15)), fmt
        m = _DAY_FIRST.match(v)
        if m and m.group(4).lower() in lexicon.MONTHS:
            y = m.group(7) or ""
            fmt.update(kind="day_first", month_style=_style(m.group(4)), dot=m.group(5),
                       ord=m.group(2) or "", joint=m.group(3), joint2=m.group(6), year=bool(y),
                       yearlen=len(y) if y else 4)
            return dt.date(_full_year(y) if y else 2000, lexicon.MONTHS[m.group(4).lower()],
                           int(m.group(1))), fmt
    except ValueError:
        return None
    return None


def _full_year(y: str) -> int:
    n = int(y)
    if len(y) == 4:
        return n
    return 2000 + n if n <= _PIVOT else 1900 + n


def _style(month: str) -> tuple[str, int]:
    case = "upper" if month.isupper() and len(month) > 1 else \
        "lower" if month.islower() else "title"
    return case, len(month)


def _month_text(month: int, style) -> str:
    case, length = style
    name = _MONTH_NAMES[month - 1]
    if length <= 4 and length < len(name):
        name = name[:4] if length == 4 and name.startswith("Sept") else name[:3]
    return name.upper() if case == "upper" else name.lower() if case == "lower" else name


def format_date(d: dt.date, fmt: dict) -> str:
    year = str(d.year) if fmt["yearlen"] == 4 else f"{d.year % 100:02d}"
    kind = fmt["kind"]
    if kind == "iso":
        s = fmt["sep"]
        return f"{d.year}{s}{d.month:02d}{s}{d.day:02d}{fmt['rest']}"
    if kind == "numeric":
        w = fmt["width"]
        a, b = (d.month, d.day) if fmt["order"] == "mdy" else (d.day, d.month)
        s = fmt["sep"]
        return f"{a:0{w}d}{s}{b:0{w}d}{s}{year}"
    if kind == "md":
        return f"{d.month}/{d.day}"
    month = _month_text(d.month, fmt["month_style"]) + fmt["dot"]
    if kind == "month_first":
        day = f" {d.day}{_ordinal(d.day, fmt['ord'])}" if fmt["day"] else ""
        return month + day + (fmt["joint"] + year if fmt["year"] else "")
    day = f"{d.day}{_ordinal(d.day, fmt['ord'])}"
    return day + fmt["joint"] + month + (fmt["joint2"] + year if fmt["year"] else "")


def _ordinal(day: int, had: str) -> str:
    if not had:
        return ""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return suffix.upper() if had.isupper() else suffix
