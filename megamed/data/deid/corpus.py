"""A labelled synthetic corpus of clinical documents for measuring the detector.

Seven kinds of document (discharge summary, radiology report, ECG report, progress note,
nursing note, letter, lower-case dictation) filled from hand-written pools that are NOT the
detector's census lists: a third of the names are absent from those lists (Okonkwo,
Szczepanski, Thandiwe), many are English words (Hope, Will, Baker, Rose), and the clinical
filler is full of the usual false-positive traps: eponyms, drugs, vitals, labs, measurements,
ECG intervals, years alone, ages under 90.
"""
from __future__ import annotations

import random
import re

FIRST = """James Mary Robert Patricia Michael Jennifer David Linda William Elizabeth Carlos Maria
Jose Ana Wei Mei Hiroshi Yuki Priya Arjun Fatima Omar Olga Dmitri Aaliyah DeShawn Siobhan Padraig
Thandiwe Kwame Xiomara Nguyen Bao Ingrid Lars Zofia Tomasz Chidi Ngozi Anjali Rahul Hope Will
Frank Rose Grace June Faith Joy Dawn Mark Bill Summer April Sandy Ray Jack Dean Destiny Precious
Guadalupe Jesus Mohammed Yusuf Keanu Leilani Tenzin Oluwaseun Bartholomew Eudora""".split()
LAST = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Young
King Wright Hill Baker Green Hall Walker Allen Young Nguyen Patel Kim Chen Wang Singh Kowalski
Okonkwo Szczepanski Nakamura-Lee Abernathy Fitzgerald O'Brien McAllister Van der Berg
Delacroix Oyelaran Vukovic Papadopoulos Haddad Castellanos Ferreira Lindqvist Adeyemi Bhattacharya
Ketterman Quigley Zamora Whitfield Rosenbaum Tanaka Gallagher Ivanova Mbeki Oduya Strand Frost
Winter Stone Rivers Woods Fox Hunt Bird Love Best Cash Gold Price Bell Rice Long Short""".split()
CITIES = """Springfield Riverside Fairview Kettering Maplewood Brookhaven Oakdale Millbrook
Ashland Greenville Lakewood Ridgefield Harrisburg Tacoma Ypsilanti Kalamazoo Poughkeepsie
Walla Walla""".split("\n")[0].split() + ["Walla Walla", "Coeur d'Alene", "Ann Arbor", "Palo Alto"]
STREETS = """Oak Maple Main Elm Cedar Pine Washington Lincoln Lakeview Hillcrest Sunset Park
Chestnut Willow Magnolia Jefferson Franklin""".split()
STREET_TYPES = "Street St. Avenue Ave Road Rd. Lane Drive Dr. Court Way Boulevard Blvd Place Circle".split()
STATES = ["IL", "MA", "CA", "NY", "TX", "WA", "OH", "Michigan", "Oregon", "PA"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

NEGATIVE = [
    "History of Parkinson's disease, on carbidopa-levodopa.", "Hodgkin lymphoma in remission.",
    "Bell's palsy resolved.", "Murphy's sign negative.", "Babinski sign absent bilaterally.",
    "Foley catheter removed.", "Holter monitor placed for 48 hours.", "Doppler shows no DVT.",
    "BP 132/84, HR 78, RR 16, SpO2 97% on RA, T 37.1 C.", "BP 118/76 mmHg.",
    "Na 138, K 4.1, Cr 1.2, BUN 22, glucose 104.", "WBC 11.2, Hgb 9.8, Plt 245.",
    "Lesion measures 12/3 mm.", "Nodule 8 x 6 mm in the right upper lobe.",
    "PR 164 ms, QRS 92 ms, QT/QTc 402/438 ms.", "Axis +45. Sinus rhythm at 72 bpm.",
    "Strength 5/5 in all extremities.", "Pain 3/10.", "Grade 2/6 systolic murmur.",
    "Metoprolol 25 mg PO BID.", "Lasix 40 mg IV daily.", "Started Eliquis 5 mg BID.",
    "Continue lisinopril 10 mg daily.", "Tylenol 650 mg q6h PRN.",
    "Diagnosed with diabetes in 2009.", "CABG in 2015.", "Smoked until 1998.",
    "The 67-year-old was ambulating.", "Mother died at 78 of a stroke.", "Age 54.",
    "Glasgow Coma Scale 15.", "Wells score 2.", "Gleason 3+4=7 adenocarcinoma.",
    "Crohn's disease on Humira.", "Alzheimer dementia, stable.", "Graves disease on methimazole.",
    "EF 55-60%.", "LVEF 35%.", "Ejection fraction 40 %.", "Tidal volume 450 mL, PEEP 5.",
    "Will follow up in clinic.", "Hope to discharge tomorrow.", "Frank blood noted in stool.",
    "Rose to 38.9 overnight.", "Grace period discussed.", "Brown urine.", "White count rising.",
    "Mass in the left kidney, 3.2 cm.", "Swan-Ganz catheter in place.", "Trendelenburg position.",
    "Valsalva maneuver terminated SVT.", "Wolff-Parkinson-White pattern not seen.",
    "Apgar 8 and 9.", "Mallampati class II.", "Killip class I.", "Cushing syndrome ruled out.",
    "Down syndrome.", "Guillain-Barre syndrome.", "Sjogren syndrome.", "Raynaud phenomenon.",
]


class _Doc:
    def __init__(self):
        self.parts: list[str] = []
        self.spans: list[list] = []
        self.len = 0

    def add(self, text: str, cat: str | None = None):
        if cat and text:
            self.spans.append([self.len, self.len + len(text), cat])
        self.parts.append(text)
        self.len += len(text)

    def template(self, tpl: str, fill: dict):
        for piece in re.split(r"(\{\w+\})", tpl):
            key = piece[1:-1] if piece.startswith("{") and piece.endswith("}") else None
            if key is None or key not in fill:
                self.add(piece)
                continue
            for text, cat in fill[key]():
                self.add(text, cat)

    def result(self, lower=False) -> dict:
        text = "".join(self.parts)
        return {"text": text.lower() if lower else text, "spans": self.spans}


class _Faker:
    """Values in many formats; each returns [(text, category or None), ...]."""

    def __init__(self, rng: random.Random):
        self.r = rng

    def pick(self, xs):
        return self.r.choice(xs)

    def person(self):
        return self.pick(FIRST), self.pick(LAST)

    def date(self, with_year=True):
        r = self.r
        y, m, d = r.randint(1930, 2024), r.randint(1, 12), r.randint(1, 28)
        forms = [f"{m}/{d}/{y}", f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y % 100:02d}",
                 f"{y}-{m:02d}-{d:02d}", f"{MONTHS[m - 1]} {d}, {y}", f"{MONTHS[m - 1][:3]}. {d}, {y}",
                 f"{d} {MONTHS[m - 1]} {y}", f"{d:02d}-{MONTHS[m - 1][:3].upper()}-{y}",
                 f"{MONTHS[m - 1]} {y}", f"{m:02d}.{d:02d}.{y}", f"{MONTHS[m - 1]} {d}th"]
        if not with_year:
            forms = [f"{m}/{d}", f"{MONTHS[m - 1][:3]}. {d}th", f"{MONTHS[m - 1]} {d}",
                     f"{d}th of {MONTHS[m - 1]}", MONTHS[m - 1]]
        return [(self.pick(forms), "DATE")]

    def phone(self, cat="PHONE"):
        a, b, c = self.r.randint(201, 989), self.r.randint(200, 999), self.r.randint(0, 9999)
        return [(self.pick([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}",
                            f"+1 {a} {b} {c:04d}", f"{a}/{b}-{c:04d}"]), cat)]

    def ident(self, cat, letters=0, digits=8):
        s = "".join(self.r.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(letters))
        return [(s + "".join(str(self.r.randint(0, 9)) for _ in range(digits)), cat)]

    def address(self):
        r = self.r
        parts = [(f"{r.randint(1, 9999)} {self.pick(STREETS)} {self.pick(STREET_TYPES)}", "ADDRESS")]
        if r.random() < 0.3:
            parts[0] = (parts[0][0] + f", Apt {r.randint(1, 40)}{self.pick('ABCD')}", "ADDRESS")
        zip5 = f"{r.randint(10000, 99999)}"
        # the state is labelled with the address it belongs to (Safe Harbor would allow it
        # alone, but annotators mark the whole address line)
        return parts + [(", ", None), (self.pick(CITIES), "ADDRESS"), (", ", None),
                        (self.pick(STATES), "ADDRESS"), (" ", None), (zip5, "ZIP")]

    def age(self):
        if self.r.random() < 0.5:
            return [(str(self.r.randint(90, 104)), "AGE")]
        return [(self.pick(["ninety-three", "ninety-one", "ninety", "one hundred and one"]), "AGE")]


def _fills(f: _Faker, pf, pl, df, dl, rf, rl):
    """Placeholder -> maker. p: patient, d: doctor, r: relative (first, last)."""
    r = f.r
    return {
        "PFULL": lambda: [(f"{pf} {pl}", "NAME")],
        "PFIRST": lambda: [(pf, "NAME")],
        "PLAST": lambda: [(pl, "NAME")],
        "PLASTFIRST": lambda: [(f"{pl.upper()}, {pf.upper()}", "NAME")],
        "PMID": lambda: [(f"{pf} {f.pick('ABCDEJKLMRST')}. {pl}", "NAME")],
        "DFULL": lambda: [(f"{df} {dl}", "NAME")],
        "DLAST": lambda: [(dl, "NAME")],
        "DINIT": lambda: [(f"{df[0]}. {dl}", "NAME")],
        "RFIRST": lambda: [(rf, "NAME")],
        "RFULL": lambda: [(f"{rf} {rl}", "NAME")],
        "D2": lambda: [(" ".join(f.person()), "NAME")],
        "D2LAST": lambda: [(f.person()[1], "NAME")],
        "DATE": lambda: f.date(),
        "DATENY": lambda: f.date(with_year=False),
        "YEAR": lambda: [(str(r.randint(1980, 2024)), None)],
        "AGE": f.age,
        "YOUNG": lambda: [(str(r.randint(18, 89)), None)],
        "PHONE": f.phone,
        "FAX": lambda: f.phone("FAX"),
        "EMAIL": lambda: [(f"{pf.lower()}.{pl.lower().replace(' ', '')}{r.randint(1, 99)}@"
                           f"{f.pick(['gmail.com', 'yahoo.com', 'mail.org', 'hospital.org'])}", "EMAIL")],
        "MRN": lambda: f.ident("MRN", r.choice([0, 0, 2]), r.randint(6, 9)),
        "ACCT": lambda: f.ident("ACCOUNT", r.choice([0, 1]), 10),
        "PLAN": lambda: f.ident("HEALTH_PLAN", 3, 9),
        "LIC": lambda: f.ident("LICENSE", 2, 7),
        "SSN": lambda: [(f"{r.randint(100, 899)}-{r.randint(10, 99)}-{r.randint(1000, 9999)}", "SSN")],
        "SERIAL": lambda: f.ident("DEVICE", 3, 7),
        "PLATE": lambda: [(f"{r.randint(1, 9)}{f.pick('ABCXYZ')}{f.pick('KLMN')}{r.randint(100, 999)}",
                           "VEHICLE")],
        "URL": lambda: [(f"https://portal.{f.pick(['mercyhealth', 'stjude-clinic', 'myhealth'])}.org/"
                         f"patient/{r.randint(1000, 99999)}", "URL")],
        "IP": lambda: [(f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}", "IP")],
        "ADDR": f.address,
        "CITY": lambda: [(f.pick(CITIES), "ADDRESS")],
        "ACC": lambda: f.ident("OTHER_ID", 2, 8),
        "NEG": lambda: [(" ".join(r.sample(NEGATIVE, 3)), None)],
        "CRED": lambda: [(f.pick(["MD", "M.D.", "DO", "NP", "RN", "PA-C"]), None)],
    }


TEMPLATES = {
    "discharge": """DISCHARGE SUMMARY
Patient: {PFULL}    MRN: {MRN}    DOB: {DATE}
Admission Date: {DATE}    Discharge Date: {DATE}
Attending: {DFULL}, {CRED}
HISTORY: {PLAST} is a {AGE} year old with CHF and CKD admitted for dyspnea. {NEG}
Hospital course: diuresed. {NEG} Seen in consultation by Dr. {D2LAST} of cardiology.
Discharge medications: metoprolol 25 mg BID, furosemide 40 mg daily.
Follow-up with {DFULL} on {DATENY} at (clinic) {PHONE}. Home address {ADDR}.
Contact: daughter {RFULL}, {PHONE}. Insurance member ID {PLAN}.
Electronically signed by {DFULL}, {CRED} on {DATE}
""",
    "radiology": """EXAM: CT CHEST WITH CONTRAST    ACCESSION #: {ACC}
PATIENT: {PLASTFIRST}   MRN {MRN}   EXAM DATE: {DATE}
REFERRING PHYSICIAN: {DINIT}, {CRED}
CLINICAL HISTORY: {YOUNG} year old with cough since {DATENY}. Prior study {YEAR}.
FINDINGS: {NEG} No pleural effusion. {NEG}
IMPRESSION: Stable nodule. Compared with exam of {DATE}.
Dictated by: {D2}, MD   Transcribed {DATE}   Read station IP {IP}
""",
    "ecg": """12-LEAD ECG REPORT
Name: {PFULL}  ID: {MRN}  Age: {AGE}  Acquired {DATE} 08:42
Ventricular rate 72 bpm. PR interval 164 ms. QRS duration 94 ms. QT/QTc 398/431 ms.
P-R-T axes 52 -10 41. {NEG}
Interpretation: sinus rhythm, left axis deviation. Confirmed by {DFULL} ({DATE}).
Device serial no. {SERIAL}
""",
    "progress": """Progress Note {DATE}
S: Mr. {PLAST} reports less dyspnea. His wife {RFIRST} says he slept well. {NEG}
O: {NEG}
A/P: {YOUNG} yo with COPD exacerbation. Continue nebs. {NEG}
Discussed with {D2} (pharmacy) and {D2LAST}. Will call {RFIRST} at {PHONE} with results.
-- {DINIT}, {CRED}
""",
    "nursing": """Nursing note {DATENY} 0300: Pt {PFIRST} {PLAST} resting. {NEG}
Family ({RFULL}, son) visited, left number {PHONE}. Pt states her neighbor {D2} will drive her.
Car: plate {PLATE}. Pt ambulated with RN {D2LAST}. {NEG} Charge nurse {D2} notified.
""",
    "letter": """{D2}, {CRED}
Cardiology Associates
{ADDR}
Tel {PHONE}  Fax {FAX}  {EMAIL}

{DATE}

Dear Dr. {DLAST},

Thank you for referring {PFULL} (DOB {DATE}, SSN {SSN}), whom I saw on {DATENY}. {NEG}
{PFIRST} lives in {CITY} with her husband {RFIRST}. {NEG} Portal: {URL}
Account {ACCT}. License {LIC}.

Sincerely,

{DFULL}, {CRED}
""",
    "dictation": """this is dr {DLAST} dictating on {PFULL} date of service {DATE} pt is a {AGE} year old
seen with daughter {RFIRST} {NEG} mrn {MRN} callback {PHONE} ok thats all cc dr {D2LAST}
""",
}


def generate(n_docs: int = 300, seed: int = 0) -> list[dict]:
    """`n_docs` documents cycling through the seven kinds, reproducible from `seed`."""
    rng = random.Random(seed)
    faker = _Faker(rng)
    kinds = sorted(TEMPLATES)
    docs = []
    for i in range(n_docs):
        kind = kinds[i % len(kinds)]
        (pf, pl), (df, dl), (rf, rl) = faker.person(), faker.person(), faker.person()
        doc = _Doc()
        doc.template(TEMPLATES[kind], _fills(faker, pf, pl, df, dl, rf, rl))
        docs.append(dict(doc.result(lower=kind == "dictation"), kind=kind))
    return docs
