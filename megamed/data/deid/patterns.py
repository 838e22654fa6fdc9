"""Regular-expression detectors for the structured PHI categories (everything but names).

Each detector yields (start, end, category). They aim at formats, not at one generator: dates in
numeric, ISO, European and spelled-out forms; phone numbers with any separator; identifiers
found by their label ("MRN", "member id", "serial no."), whatever the id looks like.
"""
from __future__ import annotations

import bisect
import re
from functools import partial
from typing import Iterator

from megamed.data.deid import gates, lexicon, more_patterns, native

Span = tuple[int, int, str]

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_ORD = r"(?:st|nd|rd|th)?"
_Y = r"(?:\d{4}|'?\d{2})"
_DATE_RES = [
    # 3/4/51, 03-04-2019, 3.4.2019, 2019-03-04, 2019/3/4, 20190304 with a label
    re.compile(r"\d(?<![\d/.-]\d)\d?[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})(?![\d/-]|\.\d)"),
    re.compile(r"\d(?<![\d/.-]\d)\d{3}[/.-]\d{1,2}[/.-]\d{1,2}(?![\d/])"),
    # month and year: 03/2019, 3-2019, 2019-04, 2019/04
    re.compile(r"(?:0(?<![\d/.-]0)[1-9]|1(?<![\d/.-]1)[0-2]?|[2-9](?<![\d/.-][2-9]))[/-]"
               r"(?:19|20)\d\d(?![\d/-])"),
    re.compile(r"(?:1(?<![\d/.-]1)9|2(?<![\d/.-]2)0)\d\d-(?:0[1-9]|1[0-2])(?![\d/-])"),
    # 12-Mar, 3 Mar (no year)
    re.compile(rf"\d(?<![\w/-]\d)\d?-{_MONTH}\b(?!-)", re.I),
    # 03-Mar-2019, 3 MAR 19, 03MAR2019
    re.compile(rf"\d(?<![\w]\d)\d?[- ]?{_MONTH}\.?[- ]?(?:\d{{4}}|\d{{2}})(?!\w)", re.I),
    # March 3rd, 2019 / Jan. 5th / Mar 3 '19 / March of 2019 / March 2019
    re.compile(rf"(?<![\w]){_MONTH}\.?(?:\s+\d{{1,2}}{_ORD}(?![\d:])(?:(?:,\s*|\s+)(?:1[89]\d\d|20\d\d|'\d\d)(?!\d))?"
               rf"|,?\s+(?:of\s+)?(?:1[89]\d\d|20\d\d|'\d\d)(?!\d))", re.I),
    # 3rd of March 2019 / 5 January
    re.compile(rf"\d(?<![\w/]\d)\d?{_ORD}\s+(?:of\s+)?{_MONTH}\b\.?(?:,?\s+(?:1[89]|20)\d\d(?!\d))?",
               re.I),
]
# Dictation spells dates out: "march fourth", "june third nineteen fifty".
_NUMBER_WORD = (r"(?:and|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|"
                r"forty|fifty|sixty|seventy|eighty|ninety)")
_ORDINAL_WORD = (r"(?:(?:twenty|thirty)[- ])?(?:first|second|third|fourth|fifth|sixth|seventh|"
                 r"eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|"
                 r"sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth)")
_DATE_RES.append(re.compile(
    r"(?<![\w])(?:january|february|march|april|may|june|july|august|september|october|november|"
    rf"december)\s+(?:the\s+)?{_ORDINAL_WORD}\b(?:,?\s+(?:(?:19|20)\d\d\b|"
    rf"(?:nineteen|two thousand|twenty)\b(?:[ -]{_NUMBER_WORD}\b){{0,3}}))?", re.I))
# one of these (lower case) is in every _HOLIDAY match: a C-speed test before the regex (the
# longer forms: "mother", "july", "memorial" alone are in a fifth of the notes)
_HOLIDAY_WORDS = ("christmas", "xmas", "navidad", "thanksgiving", "easter", "new year", "halloween",
                  "valentine", "independence day", "of july", "labor day", "labour day",
                  "memorial day", "s day", "hanuk", "chanuk", "passover", "yom kippur",
                  "rosh hashanah", "diwali", "boxing", "black friday", "good friday",
                  "cyber monday", "bank holiday", "remembrance", "canada day", "anzac",
                  "australia day", "waitangi", "matariki", "bonfire", "fawkes", "hogmanay",
                  "mardi gras", "juneteenth", "king day", "mlk", "columbus day", "victoria day",
                  "ramadan", "eid al", "eid ul", "holi ", "lohri", "pongal")
# (each word is a scan of the text: a form that another word finds is not listed again,
# "veterans day" and "st david's day" hold "s day", "lunar new year" holds "new year")
# month-day-year with hyphens: Mar-22-2019
_DATE_RES.append(re.compile(rf"(?<![\w]){_MONTH}-\d{{1,2}}-(?:\d{{4}}|\d{{2}})(?![\d-])", re.I))
# Holidays name a day: "since Christmas", "over Thanksgiving", "desde Navidad".
_HOLIDAY = re.compile(r"\b(?:christmas(?: eve| day)?|xmas|navidad|thanksgiving(?: day)?|"
                      r"easter(?: sunday)?|new year'?s(?: eve| day)?|halloween|valentine'?s day|"
                      r"independence day|(?:the )?fourth of july|labou?r day|memorial day|"
                      r"mother'?s day|father'?s day|hanukk?ah|chanukah|passover|yom kippur|"
                      r"rosh hashanah|diwali|boxing day|black friday|good friday|cyber monday|"
                      r"easter monday|st\.? (?:patrick|david|andrew|george)'?s day|"
                      r"(?:august |may |spring |summer )?bank holiday(?: monday| weekend)?|"
                      r"remembrance (?:day|sunday)|canada day|anzac day|australia day|waitangi day|"
                      r"matariki|bonfire night|guy fawkes(?: night)?|hogmanay|mardi gras|juneteenth|"
                      r"veterans'? day|presidents'? day|(?:martin luther )?king(?: jr\.?)? day|"
                      r"mlk day|columbus day|(?:lunar|chinese) new year|victoria day|ramadan|"
                      r"eid (?:al|ul)[- ](?:fitr|adha)|holi|lohri|pongal)\b", re.I)
# A month name on its own: capitalised full names; "May" only after a date preposition.
_MONTH_ALONE = re.compile(r"\b(?:January|February|March|April|June|July|August|September|"
                          r"October|November|December)\b|\b(?:Jan|Feb|Aug|Sept|Oct|Nov|Dec)\b\.?")
_MAY_ALONE = re.compile(r"\b(?:in|since|early|late|mid|last|next|of|until|by|on|from|through|"
                        r"during|before|after)[ -](May)\b(?!\s+(?:be|have|need|require)\b)",
                        re.I)
# Dictation writes months in lower case: only after a date preposition ("in january").
_LOWER_MONTH = re.compile(r"\b(?:in|since|early|late|mid|last|next|of|until|by|from|through|"
                          r"during|before|after)[ -](january|february|march|april|june|july|"
                          r"august|september|october|november|december)\b")
_LOWER_MONTH_NAME = re.compile(r"january|february|march|april|june|july|august|september|"
                               r"october|november|december")     # where _LOWER_MONTH can end
_LOWER_MONTH_NAMES = tuple(_LOWER_MONTH_NAME.pattern.split("|"))   # (for str.startswith)
# m/d without a year: only where it is not a ratio, a vital sign or a score.
_MONTH_DAY = re.compile(r"(\d(?<![\w/.-]\d)\d?)/(\d{1,2})(?![\w/]|\.\d)")
_NOT_DATE_BEFORE = re.compile(r"(?:bp|b/p|pressure|pain|strength|power|murmur|grade|score|"
                              r"scale|gcs|apgar|reflexes|pulses|motor|ratio|x|of|sets|"
                              r"dilated|ef|fio2|peep|vent|settings|cmh2o|is|was|rated|"
                              r"abp|nibp|map|cuff|dtr|dtrs|out of)\W{0,3}$", re.I)
_NOT_DATE_AFTER = re.compile(r"^\s*(?:mm|cm|m|mmhg|mg|ml|kg|g|units?|tabs?|tablets?|"
                             r"strength|pain|murmur|systolic|diastolic|pulses?|reflexes|"
                             r"bilat|bilaterally|throughout|in|on|with|x|cm/s|%|"
                             r"upper|lower|proximal|distal|grip|motor|sem|hsm|dsm|holosystolic|"
                             r"ejection|crescendo|blowing|harsh|rub|gallop)\b", re.I)

# a weekday written with a capital ("sat 92%" is a saturation)
_WEEKDAY_BEFORE = re.compile(r"\b(?:Mon|Tues?|Wed|Thu|Thurs?|Fri|Sat|Sun|MON|TUES?|WED|THU|"
                             r"THURS?|FRI|SAT|SUN)(?:[a-z]*day|[A-Z]*DAY)?\.?,?\s{1,2}$")
_SCALES = {10: re.compile(r"pain|scale|score|rated|/10|nrs|vas|itch|prurit|nausea|dyspn|"
                          r"anxiety|fatigue|severity|intensity", re.I),
           5: re.compile(r"strength|motor|power|/5", re.I),
           6: re.compile(r"murmur|/6", re.I), 4: re.compile(r"pulses?|reflex|/4", re.I)}
_AGE_WORDS = ("ninety", "one hundred", "a hundred", "hundred")
_AGE_NUM = r"(?:9\d|1[01]\d)"
_AGE_WORD = (r"(?:ninety(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|"
             r"(?:one |a )?hundred(?:(?: and)?[- ](?:one|two|three|four|five|six|seven|eight|"
             r"nine|ten|eleven|twelve))?)")
_AGE_RES = [
    re.compile(rf"(?<![\w.])({_AGE_NUM}|{_AGE_WORD})(?=\s*-?\s*(?:y/?o\b|y\.o\.|yo[mf]?\b|yr|"
               r"years?\b|year-old|yrs?\b|-?years?-old|[mf]\b|(?:-| )?(?:male|female|man|woman|"
               r"gentleman|lady|boy|girl)\b))", re.I),
    re.compile(rf"(?:\bage[ds]?\b|\bage:|\baged\b|\bturned\b|\bat age\b|\bage of\b)\s*:?\s*"
               rf"({_AGE_NUM}|{_AGE_WORD})(?![\w.])", re.I),
]

# "Ernestine Pickering, 97, from ...": an age in commas after a capitalised word
_AGE_AFTER_NAME = re.compile(rf"[A-Z][a-z'-]+,\s({_AGE_NUM})(?=[,;)])")
# where _AGE_AFTER_NAME's comma is (a literal first character: re jumps to the commas)
_AGE_AFTER_COMMA = re.compile(rf",\s{_AGE_NUM}[,;)]")
_FAHRENHEIT = re.compile(r"\s?°?F\b")
_TEMPERATURE_BEFORE = re.compile(r"(?i:fever|temp|febrile|tmax|t max|degrees)|\d\s?°?C\s*\($")
_AGE_START = re.compile(r"9\d|1[01]\d|ninety|one hundred|a hundred|hundred")   # on lower case
_AGE_CUE = re.compile(r"age|turned")
# where _EXTENSION matches start (on lower case): a cue word at a word's start, then the number
# (each look-behind after the first letter: re still jumps to those letters at C speed)
_EXTENSION_WORD = re.compile(r"(?:e(?<!\we)xt(?:ension|\.)?|p(?<!\wp)(?:ager|gr)|b(?<!\wb)eeper|"
                             r"x(?<!\wx))\s?#?\s?\d")
_PHONE = re.compile(r"(?<![\w.+-])(?:(?:\+?\d{1,3}|00\d{1,2})[-.\s]?)?(?:\(\d{3}\)[-.\s]?|\d{3}[-.\s/])"
                    r"\d{3}[-.\s]?\d{4}(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?(?![\w-])", re.I)
# International numbers: "+" and a country code, then groups of digits (8 to 15 in all).
_INTL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w-])")
# A 7-digit local number needs a word that says it is one.
_LOCAL_PHONE = re.compile(r"\b(?:call|phone|ph|tel|telephone|cell|mobile|home|work|pager|beeper|"
                          r"contact|number|reached at|at)\b\W{0,4}(\d{3}[-.]\d{4})(?![\d-])", re.I)
_EXTENSION = re.compile(r"\b(?:ext\.?|extension|pager|pgr|beeper|x)\s?#?\s?(\d{3,6})\b", re.I)
_FAX_BEFORE = more_patterns.FAX_BEFORE       # "fax:" or "f:" right before a number
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?://|s?ftps?://|www\.)[^\s<>\"')\]]+", re.I)
_IP = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
                 r"(?![\d.]\d)")
_IPV6 = re.compile(r"\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b", re.I)
_SSN = re.compile(r"\d(?<![\d-]\d)\d\d-\d{2}-\d{4}(?![\d-])")

# Identifiers found by their label. Longer labels first so "license plate" beats "license".
_ID_LABELS = [
    ("SSN", r"ssn|social security(?: number| no\.?| #)?|soc\.? sec\.?|"
            r"social insurance(?: number| no\.?| #)?|sin(?: number| no\.?| #)|"
            r"national insurance(?: number| no\.?| #)?|ni(?: number| no\.?)|nric|ppsn|"
            r"pps(?: number| no\.?)|curp|codice fiscale|bsn|personnummer|tfn|"
            r"tax file(?: number| no\.?)|ird(?: number| no\.?)|national id(?: number| no\.?)?"),
    ("VEHICLE", r"license plate|licen[cs]e plate|plate(?: number| no\.?| #)?|vin|"
                r"vehicle(?: identification)?(?: number| no\.?| id| #)?|tag number"),
    ("HEALTH_PLAN", r"member(?: id| number| no\.?| #)?|policy(?: number| no\.?| id| #)?|"
                    r"insurance(?: id| number| no\.?| #)|health ?plan(?: id| number| no\.?| #)?|"
                    r"plan id|subscriber(?: id| number| no\.?| #)?|medicaid(?: id| number| no\.?| #)?|"
                    r"medicare(?: id| number| no\.?| #)?|health card(?: number| no\.?| #)?|ohip|ihi|"
                    r"nhs(?: number| no\.?| #)|chi(?: number| no\.?)|phn|ramq|aadhaar|beneficiary(?: id| number| #)?|group(?: number| no\.?| #)|"
                    r"hicn|mbi|insurance|group(?: number| no\.?| #)?|nss|cin|nhif|"
                    r"card(?: number| no\.?| #)?"),
    ("LICENSE", r"driver'?s? licen[cs]e(?: number| no\.?| #)?|licen[cs]e(?: number| no\.?| #)?|"
                r"lic\.?(?: no\.?| #)?|dea(?: number| no\.?| #)?|npi(?: number| no\.?| #)?|"
                r"certificate(?: number| no\.?| #)?|board certification|permit(?: number| #)?|"
                r"provider(?: number| no\.?| id| #)|prescriber(?: number| no\.?| id| #)|"
                r"registration(?: number| no\.?| #)|gmc(?: number| no\.?)?|nmc(?: pin)?|ahpra|"
                r"cpso(?: number| no\.?| #)?|reg\.? no\.?|permis"),
    ("DEVICE", r"serial(?: number| no\.?| #)?|s/n|sn|device(?: id| number| serial)|udi|"
               r"implant(?: id| serial)|model(?:/serial)?(?: number| no\.?| #)|lot(?: number| no\.?| #)?|"
               r"pacemaker serial|imei|mac address|asset(?: tag| number| no\.?| #)?"),
    ("MRN", r"m ?rn|mr ?#|mr no\.?|mr number|med(?:ical)? rec(?:ord)?(?: number| no\.?| #)?|"
            r"record(?: number| no\.?| #)|chart(?: number| no\.?| #)|hospital(?: number| no\.?| #)|"
            r"ur(?: number| no\.?| #)?|urn|uhid|nhi(?: number| no\.?)?|unit record(?: number| no\.?)?|"
            r"unit(?: number| no\.?)|patient(?: id| number| no\.?| #)|pt(?: id| #)|pid|emr(?: id| #)?|"
            r"dossier|op(?: number| no\.?)|ip(?: number| no\.?)"),
    ("ACCOUNT", r"csn|account(?: number| no\.?| #)?|acct\.?(?: number| no\.?| #)?|billing(?: number| id| #)?|"
                r"fin|har|encounter(?: number| no\.?| id| #)|visit(?: number| no\.?| id| #)|"
                r"invoice(?: number| no\.?| #)?|claim(?: number| no\.?| #)?"),
    ("OTHER_ID", r"accession(?: number| no\.?| #)?|acc ?#|specimen(?: number| no\.?| id| #)?|"
                 r"case(?: number| no\.?| id| #)|order(?: number| no\.?| id| #)|requisition(?: number| #)?|"
                 r"sample(?: number| id| #)|study(?: number| id| #)|ticket(?: number| #)?|"
                 r"reference(?: number| no\.?| #)|ref(?: number| no\.?| #)|"
                 r"confirmation(?: number| #)?|passport(?: number| no\.?| #)?|"
                 r"employee(?: id| number| #)|badge(?: number| #)?|id(?: number| no\.?| #)?|identifier|"
                 r"docket(?: number| no\.?| #)?|inmate(?: id| number| no\.?| #)?|"
                 r"booking(?: number| no\.?| #)|warrant(?: number| no\.?| #)|"
                 r"subject(?: id| number| no\.?| #)|participant(?: id| number| no\.?| #)|"
                 r"screening(?: id| number| no\.?| #)|randomi[sz]ation(?: id| number| no\.?| #)|"
                 r"enrollment(?: id| number| #)|rx(?: number| no\.?| #)|"
                 r"prescription(?: number| no\.?| #)|kit(?: id| number| no\.?| #)"),
]
_ID_VALUE = r"((?=[A-Z0-9-]{0,25}\d)[A-Z0-9][A-Z0-9./-]{2,24}[A-Z0-9]|\d{3,})"
# One pass for every label: the named group that matched says the category.
# Found value first (it must hold a digit: a fast scan), then its label in the 48 characters
# before it; scanning the whole text for 150 case-insensitive labels was 5x slower.
_ID_CANDIDATE = re.compile(r"\d")
_ID_AT = re.compile(_ID_VALUE, re.I)
_ID_LABEL_BEFORE = re.compile(
    r"\b(?:" + "|".join(f"(?P<{cat}>{labels})" for cat, labels in _ID_LABELS) +
    r")(?=[\s:#=.]|$)[\s:#=.-]{0,5}(?:is\s+|of\s+)?$", re.I)
_ID_CATEGORIES = [cat for cat, _ in _ID_LABELS]
_NUMBER_SIGN_BEFORE = re.compile(r"[A-Za-z][ \t]?#[ \t]?:?[ \t]*$")
# what these number is a protocol, a code or a place, not a person's record ("IRB #2024-0871")
_NOT_AN_ID_SIGN = re.compile(r"\b(?i:irb|protocol|nct|version|amendment|cpt|icd|room|bed|page|"
                             r"step|cycle|dose|lot)[ \t]?#[ \t]?:?[ \t]*$")
# a payer's or system's code between a label and the number ("member # UHC 9910 4421 07")
_PAYER_CODE = re.compile(r"\b[A-Z]{2,6}[ -]$")


def _top_level(alternation: str) -> list[str]:
    """The alternatives of a pattern at nesting depth 0 ("a|b(?:c|d)" -> ["a", "b(?:c|d)"])."""
    out, depth, cur, i = [], 0, "", 0
    while i < len(alternation):
        c = alternation[i]
        if c == "\\":
            cur += alternation[i:i + 2]
            i += 2
            continue
        depth += (c == "(") - (c == ")")
        if c == "|" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    return out + [cur]


def _labels_by_first_letter() -> re.Pattern:
    """_ID_LABEL_BEFORE with its label alternatives grouped by their first letter: at each
    position re tries the few labels that start with that letter, not all 150 (the same
    matches: alternatives with different first letters never both match at one position, and
    each group keeps the labels' order). The group that matched is named CATEGORY_k."""
    buckets: dict[str, list[str]] = {}
    for cat, labels in _ID_LABELS:
        for k, label in enumerate(_top_level(labels)):
            if not label[:1].isalpha() or label[1:2] in "?*+{":
                raise ValueError(f"label {label!r}: a label must start with a plain letter")
            buckets.setdefault(label[0].lower(), []).append(f"(?P<{cat}_{k}>{label[1:]})")
    alternation = "|".join(f"{first}(?:{'|'.join(alts)})" for first, alts in buckets.items())
    return re.compile(r"\b(?:" + alternation + r")(?=[\s:#=.]|$)[\s:#=.-]{0,5}(?:is\s+|of\s+)?$",
                      re.I)


_ID_LABEL_FAST = _labels_by_first_letter()


def _label_ends() -> frozenset[str]:
    """The last run of letters of every label _ID_LABELS spells (its language is finite:
    literals, classes, alternations and `?`), lower-cased: "medical record no." -> "no"."""
    from re import _constants as c, _parser

    def spell(items) -> list[str]:
        out = [""]
        for op, av in items:
            if op is c.LITERAL:
                alts = [chr(av)]
            elif op is c.IN:
                alts = [chr(a) if o is c.LITERAL else None for o, a in av]
            elif op is c.BRANCH:
                alts = [s for branch in av[1] for s in spell(branch)]
            elif op is c.SUBPATTERN:
                alts = spell(av[3])
            elif op is c.MAX_REPEAT and av[:2] == (0, 1):
                alts = [""] + spell(av[2])
            else:
                raise ValueError(f"label pattern: {op} is not spelled out here")
            if None in alts:
                raise ValueError("label pattern: only literal characters in classes")
            out = [o + a for o in out for a in alts]
        return out
    ends = set()
    for _, labels in _ID_LABELS:
        for label in spell(_parser.parse(labels)):
            m = re.search(r"[a-z]*$", label.rstrip(" :#=.-"))
            ends.add(m.group(0))
    return frozenset(ends)


_LABEL_ENDS = _label_ends() | {"is", "of"}      # "id is 123", "number of ..." go to the regex


_SEPARATORS = ":#=.-" + "".join(c for c in map(chr, range(0x110000)) if c.isspace())


def _may_follow_label(text: str, start: int) -> bool:
    """Necessary for _ID_LABEL_BEFORE to match before `start`, at C speed: the letters before
    the separators are the end of some label. (The label starts at a word boundary and holds
    no digit, so its last letter run is the whole last letter run of the text.)"""
    # (the separators stripped at C speed in a window; the characters loop where they fill it)
    base = max(0, start - 16)
    window = text[base:start].rstrip(_SEPARATORS)
    i = base + len(window) if window or not base else start
    while i > 0 and (text[i - 1] in ":#=.-" or text[i - 1].isspace()):
        i -= 1
    j = i
    while j > 0 and text[j - 1].isalpha():
        j -= 1
    word = text[j:i]
    return not word.isascii() or word.lower() in _LABEL_ENDS


# Unlabelled identifiers: long digit runs or letter+digit codes that no unit or word explains.
# A match starts after none of [\w.,/-] and holds only [A-Z0-9-]: no two overlap.
# (the first character is matched before the look-behind: re then skips to candidates at C speed)
_BARE_ID = re.compile(r"[A-Z\d](?<![\w.,/-].)(?:(?<=[A-Z])[A-Z]{0,3}-?\d{5,}|(?<=\d)\d{6,}|"
                      r"(?<=\d)\d+[A-Z]{1,3}\d{3,}|(?<=[A-Z0-9])[A-Z0-9]+-[A-Z0-9]{2,}-[A-Z0-9]{2,})"
                      r"(?![\w/])")
# letters, a 2-digit year, a serial: pathology / autopsy / study accessions (S19-004417, A19-031)
_ACCESSION = re.compile(r"\b[A-Z]{1,3}\d{2}-\d{3,}\b")
_DEA = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d{7}\b")
_VIN = re.compile(r"\b(?=[A-HJ-NPR-Z0-9]{0,16}\d)(?=[A-HJ-NPR-Z0-9]{0,16}[A-Z])[A-HJ-NPR-Z0-9]{17}\b")

_STATES = ("AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV "
           "NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR").split()
_STATE_NAMES = ("Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|"
                "Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|"
                "Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|"
                "New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|"
                "Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|"
                "Texas|Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming")
_STATE = rf"(?:{'|'.join(_STATES)}|{_STATE_NAMES})"
_STREET_TYPE = (r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|"
                r"place|pl|terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|"
                r"run|loop|alley|row|crescent|close|pike|turnpike|plaza|ridge|path|pass|point|pt|"
                r"crossing|xing|heights|hts|park|grove|gardens|center|ctr|commons|expressway|expy|"
                r"freeway|fwy|cliffs?|manors?|parks|cove|cv|crest|plains|estates?|falls|ferry|"
                r"fields?|flats?|forest|forks?|fort|glens?|greens?|harbor|hbr|haven|hills?|hollow|"
                r"inlet|islands?|isle|junction|jct|keys?|knolls?|lakes?|landing|lights?|lodge|"
                r"meadows?|mews|mills?|mission|motorway|mount|mountains?|mtn|neck|orchard|oval|"
                r"overpass|passage|pines?|ports?|prairie|radial|ramp|ranch|rapids?|rest|ridges?|"
                r"river|shoals?|shores?|skyway|springs?|spurs?|stations?|stravenue|stream|summit|"
                r"throughway|trace|track|trafficway|tunnel|underpass|union|valleys?|viaduct|views?|"
                r"villages?|ville|vista|walks?|wall|ways|wells?|bypass|bayou|beach|bend|bluffs?|"
                r"bottom|branch|bridge|brook|burgs?|camp|canyon|cape|causeway|club|common|corners?|"
                r"course|courts|creek|curve|dale|dam|divide|drives|extensions?|gateway|gardens|"
                r"harbors|lock|locks|loaf|lane|route|rte|sq)")
_UNIT = r"(?:,?\s*(?:apt|apartment|suite|ste|unit|#|room|rm|floor|fl|bldg|building)\.?\s*#?\s*[\w-]+)"
_STREET = re.compile(
    # capitalised street names (any suffix), or lower-case dictation with a spelled-out suffix
    rf"\d(?<![\w/.-]\d)\d{{0,5}}[A-Z]?[ ]{{1,2}}(?:(?:[NSEW]\.?|North|South|East|West)[ ]+)?"
    rf"(?:(?:(?:[A-Z][A-Za-z'-]*\.?|\d+(?:st|nd|rd|th))[ ]){{1,3}}(?i:{_STREET_TYPE})\b\.?"
    rf"|(?:[a-z][a-z'-]*[ ]){{1,3}}(?:street|avenue|road|drive|lane|boulevard|court|place|"
    rf"circle|parkway|highway|terrace)\b)"
    rf"(?:[ ]+(?:[NSEW]{{1,2}}|North|South|East|West)\b\.?)?(?i:{_UNIT})?")
# After a street: ", City, ST 12345" or " City ST 12345" belongs to the same address.
_CITY_TAIL = re.compile(rf"(?:,?[ \t]+(?:[A-Z][A-Za-z'.-]+[ \t]?){{1,3}},?[ \t]+(?:[A-Z]{{2}}\b\.?|{_STATE_NAMES})"
                        r"(?:[ \t]+\d{5}(?:-\d{4})?)?)")
# "Address: ..." / "lives at ...": the rest of the line is the address.
_ADDRESS_LABEL = re.compile(r"\b(?:(?:home |mailing |street |patient |pt )?address|addr\b\.?|"
                            r"lives at|residing at|resides at)\s*[:#-]?[ \t]*([^\n]{6,100})", re.I)
# Place names with the suffixes of US towns (Danielburgh, Andersonfort, Bellton, Lake Mary).
_PLACE_SUFFIX = re.compile(r"\b(?:(?:Lake|Port|East|West|North|South|New|Fort|Mount|Saint|St\.?) )?"
                           r"[A-Z][a-z]+(?:burgh|borough|boro|bury|ville|ton|town|fort|mouth|side|"
                           r"land|field|port|view|chester|haven|shire|berg|burg|stad|furt|"
                           r"wood|dale|ford|ham|mont)\b")
# A street named without its number: "on Valencia St", "lives on elm street".
_STREET_ON = re.compile(r"\b(?:[Ll]ives|[Ll]iving|[Ss]tays|[Ss]taying|[Rr]esides|[Hh]ouse|"
                        r"[Aa]partment|[Hh]ome)[ ]on[ ]((?:[a-z][a-z'-]+[ ]){1,2}"
                        r"(?:street|avenue|road|lane|drive|boulevard|court|place|terrace|circle|"
                        r"parkway)\b)"
                        r"|\bon[ ]((?:[A-Z][a-z'-]+[ ]){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|"
                        r"Blvd|Lane|Drive|Court|Place|Terrace|Way|Circle|Highway|Hwy|Parkway|Pkwy)\b\.?)")
_PO_BOX = re.compile(r"\b(?:p\.?\s?o\.?\s?box|post office box)\s*#?\s*\d+", re.I)
# "Springfield, IL 62704" / "Boston, Massachusetts" / "Austin TX 78701"
_CITY_STATE = re.compile(
    rf"((?:[A-Z][a-zA-Z'.-]+\s){{0,2}}[A-Z][a-zA-Z'.-]+),?\s+({_STATE})\b\.?"
    rf"(?:,?\s+(\d{{5}}(?:-\d{{4}})?)(?![\d-]))?")      # (a ZIP is 5 or 5+4 digits, not 7)
_CAPITALISED = re.compile(r"[A-Z](?<!\w[A-Z])[A-Za-z]+\b")
_PLACE_ENDINGS = ("burgh", "borough", "boro", "bury", "ville", "ton", "town", "fort", "mouth",
                  "side", "land", "field", "port", "view", "chester", "haven", "shire", "berg",
                  "burg", "stad", "furt", "wood", "dale", "ford", "ham", "mont")
_PLACE_PREFIX = re.compile(r"\b(?:Lake|Port|East|West|North|South|New|Fort|Mount|Saint|St\.?) $")
_STATE_SET = frozenset(_STATES)
_STATE_WORDS = frozenset(_STATE_NAMES.split("|"))
_STATE_FIRST_WORDS = frozenset(n.split()[0] for n in _STATE_NAMES.split("|") if " " in n)
# the words that may start a "City, State" (the 2-letter codes are upper case already)
_STATE_TRIGGERS = _STATE_WORDS | _STATE_SET | _STATE_FIRST_WORDS
_ZIP_LABEL = re.compile(r"\b(?:zip(?: ?code)?|postal code)\s*:?\s*(\d{5}(?:-\d{4})?)\b", re.I)
_ZIP_BARE = re.compile(r"\d(?<![\w-]\d)\d{4}-\d{4}(?![\w-])")
_CITY_CONTEXT = re.compile(
    r"\b(?i:(?:lives|living|resides|residing|stays|staying)\b[^.\n]{0,30}?\bin|"
    r"lives in|living in|resides in|resident of|moved (?:here )?from|moved to|native of|"
    r"relocated (?:from|to)|born in|grew up in|city:|town:|home in|from the town of|visiting from|"
    r"travel(?:l?ed)? to|trip to|vacation in|works in)\s+((?:[A-Z][a-z'-]+(?:[ \t](?=[A-Z]))?){1,3})")
# "seen on the 5th": an ordinal day on its own, not "5th rib" / "5th percentile"
_ORDINAL_DAY = re.compile(r"\b(?:on|since|until|by|before|after|from|through|thru|till|"
                          r"(?:mon|tues?|wednes|thurs?|fri|satur|sun)(?:day)?|wed|thu)\s+the\s+([12]?\d(?:st|nd|rd|th)|3[01](?:st|th))"
                          r"\b(?!\s+(?:percentile|rib|ribs|finger|toe|digit|grade|metatarsal|"
                          r"metacarpal|decade|intercostal|ics|cranial|nerve|vertebra|day|week|"
                          r"month|year|time|dose|cycle|of\s+(?:the|a)\b))", re.I)

# precompiled: re's own cache costs a lookup per call in these loops
_DIGIT_RUN = re.compile(r"\d+")
_SHORT_NUMBER = re.compile(r"\d{1,3}")
_YEAR = re.compile(r"(?:19|20)\d\d")
_UNIT_AFTER = re.compile(r"\s*(?:mg|mcg|ml|units|cells|/|%|copies|iu)", re.I)
# the end of a labelled address: its ZIP or postcode, or a sentence's end, when more follows
_ADDRESS_CODE_END = re.compile(r"(?:\b\d{5}(?:-\d{4})?|\b[A-Z]{1,2}\d[A-Z\d]?[ ]\d[A-Z]{2}|"
                               r"\b[A-Z]\d[A-Z][ ]\d[A-Z]\d)(?=[,.;:?!]?[ ]+[(\w])|[a-z]\.(?=[ ]+[A-Z])")
# lower-case words before the number of a labelled address ("we're at is 41 ...")
_ADDRESS_LEAD = re.compile(r"(?:[a-z][a-z']*[ ,:-]+|\d{1,2}[:.)][ ]+){1,6}(?=\d)")
_ADDRESS_END = re.compile(r"\s{2,}|\b(?:phone|tel|fax|email|dob|mrn|pcp)\b|"
                          r"\s(?:and|with|who|where|since|but|her|his|she|he|they)\b", re.I)

# --- scanning less text, same matches --------------------------------------------------------
# Python's `re` tries a pattern that opens with a word alternation at every position. Where each
# match must hold an "anchor" (a literal, a digit run) within `back` characters of its start,
# only the starts near an anchor are tried: the same matches, in the same order, as finditer.
def _anchored(rx: re.Pattern, text: str, find_anchor, back: int) -> Iterator[re.Match]:
    positions = getattr(find_anchor, "positions", None)
    if positions is not None:                   # a list: walked without a call per anchor
        return _anchored_listed(rx, text, positions, back)
    return _anchored_found(rx, text, find_anchor, back)


def _anchored_found(rx: re.Pattern, text: str, find_anchor, back: int) -> Iterator[re.Match]:
    pos = tried = 0             # matches start at >= pos; starts below `tried` failed
    a = find_anchor(0)
    while a >= 0:
        m = None
        for s in range(max(pos, tried, a - back), a + 1):
            m = rx.match(text, s)
            if m:
                break
        if m:
            yield m
            pos = tried = m.end()
            a = find_anchor(pos)
        else:
            tried = a + 1
            a = find_anchor(a + 1)


def _anchored_listed(rx: re.Pattern, text: str, positions: list[int],
                     back: int) -> Iterator[re.Match]:
    """_anchored_found for the sorted anchors `positions` (the same steps, on the list)."""
    pos = tried = k = 0
    n = len(positions)
    match = rx.match
    while k < n:
        a = positions[k]
        if a < pos:                 # (after a match: the first anchor at or after its end)
            k += 1
            continue
        m = None
        for s in range(max(pos, tried, a - back), a + 1):
            m = match(text, s)
            if m:
                break
        if m:
            yield m
            pos = tried = m.end()
        else:
            tried = a + 1
            k += 1


def _literal_anchor(low: str, word: str):
    return lambda i: low.find(word, i)


def _listed_anchor(positions: list[int]):
    """The first of the sorted `positions` at or after i (-1: none): one scan for the anchors
    that several patterns share."""
    def find(i: int) -> int:
        k = bisect.bisect_left(positions, i)
        return positions[k] if k < len(positions) else -1
    find.positions = positions          # (_anchored walks the list itself)
    return find


def _regex_anchor(rx: re.Pattern, text: str):
    def find(i: int) -> int:
        m = rx.search(text, i)
        return m.start() if m else -1
    return find


_PHONE7 = re.compile(r"\d{3}[-.]\d{4}")               # the number _LOCAL_PHONE ends with
# every _PHONE match holds its area code and number, this far from its start at most
_PHONE_CORE = re.compile(r"(?:\(\d{3}\)[-.\s]?|\d{3}[-.\s/])\d{3}[-.\s]?\d{4}")
_PHONE_BACK = len("+123-")
_LOCAL_PHONE_BACK = len("reached at") + 4             # longest cue word, then \W{0,4}
_LETTER = re.compile(r"[^\W\d_]")         # (letters and a few numeric signs: any isalpha char)


def _phone7_after_letter(text: str):
    """The _PHONE7 anchors of _LOCAL_PHONE with a letter in the 5 characters before: its cue
    word ends there ("call 555-1234"); the 7 last digits of "555-867-5309" are no anchor."""
    def find(i: int) -> int:
        while True:
            m = _PHONE7.search(text, i)
            if m is None:
                return -1
            a = m.start()
            if _LETTER.search(text, a - 5 if a > 5 else 0, a):
                return a
            i = a + 1
    return find
_MAY_BACK = len("through") + 1                        # longest preposition, then [ -]
# necessary for an IPv4 address: "d.d.d" (a C-speed digit scan; most notes have many dots),
# from the last digit of the first number: at most 2 characters after the match's start
_IP_HINT = re.compile(r"\d\.\d{1,3}\.\d")
# every match of the month-first patterns (the date patterns that run_matches does not scan:
# "March 3rd", "march fourth", "Mar-22-2019") starts with one of these (on lower case), at a
# word's start: "summary" and "decreased" are dropped in Python (a look-behind here would make
# re try every position instead of jumping to the letters)
_MONTH_WORD = re.compile(r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec")
_DATE_MONTH_FIRST = _DATE_RES[6]        # searched near the month names
_IPV6_HINT = re.compile(r":[0-9a-f]{1,4}:[0-9a-f]{1,4}:", re.I)      # necessary for _IPV6
# necessary for _ORDINAL_DAY ("on the 5th"): a digit and its ordinal suffix
_ORDINAL_HINT = re.compile(r"\d(?i:st|nd|rd|th)")
_ORDINAL_THE = re.compile(r"the\s+\d")                  # also necessary (on lower case)
# _MONTH_ALONE is case-sensitive: each match starts with one of these words
_MONTH_CAPITAL = re.compile(r"(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\b")
# each match of _CITY_CONTEXT / _ADDRESS_LABEL holds one of these (ASCII text, lower-cased)
_CITY_CUES = ("liv", "resid", "stay", "moved", "native of", "relocated", "born in", "grew up in",
              "city:", "town:", "home in", "from the town of", "visiting from", "travel",
              "trip to", "vacation in", "works in")
_ADDRESS_CUES = ("addr", "lives at", "residing at", "resides at")
# the same cues as one search: each match of the pattern starts at its cue (or `back` before)
_CITY_CUE = re.compile("|".join(re.escape(c) for c in _CITY_CUES))
_ADDRESS_CUE = re.compile("|".join(re.escape(c) for c in _ADDRESS_CUES))
# the literals that the detectors above test before they scan (see gates.py: one pass for all)
_CITY_GATE = gates.literals(*_CITY_CUES, lower=True)
_ADDRESS_GATE = gates.literals(*_ADDRESS_CUES, lower=True)
_ZIP_GATE = gates.literals("zip", "postal", lower=True)
_BOX_GATE = gates.literals("box", lower=True)
_ON_GATE = gates.literals(" on ")
_HOLIDAY_GATE = gates.literals(*_HOLIDAY_WORDS, lower=True)
_MAY_GATE = gates.literals("may", "May", "MAY")
_URL_GATE = gates.literals("://", "www.", "WWW.")


# anchor patterns that csrc/deid_scan.cpp transcribes (every position where each matches)
_native_anchor_starts = getattr(native._dicom, "deid_anchor_starts", None)
_NATIVE_ANCHORS = {rx: kind for rx, kind in ((_PHONE_CORE, "phone_core"), (_IP_HINT, "ip_hint"),
                                              (_MONTH_CAPITAL, "month_capital"),
                                              (_AGE_START, "age_start"), (_AGE_CUE, "age_cue"),
                                              (_ORDINAL_HINT, "ordinal_hint"),
                                              (_EXTENSION_WORD, "extension_cue"))
                   if native.function("deid_anchor_starts", "anchor_" + kind, rx)}


# (phone7_letter: _phone7_after_letter's positions)
_native_phone7 = native.function("deid_anchor_starts", "anchor_phone7_letter", _PHONE7, _LETTER,
                                 _phone7_after_letter)


def _positions(rx: re.Pattern, text: str) -> list[int] | None:
    """Every position where rx matches, from C++, where rx is a native anchor and text ASCII."""
    kind = _NATIVE_ANCHORS.get(rx)
    if kind is None or not text.isascii():
        return None
    return _anchor_list(kind, text)


# The anchor lists of one string, every kind of its group in one C++ call (made when the first
# is asked for, reused by the other detectors): kinds on the note, kinds on its lower case.
_LOW_KINDS = ("age_start", "age_cue", "extension_cue")
_TEXT_KINDS = ("phone_core", "ip_hint", "month_capital", "ordinal_hint", "word_gate",
               "phone7_letter")
_native_anchor_table = getattr(native._dicom, "deid_anchor_table", None)
_ANCHOR_MEMO = {_LOW_KINDS: (None, None), _TEXT_KINDS: (None, None)}   # group: (string, lists)


def _anchor_list(kind: str, s: str) -> list[int]:
    """_native_anchor_starts(kind, s) (s ASCII)."""
    if _native_anchor_table is None:
        return _native_anchor_starts(kind, s)
    group = _LOW_KINDS if kind in _LOW_KINDS else _TEXT_KINDS
    memo = _ANCHOR_MEMO[group]                  # (one tuple: read whole, thread-safe)
    if memo[0] is not s:
        memo = _ANCHOR_MEMO[group] = (s, dict(zip(group, _native_anchor_table(s, group))))
    return memo[1][kind]


def _anchor(rx: re.Pattern, text: str):
    """_regex_anchor(rx, text); for ASCII text and a pattern of _NATIVE_ANCHORS, from the
    list of its positions that C++ finds in one pass (where the extension is built)."""
    positions = _positions(rx, text)
    return _regex_anchor(rx, text) if positions is None else _listed_anchor(positions)


def _cued(rx: re.Pattern, text: str, low: str | None, cue: re.Pattern, back: int):
    return rx.finditer(text) if low is None else _anchored(rx, text, _anchor(cue, low), back)


# --- one scan for the patterns that start at a run of digits / at a capitalised word --------
# Each pattern of _RUN_PATTERNS matches only where a run of digits starts (its first character
# is a digit that its look-behind forbids after another digit); each of _WORD_PATTERNS only at
# a capital letter that starts a word. One pass visits those starts and tries every pattern
# there inside a look-ahead (wrapped in a one-character look-behind, so the pattern itself is
# used as written); re.finditer's matches of a pattern are then its matches at those starts,
# each taken when it begins at or after the end of the one before.
# A pattern added here must keep that property (tests/data/test_deid_text.py checks the scans
# against finditer). In the digit scan, group A needs [/.-] right after the run, group B does
# not allow it, so the other group is not tried.
_RUN_A = {"date0": _DATE_RES[0], "date1": _DATE_RES[1], "date2": _DATE_RES[2],
          "date3": _DATE_RES[3], "date4": _DATE_RES[4], "month_day": _MONTH_DAY, "ssn": _SSN,
          "zip": _ZIP_BARE}
_RUN_B = {"date7": _DATE_RES[7], "street": _STREET}
_RUN_ANY = {"date5": _DATE_RES[5], "bare_id": _BARE_ID, "vin": _VIN}
_RUN_PATTERNS = {**_RUN_A, **_RUN_B, **_RUN_ANY}
_WORD_PATTERNS = {"dea": _DEA, "bare_id": _BARE_ID, "vin": _VIN, "accession": _ACCESSION}
# Every _WORD_PATTERNS match also holds a digit or a hyphen in the run of [A-Z0-9] its capital
# starts: the word scan tries the patterns only there ("Patient", "The" are skipped at C speed).
# A word pattern without that property needs this look-ahead widened.
_WORD_GATE = r"(?=[A-Z0-9]*[\d-])"


def _tried_here(patterns: dict, first: str) -> str:
    """Each pattern as an optional look-ahead from the character `first` just matched."""
    return "".join(f"(?:(?<=(?=(?P<{name}>{f'(?i:{rx.pattern})' if rx.flags & re.I else rx.pattern}"
                   f"))(?:{first})))?" for name, rx in patterns.items())


def _none_matched(patterns: dict) -> str:
    """Fails where no pattern matched: such starts are not reported."""
    out = "(?!)"
    for name in reversed(patterns):
        out = f"(?({name})|{out})"
    return out


_RUN_SCANNER = re.compile(r"\d(?<!\d\d)(?:(?=\d*[/.-])" + _tried_here(_RUN_A, r"\d") + "|" +
                          _tried_here(_RUN_B, r"\d") + ")" + _tried_here(_RUN_ANY, r"\d") +
                          _none_matched(_RUN_PATTERNS))
_WORD_START = re.compile(r"[A-Z](?<!\w[A-Z])" + _WORD_GATE)   # where the word scan is tried
_WORD_SCANNER = re.compile(_WORD_START.pattern +
                           _tried_here(_WORD_PATTERNS, "[A-Z]") +
                           _none_matched(_WORD_PATTERNS))
if native.function("deid_anchor_starts", "anchor_word_gate", _WORD_START):
    _NATIVE_ANCHORS[_WORD_START] = "word_gate"


def _scan(scanner: re.Pattern, text: str, starts=None) -> dict[str, list[tuple[int, int]]]:
    """The spans of each pattern of the scanner; `starts`: the only positions where the
    scanner can match, if known (it is tried only there)."""
    groups = _SCAN_GROUPS.get(scanner) or _scan_groups(scanner)
    out = {name: [] for name, _ in groups}
    if starts is not None and not starts:
        return out                               # (no start: no match)
    last = dict.fromkeys(out, 0)                 # where the pattern's previous match ended
    matches = scanner.finditer(text) if starts is None else \
        filter(None, map(partial(scanner.match, text), starts))
    for m in matches:
        regs = m.regs
        # (the patterns that matched here: a comprehension, most of them did not)
        for name, (s, e) in [(name, regs[k]) for name, k in groups if regs[k][0] >= 0]:
            if s >= last[name]:
                out[name].append((s, e))
                last[name] = e
    return out


_SCAN_GROUPS: dict[re.Pattern, tuple] = {}


def _scan_groups(scanner: re.Pattern) -> tuple:
    """(name, group number) of each pattern of the scanner (the inner groups are unnamed)."""
    _SCAN_GROUPS[scanner] = tuple(scanner.groupindex.items())
    return _SCAN_GROUPS[scanner]


def run_matches(text: str) -> dict[str, list[tuple[int, int]]]:
    """pattern name -> the spans re.finditer gives for it, for every pattern in _RUN_PATTERNS
    (of those that also start at words, the part that starts at digits)."""
    if _native_run_masks is not None and text.isascii():
        return _masked_run_matches(text, _native_run_masks(text))
    return _scan(_RUN_SCANNER, text)


# csrc's deid_run_masks: the digit runs where some _RUN_PATTERNS pattern may match, and which
# (bit k: _RUN_BITS[k]), from a necessary condition of each pattern on what follows the run. A
# pattern added to _RUN_PATTERNS needs its bit and condition there too (until then the scan
# runs: the fingerprint covers the patterns; tests/data/test_deid_text.py compares both).
_RUN_BITS = ("date0", "date1", "date2", "date3", "date4", "month_day", "ssn", "zip", "date7",
             "street", "date5", "bare_id", "vin")


def _masked_run_matches(text: str, masks: list[tuple[int, int]]) -> dict:
    """_scan(_RUN_SCANNER, text)'s result, each pattern tried alone at the runs where its bit is
    set (the scanner tries every pattern at a run: those with a clear bit fail there)."""
    out = {name: [] for name in _RUN_SCANNER.groupindex}
    last = dict.fromkeys(out, 0)
    for a, mask in masks:
        for name, match in _MASK_PATTERNS.get(mask) or _mask_patterns(mask):
            m = match(text, a)
            if m is not None and a >= last[name]:
                out[name].append(m.span())
                last[name] = m.end()
    return out


_MASK_PATTERNS: dict[int, tuple] = {}


def _mask_patterns(mask: int) -> tuple:
    """(name, pattern.match) of the patterns whose bits `mask` sets."""
    _MASK_PATTERNS[mask] = tuple((name, _RUN_PATTERNS[name].match)
                                 for k, name in enumerate(_RUN_BITS) if mask >> k & 1)
    return _MASK_PATTERNS[mask]


_native_run_masks = native.function(
    "deid_run_masks", "run_masks", _RUN_SCANNER, _RUN_BITS, _masked_run_matches,
    *(f"{name}={rx.pattern}\0{int(rx.flags)}" for name, rx in _RUN_PATTERNS.items()))


def word_matches(text: str) -> dict[str, list[tuple[int, int]]]:
    """The same for _WORD_PATTERNS (the part that starts at capitals)."""
    return _scan(_WORD_SCANNER, text, _positions(_WORD_START, text))


def _lower_ascii(text: str) -> str | None:
    """text.lower() where it keeps every index and re's case folding is plain ASCII; else None.
    (The same string object for the same text: the detectors share it, and the anchor lists
    made on it.)"""
    global _LOWER_MEMO
    memo = _LOWER_MEMO
    if memo[0] is text:
        return memo[1]
    memo = _LOWER_MEMO = (text, text.lower() if text.isascii() else None)
    return memo[1]


_LOWER_MEMO: tuple = (None, None)


def dates(text: str, runs: dict | None = None) -> Iterator[Span]:
    low = _lower_ascii(text)
    runs = runs or run_matches(text)
    months = None
    for i, rx in enumerate(_DATE_RES):
        if f"date{i}" in runs:
            found = runs[f"date{i}"]
        elif low is None:
            found = [m.span() for m in rx.finditer(text)]
        else:
            if months is None:
                months = _month_starts(low)
            found = [m.span() for m in _anchored(rx, text, _listed_anchor(months), 0)] \
                if months else ()
        for s, e in found:
            if _plausible_date(text[s:e]):
                yield s, e, "DATE"
    for m in _anchored(_MONTH_ALONE, text, _anchor(_MONTH_CAPITAL, text), 0):
        yield m.start(), m.end(), "DATE"
    holiday = low is None or _HOLIDAY_GATE(text)
    for m in _HOLIDAY.finditer(text) if holiday else ():
        yield m.start(), m.end(), "DATE"
    # (its month name starts a word: among the month-first anchors, where there are, those
    # where the text spells a lower-case month in full: "mar" of "marked" is no anchor)
    anchor = _regex_anchor(_LOWER_MONTH_NAME, text) if months is None else \
        _listed_anchor([a for a in months if text.startswith(_LOWER_MONTH_NAMES, a)])
    for m in _anchored(_LOWER_MONTH, text, anchor, _MAY_BACK):
        yield m.start(1), m.end(1), "DATE"
    hints = _positions(_ORDINAL_HINT, text)
    ordinal = (_ORDINAL_HINT.search(text) if hints is None else hints) and \
        (low is None or _ORDINAL_THE.search(low))
    for m in _ORDINAL_DAY.finditer(text) if ordinal else ():
        yield m.start(1), m.end(1), "DATE"
    if _MAY_GATE(text):
        found = _MAY_ALONE.finditer(text) if low is None else \
            _anchored(_MAY_ALONE, text, _literal_anchor(low, "may"), _MAY_BACK)
        for m in found:
            yield m.start(1), m.end(1), "DATE"
    for s, _ in runs["month_day"]:
        m = _MONTH_DAY.match(text, s)
        month, day = int(m.group(1)), int(m.group(2))
        if not (1 <= month <= 12 and 1 <= day <= 31):
            continue
        before, after = text[max(0, m.start() - 24):m.start()], text[m.end():m.end() + 16]
        if (_not_date_before(before) or _NOT_DATE_AFTER.match(after)) and \
                not _WEEKDAY_BEFORE.search(before):
            continue                            # ("Tues 4/2 with Dr. X": a weekday says date)
        scale = _SCALES.get(day)         # "pain 6/10 ... relief to 2/10", "strength 4/5"
        if scale and month <= day and scale.search(text, max(0, m.start() - 80), m.start()):
            continue
        if month <= day and more_patterns.after_test_name(text, m.start()):
            continue                            # "Kapandji 9/10", "GAD-7 5/21": a score
        yield m.start(), m.end(), "DATE"


# _NOT_DATE_BEFORE is literal words (each ending in a word character), \W{0,3}, then the end:
# for ASCII text, a suffix test after the trailing non-word characters says the same.
_NOT_DATE_WORDS = tuple(_NOT_DATE_BEFORE.pattern[3:_NOT_DATE_BEFORE.pattern.index(")")].split("|"))


def _month_starts_python(low: str) -> list[int]:
    """The _MONTH_WORD matches in `low` (lower-case ASCII) that start a word: the anchors of
    the month-first patterns."""
    return [a for a in (m.start() for m in _MONTH_WORD.finditer(low))
            if not (a and low[a - 1].isalpha())]


# csrc's deid_month_starts where the extension is built
_month_starts = native.function("deid_month_starts", "month_starts", _MONTH_WORD,
                                _month_starts_python) or _month_starts_python


def _not_date_before(before: str) -> bool:
    """_NOT_DATE_BEFORE.search(before), without trying the words at every position."""
    if not before.isascii():
        return bool(_NOT_DATE_BEFORE.search(before))
    q = len(before)
    while q and not (before[q - 1].isalnum() or before[q - 1] == "_"):
        q -= 1
    trailing = len(before) - q              # `$` also matches before a final newline
    if trailing > 3 and not (trailing == 4 and before.endswith("\n")):
        return False
    return before[:q].lower().endswith(_NOT_DATE_WORDS)


def _plausible_date(s: str) -> bool:
    if s.isascii() and s.strip("0123456789/.-"):
        return True                     # (a letter or a space: no numeric date to check)
    nums = [int(x) for x in _DIGIT_RUN.findall(s)]
    if len(nums) >= 3 and all(c.isdigit() or c in "/.-" for c in s):
        a, b, c = nums[:3]
        if a > 31:                       # y-m-d
            return 1 <= b <= 12 and 1 <= c <= 31
        # m/d/y or d/m/y; "1.5.2" style versions and scores are rejected by the ranges
        return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)
    return True


def ages(text: str) -> Iterator[Span]:
    low = _lower_ascii(text)
    if low is None:
        found = [_AGE_RES[0].finditer(text), _AGE_RES[1].finditer(text)]
    else:               # each match starts at its number / its cue word ("at age": 3 before)
        found = [_anchored(_AGE_RES[0], text, _anchor(_AGE_START, low), 0),
                 _anchored(_AGE_RES[1], text, _anchor(_AGE_CUE, low), 3)]
    found.append(_anchored(_AGE_AFTER_NAME, text, _regex_anchor(_AGE_AFTER_COMMA, text), 41))
    for matches in found:
        for m in matches:
            if _FAHRENHEIT.match(text, m.end(1)) and \
                    _TEMPERATURE_BEFORE.search(text, max(0, m.start(1) - 30), m.start(1)):
                continue            # "fever over 38.3 C (101 F)": degrees, not a woman of 101
            yield m.start(1), m.end(1), "AGE"


def contacts(text: str, runs: dict | None = None) -> Iterator[Span]:
    # each pattern runs only where its indispensable character occurs (a C-speed `in`)
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.start(), m.end(), "EMAIL"
    if _URL_GATE(text):
        for m in _URL.finditer(text):
            if not more_patterns.standards_url(m.group(0)):
                yield m.start(), m.end(), "URL"
    if text.count(".") >= 3 and _IP_HINT.search(text):
        for m in _anchored(_IP, text, _anchor(_IP_HINT, text), 2):
            yield m.start(), m.end(), "IP"
    if text.count(":") >= 7 and _IPV6_HINT.search(text):
        for m in _IPV6.finditer(text):
            yield m.start(), m.end(), "IP"
    for m in _anchored(_PHONE, text, _anchor(_PHONE_CORE, text), _PHONE_BACK):
        before = text[max(0, m.start() - 14):m.start()]
        yield m.start(), m.end(), "FAX" if _FAX_BEFORE.search(before) else "PHONE"
    for m in _INTL_PHONE.finditer(text) if "+" in text else ():
        if 8 <= sum(c.isdigit() for c in m.group(0)) <= 15:
            before = text[max(0, m.start() - 14):m.start()]
            yield m.start(), m.end(), "FAX" if _FAX_BEFORE.search(before) else "PHONE"
    phone7 = _listed_anchor(_anchor_list("phone7_letter", text)) \
        if _native_phone7 and text.isascii() else _phone7_after_letter(text)
    for m in _anchored(_LOCAL_PHONE, text, phone7, _LOCAL_PHONE_BACK):
        yield m.start(1), m.end(1), "PHONE"
    for m in _cued(_EXTENSION, text, _lower_ascii(text), _EXTENSION_WORD, 0):
        yield m.start(1), m.end(1), "PHONE"
    if "-" in text:
        for s, e in (runs or run_matches(text))["ssn"]:
            yield s, e, "SSN"


def _id_values(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the identifier values (_ID_AT, from each digit's alphanumeric run) that a
    label, a "#" or a payer code ("UHC 9910") may precede: the values identifiers() then looks
    at."""
    pos = 0
    while True:
        digit = _ID_CANDIDATE.search(text, pos)
        if digit is None:
            break
        start = digit.start()        # back up to the start of the alphanumeric run
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "./-") and \
                digit.start() - start < 24:
            start -= 1
        while start < digit.start() and not text[start].isalnum():
            start += 1
        m = _ID_AT.match(text, start)
        pos = max(m.end() if m else digit.end(), digit.end())
        if m is not None and (_may_follow_label(text, start) or
                              "#" in text[max(0, start - 8):start] or
                              start >= 2 and text[start - 2].isupper()):   # a payer code
            yield start, m.end()


# csrc/deid_scan.cpp transcribes _id_values for ASCII text (None: extension not built)
_NATIVE_ID_VALUES = native.id_scanner(_LABEL_ENDS, _ID_CANDIDATE, _ID_AT, _id_values,
                                      _may_follow_label)


_PROTOCOL_BEFORE = re.compile(r"(?i:protocol|study|trial)\W{0,3}$")


def identifiers(text: str, runs: dict | None = None) -> Iterator[Span]:
    native_ok = _NATIVE_ID_VALUES is not None and text.isascii()
    for start, end in _NATIVE_ID_VALUES(text) if native_ok else _id_values(text):
        label = _ID_LABEL_FAST.search(text, max(0, start - 48), start) \
            if _may_follow_label(text, start) else None
        first = start
        if label is None and text[start - 2:start - 1].isupper():   # "member # UHC 9910 4421"
            code = _PAYER_CODE.search(text, max(0, start - 8), start)
            if code and _may_follow_label(text, code.start()):
                label = _ID_LABEL_FAST.search(text, max(0, code.start() - 48), code.start())
                first = code.start()        # (the code is part of the identifier)
        if label is not None:
            cat = label.lastgroup.rsplit("_", 1)[0]
        elif "#" in text[max(0, start - 8):start] and \
                _NUMBER_SIGN_BEFORE.search(text, max(0, start - 8), start) and \
                not _NOT_AN_ID_SIGN.search(text, max(0, start - 16), start):
            cat = "OTHER_ID"         # "EEG #: E19-0211": whatever a "#" numbers is an identifier
        else:
            continue
        value = text[start:end]
        if cat == "OTHER_ID" and _SHORT_NUMBER.fullmatch(value):
            continue
        if _YEAR.fullmatch(value):
            continue                 # "Vehicle: 2014 Subaru": a year alone is no identifier
        yield first, start + len(value), cat
    runs, words = runs or run_matches(text), word_matches(text)
    for s, e in words["accession"]:
        yield s, e, "OTHER_ID"
    for s, e in words["dea"]:
        yield s, e, "LICENSE"
    for s, e in runs["vin"] + words["vin"]:             # (never overlapping: \b at both ends)
        yield s, e, "VEHICLE"
    for s, e in runs["bare_id"] + words["bare_id"]:     # (never overlapping: see _BARE_ID)
        if _UNIT_AFTER.match(text[e:e + 8]):
            continue
        if text.startswith("NCT", s) or _PROTOCOL_BEFORE.search(text, max(0, s - 12), s):
            continue                # a trial's registry number or protocol names no person
        yield s, e, "OTHER_ID"


# "UHID: SVMH.0001884129", "Lic. # AUD.0004471", "OP No: NSH/OP/26/04417": a letter code joined
# to numbers by "." or "/" after a label (an _ID_AT value holds no "." or "/" before its digit)
_JOINED_ID = re.compile(r"[A-Z](?<![\w./-][A-Z])[A-Z]{0,5}(?:[./][A-Z0-9]{1,10}){1,5}(?![\w/]|\.\w)")


# where a _JOINED_ID may be: a capital, then "." or "/" and a letter or digit (from the separator:
# fewer of those than capitals)
_JOINED_HINT = re.compile(r"[./](?<=[A-Z][./])(?=[A-Z0-9])")


def joined_identifiers(text: str) -> Iterator[Span]:
    end = 0
    for hint in _JOINED_HINT.finditer(text):
        start = hint.start() - 1
        if start < end:
            continue
        while start > 0 and text[start - 1].isupper() and hint.start() - start < 6:
            start -= 1
        m = _JOINED_ID.match(text, start)
        if m is None:
            continue
        end = m.end()
        if not any(c.isdigit() for c in m.group(0)) or not _may_follow_label(text, start):
            continue
        label = _ID_LABEL_FAST.search(text, max(0, start - 48), start)
        if label is not None:
            yield start, m.end(), label.lastgroup.rsplit("_", 1)[0]


def addresses(text: str, runs: dict | None = None) -> Iterator[Span]:
    runs = runs or run_matches(text)
    street_ends = set()
    for start, street_end in runs["street"]:
        tail = _CITY_TAIL.match(text, street_end)
        street_ends.add(street_end)
        yield start, tail.end() if tail else street_end, "ADDRESS"
    lowered = _lower_ascii(text)
    cued = lowered is None or _ADDRESS_GATE(text)
    for m in _cued(_ADDRESS_LABEL, text, lowered, _ADDRESS_CUE, len("patient ")) if cued else ():
        if text[m.start() - 1:m.start()] == '"':
            continue            # a JSON key ("address": [{"line": ...): its fields say more
        value = m.group(1)
        cut = _ADDRESS_END.search(value)
        value = value[:cut.start()] if cut else value
        cut = _ADDRESS_CODE_END.search(value)     # what follows the postcode is more prose
        value = value[:cut.end()] if cut else value
        lead = _ADDRESS_LEAD.match(value)         # "btw - moved to 2217 ...": from the number
        skip = lead.end() if lead else 0
        if any(c.isdigit() for c in value) or "," in value:
            yield m.start(1) + skip, m.start(1) + len(value.rstrip(" .,;")), "ADDRESS"
    for m in _place_words(text):
        word = m.group(0)
        if word.endswith(_PLACE_ENDINGS) and len(word) > 5:
            low = word.lower()
            if low not in lexicon.english_words() and low not in lexicon.first_names() and \
                    low not in lexicon.EPONYMS and not _facility_after(text, m.end()) and \
                    not more_patterns.names_a_test(text, m.end()):
                prefix = _PLACE_PREFIX.search(text, max(0, m.start() - 7), m.start())
                yield (prefix.start() if prefix else m.start()), m.end(), "ADDRESS"
        if word in _STATE_TRIGGERS:
            yield from _city_state(text, m, street_ends)
    for m in _ZIP_LABEL.finditer(text) if lowered is None or _ZIP_GATE(text) else ():
        yield m.start(1), m.end(1), "ZIP"
    for s, e in runs["zip"]:
        yield s, e, "ZIP"
    cued = lowered is None or _CITY_GATE(text)
    for m in _cued(_CITY_CONTEXT, text, lowered, _CITY_CUE, 0) if cued else ():
        place = m.group(1).rstrip()
        low_place = place.lower()
        if " " not in place and low_place in lexicon.english_words() and \
                low_place not in more_patterns.lexicon_cities():
            continue            # "lives in Denial", "City: Unknown": a word, no town
        yield m.start(1), m.start(1) + len(place), "ADDRESS"
    found = _STREET_ON.finditer(text) if lowered is None else \
        _anchored(_STREET_ON, text, lambda i: lowered.find(" on ", i) + 1 or -1, len("apartment "))
    for m in found if _ON_GATE(text) else ():
        group = 1 if m.group(1) else 2
        yield m.start(group), m.end(group), "ADDRESS"
    for m in _PO_BOX.finditer(text) if lowered is None or _BOX_GATE(text) else ():
        yield m.start(), m.end(), "ADDRESS"


def _place_word_starts(text: str) -> list[int]:
    """Where the _CAPITALISED words that addresses() acts on start: a place ending and more
    than 5 letters, or a state trigger (the Python original of csrc's deid_place_words)."""
    return [m.start() for m in _CAPITALISED.finditer(text)
            if m.group(0).endswith(_PLACE_ENDINGS) and len(m.group(0)) > 5 or
            m.group(0) in _STATE_TRIGGERS]


_NATIVE_PLACE_WORDS = native.place_word_scanner(_PLACE_ENDINGS, _STATE_TRIGGERS, _CAPITALISED,
                                                 _place_word_starts)


def _place_words(text: str):
    """_CAPITALISED's matches, or, for ASCII text where the extension is built, those of them
    that addresses() acts on (found in C++: re visits every capital, Python every word)."""
    if _NATIVE_PLACE_WORDS is None or not text.isascii():
        return _CAPITALISED.finditer(text)
    return [_CAPITALISED.match(text, s) for s in _NATIVE_PLACE_WORDS(text)]


# up to three capitalised words right after a place-like word, on the same line
_FOLLOWING_CAPITALS = re.compile(r"(?:[ ]+[A-Z][A-Za-z]+){1,3}")


def _facility_after(text: str, end: int) -> bool:
    """A facility word follows within three capitalised words: the place-like word names a
    facility ("Harborview Family Medicine", "Lakeside Community Hospital"), not a town."""
    m = _FOLLOWING_CAPITALS.match(text, end)
    return m is not None and any(w.lower() in lexicon.FACILITY_HEADS for w in m.group(0).split())


def _city_state(text: str, state, street_ends) -> Iterator[Span]:
    """The city before a state ("Springfield, IL 62704"), found from the state."""
    m = _CITY_STATE.search(text, max(0, state.start() - 48), state.end() + 24)
    if m is None or m.start(2) != state.start():
        return
    city = m.group(1)
    if len(m.group(2)) > 2 and not m.group(3) and "," not in text[m.end(1):m.start(2)]:
        return                  # "Dr. Virginia Rosario": a state name needs a comma or a ZIP
    if city.split()[-1].lower().rstrip(".") in lexicon.TITLES:
        return
    # "Jane Roe, MD" / "Kim, PA": a 2-letter state needs its ZIP or a street before it
    if len(m.group(2)) == 2 and not m.group(3) and \
            not any(m.start() - k in street_ends for k in range(7)):     # (a set: no scan)
        return
    words = city.split()
    # drop leading words that are ordinary words ("Patient lives Boston, MA"), not where the
    # city starts its line or follows a comma ("PO Box 7, Hood River, OR", "Salt Lake City, UT")
    line_before = text[text.rfind("\n", 0, m.start(1)) + 1:m.start(1)].rstrip(" \t")
    while line_before and not line_before.endswith((",", "|", "^")) and \
            words and words[0].lower() in lexicon.english_words() and len(words) > 1:
        words = words[1:]
    if words and words[-1].lower() not in lexicon.english_words() or len(words) > 1 \
            or m.group(3):
        start = m.start(1) + len(city) - len(" ".join(words))
        yield start, m.end(2), "ADDRESS"      # city and state: one address
        if m.group(3):
            yield m.start(3), m.end(3), "ZIP"


# HL7 v2 segments: the fields that hold a person's name or an address, by field number.
# XPN (family^given^middle), XCN (id^family^given^middle), XAD (street^other^city^state^zip),
# TS (a timestamp: birth, death).
_HL7_SEGMENT = re.compile(r"^(PID|NK1|PV1|GT1|IN1|ORC|OBR)\|([^\n]*)", re.M)
_HL7_FIELDS = {"PID": {5: "XPN", 6: "XPN", 7: "TS", 9: "XPN", 11: "XAD", 29: "TS"},
               "NK1": {2: "XPN", 4: "XAD"},
               "GT1": {3: "XPN", 5: "XAD"},
               "IN1": {16: "XPN", 19: "XAD"},
               "PV1": {7: "XCN", 8: "XCN", 9: "XCN", 17: "XCN"},
               "ORC": {10: "XCN", 11: "XCN", 12: "XCN"},
               "OBR": {16: "XCN", 28: "XCN"}}
_HL7_PARTS = {"XPN": {0: "NAME", 1: "NAME", 2: "NAME"},
              "XCN": {1: "NAME", 2: "NAME", 3: "NAME"},
              "XAD": {0: "ADDRESS", 1: "ADDRESS", 2: "ADDRESS", 4: "ZIP"},
              "TS": {0: "DATE"}}


def hl7_fields(text: str) -> Iterator[Span]:
    """Names and addresses in the fields of HL7 v2 segments that carry them."""
    if "|" not in text:
        return
    for m in _HL7_SEGMENT.finditer(text):
        fields = _HL7_FIELDS[m.group(1)]
        pos = m.start(2)
        for number, field in enumerate(m.group(2).split("|"), 1):
            kind = fields.get(number)
            start = pos
            pos += len(field) + 1
            if kind is None:
                continue
            for rep in field.split("~"):
                for k, part in enumerate(rep.split("^")):
                    cat = _HL7_PARTS[kind].get(k)
                    if cat and part.strip():
                        yield start, start + len(part), cat
                    start += len(part) + 1


# A new detector stays fast (find_phi runs on every note) by one of the shared mechanisms:
# - a literal that each of its matches holds: a module-level gates.literals(...) tested before
#   the scan (all gates of all detectors are answered by one C++ pass over the note);
# - a pattern that starts at a run of digits: an entry of _RUN_PATTERNS (one scan for all; give
#   it its bit in _RUN_BITS and csrc's run_mask, else every run pattern runs in Python again),
#   or a named alternative of more_patterns._DIGIT_START;
# - a pattern opening with a word alternation: _anchored() near an anchor (a literal, a C++
#   anchor list) instead of finditer over the whole text.
def find_structured(text: str) -> list[Span]:
    runs = run_matches(text)             # shared by dates, contacts, identifiers, addresses
    spans: list[Span] = []
    spans.extend(dates(text, runs))
    spans.extend(ages(text))
    spans.extend(contacts(text, runs))
    spans.extend(identifiers(text, runs))
    spans.extend(joined_identifiers(text))
    spans.extend(addresses(text, runs))
    spans.extend(hl7_fields(text))
    spans.extend(more_patterns.find(text, spans))       # other countries' formats, OCR, ...
    return spans
