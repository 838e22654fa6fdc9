"""Detectors for PHI formats the core patterns (patterns.py) were not written for: dates, phone
numbers and postcodes of other countries, OCR'd digits, spelled-out house numbers and ages,
counties, GS1 device identifiers, identifiers written in spaced groups.

Every detector runs only where it can fire: a pattern starts at a digit (a named alternative of
_DIGIT_START: one scan from C++'s digit starts), or runs behind a literal gate (gates.literals:
a literal that each of its matches holds; one C++ pass answers every gate of a note).
`find(text, spans)` takes the core detectors' spans and returns the spans to add.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Iterator

from megamed.data.deid import fields, gates, lexicon, native

Span = tuple[int, int, str]

# --- dates in Spanish, French, German, Italian, Portuguese ----------------------------------
_FOREIGN_MONTH = (r"(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|sep?tiembre|octubre|"
                  r"noviembre|diciembre|janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[uû]t|"
                  r"septembre|octobre|novembre|d[ée]cembre|januar|j[äa]nner|februar|m[äa]rz|"
                  r"maerz|april|juni|juli|august|september|oktober|dezember|gennaio|febbraio|"
                  r"aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|janeiro|fevereiro|"
                  r"mar[çc]o|maio|junho|julho|setembro|outubro|dezembro)")
_YEAR = r"(?:1[89]\d\d|20\d\d)(?!\d)"
_FOREIGN_ABBREVIATION = (r"(?:ene|abr|ago|dic|janv|f[ée]vr|avr|juil|d[ée]c|okt|dez|m[äa]r|mrz|gen|"
                         r"mag|giu|lug|ott|set|out|fev)")
# "15 de marzo de 2025", "3 mars 2024", "5. Mai 2023", "1er avril", "12 di maggio", "12 Okt.
# 2021" (an abbreviation only with its year). (Tried for every run of digits in the one digit
# scan below, its 70 names cost 10 % of find_phi: it runs behind the language gate instead.)
_DAY_FOREIGN_MONTH = re.compile(
    rf"\d(?<![\w/.-]\d)\d?(?:er|º|°|\.)?[ ]?(?:de[ ]+|di[ ]+|del[ ]+)?(?:{_FOREIGN_MONTH}\b"
    rf"(?:,?[ ]+(?:de[ ]+|del[ ]+)?{_YEAR})?|{_FOREIGN_ABBREVIATION}\.?[ ]+{_YEAR})", re.I)
# a month alone after a preposition: "en enero", "depuis mars", "a finales de mayo", "seit März"
# (Romance languages write months in lower case; German capitalises them, after its own words)
_FOREIGN_MONTH_ALONE = re.compile(
    rf"\b(?:(?:en|cada|desde|hasta|para|de|del|depuis|jusqu'en|début|fin|em|di|da|dal|al|entre)\s+"
    rf"(?-i:((?=[a-zäéû])(?i:{_FOREIGN_MONTH})))|(?:im|seit|bis|ab|anfang|ende|mitte)\s+"
    rf"(?-i:((?=[A-ZÄ])(?i:januar|jänner|februar|märz|maerz|april|mai|juni|juli|august|september|"
    rf"oktober|november|dezember))))\b(?:\s+(?:de\s+)?{_YEAR})?", re.I)
# words that a note in these languages holds (a C-speed gate: English notes are not scanned)
_FOREIGN_HINTS = (" de ", " di ", " und ", " der ", " le ", " du ", " vom ", " del ", " el ")
_FOREIGN_GATE = gates.literals(*_FOREIGN_HINTS)


def foreign_dates(text: str) -> Iterator[Span]:
    if text.isascii() and not _FOREIGN_GATE(text):
        return                          # (an English note: no scan)
    for m in _DAY_FOREIGN_MONTH.finditer(text):
        yield m.start(), m.end(), "DATE"
    for m in _FOREIGN_MONTH_ALONE.finditer(text):
        g = 1 if m.group(1) else 2
        yield m.start(g), m.end(), "DATE"


# --- date ranges: "10/1-10/2", "3/4–3/9", "Mar 3-5": the second end of a found date ---------
_RANGE_TAIL = re.compile(r"[ ]?[-–—][ ]?\d{1,2}(?:/\d{1,2}(?:/(?:\d{4}|\d{2}))?|st|nd|rd|th)?"
                         r"(?![\w/%]|[.:]\d)")


def date_range(text: str, s: int, e: int) -> Iterator[Span]:
    if text[e - 1:e].isdigit() or text[e - 3:e - 2].isdigit() and \
            text[e - 2:e].lower() in ("st", "nd", "rd", "th"):
        m = _RANGE_TAIL.match(text, e)
        if m:
            yield s, m.end(), "DATE"          # (overlapping: merged into one span)


# --- OCR'd digits: "O3/I2/2025", "5O8 555 O199", "88O2I7" -----------------------------------
# a letter that OCR reads for a digit, inside a run of digits and separators: each OCR'd value
# below holds one but the rarest ("5O8"), and "SpO2", "O2 sat" do not (a scan from the letters,
# rarer than digits)
_OCR_HINT = re.compile(r"[OIl]\d[\d/.-]")
_OCR_GATE = gates.literals(*(c + d for c in "OIl" for d in "0123456789"))     # (its start)
_OCR_DIGIT = "0-9OIl"
_OCR_DATE = re.compile(rf"(?<![\w/])[{_OCR_DIGIT}]{{1,2}}([/-])[{_OCR_DIGIT}]{{1,2}}\1"
                       rf"(?:[{_OCR_DIGIT}]{{4}}|[{_OCR_DIGIT}]{{2}})(?![\w/])")
_OCR_PHONE = re.compile(rf"(?<![\w])\(?[{_OCR_DIGIT}]{{3}}\)?[-. ]?[{_OCR_DIGIT}]{{3}}[-. ]"
                        rf"[{_OCR_DIGIT}]{{4}}(?![\w])")
_OCR_TABLE = str.maketrans("OIl", "011")


def ocr_digits(text: str) -> Iterator[Span]:
    """Dates and phone numbers whose digits OCR partly read as O / I / l: the shape of one, most
    of its characters digits, and a plausible value once the letters are read back."""
    if not ((_OCR_GATE(text) or not text.isascii()) and _OCR_HINT.search(text)):
        return                  # (\d is any digit: the gate's ASCII ones speak for ASCII text)
    for rx, cat in ((_OCR_DATE, "DATE"), (_OCR_PHONE, "PHONE")):
        for m in rx.finditer(text):
            value = m.group(0)
            digits = sum(c.isdigit() for c in value)
            letters = sum(c in "OIl" for c in value)
            if not letters or digits < max(3, letters):   # (mostly digits, as OCR reads)
                continue
            if cat == "DATE":
                a, b, _ = (int(x) for x in re.split(r"[/-]", value.translate(_OCR_TABLE)))
                if not ((1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)):
                    continue
            yield m.start(), m.end(), cat


# --- phone numbers outside North America ---------------------------------------------------
# A national number starts with its trunk 0 ("0161 496 0000", "(07) 3870 5521", "020 7946 0958",
# "01 23 45 67 89", "0412 345 678"): groups of digits, 9 to 11 in all; after 00 (an
# international prefix, "0033 1 42 68 53 00") up to 15.
_TRUNK_PHONE = r"(?<=0)\d{1,4}\)?(?:[ .-]\d{1,8}){1,5}(?![\w/]|[.,:-]\d)"     # (after its 0)
_SEPARATORS = re.compile(r"[ .-]")
# Shared with patterns.py (which imports this module, so the pattern lives here).
FAX_BEFORE = re.compile(r"fax\W{0,12}$|\bf\W{1,3}$", re.I)


def trunk_phones(text: str, found: list[re.Match]) -> Iterator[Span]:
    for m in found:
        value = m.group(0)
        if ")" in value and text[m.start() - 1:m.start()] != "(":
            continue                                # "07) ...": only after its "("
        digits = sum(c.isdigit() for c in value)
        if not (9 <= digits <= 11 or value.startswith("00") and digits <= 15):
            continue                                # ("0049 30 12345678": 00, a country code)
        separators = _SEPARATORS.findall(value.replace(") ", ")"))
        if len(set(separators)) > 1 and not (separators[0] == "-" and
                                             set(separators[1:]) == {" "}):
            continue            # "04.03.2019 02:14": a date and a time, not one number
                                # ("040-2355 8811": an area code, then the number spaced)
        before = text[max(0, m.start() - 14):m.start()]
        yield m.start(), m.end(), "FAX" if FAX_BEFORE.search(before) else "PHONE"


# --- postcodes: UK "SW1A 2AA", "LS6 2QT", Canada "K1A 0B1" -----------------------------------
# Found from the inward code (a digit-start match: "2QT", "0B1"), then the outward code before
# it ("LS6 ", "K1A "); "T3 N1" (staging) has no inward code.
_INWARD = r"[ABD-HJLNP-UW-Z]{2}(?![\w-])|[A-Z]\d(?![\w-])"          # (after its first digit)
_OUTWARD_BEFORE = re.compile(r"(?<![\w-])(?:[A-Z]{1,2}\d[A-Z\d]?|[A-Z]\d[A-Z])[ ]$")
# Australia: a state, then 4 digits ("Toowoomba QLD 4350")
_AU_POSTCODE = r"(?<=(?:QLD|NSW|VIC|[ ]SA|[ ]WA|TAS|[ ]NT|ACT)[ ]\d)\d{3}(?!\w)"


def postcodes(text: str, inward: list[re.Match]) -> Iterator[Span]:
    for m in inward:
        before = _OUTWARD_BEFORE.search(text, max(0, m.start() - 5), m.start())
        if before:
            yield before.start(), m.end(), "ZIP"


# --- places ---------------------------------------------------------------------------------
# Europe writes the street first, then the number, then the postcode and the town:
# "Hauptstraße 12, 10115 Berlin", "Calle Mayor 15, 3º B, 28013 Madrid", "Via Roma 4",
# and France the number first: "14 rue de la Paix, 75002 Paris".
_STREET_FIRST = re.compile(
    r"(?:[A-ZÄÖÜ][a-zäöüß-]+(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|laan|"
    r"straat|gracht|vej|gade|gatan|vägen)|(?:Calle|Avenida|Avda\.|Av\.|Rua|Via|Viale|Piazza|"
    r"Plaza|Paseo|Carrer|Travessa|Largo|Corso|Rambla|Camino|Carretera)(?:[ ](?:de|del|de la|"
    r"de los|de las|di|da|do|dos|della|dei)?[ ]?[A-ZÁÉÍÓÚ][\w'.-]+){1,3})[ ]\d{1,4}[a-zA-Z]?\b"
    r"(?:,?[ ](?:\d{1,2}[ºª°]?[ ]?[A-Z]?|[A-Z])\b)?(?:,[ ](\d{4,5})[ ]([A-ZÄÖÜÁÉ][\wäöüéè'-]+))?")
_NUMBER_FIRST_FR = re.compile(r"\d(?<![\w.,/-]\d)\d{0,3}(?:[ ]?bis|[ ]?ter)?,?[ ](?:rue|avenue|"
                              r"boulevard|bd|place|chemin|allée|impasse|quai|cours|route)[ ]"
                              r"(?:(?:de|du|des|de la|de l'|d')[ ]?)?[A-ZÉ][\w'-]+(?:[ ][A-Z][\w'-]+)?"
                              r"(?:,[ ](\d{5})[ ]([A-ZÉ][\w'-]+))?")
# (the ASCII-spelled forms of the commonest: German streets, with a "ß" or an umlaut, make the
# text non-ASCII)
_STREET_FIRST_HINTS = ("strasse", "Calle ", "Avenida ", "Rua ", "Via ", "Piazza ", "Plaza ",
                       " rue ", " avenue ", " boulevard ")
_STREET_FIRST_GATE = gates.literals(*_STREET_FIRST_HINTS)


# German streets named by an adjective in -er: "Eppendorfer Weg 118, 20259 Hamburg"
_GERMAN_TWO_WORD = re.compile(r"[A-ZÄÖÜ][a-zäöüß]+er[ ](?:Weg|Straße|Strasse|Str\.|Platz|Allee|Gasse|"
                              r"Ring|Damm|Chaussee|Ufer|Markt|Steig|Pfad|Landstraße|Tor)[ ]\d{1,4}"
                              r"[a-zA-Z]?\b(?:,[ ](\d{4,5})[ ]([A-ZÄÖÜ][\wäöüß'-]+))?")
# (the commonest street words: each is a scan of the text)
_GERMAN_HINTS = (" Weg ", "Straße ", "Strasse ", " Platz ", " Allee ", " Ring ")
_GERMAN_GATE = gates.literals(*_GERMAN_HINTS)


def european_addresses(text: str) -> Iterator[Span]:
    if _GERMAN_GATE(text):
        for m in _GERMAN_TWO_WORD.finditer(text):
            yield m.start(), m.start(1) - 2 if m.group(1) else m.end(), "ADDRESS"
            if m.group(1):
                yield m.start(1), m.end(1), "ZIP"
                yield m.start(2), m.end(2), "ADDRESS"
    if text.isascii() and not _STREET_FIRST_GATE(text):
        return
    for rx in (_STREET_FIRST, _NUMBER_FIRST_FR):
        for m in rx.finditer(text):
            end = m.start(1) - 2 if m.group(1) else m.end()
            yield m.start(), end, "ADDRESS"
            if m.group(1):
                yield m.start(1), m.end(1), "ZIP"
                yield m.start(2), m.end(2), "ADDRESS"


# the town before a UK / Canadian / Australian postcode: "Leeds LS6 2QT", "Ottawa ON K1A 0B1",
# "Toowoomba QLD 4350"
_TOWN_BEFORE = re.compile(r"([A-Z][a-z'-]+(?:[ ][A-Z][a-z'-]+){0,2}),?[ ](?:(?:ON|QC|BC|AB|MB|SK|"
                          r"NS|NB|NL|PE|YT|NT|NU|QLD|NSW|VIC|SA|WA|TAS|ACT)[ ])?$")


# a street named without its number before the town and postcode: "Dolgwili Road, Carmarthen
# SA31 2AF", "Heol y Brenin, Llandeilo SA19 6AB"
_STREET_BEFORE_TOWN = re.compile(r"(?<![\w'-])((?:[A-Z][\w'-]+[ ]){1,3}(?:Road|Rd|Street|St|Lane|"
                                 r"Avenue|Ave|Drive|Close|Crescent|Way|Terrace|Hill|Place|Gardens|"
                                 r"Parade|Row|Walk|Mews|Square)\.?|Heol[ ](?:y[ ])?[A-Z][\w'-]+"
                                 r"(?:[ ][A-Z][\w'-]+)?),[ ]$")


def towns_before_postcodes(text: str, codes: list[Span], au: list[re.Match]) -> Iterator[Span]:
    found = [s for s, e, _ in codes]
    for m in au:
        yield m.start(), m.end(), "ZIP"
        found.append(m.start())             # (_TOWN_BEFORE takes the state along)
    for start in found:
        m = _TOWN_BEFORE.search(text, max(0, start - 40), start)
        if m is None:
            continue
        words = m.group(1).split()
        while words and words[0].lower() in lexicon.english_words() and len(words) > 1:
            words = words[1:]
        if words[-1].lower() not in lexicon.FACILITY_HEADS:
            town = m.end(1) - len(" ".join(words))
            yield town, m.end(1), "ADDRESS"
            street = _STREET_BEFORE_TOWN.search(text, max(0, town - 40), town)
            if street:
                yield street.start(1), street.end(1), "ADDRESS"

# "Maricopa County", "St. Tammany Parish", "Fairfax County": a county is smaller than a state
_COUNTY = re.compile(r"(?:(?:St\.?|Saint|San|Santa|Los|Las|El|La|De|Le|New|East|West|North|"
                     r"South|Prince|King|Queen)[ ])?[A-Z][a-z'-]+(?:[ ][A-Z][a-z'-]+)?[ ]$")
_COUNTY_WORD = re.compile(r"\b(?:County|Parish|Borough)\b")
_COUNTY_GATE = gates.literals("County", "Parish", "Borough")
_OF_PLACE = re.compile(r"[ ]of[ ][A-Z][a-z'-]+(?:[ ][A-Z][a-z'-]+)?")
_FACILITY_AFTER = re.compile(r"[ ]+(?:[A-Z][A-Za-z]+[ ]+){0,2}([A-Z][A-Za-z]+)")
_NOT_COUNTY_WORDS = frozenset("the a an our this that same his her their".split())


def counties(text: str) -> Iterator[Span]:
    if not _COUNTY_GATE(text):
        return
    for word in _COUNTY_WORD.finditer(text):
        of = _OF_PLACE.match(text, word.end())
        if of:                                # "County of Santa Clara"
            yield word.start(), of.end(), "ADDRESS"
            continue
        m = _COUNTY.search(text, max(0, word.start() - 40), word.start())
        if m is None:
            continue
        words = m.group(0).split()
        while len(words) > 1 and (words[0].lower() in _NOT_COUNTY_WORDS or
                                  words[0].lower() in lexicon.english_words()):
            words = words[1:]                 # "Court Maricopa County": keep the county
        after = _FACILITY_AFTER.match(text, word.end())
        if after and after.group(1).lower() in lexicon.FACILITY_HEADS:
            continue                          # "Cook County Hospital": a facility's name
        yield word.start() - 1 - len(" ".join(words)), word.end(), "ADDRESS"


# "the Dorchester neighborhood", "Eastwood estate", "Parkdale district": a part of a town
_NEIGHBOURHOOD = re.compile(r"((?:[A-Z][a-z'-]+[ ]){1,2})(?:neighbou?rhood|district|suburb|estate|"
                            r"section|borough|township|village)\b")
_NEIGHBOURHOOD_HINTS = ("neighbo", "district", "suburb", "estate", "section of", "township",
                        "village")
_NEIGHBOURHOOD_GATE = gates.literals(*_NEIGHBOURHOOD_HINTS, lower=True)


def neighbourhoods(text: str, low: str) -> Iterator[Span]:
    if not _NEIGHBOURHOOD_GATE(text):
        return
    for m in _NEIGHBOURHOOD.finditer(text):
        words = m.group(1).split()
        while words and (words[0].lower() in lexicon.english_words() or
                         words[0].lower() in _NOT_COUNTY_WORDS):
            words = words[1:]
        if words and not any(w.lower() in lexicon.FACILITY_HEADS for w in words):
            yield m.end(1) - 1 - len(" ".join(words)), m.end(1) - 1, "ADDRESS"


# "Duluth, MN" anywhere: a capitalised word that is no English word, a comma, a state code that
# is not also a credential, a unit or an abbreviation in notes (MD, PA, OR, CT, IN, ...).
_PLAIN_STATES = frozenset("AK AZ FL IL IA KS KY MN MT NH NJ NM NY OH RI TN TX UT WA WV WI "
                          "WY".split())
# codes that are also words or abbreviations: after "in / from / near ... City," only
# (and MI, CA, ND, SD, NC, AR, VT, NV: myocardial infarction, cancer, not done, ...)
_STATES_AFTER_A_PLACE_WORD = frozenset("OK ID ME OR IN CO DE LA MS MO AL GA MA CT HI NE SC VA "
                                       "DC PR MI CA ND SD NC AR VT NV".split())
_PLACE_WORD_BEFORE = re.compile(r"\b(?:in|from|near|outside|to|of|at|visiting)[ ]$", re.I)
_MEDICAL_CODES = frozenset("MI CA ND SD NC AR VT NV".split())      # ("history of X, MI")
_MOVE_WORD_BEFORE = re.compile(r"\b(?:in|from|near|outside|to|visiting)[ ]$", re.I)
_COMMA_STATE = re.compile(r",[ ]([A-Z]{2})(?![\w-]|\.\w)")
_CITY_BEFORE = re.compile(r"[A-Z][a-z'-]+(?:[ ][A-Z][a-z'-]+){0,2}$")


def city_comma_state(text: str) -> Iterator[Span]:
    for state in _COMMA_STATE.finditer(text):
        code = state.group(1)
        if code not in _PLAIN_STATES and code not in _STATES_AFTER_A_PLACE_WORD:
            continue
        m = _CITY_BEFORE.search(text, max(0, state.start() - 40), state.start())
        if m is None:
            continue
        before = _MOVE_WORD_BEFORE if code in _MEDICAL_CODES else _PLACE_WORD_BEFORE
        if code not in _PLAIN_STATES and not before.search(text, max(0, m.start() - 11),
                                                            m.start()):
            continue                # "OK", "OR", "ME": only "in Tulsa, OK", "from Bend, OR"
        words = m.group(0).split()
        while words and words[0].lower() in lexicon.english_words():
            words = words[1:]
        if not words or words[-1].lower() in lexicon.english_words():
            continue
        yield state.start() - len(" ".join(words)), state.end(), "ADDRESS"


# "eighteen elm street": a house number in words (dictation)
_NUMBER_WORDS = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
                 r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
                 r"fifty|sixty|seventy|eighty|ninety|hundred|thousand)")
_STREET_WORDS = ("street", "avenue", "road", "drive", "lane", "boulevard", "court")
_WORD_STREET_TYPE = re.compile(rf"\b(?:{'|'.join(_STREET_WORDS)})\b", re.I)
_STREET_WORD_GATE = gates.literals(*_STREET_WORDS, lower=True)
_WORD_HOUSE_NUMBER = re.compile(rf"\b{_NUMBER_WORDS}(?:[ -](?:and[ ])?{_NUMBER_WORDS})*[ ]"
                                rf"(?:[A-Za-z][a-z'-]+[ ]){{1,2}}$", re.I)
_NOT_STREET_NAME = frozenset("lane way block blocks story stories floor bedroom car cars time "
                             "times mile miles minutes blocks of the a".split())


def word_house_numbers(text: str, low: str) -> Iterator[Span]:
    if len(low) != len(text):
        found = [m.span() for m in _WORD_STREET_TYPE.finditer(text)]
    elif not _STREET_WORD_GATE(text):
        return                          # (no street word in `low`: nothing to find)
    else:                               # the street words' places, by C-speed finds
        found = []
        for word in _STREET_WORDS:
            i = low.find(word)
            while i >= 0:
                e = i + len(word)
                if (not i or not low[i - 1].isalnum()) and not low[e:e + 1].isalnum():
                    found.append((i, e))
                i = low.find(word, e)
    for start, end in found:
        head = _WORD_HOUSE_NUMBER.search(text, max(0, start - 60), start)
        if head is None:
            continue
        names = head.group(0).split()[-2:]
        if any(n.lower() in _NOT_STREET_NAME for n in names):
            continue
        yield head.start(), end, "ADDRESS"


# --- ages over 89 with weaker cues -----------------------------------------------------------
# "he is ninety four", "died at 102", "lived to 97", "turns 90 next week", "now 93": the cue
# before the age (the number is the anchor: a fast scan for 9x / 1xx and the two words)
_AGE_CUES = tuple(f"{who}{verb}" for who in ("he", "she", "who", "patient", "pt")
                  for verb in ("'s", " is", " was", " will be", " is now", " was now",
                               " turns", " turned")) + ("age", "aged", "age of",
    "d.", "died", "deceased", "deceased at", "alive at", "alive,", "living at", "age at death", "aod", "dx at", "diagnosed at",
    "died at", "passed at", "passed away at", "death at", "lived to", "living to", "turns",
    "turning", "at the age of", "at age", "lived to be", "live to be",
    "lives to be") + tuple(f"{rel}{verb}" for rel in ("mother", "father", "wife", "husband",
                                                      "sister", "brother", "aunt", "uncle",
                                                      "grandmother", "grandfather", "mom", "dad")
                           for verb in (" is", " was", "'s", " is now"))
# (its first character before the look-behind: re then jumps to the 1s and 9s at C speed)
# (after its first digit; "96y" and "93/F" are ages whatever comes before)
_AGE_NUMBER = r"(?:(?<=9)\d|(?<=1)[01]\d)(?:(?![\w%/-]|[.,:]\d)|(?=[ ]?[yY]\b|/[MF]\b))"
_AGE_WORDS = re.compile(r"\b(?:ninety(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|"
                        r"(?:one |a )?hundred(?:(?: and)?[- ](?:one|two|three|four|five|six|"
                        r"seven|eight|nine|ten|eleven|twelve))?)\b", re.I)
_AGE_WORDS_GATE = gates.literals("ninety", "hundred", lower=True)
_NOT_AN_AGE_AFTER = re.compile(r"[ ]*(?:%|°|percent|bpm|beats|mm|cm|kg|lbs?|pounds|mg|mcg|ml|units?|"
                               r"tabs?|tablets?|caps?|over|/|degrees?|deg\b|min|minutes|hours?|"
                               r"hrs?\b|miles|km|feet|ft\b|inches|days|weeks)", re.I)
# "Dorothy (94)", "his mother, 96, lives": a person's word, then the age alone in brackets/commas
_WORD_BEFORE = re.compile(r"([A-Za-z][a-z'-]+)[ ]?$")
_RELATIVES = frozenset("""mother father wife husband sister brother aunt uncle grandmother
grandfather grandma grandpa mom dad son daughter spouse partner widow widower neighbor neighbour
friend cousin niece nephew""".split())


def weak_cue_ages(text: str, low: str, numbers: list[re.Match]) -> Iterator[Span]:
    found = list(numbers)
    if _AGE_WORDS_GATE(text):
        found += _AGE_WORDS.finditer(text)
    for m in found:
        if text[m.end():m.end() + 1] in ("y", "Y", "/") or text[m.end():m.end() + 2] == " y" and \
                not text[m.end() + 2:m.end() + 3].isalnum():
            yield m.start(), m.end(), "AGE"
            continue
        before = text[max(0, m.start() - 24):m.start()].rstrip(" ").lower()
        if before.endswith(_AGE_CUES) and not _NOT_AN_AGE_AFTER.match(text, m.end()) and \
                any(before.endswith(c) and not before[-len(c) - 1:-len(c)].isalpha() and
                    (c != "d." or before[-3:-2] in ("", " ", "(", "\n"))
                    for c in _AGE_CUES):     # ("the is" is no "he is", "q.d. 90" no "d. 90")
            yield m.start(), m.end(), "AGE"
    for m in numbers:
        s, e = m.span()
        opening = "(" if text[s - 1:s] == "(" else "," if text[s - 2:s] == ", " else None
        if opening is None or text[e:e + 1] != (")" if opening == "(" else ","):
            continue
        before = _WORD_BEFORE.search(text, max(0, s - 30), s - len(opening))
        if before is None:
            continue
        word = before.group(1)
        low_word = word.lower()
        if low_word in _RELATIVES or (word[0].isupper() and (
                low_word in lexicon.first_names() or low_word in lexicon.surname_rank())
                and low_word not in lexicon.english_words()):
            yield s, e, "AGE"


# --- towns and cities named in prose: "moved from Tucson", "called from Duluth", "office, Honolulu"
# A capitalised word (or two, three) after a place preposition or a comma that the gazetteer of
# towns with 15,000+ inhabitants lists (not single words that are English words: "Reading",
# "Mobile"); not where more capitalised words follow ("at Tucson Medical Center": a
# facility) unless they are a state or a country.
_PREPOSITIONS = ("in", "from", "near", "at", "to", "outside", "visiting", "around", "toward",
                 "towards", "via", "into")
_PLACE_WORDS = re.compile(r"([A-ZÀ-Ý][a-zà-ÿ'-]+(?:[ -][A-ZÀ-Ý][a-zà-ÿ'-]+){0,3})")
_COMMA_PLACE = re.compile(r",[ ]([A-ZÀ-Ý][a-zà-ÿ'-]+(?:[ -][A-ZÀ-Ý][a-zà-ÿ'-]+){0,2})"
                          r"(?=[ ]?(?:[.;:)]|\r?\n|$|,[ ]|[ ][-–][ ]?\d))")
_STATES_AND_COUNTRIES = frozenset("""Alabama Alaska Arizona Arkansas California Colorado
Connecticut Delaware Florida Georgia Hawaii Idaho Illinois Indiana Iowa Kansas Kentucky Louisiana
Maine Maryland Massachusetts Michigan Minnesota Mississippi Missouri Montana Nebraska Nevada
Ohio Oklahoma Oregon Pennsylvania Tennessee Texas Utah Vermont Virginia Washington Wisconsin
Wyoming Canada Mexico England Scotland Wales Ireland Australia India Nigeria Ghana Kenya Pakistan
Philippines China Japan Korea Vietnam Brazil Germany France Italy Spain Portugal Poland Ukraine
Russia Egypt Ethiopia Somalia Iran Iraq Syria Turkey Israel Jamaica Haiti Cuba Peru Colombia
Chile Argentina Venezuela Guatemala Honduras Ontario Quebec Sonora""".split()) | {
    "New York", "New Jersey", "New Mexico", "New Hampshire", "North Carolina", "South Carolina",
    "North Dakota", "South Dakota", "West Virginia", "Rhode Island", "New Zealand",
    "Puerto Rico", "El Salvador", "Dominican Republic", "South Africa", "British Columbia"}


@functools.lru_cache(maxsize=None)
def lexicon_cities() -> frozenset[str]:
    """lexicon/world_cities.txt (see its header: GeoNames, CC BY 4.0)."""
    path = os.path.join(os.path.dirname(__file__), "lexicon", "world_cities.txt")
    with open(path, encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip() and line[0] != "#")


_FOLDED = str.maketrans("àáâãäåçèéêëìíîïñòóôõöùúûüýÿ", "aaaaaaceeeeiiiinooooouuuuyy")
_NOT_TOWNS = lexicon.EPONYMS | lexicon.ORGANISATIONS | lexicon.PEOPLES


def _town_words(words: list[str]) -> int:
    """How many of `words` (from the first) name a town of the gazetteer: 0 if none."""
    for k in range(len(words), 0, -1):
        name = " ".join(words[:k]).lower()
        if name in lexicon_cities() or name.translate(_FOLDED) in lexicon_cities():
            if k == 1 and (name in _NOT_TOWNS or name in lexicon.english_words()):
                return 0        # "Reading", "Mobile", "Normal": words first
            return k
    return 0


def _place_after(words: list[str]) -> bool:
    """The capitalised words after a town are a state or a country ("Tucson Arizona")."""
    rest = " ".join(words)
    return rest in _STATES_AND_COUNTRIES


_NEXT_TOKEN = re.compile(r"[ ]([A-Z][A-Z0-9&]+)\b")


# (a literal start: re jumps to the spaces and tries the few prepositions there)
_PREPOSITION_CAPITAL = re.compile(r"[ ](?:" + "|".join(_PREPOSITIONS) + r")[ ](?=[A-ZÀ-Ý])")


def _after_prepositions(text: str) -> list[re.Match]:
    """_PLACE_WORDS right after " in ", " from ", ..."""
    found = (_PLACE_WORDS.match(text, p.end()) for p in _PREPOSITION_CAPITAL.finditer(text))
    return [m for m in found if m]


# "seen at the Reading clinic", "the Bath office": a town naming a site of a practice (here a town
# that is also an English word counts: the head word says it is a place)
_THE_TOWN_SITE = re.compile(r"[ ]the[ ]([A-Z][a-z'-]+(?:[ ][A-Z][a-z'-]+)?)[ ](?:clinic|office|branch|"
                            r"site|campus|surgery|practice|location|satellite|outpost)\b")


_THE_GATE = gates.literals(" the ")            # (every _THE_TOWN_SITE match holds it)


def town_sites(text: str) -> Iterator[Span]:
    for m in _THE_TOWN_SITE.finditer(text):
        name = m.group(1).lower()
        if name in lexicon_cities() and name not in lexicon.MEDICAL_WORDS and \
                name not in _NOT_TOWNS:
            yield m.start(1), m.end(1), "ADDRESS"


def prose_towns(text: str) -> Iterator[Span]:
    for found in (_after_prepositions(text), _COMMA_PLACE.finditer(text)):
        for m in found:
            words = re.split(r"[ -]", m.group(1))
            k = _town_words(words)
            if not k or (k < len(words) and not _place_after(words[k:])):
                continue
            end = m.start(1) + len(" ".join(words[:k]))
            after = _NEXT_TOKEN.match(text, end)
            if after and not (len(after.group(1)) == 2 and k == len(words)):
                continue                # "to Amsterdam UMC": a facility (a state code may follow)
            yield m.start(1), end, "ADDRESS"


# --- GS1 UDIs: "(01)00884521123456(17)250101(10)A12B" -----------------------------------------
_GS1_UDI = re.compile(r"\(01\)\d{14}(?:\(\d{2,4}\)[A-Za-z0-9./-]{1,20})*")
_GS1_GATE = gates.literals("(01)")


def gs1_udis(text: str) -> Iterator[Span]:
    if _GS1_GATE(text):
        for m in _GS1_UDI.finditer(text):
            yield m.start(), m.end(), "DEVICE"


# --- identifiers in spaced groups: "Medicare: 2953 51730 1", "member # 9910 4421 07" ----------
_ID_CATEGORIES = ("MRN", "ACCOUNT", "HEALTH_PLAN", "LICENSE", "DEVICE", "OTHER_ID", "SSN")
_CODE_AND_NUMBER = re.compile(r"(?:[A-Z]{2,6}[ -])?\d+")
_GROUPS_AFTER = re.compile(r"(?:[ ]\d{1,6}){1,6}(?:-[A-Z\d]{1,2}|[ ][A-Z]{1,2}\b|/\d)?(?=[ ]*(?:$|[\n,;)]|\.(?!\d)|[ ]{2}|[ ]+[a-z]))",
                           re.M)
_NOT_AN_ID_AFTER = re.compile(r"[ ]*(?:y|yo|y/o|yr|yrs|years?|mg|mcg|ml|units?|kg|lbs?|cm|mm|%)\b",
                              re.I)


def id_groups(text: str, s: int, e: int, c: str) -> Iterator[Span]:
    if text[e + 1:e + 2].isdigit() and _CODE_AND_NUMBER.fullmatch(text, s, e):
        m = _GROUPS_AFTER.match(text, e)
        if m and not _NOT_AN_ID_AFTER.match(text, m.end()) and \
                sum(ch.isdigit() for ch in text[s:m.end()]) <= 26:
            yield s, m.end(), c


# "call 555 0147", "ph 3870 5521": a local number with a space needs a word that says so
_SPACED_LOCAL = r"\d{2,3}[ ]\d{4}(?![\w/]|[.,:-]\d)"           # (after its first digit)
_PHONE_CUE_BEFORE = re.compile(r"\b(?:call|phone|ph|tel|telephone|cell|mobile|mob|home|work|"
                               r"pager|contact|number|no|reached at|reach at)\b\.?:?\W{0,3}$",
                               re.I)


def spaced_local_phones(text: str, found: list[re.Match]) -> Iterator[Span]:
    for m in found:
        if _PHONE_CUE_BEFORE.search(text, max(0, m.start() - 16), m.start()):
            yield m.start(), m.end(), "PHONE"


# "ext 4-7781": an extension with its exchange digit
_HYPHEN_EXTENSION = re.compile(r"\b(?:ext|extension)\.?[ ]?#?[ ]?(\d{1,2}-\d{3,5})(?![\w-])",
                               re.I)


def hyphen_extensions(text: str, low: str) -> Iterator[Span]:
    if len(low) != len(text):
        found = _HYPHEN_EXTENSION.finditer(text)
    else:                           # each match starts at an "ext": C-speed finds
        found = (m for i in _starts(low, "ext") for m in [_HYPHEN_EXTENSION.match(text, i)] if m)
    for m in found:
        yield m.start(1), m.end(1), "PHONE"


def _starts(low: str, word: str) -> list[int]:
    out, i = [], low.find(word)
    while i >= 0:
        out.append(i)
        i = low.find(word, i + 1)
    return out


# What goes on after a found address or identifier:
# "88 Prospect Hill Rd, 2nd floor", "Greenway Terrace, Shaker Heights." (the town, the sentence
# ending after it), "EPS-03-118-9932" (more hyphenated groups).
_FLOOR_AFTER = re.compile(r",?[ ]((?:\d{1,2}(?:st|nd|rd|th)|ground|first|second|third|top|upper|"
                          r"lower|basement)[ ](?:floor|fl\b\.?))", re.I)
# the town after a street (and its unit): up to the end of the clause, a postcode, a state or
# province, a bracket ("Salinas, CA 93905", "Montréal (Québec) H1X 1H2", "Roseville 2069")
_TOWN_AFTER = re.compile(r",[ ]((?:(?:St\.|Saint|San|Santa|Fort|Ft\.|Mount|Mt\.|Port)[ ])?"
                         r"[A-ZÀ-ÝĀ-ſ][a-zà-ÿĀ-ſ'-]+(?:[ -][A-ZÀ-ÝĀ-ſ][a-zà-ÿĀ-ſ'-]+){0,2})"
                         r"(?=[.;]\s|[.;]?$|\n|,|[ ]*\(|[ ]+\d{4,6}\b|[ ]+[A-Z]{2,3}\b|[ ]+[A-Z]{1,2}\d)",
                         re.M)
_ZIP_AFTER_TOWN = re.compile(r"[ ]+(\d{4,6})(?![\w-])")
_STREET_END = re.compile(rf"(?i:{'|'.join(_STREET_WORDS)}|place|terrace|circle|parkway|way|"
                         r"st|ave|rd|dr|ln|blvd|ct|pl|ter|"
                         r"terr|cir|pkwy|hwy|way|floor|fl|parade|pde|crescent|cres|esplanade|"
                         r"brae|wynd|rise|vale|quay|wharf|promenade|grange|croft|garth|close|"
                         r"mews|row|walk|green|gardens)\.?$")
# "Apt. 3C", "app. 6", "Lot 14", "Ste 2OO", "Col. Centro": a unit (or a colonia) after a street
_UNIT_AFTER_STREET = re.compile(r",?[ ]((?:Apt|APT|Apartment|App|Appt|Unit|UNIT|Suite|Ste|STE|Lot|"
                                r"LOT|Flat|Fflat|Space|Trailer|Bldg|Building|Piso|Depto|apt|app|"
                                r"appt|unit|suite|ste|lot|flat|bureau)\.?[ ]?#?[ ]?"
                                r"[A-Z0-9][\w-]{0,5}|(?:Col|Colonia|Barrio|Fracc)\.?[ ]"
                                r"[A-ZÀ-Ý][\wà-ÿ'-]+(?:[ ][A-ZÀ-Ý][\wà-ÿ'-]+)?)(?=[,;.\s)]|$)")
_ID_TAIL = re.compile(r"(?:-[A-Za-z0-9]+)+(?![\w/])")
_NOT_TOWN_WORDS = lexicon.FACILITY_HEADS | lexicon.TITLES | frozenset(
    "tel phone ph fax email mob mobile cell dob re attn".split())


def address_tail(text: str, s: int, e: int) -> Iterator[Span]:
    m = _FLOOR_AFTER.match(text, e)
    if m:
        yield m.start(1), m.end(), "ADDRESS"        # (the comma between stays as it is)
        e = m.end()
    street = _STREET_END.search(text, max(s, e - 9), e) or \
        text[e - 1:e].isdigit() and text[s:s + 1].isalpha()     # "Calle Hidalgo 214"
    m = _UNIT_AFTER_STREET.match(text, e)
    if m and (street or text[s:s + 1].isdigit()):
        yield m.start(1), m.end(1), "ADDRESS"
        e, street = m.end(), True
    if street:
        m = _TOWN_AFTER.match(text, e)
        if m and m.group(1).split()[0].lower().rstrip(".") not in _NOT_TOWN_WORDS:
            yield m.start(1), m.end(1), "ADDRESS"
            code = _ZIP_AFTER_TOWN.match(text, m.end())
            if code:
                yield code.start(1), code.end(1), "ZIP"


# an address block's town on the line after its street ("14 Abbey Road\nReading\nRG1 3BD"); a
# town that is also an English word only with a postcode on its line or the next
_TOWN_LINE = re.compile(r"\r?\n[ \t]*(?:(\d{4,5})[ ])?"
                        r"([A-ZÀ-Ý][a-zà-ÿ'.-]+(?:[ -][A-ZÀ-Ý][a-zà-ÿ'.-]+){0,2})[ \t]*"
                        r"(,[^\n:]{0,30}|[ ]+[A-Z0-9]{2,4}[ ]?[A-Z0-9]{0,3})?\r?(?=\n|$)")
_POSTCODE_LINE = re.compile(r"\r?\n[ \t]*(?:[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}|[A-Z]\d[A-Z][ ]?\d[A-Z]\d|"
                            r"\d{4,6})\b")


def town_line(text: str, e: int) -> Iterator[Span]:
    m = _TOWN_LINE.match(text, e)
    if m is None:
        return
    words = m.group(2).split()
    if words[0].lower().rstrip(".") in _NOT_TOWN_WORDS or \
            any(w.lower() in lexicon.FACILITY_HEADS for w in words):
        return
    if len(words) == 1 and words[0].lower() in lexicon.english_words() and \
            not m.group(1) and not m.group(3) and not _POSTCODE_LINE.match(text, m.end()):
        return
    if m.group(1):                  # "74000 Annecy": Europe writes the postcode first
        yield m.start(1), m.end(1), "ZIP"
    yield m.start(2), m.end(2), "ADDRESS"


# "mid-October", "mi-octobre": the part of the month belongs to the date (a weekday before a date
# is not labelled alike in every set: left as it is)
_DATE_HEAD = re.compile(r"\b(?i:mid|early|late|mi|début|fin)-$")


# "2025 Mar 03": the year before a month-first date
_YEAR_BEFORE = re.compile(r"\b(?:19|20)\d\d[ ]$")


def date_head(text: str, s: int) -> Iterator[Span]:
    if text[s - 1:s] == " " and text[s:s + 1].isalpha():
        m = _YEAR_BEFORE.search(text, max(0, s - 6), s)
        if m:
            yield m.start(), s - 1, "DATE"
    if text[s - 1:s] == "-":
        m = _DATE_HEAD.search(text, max(0, s - 7), s)
        if m:
            yield m.start(), s, "DATE"


# "DOB: 01 09 1941": day, month and year split by spaces after a date's label (after the
# first digit)
_SPACED_DATE = r"\d?[ ]\d{1,2}[ ](?:19|20)\d\d(?![\w/-])"
_DATE_LABEL_BEFORE = re.compile(r"(?i:dob|d\.o\.b\.?|date|born|birth|b\.)\W{0,4}$")


def spaced_dates(text: str, found: list[re.Match]) -> Iterator[Span]:
    for m in found:
        a, b, _ = (int(x) for x in m.group(0).split())
        if (1 <= a <= 31 and 1 <= b <= 12 or 1 <= a <= 12 and 1 <= b <= 31) and \
                _DATE_LABEL_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            yield m.start(), m.end(), "DATE"


# a street without its number after a place cue: "corner of 5th Ave and Pine St", "off Mill Rd"
# (from the street type: a literal-start scan; the cue and the name are looked up before it)
_STREET_TYPE_WORD = re.compile(r"[ ](?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Highway|"
                               r"Hwy|Parkway|Pkwy)\b\.?")
_CROSS_STREET_BEFORE = re.compile(r"(?:\b(?:[Cc]orner of|[Ii]ntersection of|[Jj]unction of|[Cc]nr\.?|"
                                  r"off|near|at|and|&)[ ])((?:\d{1,3}(?:st|nd|rd|th)|[A-Z][a-z'-]+)"
                                  r"(?:[ ][A-Z][a-z'-]+)?)$")


_CAPITAL_NEXT = re.compile(r"[ ]?[A-Z]")


def cross_streets(text: str) -> Iterator[Span]:
    for m in _STREET_TYPE_WORD.finditer(text):
        if m.group(0).startswith(" St") and _CAPITAL_NEXT.match(text, m.end()):
            continue                # "Providence St. Vincent": a saint
        name = _CROSS_STREET_BEFORE.search(text, max(0, m.start() - 40), m.start())
        if name and name.group(1).split()[0].lower() not in _NOT_TOWN_WORDS:
            yield name.start(1), m.end(), "ADDRESS"


# digits dictated one by one after a number's label: "job number 4 4 7 1 9 0", "number is H as in
# hotel 4 4 0 7 1 2" (from a run of 5 spaced digits: a fast scan; the label within 30 before)
_SPACED_DIGITS = re.compile(r"\d(?<![\w.,/:-]\d)(?:[ ]\d){4,}(?![\w.,/:-])")
_NUMBER_LABEL_BEFORE = re.compile(r"(?i:number|no\.?|#|id|mrn|account|code|reference)\b[^\n\d]{0,30}$")
_SPELLED_LETTER = re.compile(r"(?:\b[A-Z][ -](?:as in [A-Za-z]+[ ])?)+$")


_SPACED_DIGITS_HINT = re.compile(r"[ ]\d[ ]\d[ ]\d[ ]\d")     # (a literal start: a fast scan)


def spaced_digits(text: str) -> Iterator[Span]:
    if not _SPACED_DIGITS_HINT.search(text):
        return
    for m in _SPACED_DIGITS.finditer(text):
        label = _NUMBER_LABEL_BEFORE.search(text, max(0, m.start() - 40), m.start())
        if label:
            letters = _SPELLED_LETTER.search(text, max(label.end() - 30, m.start() - 30), m.start())
            yield (letters.start() if letters else m.start()), m.end(), "OTHER_ID"


# a FHIR age: "valueAge": {"value": 91, "unit": "a"}
_FHIR_AGE = re.compile(r'"valueAge"[ ]?:[ ]?\{[ ]?"value"[ ]?:[ ]?(9\d|1[01]\d)\b')


_FHIR_AGE_GATE = gates.literals('"valueAge"')


def fhir_ages(text: str) -> Iterator[Span]:
    if _FHIR_AGE_GATE(text):
        for m in _FHIR_AGE.finditer(text):
            yield m.start(1), m.end(1), "AGE"


# the sides of a found date: "03/Jan/2025", "Jan-2025", "Jan.2025" (a month name found alone, its
# day and year around it) and "3-5 March" (a day range before a day and month)
_MONTH_YEAR_AFTER = re.compile(r"[/.-](?:\d{4}|\d{2})(?![\w/]|\.\d)")
_YEAR_DIGITS = re.compile(r"(?:\d{4}|\d{2})(?![\w/]|\.\d)")
_DAY_BEFORE_MONTH = re.compile(r"(?<![\w/.])\d{1,2}[/.]$")
_DAY_RANGE_BEFORE = re.compile(r"(?<![\w/.-])\d{1,2}(?:st|nd|rd|th)?[ ]?[-–][ ]?$")


def date_sides(text: str, s: int, e: int) -> Iterator[Span]:
    before = text[s - 1:s]
    if text[s:s + 1].isalpha():
        if text[e:e + 1] in "/.-" and text[e:e + 1] or text[e - 1:e] == ".":
            m = _MONTH_YEAR_AFTER.match(text, e) or \
                text[e - 1:e] == "." and _YEAR_DIGITS.match(text, e)
            if m:
                yield s, m.end(), "DATE"
        if before in ("/", "."):
            m = _DAY_BEFORE_MONTH.search(text, max(0, s - 4), s)
            if m:
                yield m.start(), e, "DATE"
    elif before in ("-", "–", " ") and text[s:s + 1].isdigit():
        m = _DAY_RANGE_BEFORE.search(text, max(0, s - 8), s)
        if m and any(ch.isalpha() for ch in text[s:e]):     # ("3-5 March", not "3 - 5/6")
            yield m.start(), e, "DATE"


# social media handles after their network: "skype: rita.alvarez77", "@ritaalvarez on Instagram"
_HANDLE_AFTER_NETWORK = re.compile(r"\b(?i:skype|twitter|instagram|insta|ig|facebook|fb|snapchat|"
                                   r"tiktok|telegram|wechat|linkedin|signal|x\.com)(?:[ ](?i:id|name|"
                                   r"handle))?(?:[ ]?[:=][ ]?|[ ]-[ ])(@?[A-Za-z][\w.-]{2,39})")
_HANDLE_BEFORE_NETWORK = re.compile(r"(?<![\w@.])(@[A-Za-z_][\w.]{2,30})\b(?=[ ](?:on|via)[ ]"
                                    r"(?i:twitter|instagram|insta|ig|tiktok|x|snapchat|threads)\b)")
_NETWORK_HINTS = ("skype", "twitter", "insta", "facebook", "fb:", "snapchat", "tiktok", "telegram",
                  "wechat", "linkedin")


_NETWORK_GATE = gates.literals(*_NETWORK_HINTS, lower=True)


def social_handles(text: str, low: str) -> Iterator[Span]:
    if not _NETWORK_GATE(text):
        return
    for rx in (_HANDLE_AFTER_NETWORK, _HANDLE_BEFORE_NETWORK):
        for m in rx.finditer(text):
            yield m.start(1), m.end(1), "URL"


# e-mail written "john.smith(at)gmail.com", "jdoe [at] clinic.org" (against harvesters)
_BRACKET_EMAIL = re.compile(r"[\w.+-]+[ ]?(?:\(at\)|\[at\]|\{at\})[ ]?[\w-]+(?:\.[\w-]+)+", re.I)


_BRACKET_AT_GATE = gates.literals("(at)", "[at]", "{at}", lower=True)


def bracket_emails(text: str, low: str) -> Iterator[Span]:
    if _BRACKET_AT_GATE(text):
        for m in _BRACKET_EMAIL.finditer(text):
            yield m.start(), m.end(), "EMAIL"


# compact timestamps: "20261204T153012Z" (calendar files, logs; from their "T": a literal start)
_COMPACT_STAMP = re.compile(r"T(?<=(?<!\w)(?:19|20)\d{6}T)\d{4,6}(?:Z|[+-]\d{4})?(?!\w)")


def compact_timestamps(text: str) -> Iterator[Span]:
    for m in _COMPACT_STAMP.finditer(text):
        yield m.start() - 8, m.end(), "DATE"


# rural routes and post boxes of other countries: "RR 2 Box 45", "HC 61 Box 12", "Apartado 1234",
# "Locked Bag 7", "GPO Box 2201", "Postfach 1022", "PMB 118"
_RURAL_BOX = re.compile(r"\b(?:(?:RR|R\.R\.|HC|Rural Route|Star Route)[ ]?#?[ ]?\d{1,4},?[ ]Box[ ]\d{1,6}|"
                        r"(?:Rural Route|Apartado|Casilla|Postfach|Locked Bag|Private Bag|GPO Box|"
                        r"PMB)[ ]?#?[ ]?\d{1,6})\b")
# (RR and HC also measure: respiratory rate, head circumference; only with their "Box")
_RURAL_HINTS = ("RR", "R.R.", "HC", "Route", "Apartado", "Casilla", "Postfach", "Bag", "GPO", "PMB")


_RURAL_GATE = gates.literals("Box", "Apartado", "Casilla", "Postfach", "Bag", "PMB")


def rural_boxes(text: str) -> Iterator[Span]:
    if not _RURAL_GATE(text):
        return
    for m in _at_words(_RURAL_BOX, text, text, _RURAL_HINTS):
        yield m.start(), m.end(), "ADDRESS"


# "plate 4KX 921", "rego: ABC-123", "licence plate 7ABC123": a plate's value after its label
_PLATE = re.compile(r"\b(?i:plates?|rego|number plate|registration plate|tag)(?:[ ](?i:no\.?|number|#))?"
                    r"[ ]?[:#]?[ ]?(?:(?:[A-Z][a-z]+|[A-Z]{2})[ ])?((?=[A-Z0-9 -]{0,8}\d)[A-Z0-9]{1,4}"
                    r"[ -]?[A-Z0-9]{1,4})(?![\w-])")


_PLATE_GATE = gates.literals("plate", "rego", "tag ", lower=True)


def plates(text: str, low: str) -> Iterator[Span]:
    if _PLATE_GATE(text):
        for m in _at_words(_PLATE, text, low, ("plate", "rego", "number plate", "registration plate",
                                               "tag")):
            if len(m.group(1).replace(" ", "").replace("-", "")) >= 4:
                yield m.start(1), m.end(1), "VEHICLE"


# "SSN (last 4): 6612", "last four of social 1234"
_SSN_LAST4 = re.compile(r"\b(?i:ssn|ss#|social(?: security)?(?: number| no\.?| #)?)[^\n\d]{0,16}?"
                        r"(?i:last[ -]?(?:4|four))\)?:?[ ]*(\d{4})(?!\d)|(?i:last[ -]?(?:4|four)"
                        r"(?: digits)? of (?:her |his |the )?(?:ssn|social(?: security)?))"
                        r"[ ]?(?:is|:|-)?[ ]*(\d{4})(?!\d)")


_LAST_GATE = gates.literals("last", lower=True)
_SS_GATE = gates.literals("ss", "social", lower=True)


def ssn_last_four(text: str, low: str) -> Iterator[Span]:
    if _LAST_GATE(text) and _SS_GATE(text):
        for m in _SSN_LAST4.finditer(text):
            g = 1 if m.group(1) else 2
            yield m.start(g), m.end(g), "SSN"


def tails(text: str, spans: list[Span]) -> Iterator[Span]:
    """What goes on after each found span (one pass; most spans end before other text)."""
    for s, e, c in spans:
        if c == "ADDRESS" and text[s - 1:s] == " " and text[s:s + 1].isdigit():
            yield from unit_before(text, s)
        if c == "DATE":                     # (cheap tests first: most dates have no sides)
            before, first = text[s - 1:s], text[s:s + 1]
            if before == "-" or before == " " and first.isalpha() and text[s - 2:s - 1].isdigit():
                yield from date_head(text, s)
            if first.isalpha() and (text[e:e + 1] in ("/", ".", "-") or text[e - 1:e] == "." or
                                    before in ("/", ".")) or \
                    first.isdigit() and (before in ("-", "–") or
                                         before == " " and text[s - 2:s - 1] in ("-", "–")):
                yield from date_sides(text, s, e)
        nxt = text[e:e + 2]
        if c == "ADDRESS" and nxt[:1] in "\r\n":
            yield from town_line(text, e)
            continue
        if nxt[:1] not in _TAIL_STARTS or nxt == " " + nxt[1:] and nxt[1:].isalpha() and \
                c != "ADDRESS":
            continue                # (most spans: a word follows)
        if c == "DATE":
            yield from date_range(text, s, e)
        elif c == "ADDRESS" and nxt[:1] in ", ":
            yield from address_tail(text, s, e)
        elif c in _ID_CATEGORIES:
            if nxt[:1] == " ":
                yield from id_groups(text, s, e, c)
            elif nxt[:1] == "-" and text[e - 1:e].isalnum():
                m = _ID_TAIL.match(text, e)
                if m:
                    yield s, m.end(), c


_TAIL_STARTS = frozenset(" ,-–—")
_TAIL_CATEGORIES = ("ADDRESS", "DATE")      # (tails looks at these whatever follows them)


# --- scores, not dates or places -------------------------------------------------------------
# "Kapandji 9/10", "REALM-SF 7/7", "PHQ-9 4/27", "MoCA 26/30": a fraction right after a test's
# name is its score. A test's name here: a capitalised word that is no English word (an eponym),
# a mixed-case acronym, or an acronym with a hyphenated suffix. Plain acronyms ("CT 3/4",
# "EGD 5/3") and English words ("Seen 3/4", "Echo 6/12") still date what follows.
_TEST_NAME_BEFORE = re.compile(r"(?<![\w-])([A-Z][a-z]+[A-Z][A-Za-z]*|[A-Z]{2,}-[A-Z0-9]{1,4}|"
                               r"[A-Z][a-z]{3,})[ ]$")
_DATED_THINGS = frozenset("holter doppler echo labs seen admitted discharged dated visit".split())


def after_test_name(text: str, start: int) -> bool:
    m = _TEST_NAME_BEFORE.search(text, max(0, start - 24), start)
    if m is None:
        return False
    word = m.group(1)
    if word[1:].islower():          # a capitalised word: an eponym, not an English word
        low = word.lower()
        return low not in lexicon.english_words() and low not in _DATED_THINGS and \
            low not in lexicon.MONTHS and low not in lexicon.WEEKDAYS
    return True


# "Manchester score", "Geneva criteria": a town's name that names a test
_TEST_WORD_AFTER = re.compile(r"[ ]+(?:score|scale|criteria|classification|grade|grading|triage|"
                              r"staging|index|questionnaire|rule|model|protocol|tool)\b", re.I)


def names_a_test(text: str, end: int) -> bool:
    return _TEST_WORD_AFTER.match(text, end) is not None


# "12 Kingsway", "4 Broadway", "7 Northgate": a street whose type is inside its one word
_NUMBERED_WAY = r"\d{0,4}[ ][A-Z][a-z]+(?:way|gate)\b(?![ ]+[A-Z])"   # (after its first digit)


# "Flat 4, 22 Acacia Avenue", "Apt 3B, 1457 W. Foster Ave": a unit written before its street
_UNIT_BEFORE = re.compile(r"\b(?:Flat|FLAT|Apt|APT|Apartment|Unit|UNIT|Suite|Ste)\.?[ ]#?"
                          r"(\d{1,5}[A-Z]?),?[ ]$")


def one_word_streets(text: str, found: list[re.Match]) -> Iterator[Span]:
    for m in found:
        yield m.start(), m.end(), "ADDRESS"


def unit_before(text: str, s: int) -> Iterator[Span]:
    m = _UNIT_BEFORE.search(text, max(0, s - 20), s)
    if m:
        yield m.start(), m.end(1), "ADDRESS"


# Streets the core pattern has no type for, after their first digit: "2200 Harbour Parade",
# "3 Kirk Brae", "14/320 Pacific Hwy" (unit/number), "1420 Calle Las Palmas", "5 Heol y Brenin"
_STREET_WORLD = (r"\d{0,4}[A-Za-z]?[ ](?:(?:[A-ZÀ-Ý][a-zà-ÿ'-]+[ ]){1,3}(?:Parade|Pde|Brae|Wynd|"
                 r"Rise|Vale|Esplanade|Quay|Wharf|Promenade|Grange|Croft|Garth|Cres)\b\.?|"
                 r"(?:Calle|Avenida|Camino|Paseo|Via|Rue|Rua|Heol|Stryd|Chemin|Impasse|Allée|Quai|"
                 r"Strada|Ulica)[ ](?:(?:de|del|la|las|los|el|y|des|du|d'|della|di)[ ]?)*"
                 r"[A-ZÀ-Ý][\wà-ÿ'-]+(?:[ ][A-ZÀ-Ý][\wà-ÿ'-]+){0,2})|"
                 r"\d{0,3}[A-Za-z]?/\d{1,5}[A-Za-z]?[ ](?:[A-ZÀ-Ý][a-zà-ÿ'-]+[ ]){1,3}(?:St|Street|Rd|"
                 r"Road|Hwy|Highway|Ave|Avenue|Pde|Parade|Dr|Drive|Cres|Crescent|Pl|Place|Tce|Terrace|"
                 r"Ct|Court|Way|Lane|Ln|Cl|Close|Blvd|Boulevard|Esplanade)\b\.?")
# street names in other alphabets' letters: "15 Kōwhai Street", "8 Ñandú Road" (tried only in
# text that is not ASCII)
_STREET_LETTERS = (r"\d{0,4}[ ](?=[^\n]{0,30}[^\x00-\x7f])(?:[A-ZÀ-ÝĀ-ſ][^\W\d_]*[ ]){1,3}"
                   r"(?:Street|St|Road|Rd|Avenue|Ave|Drive|Lane|Place|Crescent|Terrace|Way|Court|"
                   r"Close|Parade)\b\.?")
# an Indian PIN after its town: "Hyderabad - 500034" (after its first digit)
_PIN_AFTER_DASH = r"(?:(?<=[-–][ ]\d)|(?<=[a-z][ ]\d))\d{5}(?![\w-])"
_TOWN_BEFORE_DASH = re.compile(r"([A-Z][a-z'-]+(?:[ ][A-Z][a-z'-]+){0,2})[ ]?(?:[-–][ ]?)?$")


def world_streets(text: str, found: list[re.Match]) -> Iterator[Span]:
    for m in found:
        yield m.start(), m.end(), "ADDRESS"


_AREA_BEFORE = re.compile(r"(?<![\w'-])([A-Z][a-z'-]+(?:[ ][A-Z][a-z'-]+)?),[ ]$")


def dash_pins(text: str, found: list[re.Match]) -> Iterator[Span]:
    for m in found:
        town = _TOWN_BEFORE_DASH.search(text, max(0, m.start() - 40), m.start())
        if town is None or any(w.lower() in _NOT_TOWN_WORDS for w in town.group(1).split()):
            continue
        if text[m.start() - 2:m.start() - 1] not in ("-", "–") and \
                not _town_words(town.group(1).split()[-1:]):
            continue                # "Bengaluru 560048": without its dash, a known town
        yield town.start(1), town.end(1), "ADDRESS"
        yield m.start(), m.end(), "ZIP"
        area = _AREA_BEFORE.search(text, max(0, town.start(1) - 30), town.start(1))
        if area and area.group(1).split()[0].lower() not in lexicon.english_words() and \
                not any(w.lower() in lexicon.FACILITY_HEADS for w in area.group(1).split()):
            yield area.start(1), area.end(1), "ADDRESS"   # "Banjara Hills, Hyderabad - 500034"


# "Flat 2, 39 Kennet Side", "Fflat 4, Tŷ Gwyn", "Apt 3B 1457 Foster": a unit before its street
# names the street whatever its type
_UNIT_STREET = re.compile(r"\b(?:Flat|FLAT|Fflat|Apt|APT|Apartment|Lot|(?:Unit|UNIT|Suite)(?=[ ]#?\d+[A-Z]?,))"
                          r"\.?[ ]#?\d{1,5}[A-Z]?,?[ ](?:\d{1,5}[A-Za-z]?[ ])?"
                          r"[A-ZÀ-Ý][\wà-ÿ'-]*(?:[ ][A-ZÀ-Ý][\wà-ÿ'-]*){0,3}")
_UNIT_WORDS = ("Flat", "FLAT", "Fflat", "Apt", "APT", "Apartment", "Lot", "Unit", "UNIT", "Suite")


def _at_words(rx: re.Pattern, text: str, haystack: str, words) -> list[re.Match]:
    """rx's matches that start where one of the literal `words` occurs in `haystack` (text, or
    its lower-case form): C-speed finds instead of trying rx at every position."""
    starts = sorted({i for w in words for i in _starts(haystack, w)})
    out, end = [], 0
    for i in starts:
        if i >= end and (i == 0 or not haystack[i - 1].isalnum()):
            m = rx.match(text, i)
            if m:
                out.append(m)
                end = m.end()
    return out


_UNIT_GATE = gates.literals(*_UNIT_WORDS)


def unit_streets(text: str) -> Iterator[Span]:
    if not _UNIT_GATE(text):
        return
    for m in _at_words(_UNIT_STREET, text, text, _UNIT_WORDS):
        words = m.group(0).split()
        if words[-1].lower() in _NOT_TOWN_WORDS:
            continue
        yield m.start(), m.end(), "ADDRESS"


# a postcode after its label: "C.P. 84000", "PIN: 560003", "Eircode D02 X285", "PLZ 10115"
_POSTCODE_LABEL = re.compile(r"\b(?:C\.P\.|PIN(?:[ ]?[Cc]ode)?|Pin[ ]?[Cc]ode|Eircode|PLZ|"
                             r"Post[ ]?[Cc]ode|Postal)[ ]?[:#]?[ ]?([A-Z0-9]{3}[ ]?[A-Z0-9]{4}|"
                             r"\d{4,6})(?![\w-])")


_POSTCODE_WORDS = ("C.P.", "PIN", "Pin", "Eircode", "PLZ", "Post", "Postal")


_POSTCODE_GATE = gates.literals("C.P.", "PIN", "Pin", "code", "PLZ", "Post")


def labelled_postcodes(text: str) -> Iterator[Span]:
    if _POSTCODE_GATE(text):
        for m in _at_words(_POSTCODE_LABEL, text, text, _POSTCODE_WORDS):
            if any(c.isdigit() for c in m.group(1)):
                yield m.start(1), m.end(1), "ZIP"


# a place after its label: "Birthplace: Ibadan", "Sub-location: Kijabe", "Residence: Kabati
# village, Maai Mahiu" (the rest of the clause; its first word no English word, or a town)
# (the last word of each label, lower case: looked up before the colon, then the regex checks)
_PLACE_LABEL_ENDS = frozenset("""birthplace birth hometown town residence village location
sublocation suburb city district county municipality barangay colonia ward""".split())
_PLACE_LABEL = re.compile(r"(?i:birthplace|place of birth|home ?town|residence|village|"
                          r"sub-?location|suburb|city|town|district|county|municipality|barangay|"
                          r"colonia|ward)[ ]?$")
# the place after a label's colon
_PLACE_VALUE = re.compile(r":[ ]*([A-ZÀ-Ý][\wà-ÿ'-]+(?:,?[ ][\wà-ÿ'-]+){0,4}?)"
                          r"(?=[ ]{2}|\t|\r?\n|$|[.;(]|[ ]+(?:Tel|Phone|Ph|Mob|Fax|Email|DOB|MRN|Sub)\b)")


def _word_before(text: str, i: int) -> str:
    """The letters right before position i (a space between allowed), lower case."""
    j = i - 1 if text[i - 1:i] == " " else i
    k = j
    while k > 0 and text[k - 1].isalpha():
        k -= 1
    return text[k:j].lower()


# (the word before the colon, lower case, is one of _PLACE_LABEL_ENDS: the lower-case text holds it)
_PLACE_LABEL_GATE = gates.literals(*sorted(_PLACE_LABEL_ENDS), lower=True)


def labelled_places(text: str, low: str) -> Iterator[Span]:
    i = text.find(":") if _PLACE_LABEL_GATE(text) else -1
    while i >= 0:
        if _word_before(text, i) in _PLACE_LABEL_ENDS and \
                _PLACE_LABEL.search(text, max(0, i - 16), i):
            m = _PLACE_VALUE.match(text, i)
            first = m.group(1).split()[0].rstrip(",").lower() if m else None
            if m and (first not in lexicon.english_words() or first in lexicon_cities()):
                value = m.group(1)
                head, comma, last = value.rpartition(", ")
                if comma and last in _STATES_AND_COUNTRIES:
                    value = head               # ("Ibadan, Nigeria": a country is no PHI)
                yield m.start(1), m.start(1) + len(value), "ADDRESS"
        i = text.find(":", i + 1)


# One scan from the starts of digit runs for the patterns above that start there: re jumps to
# the digits at C speed (the first digit is matched before the look-behind), then tries each
# pattern; a match is returned as from its first digit, under its pattern's name.
_DIGIT_PATTERNS = (rf"\d(?<![\w.,/:+-]\d)(?:(?P<trunk>{_TRUNK_PHONE})|"
                   rf"(?P<local>{_SPACED_LOCAL})|(?P<way>{_NUMBERED_WAY})|"
                   rf"(?P<age>{_AGE_NUMBER})|(?P<inward>{_INWARD})|(?P<au>{_AU_POSTCODE})|"
                   rf"(?P<world_street>{_STREET_WORLD}")
_DIGIT_END = rf")|(?P<pin>{_PIN_AFTER_DASH})|(?P<spaced_date>{_SPACED_DATE}))"
_DIGIT_START = re.compile(_DIGIT_PATTERNS + _DIGIT_END)                        # ASCII text
_DIGIT_START_LETTERS = re.compile(_DIGIT_PATTERNS + "|" + _STREET_LETTERS + _DIGIT_END)


_SPACED_DATE_AT = re.compile(r"\d" + _SPACED_DATE)


# where every _DIGIT_START match starts (its opening, as written there): in C++ for ASCII text
# (csrc's deid_anchor_starts "digit_start"), where re tries the alternatives; a change to the
# opening of _DIGIT_START (not to its alternatives) makes the scan run in Python again
_DIGIT_AT = re.compile(r"\d(?<![\w.,/:+-]\d)")
_native_digit_at = native.function(
    "deid_anchor_starts", "anchor_digit_start", _DIGIT_AT,
    f"opens _DIGIT_START: {_DIGIT_START.pattern.startswith(_DIGIT_AT.pattern + '(?:')}")


def digit_starts(text: str) -> dict[str, list[re.Match]]:
    out: dict[str, list[re.Match]] = {name: [] for name in _DIGIT_START.groupindex}
    if not text.isascii():
        found = _DIGIT_START_LETTERS.finditer(text)
    elif _native_digit_at is None:
        found = _DIGIT_START.finditer(text)
    else:
        found = _matches_at(_DIGIT_START, text, _native_digit_at("digit_start", text))
    for m in found:
        out[m.lastgroup].append(m)
    for m in out["trunk"]:          # "01 09 1941" is also a trunk number's shape: tried too
        date = _SPACED_DATE_AT.match(text, m.start())
        if date:
            out["spaced_date"].append(date)
    return out


def _matches_at(rx: re.Pattern, text: str, starts: list[int]) -> Iterator[re.Match]:
    """rx.finditer(text) where every match starts at one of the sorted `starts`."""
    pos = 0
    for a in starts:
        if a >= pos:
            m = rx.match(text, a)
            if m:
                yield m
                pos = m.end()


# a UK National Insurance number: "QQ 12 34 56 C" (its own shape: the label needs no digit run)
_NI_NUMBER = re.compile(r"\b[A-Z]{2}[ ]?\d{2}[ ]?\d{2}[ ]?\d{2}[ ]?[A-D]\b")


_NI_HINT = re.compile(r"NI(?:[ ]?(?:[Nn][Oo]|[Nn]umber|NUMBER)|NO\b|:)")      # (a literal start)
_NSURANCE_GATE = gates.literals("nsurance")


def ni_numbers(text: str) -> Iterator[Span]:
    if _NSURANCE_GATE(text) or _NI_HINT.search(text):
        for m in _NI_NUMBER.finditer(text):
            yield m.start(), m.end(), "SSN"


# Dictation spells numbers digit by digit: "call six one seven five five five zero one four two",
# "mrn one two three four five six": five digit words in a row are a number that identifies.
_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_SPOKEN_NUMBER = re.compile(rf"\b{_DIGIT_WORD}(?:[ ,-]{{1,2}}{_DIGIT_WORD}\b){{4,}}")
_SPOKEN_HINTS = (" one ", " two ", " five ", " zero ", " oh ", " nine ", " six ")
_SPOKEN_GATE = gates.literals(*_SPOKEN_HINTS, lower=True)
_SPOKEN_CUE = re.compile(r"(?:phone|call|cell|number|fax|pager|reach|at)\W{0,12}$")


def spoken_numbers(text: str, low: str) -> Iterator[Span]:
    if len(low) != len(text) or not _SPOKEN_GATE(text):
        return
    for m in _SPOKEN_NUMBER.finditer(low):
        cue = _SPOKEN_CUE.search(low, max(0, m.start() - 24), m.start())
        yield m.start(), m.end(), "PHONE" if cue else "OTHER_ID"


# "follow up on the twenty first", "seen on the third of march": a day in words
_ORDINAL_WORDS = (r"(?:(?:twenty|thirty)[- ])?(?:first|second|third|fourth|fifth|sixth|seventh|"
                  r"eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|"
                  r"sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth)")
_MONTH_NAME = (r"(?:january|february|march|april|may|june|july|august|september|october|"
               r"november|december)")
# (a literal start: re finds "on the " at C speed)
_SPOKEN_DAY = [re.compile(rf"{prep} the ({_ORDINAL_WORDS}( of {_MONTH_NAME})?)\b")
               for prep in ("on", "since")]
# without its month the day ends a clause: "on the second floor" is no date
_DAY_END = re.compile(r"[ ]*(?:[.,;\n]|$|[ ](?:at|in|for|with|and|to|when)\b)")


# "the fourteenth of March twenty nineteen", "first of june two thousand one": a day in words, its
# month and the year in words (dictation)
_DAY_OF_MONTH = re.compile(rf"\b{_ORDINAL_WORDS}[ ]of[ ]{_MONTH_NAME}\b(?!-)(?:,?[ ](?:(?:19|20)\d\d\b|"
                           rf"(?:nineteen|twenty|two thousand)(?:[ -](?:and[ ])?{_NUMBER_WORDS}\b)"
                           rf"{{0,2}}))?")


_DAY_OF_GATE = gates.literals("th of ", "st of ", "nd of ", "rd of ", lower=True)


def spoken_days(text: str, low: str) -> Iterator[Span]:
    if len(low) != len(text):
        return
    if _DAY_OF_GATE(text):
        for m in _DAY_OF_MONTH.finditer(low):
            yield m.start(), m.end(), "DATE"
    for rx in _SPOKEN_DAY:
        for m in rx.finditer(low):
            if (m.start() == 0 or not low[m.start() - 1].isalpha()) and \
                    (m.group(2) or _DAY_END.match(low, m.end())):
                yield m.start(1), m.end(1), "DATE"


# web addresses without "http" or "www": "mychart.lakeside-health.org/visit/88", and addresses
# spelled out against scrapers: "j dot smith at gmail dot com"
_TLD = r"(?:com|org|net|edu|gov|io|health|us|uk|ca|au|nz|ie|de|fr|es|it|info|biz)"
_BARE_DOMAIN = re.compile(rf"(?<![\w.@/-])[a-z0-9][\w-]*(?:\.[\w-]+)*\.{_TLD}\b(?:/[^\s<>\"')\]]*)?",
                          re.I)
# (the commonest endings, each a C-speed `in`: the others are found beside them)
_DOMAIN_HINTS = (".com", ".org", ".net", ".edu", ".gov", ".uk", ".ca")
_DOMAIN_GATE = gates.literals(*_DOMAIN_HINTS)
_DOT_GATE = gates.literals(" dot ", "(dot)", "[dot]", lower=True)
_SPELLED_EMAIL = re.compile(rf"\b[\w.]+(?:[ ](?:dot|\.)[ ][\w]+)*[ ](?:at|\(at\)|\[at\])[ ][\w-]+"
                            rf"(?:[ ](?:dot|\(dot\)|\[dot\])[ ][\w-]+)+\b", re.I)


def web_addresses(text: str, low: str) -> Iterator[Span]:
    end = 0                             # from each ".com" (...) back to its domain's start
    for i in sorted(i for h in _DOMAIN_HINTS for i in _starts(text, h)) if _DOMAIN_GATE(text) \
            else ():
        start = i
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._-"):
            start -= 1
        m = _BARE_DOMAIN.match(text, start) if start >= end and start < i else None
        if m and m.end() > i:
            end = m.end()
            if not standards_url(m.group(0)):
                yield m.start(), m.end(), "URL"
    if _DOT_GATE(text):
        for m in _SPELLED_EMAIL.finditer(text):
            yield m.start(), m.end(), "EMAIL"


# the addresses of standards and terminologies ("http://hl7.org/fhir/sid/us-ssn", "http://loinc.org")
# name a code system, nobody's page
_STANDARDS_URL = re.compile(r"(?:[a-z+]+://)?(?:[\w-]+\.)*(?:hl7\.org|fhir\.org|snomed\.info|"
                            r"loinc\.org|unitsofmeasure\.org|nlm\.nih\.gov|who\.int|"
                            r"dicom\.nema\.org|ihe\.net|w3\.org|schema\.org|json-schema\.org|"
                            r"ietf\.org|iso\.org|ncimeta\.nci\.nih\.gov|cms\.gov/medicare/coding)"
                            r"(?:[/:?#]|$)", re.I)


def standards_url(url: str) -> bool:
    return _STANDARDS_URL.match(url) is not None


# a DICOM UID quoted in a report ("1.2.840.113619.2.55.3.604688119.971"): it names a study
_UID = re.compile(r"(?<![\w.])[12]\.\d+(?:\.\d+){5,}(?![\w.]|\.\d)")
_UID_GATE = gates.literals("1.2.", "2.25.", "1.3.")


def dicom_uids(text: str) -> Iterator[Span]:
    if _UID_GATE(text):
        for m in _UID.finditer(text):
            yield m.start(), m.end(), "OTHER_ID"


# a device's MAC address: "00:1B:44:11:3A:B7"
_MAC = re.compile(r"(?<![\w:])[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}(?![\w:])")


_MAC_HINT = re.compile(r":[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}:")     # (a literal start: a fast scan)


def mac_addresses(text: str) -> Iterator[Span]:
    if _MAC_HINT.search(text):
        for m in _MAC.finditer(text):
            yield m.start(), m.end(), "DEVICE"


def find(text: str, spans: list[Span]) -> list[Span]:
    """Spans to add to the core detectors' `spans`."""
    out: list[Span] = []
    for detector in (foreign_dates, ocr_digits, counties, city_comma_state, gs1_udis,
                     european_addresses, mac_addresses, ni_numbers, dicom_uids, fields.find,
                     prose_towns):
        out.extend(detector(text))
    digits = digit_starts(text)
    out.extend(trunk_phones(text, digits["trunk"]))
    out.extend(spaced_local_phones(text, digits["local"]))
    out.extend(one_word_streets(text, digits["way"]))
    out.extend(world_streets(text, digits["world_street"]))
    out.extend(dash_pins(text, digits["pin"]))
    out.extend(unit_streets(text))
    out.extend(spaced_dates(text, digits["spaced_date"]))
    out.extend(labelled_postcodes(text))
    codes = list(postcodes(text, digits["inward"]))
    out.extend(codes)
    out.extend(towns_before_postcodes(text, codes, digits["au"]))
    low = text.lower()
    out.extend(hyphen_extensions(text, low))
    out.extend(word_house_numbers(text, low))
    out.extend(weak_cue_ages(text, low, digits["age"]))
    out.extend(spoken_numbers(text, low))
    out.extend(spoken_days(text, low))
    out.extend(web_addresses(text, low))
    out.extend(neighbourhoods(text, low))
    out.extend(labelled_places(text, low))
    out.extend(plates(text, low))
    out.extend(compact_timestamps(text) if "T" in text else ())
    out.extend(rural_boxes(text))
    out.extend(cross_streets(text))
    out.extend(spaced_digits(text) if " " in text else ())
    out.extend(fhir_ages(text))
    out.extend(social_handles(text, low))
    out.extend(town_sites(text) if _THE_GATE(text) else ())
    out.extend(bracket_emails(text, low))
    out.extend(ssn_last_four(text, low))
    out.extend(tails(text, _may_have_tails(text, spans + out)))
    return out


def _may_have_tails(text: str, spans: list[Span]) -> list[Span]:
    """The spans that tails() acts on, in order: an address, a date (its head and sides are
    looked at whatever follows), or a span that one of _TAIL_STARTS follows, not a space and a
    letter (most spans: a word follows). The rest are dropped here by one comprehension before
    its loop (the test is its own, unchanged)."""
    return [x for x in spans if x[2] in _TAIL_CATEGORIES or
            text[x[1]:x[1] + 1] in _TAIL_STARTS and
            not (text[x[1]:x[1] + 1] == " " and text[x[1] + 1:x[1] + 2].isalpha())]
