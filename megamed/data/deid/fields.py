"""PHI in structured text, found by the name of its field: the columns of a CSV / TSV / pipe
table under a header line ("patient_id,dob,accession,zip"), JSON keys ("postalCode": "10025"),
XML elements (<zip>10025</zip>) and key=value log fields (operator=jdoe).

A table row or a JSON value often holds an identifier with no label beside it ("A25334-0017"
in an `accession` column); the field's name is its label. Field names are matched by their
words (snake_case and camelCase split), so "ordering_provider", "patientDOB", "Zip Code" and
"visit_no" all say what their values are.
"""
from __future__ import annotations

import re
from typing import Iterator

from megamed.data.deid import gates
from megamed.data.deid.names import PERSON_COLUMNS

Span = tuple[int, int, str]

# (category, words of a field name that say it), the first that applies wins: "zip_code" is a
# ZIP before "code" says anything, "visit_date" a DATE before "visit" says ACCOUNT.
_FIELD_WORDS = (
    ("ZIP", {"zip", "zipcode", "postal", "postcode", "plz", "pincode"}),
    ("FAX", {"fax"}),
    ("PHONE", {"phone", "tel", "telephone", "mobile", "cell", "cellphone", "pager"}),
    ("EMAIL", {"email", "mail"}),
    ("SSN", {"ssn", "sin", "nino"}),
    ("DATE", {"dob", "birth", "birthdate", "date", "dt", "dod", "death", "admitted", "collected",
              "received", "discharged", "born"}),
    ("MRN", {"mrn", "chart", "uhid", "urn", "nhs", "nhi", "emr", "ehr", "record"}),
    ("ACCOUNT", {"acct", "account", "visit", "encounter", "fin", "csn", "har", "billing",
                 "claim", "invoice", "episode"}),
    ("HEALTH_PLAN", {"member", "policy", "insurance", "subscriber", "medicaid", "medicare",
                     "payer", "beneficiary"}),
    ("LICENSE", {"license", "licence", "npi", "dea"}),
    ("VEHICLE", {"plate", "vin", "vehicle"}),
    ("DEVICE", {"serial", "udi", "imei", "device"}),
    ("ADDRESS", {"address", "addr", "street", "city", "town", "suburb", "county", "residence",
                 "line1", "line2"}),
    ("OTHER_ID", {"accession", "specimen", "order", "sample", "case", "subject", "participant",
                  "requisition", "barcode", "kit", "ticket", "passport", "badge", "employee"}),
    ("AGE", {"age"}),
    ("NAME", {"name", "patient", "provider", "physician", "doctor", "clinician", "nurse",
              "attending", "ordering", "surgeon", "author", "kin", "guardian", "operator",
              "radiologist", "technologist", "referrer", "referring", "pcp", "family", "given",
              "signed", "signer", "caregiver", "mother", "father", "spouse", "initials", "user",
              "username", "login"}),
)
# words that make a field something else than its other words say ("test_name", "clinic_name",
# "order_status", "device_type", "record_count"): no PHI field
_NOT_PHI_WORDS = frozenset("""test drug med medication product facility clinic hospital site
dept department ward unit dx icd cpt diagnosis procedure exam type status count flag result
units ref range study protocol file class system resource use gender sex relationship display
state country language method specialty role manufacturer model brand lab panel priority
source report row item seq sequence index message msg batch job export run document note
comment client app application api session request trace span correlation transaction event
tenant org version build host group bracket band category agent""".split())
# "patient_id", "pt_no", "hospital_number": the patient's record number (before "unit" and
# "hospital" say no PHI)
_ID_WORDS = frozenset({"id", "no", "num", "number", "nr", "identifier"})
_PERSON_ID = {"patient": "MRN", "pt": "MRN", "pat": "MRN", "person": "MRN", "hospital": "MRN",
              "unit": "MRN"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def field_category(name: str) -> str | None:
    """The PHI category of the values of a field called `name`, or None."""
    words = [w for w in _NON_WORD.split(_CAMEL.sub("_", name).lower()) if w]
    if not words or len(words) > 5:
        return None
    if words[0] in _PERSON_ID and len(words) > 1 and words[-1] in _ID_WORDS:
        return _PERSON_ID[words[0]]
    if any(w in _NOT_PHI_WORDS for w in words):
        return None
    for category, cues in _FIELD_WORDS:
        if any(w in cues for w in words):
            return category
    if words[-1] in _ID_WORDS and len(words) > 1:
        return "OTHER_ID"             # "kit_id", "booking_no": whatever it numbers
    return None


_EMPTY = frozenset("na n/a none null nil unknown unk - -- . ? 0 n y yes no true false".split())


# accounts of programs, not people ("user": "svc-scheduler", operator=system)
_SERVICE_ACCOUNTS = ("svc", "sys", "service", "system", "app", "bot", "api", "admin", "root",
                     "daemon", "batch", "cron", "job", "integration", "interface", "auto")


def _value_ok(value: str, category: str) -> bool:
    """A cell worth a span: not empty, and shaped like its category's values."""
    v = value.strip()
    if not v or v.lower() in _EMPTY:
        return False
    if category == "NAME":
        return any(c.isalpha() for c in v) and not v.lower().startswith(_SERVICE_ACCOUNTS)
    if category == "ADDRESS":
        return any(c.isalpha() for c in v)
    if category == "AGE":
        return v.isdigit() and 90 <= int(v) <= 125
    return any(c.isdigit() for c in v)


_TIME = re.compile(r"[ T]\d{1,2}:\d\d")


def _value_end(text: str, s: int, e: int, category: str) -> int:
    """Where a value ends: a date's time of day ("2025-11-30 07:41") is no PHI."""
    if category == "DATE":
        m = _TIME.search(text, s, e)
        if m:
            return m.start()
    return e


# --- tables under a header line -------------------------------------------------------------
# a header: 3 or more short field names split by one delimiter (a line of letters, no digit run
# at a field's start); the data rows below it have as many fields
_FIELD_NAME = r"(?:[A-Za-z][\w#/()'-]{0,30}(?:[ .][\w#/()'-]{1,30}){0,3}|#)"
_HEADER = re.compile(rf"(?:^|(?<=\n))[ \t]*\|?[ \t]*{_FIELD_NAME}"
                     rf"(?:[ \t]*([,\t|;])[ \t]*{_FIELD_NAME}){{2,}}[ \t]*\|?[ \t]*\r?(?=\n|$)")
_RULE_ROW = re.compile(r"^[\s|:+=-]*$")           # "|---|:---:|" under a markdown header


def _fields(line: str, delimiter: str) -> list[tuple[int, int]]:
    """(start, end) of each field of a delimited line, inside its quotes and spaces."""
    out, i, n = [], 0, len(line)
    if delimiter == "|":
        line = line.rstrip("\r")
        n = len(line.rstrip(" \t"))
        if n and line[n - 1] == "|":
            n -= 1
        i = len(line) - len(line.lstrip(" \t"))
        if line[i:i + 1] == "|":
            i += 1
    while i <= n:
        j = i
        while j < n and line[j] in " \t":
            j += 1
        if j < n and line[j] == '"':             # a quoted field ("" is a quote inside)
            k = j + 1
            while k < n and not (line[k] == '"' and line[k + 1:k + 2] != '"'):
                k += 2 if line[k] == '"' else 1
            s, e = j + 1, k
            nxt = line.find(delimiter, k, n)
        else:
            nxt = line.find(delimiter, j, n)
            s, e = j, (n if nxt < 0 else nxt)
        while e > s and line[e - 1] in " \t\r":
            e -= 1
        out.append((s, e))
        if nxt < 0:
            break
        i = nxt + 1
    return out


_DELIMITERS = (",", "|", "\t", ";")


def tables(text: str) -> Iterator[Span]:
    if "\n" not in text:
        return
    # (a header starts the text or follows a newline: tried only there, not at every position)
    headers, pos = [], 0
    # (a delimiter found fewer than twice in the text is on no line twice: not counted per line)
    delimiters = [d for d in _DELIMITERS if text.count(d) >= 2]
    for line in text.split("\n") if delimiters else ():
        # (to the regex only: lines of short fields between 2 delimiters or more, no sentence)
        for d in delimiters:
            if line.count(d) >= 2:
                if not line.rstrip().endswith(".") and \
                        all(len(f) <= 44 for f in line.split(d)):
                    m = _HEADER.match(text, pos)
                    if m:
                        headers.append(m)
                break
        pos += len(line) + 1
    for header in headers:
        delimiter = header.group(1)
        line = header.group(0)
        names = [line[s:e] for s, e in _fields(line, delimiter)]
        categories = [field_category(n) for n in names]
        if not any(n.lower().replace("_", " ") in PERSON_COLUMNS for n in names):
            # a bare "Name" column names people only beside a person's other fields (DOB, MRN,
            # age, ...: names.py's rule for the same tables): else a drug's or a test's name
            categories = [None if n.lower() in ("name", "names") else c
                          for n, c in zip(names, categories)]
        if not any(categories):
            continue
        pos, found, digits = header.end() + 1, [], False
        while pos < len(text):
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            row = text[pos:end]
            if _RULE_ROW.match(row) and row.strip():
                pos = end + 1
                continue
            cells = _fields(row, delimiter)
            if len(cells) != len(names) or delimiter not in row:
                break
            digits = digits or any(c.isdigit() for c in row)
            for (s, e), category in zip(cells, categories):
                if category and _value_ok(row[s:e], category):
                    found.append((pos + s, pos + _value_end(row, s, e, category), category))
            pos = end + 1
        if digits:                  # (prose lines with commas hold no table of numbers)
            yield from found


# --- JSON keys, XML elements, key=value ------------------------------------------------------
_JSON_PAIR = re.compile(r'"([A-Za-z][\w-]{0,40})"[ ]?:[ ]?(?:"((?:[^"\\\n]|\\.){1,120})"|'
                        r'(-?\d[\d.]{0,30})\b|\[((?:[ ]?"(?:[^"\\\n]|\\.){0,120}",?)+)[ ]?\])')
_JSON_STRING = re.compile(r'"((?:[^"\\\n]|\\.){1,120})"')
_XML_ELEMENT = re.compile(r"<([A-Za-z][\w:-]{0,40})>([^<>\n]{1,120})</\1>")
_KEY_VALUE = re.compile(r"(?<![\w./?&-])([A-Za-z][A-Za-z_]{1,30})=([^\s,;&|\"'<>]{1,80})")
# JSON keys of a FHIR resource that are names on their own
_JSON_NAME_KEYS = frozenset({"family", "given", "line"})
# keys too generic in JSON / XML / logs to say whose value it is ("name" of a device, a drug)
_GENERIC_KEYS = frozenset({"name", "patient", "provider"})


def _json_category(key: str) -> str | None:
    if key in _JSON_NAME_KEYS:
        return "ADDRESS" if key == "line" else "NAME"
    return None if key.lower() in _GENERIC_KEYS else field_category(key)


_JSON_GATE = gates.literals('":', '" :')
_XML_GATE = gates.literals("</")
_KEY_VALUE_GATE = gates.literals("=")


def key_values(text: str) -> Iterator[Span]:
    if _JSON_GATE(text):
        for m in _JSON_PAIR.finditer(text):
            category = _json_category(m.group(1))
            if category is None:
                continue
            if m.group(4) is not None:              # an array of strings
                for v in _JSON_STRING.finditer(text, m.start(4), m.end(4)):
                    if _value_ok(v.group(1), category):
                        yield v.start(1), v.end(1), category
            else:
                g = 2 if m.group(2) is not None else 3
                if _value_ok(m.group(g), category):
                    yield m.start(g), m.end(g), category
    if _XML_GATE(text):
        for m in _XML_ELEMENT.finditer(text):
            category = _json_category(m.group(1))
            if category and _value_ok(m.group(2), category):
                yield m.start(2), m.end(2), category
    if _KEY_VALUE_GATE(text):
        for m in _KEY_VALUE.finditer(text):
            category = _json_category(m.group(1))
            if category and _value_ok(m.group(2), category):
                yield m.start(2), m.end(2), category


# FHIR references and queries: "Patient/pt-7730418", "Encounter/enc-99104472", "?patient=123"
_REFERENCE = re.compile(r"(?:\b(Patient|Encounter|Coverage|RelatedPerson|Person)/|[?&](patient|"
                        r"subject|encounter)=)([A-Za-z0-9][A-Za-z0-9.-]{2,63})")
_REFERENCE_CATEGORY = {"patient": "MRN", "person": "MRN", "subject": "MRN", "relatedperson": "MRN",
                       "encounter": "ACCOUNT", "coverage": "HEALTH_PLAN"}


# (one of these literals starts or ends each reference)
_REFERENCE_GATE = gates.literals("Patient/", "Encounter/", "Person/", "Coverage/", "patient=",
                                 "encounter=", "subject=")


def references(text: str) -> Iterator[Span]:
    if _REFERENCE_GATE(text):
        for m in _REFERENCE.finditer(text):
            if any(c.isdigit() for c in m.group(3)):
                kind = (m.group(1) or m.group(2)).lower()
                yield m.start(3), m.end(3), _REFERENCE_CATEGORY[kind]


def find(text: str) -> list[Span]:
    return [*tables(text), *key_values(text), *references(text)]
