"""The detector on formats of other countries and other writers (megamed/data/deid/more_patterns.py
and the rules it feeds in patterns.py): each case is a sentence with the PHI strings that must be
found (every token of each overlapped by a span) and the strings that must stay untouched."""
import re

import pytest

from megamed.data.deid import find_phi

# (text, PHI that must be found, text that must not be flagged)
CASES = [
    # dates in other languages, day first
    ("Consulta del 7 de octubre de 2023 con la doctora.", ["7 de octubre de 2023"], ["doctora"]),
    ("Control previsto para el 22 de junio.", ["22 de junio"], []),
    ("Hospitalisé le 14 juillet 2022 pour une pneumopathie.", ["14 juillet 2022"], []),
    ("Aufnahme am 19. Oktober 2021 wegen Dyspnoe und Fieber.", ["19. Oktober 2021"], ["Dyspnoe"]),
    ("Sua madre è morta in 3 maggio di quest'anno.", ["3 maggio"], []),
    ("La paciente empeoró desde noviembre de 2022.", ["noviembre de 2022"], []),
    ("Arztbrief vom 12 Okt. 2021 und Befund.", ["12 Okt. 2021"], []),
    ("Compte rendu du 3 déc. 2023 reçu.", ["3 déc. 2023"], []),
    ("Schmerzen seit Februar, und keine Besserung.", ["Februar"], []),
    # weekday or preposition then an ordinal day
    ("Family will visit Saturday the 23rd to discuss hospice.", ["23rd"], ["Saturday"]),
    ("Sutures stay in from the 2nd until the 9th.", ["2nd", "9th"], []),
    # ranges of month/day
    ("Telemetry 11/28-11/30: no events.", ["11/28-11/30"], []),
    ("Inpatient 6/2 – 6/5, then rehab.", ["6/2 – 6/5"], []),
    ("Away on leave Aug 2nd-9th, cover arranged.", ["Aug 2nd-9th"], []),
    # OCR'd digits in dates and phones
    ("Rcvd O9/l4/2024 from outside lab; callback 6I7 555 O142.", ["O9/l4/2024", "6I7 555 O142"],
     []),
    ("Scanned DOB: l1/O7/l942, rcvd 1O/O2/2O24.", ["l1/O7/l942", "1O/O2/2O24"], []),
    # phone numbers outside North America
    ("Surgery line 0117 496 0723, mobile 07700 900461.", ["0117 496 0723", "07700 900461"], []),
    ("Contact GP on (02) 9876 5432 after hours.", ["(02) 9876 5432"], []),
    ("Cabinet: 04 72 11 69 30.", ["04 72 11 69 30"], []),
    ("Seen 04.03.2019 02:14 in resus.", ["04.03.2019"], ["02:14"]),
    ("Daughter abroad: 0033 1 42 68 53 00, or call 555 0193 here.",
     ["0033 1 42 68 53 00", "555 0193"], []),
    # postcodes
    ("Flat 2, 17 Rowan Close, Bristol BS8 4QT", ["BS8 4QT"], []),
    ("Moved to Halifax NS B3H 2Y9 last spring.", ["B3H 2Y9"], []),
    ("Staging T3 N1 M0, grade 2.", [], ["T3 N1 M0"]),
    ("Postal: 8 Kent Street, Bundaberg QLD 4670", ["Bundaberg", "4670"], []),
    ("Moved to Kelowna BC V1Y 6H2 in 2019.", ["Kelowna", "V1Y 6H2"], []),
    # addresses written street first, or number then a lower-case street type (Europe)
    ("Wohnhaft Lindenweg 7, 80331 München.", ["Lindenweg 7", "80331", "München"], []),
    ("Domicilio: Avenida de la Constitución 48, 41001 Sevilla", ["Avenida de la Constitución 48",
                                                              "41001", "Sevilla"], []),
    ("Adresse: 9 boulevard Haussmann, 75009 Paris", ["9 boulevard Haussmann", "75009", "Paris"],
     []),
    ("Unit 12, 40 Harbour Road, then the ferry.", ["Unit 12", "40 Harbour Road"], []),
    # counties, parishes, a city and a state code anywhere
    ("Transferred from Jefferson Parish jail infirmary.", ["Jefferson Parish"], []),
    ("Referred by the Sheriff of Bexar County office.", ["Bexar County"], []),
    ("Outside films from Kings County Hospital Center.", [], ["Kings County"]),
    ("Petition filed in the County of Santa Cruz last week.", ["County of Santa Cruz"], []),
    ("She grew up in the Mattapan neighborhood and the Pilsen district.", ["Mattapan", "Pilsen"],
     ["neighborhood"]),
    ("Referred by the Medical district office.", [], ["Medical district"]),
    ("Her sister flew in from Eugene, OR last night.", ["Eugene, OR"], []),
    ("Reviewed with ortho, OR booked for the morning.", [], ["ortho, OR"]),
    ("Hx of Troponinemia, MI in 2019; Metastatic, CA 19-9 rising", [], ["Troponinemia, MI",
                                                                       "Metastatic, CA"]),
    ("She moved here from Saginaw, MI in May.", ["Saginaw, MI"], []),
    ("Records faxed from Ridgeway Clinic, Bozeman, MT on request.", ["Bozeman, MT"], []),
    ("Discussed with cardiology, MD aware; BP soft, OK to walk.", [], ["cardiology, MD", "soft, OK"]),
    # house numbers in words, one-word streets
    ("she lives at forty two birch lane with her son", ["forty two birch lane"], []),
    ("Home: 31 Eastgate, Norwich", ["31 Eastgate"], []),
    # ages over 89 with weak cues
    ("Her aunt Henrietta (97) still drives.", ["97"], []),
    ("his grandfather died at 101 in his sleep", ["101"], []),
    ("turns ninety six next month per daughter", ["ninety six"], []),
    ("she is ninety one and fiercely independent", ["ninety one"], []),
    ("Her mother lived to be 104; his father is 95 and well.", ["104", "95"], []),
    ("Uncle Avram, alive, 96, and aunt alive at ninety-two.", ["96", "ninety-two"], []),
    ("Series UID 1.2.840.113704.1.111.2604.1726 reviewed; CPSO 71234; UHID: 20250088; "
     "vent asset VX-0091", ["1.2.840.113704.1.111.2604.1726", "71234", "20250088", "VX-0091"],
     []),
    ("Va a Oaxaca cada noviembre a la casa de su hija.", ["noviembre"], []),
    ("Pedigree: II-2 (d. 93, stroke); I-1 died 101; aunt q.d. 90 tabs", ["93", "101"], ["90"]),
    ("Age/Sex: 92/M   Wt 61 kg. Prior visit note: Age 97y.", ["92", "97"], ["61"]),
    ("He will be 91 in May; grandmother aged 100.", ["91", "100"], []),
    ("Sat 94% on RA, HR 96, she is 94 % saturating", [], ["94%", "96"]),
    ("O2 sat is now 92; her mother is 90 minutes away; she is 90 degrees", [], ["92", "90 minutes",
                                                                             "90 degrees"]),
    ("she is a 93 y female", ["93"], ["female"]),
    ("DOB on file (96 y), lives alone", ["96"], []),
    # dictation: numbers digit by digit, days in words
    ("son's cell is four one three five five five zero one nine two", ["four one three five five "
                                                                      "five zero one nine two"], []),
    ("chart number eight eight two zero four one on the sticker", ["eight eight two zero four one"],
     []),
    ("she fell on the nineteenth and again on the second of june", ["nineteenth",
                                                                    "second of june"], []),
    ("her room is on the second floor; first dose on the third day", [], ["second", "third"]),
    # identifiers in spaced groups and behind a payer's code
    ("Subscriber no. BCBS 4471 2290 83 on file.", ["4471 2290 83"], []),
    ("Medicaid: 5520 84119 6\nAllergies: none", ["5520 84119 6"], ["Allergies"]),
    ("Chart M RN: 55O2I8", ["55O2I8"], []),
    ("Docket # 23-CR-55102; inmate no. 7730119; Rx # 5561207", ["23-CR-55102", "7730119",
                                                               "5561207"], []),
    ("Participant ID: 104-0032, screening no. S-0091; GMC No. 7023145",
     ["104-0032", "S-0091", "7023145"], []),
    ("Medicaid no. 7720 11094 3; NHS number 401 023 2137", ["7720 11094 3", "401 023 2137"], []),
    ("IHI 8003 6081 2345 6671 and OHIP 2231-774-119-KT", ["8003 6081 2345 6671", "2231-774-119-KT"],
     []),
    ("Generator model ADDR01 replaced.", [], ["ADDR01 replaced"]),
    ("SIN no. 046 454 286; NI number: QQ 12 34 56 C; NHI: ZAC5361; URN 1234567",
     ["046 454 286", "QQ 12 34 56 C", "ZAC5361", "1234567"], []),
    ("PHN 9876 543 210, Aadhaar 4321 8765 2109", ["9876 543 210", "4321 8765 2109"], []),
    ("Policy no.: AETNA 310 552 908", ["AETNA 310 552 908"], []),
    ("Case ref: CPS-11-204-7781 opened.", ["CPS-11-204-7781"], []),
    # extensions, floors, the town after a street
    ("Page the charge nurse, ext 3-4410, after rounds.", ["3-4410"], []),
    ("Home visit done at 61 Orchard Rd, 3rd floor, with her cat.", ["61 Orchard Rd, 3rd floor"], []),
    ("Her flat is on Mercer Lane, Maple Heights.", ["Mercer Lane, Maple Heights"], []),
    ("Wearable monitor MAC 3C:71:BF:08:AA:19 paired.", ["3C:71:BF:08:AA:19"], []),
    ("Results on mychart.lakeside-health.org/visit/88 tomorrow.", ["mychart.lakeside-health.org/visit/88"],
     []),
    ("write to her: rosa dot linares at outlook dot com", ["rosa dot linares at outlook dot com"],
     []),
    ("Dose 2.5 mg. Continue; see report.pdf", [], ["2.5 mg", "report.pdf"]),
    # GS1 device identifiers
    ("Stent UDI (01)05415067012345(17)261130(10)LT7731 implanted.",
     ["(01)05415067012345(17)261130(10)LT7731"], []),
    # scores, protocol numbers and tests that are not PHI
    ("Beighton 6/9, Tinel 2/4 at the wrist.", [], ["6/9", "2/4"]),
    ("Worst itch NRS 8/10 at night, nausea 3/10.", [], ["8/10", "3/10"]),
    ("Health literacy (BRIEF-SF 4/4), GAD-7 5/21.", [], ["4/4", "5/21"]),
    ("Consent under IRB #2023-1142 per protocol.", [], ["2023-1142"]),
    ("Revised Geneva score 4; Whitfield criteria not met.", [], ["Geneva", "Whitfield"]),
]


@pytest.mark.parametrize("text,phi,clean", CASES, ids=[c[0][:40] for c in CASES])
def test_found_and_left_alone(text, phi, clean):
    """Scored as the issue scores: a token is found when a span overlaps it."""
    spans = find_phi(text)
    for value, wanted in [(v, True) for v in phi] + [(v, False) for v in clean]:
        start = text.index(value)
        for tok in re.finditer(r"\w+", value):
            s, e = start + tok.start(), start + tok.end()
            hit = any(a < e and s < b for a, b, _ in spans)
            assert hit == wanted, (value, tok.group(0), [(text[a:b], c) for a, b, c in spans])
