"""Non-name PHI rules: structured fields (tables, JSON, XML, key=value), towns and addresses of
other countries, identifiers joined by "." or "/", labelled postcodes, plates, dates and holidays.
Each case is written in its own words (none is copied from an evaluation set), and each family
has look-alikes that must stay unflagged."""
import pytest

from megamed.data.deid import find_phi
from megamed.data.deid.fields import field_category


def _covered(text: str, value: str, category: str | None = None) -> bool:
    """Every character of `value` (its first occurrence) lies in a found span (of `category`)."""
    start = text.index(value)
    end = start + len(value)
    spans = [(s, e) for s, e, c in find_phi(text) if category is None or c == category]
    return all(any(s <= i < e for s, e in spans) for i in range(start, end) if not text[i].isspace())


def _untouched(text: str, value: str) -> bool:
    start = text.index(value)
    end = start + len(value)
    return not any(s < end and start < e for s, e, _ in find_phi(text))


def _check(text: str, found=(), kept=(), category: str | None = None) -> None:
    """Each of `found` is covered (by spans of `category`), none of `kept` is touched."""
    missed = [v for v in found if not _covered(text, v, category)]
    touched = [v for v in kept if not _untouched(text, v)]
    assert not missed and not touched, (missed, touched)


def _check_categories(text: str, expected: list) -> None:
    """Each (value, category) of `expected` is covered by spans of that category (None: any)."""
    missed = [(v, c) for v, c in expected if not _covered(text, v, c)]
    assert not missed, missed


# --- field names -------------------------------------------------------------------------------
@pytest.mark.parametrize("name,category", [
    ("patient_id", "MRN"), ("PatientID", "MRN"), ("encounter_no", "ACCOUNT"),
    ("Zip Code", "ZIP"), ("postalCode", "ZIP"), ("home_phone", "PHONE"), ("fax_number", "FAX"),
    ("date_of_birth", "DATE"), ("birthDate", "DATE"), ("specimen_barcode", "OTHER_ID"),
    ("subscriberId", "HEALTH_PLAN"), ("attending_physician", "NAME"), ("street_address", "ADDRESS"),
    ("kit_id", "OTHER_ID"),
    # look-alikes: what the field is about says no person
    ("test_name", None), ("clinic_name", None), ("order_status", None), ("result", None),
    ("units", None), ("device_type", None), ("report_id", None), ("client_id", None),
    ("age_group", None), ("medical_history", None), ("row", None),
])
def test_field_category(name, category):
    assert field_category(name) == category


def test_csv_export_columns_say_what_unlabelled_values_are():
    text = ("# nightly pull from the chemistry analyser\n"
            "pat_id,surname_given,birth_dt,specimen_no,drawn_at,analyte,value,units\n"
            "Q7781204,\"PRZYBYLSKI, Wanda\",1947-02-19,C98812-0441,2026-01-03 06:10,K,4.1,mmol/L\n"
            "Q7781377,\"ODUYA, Femi\",1962-11-30,C98812-0452,2026-01-03 06:25,NA,138,mmol/L\n")
    _check_categories(text, [("Q7781204", "MRN"), ("C98812-0441", "OTHER_ID"),
                            ("C98812-0452", "OTHER_ID"), ("1962-11-30", "DATE")])
    assert _covered(text, "PRZYBYLSKI, Wanda")
    _check(text, kept=("analyte", "mmol/L", "138", "06:10"))


def test_pipe_table_with_a_rule_row():
    text = ("| # | Enrolment ID | Initials | Town | Postcode | Arm |\n"
            "|---|---|---|---|---|---|\n"
            "| 1 | 3310-017 | P.W. | Kettering | 4421 | B |\n"
            "| 2 | 3310-018 | A.N. | Dunmore | 4430 | A |\n")
    _check(text, found=("3310-017", "3310-018", "Kettering", "Dunmore", "4421", "4430", "P.W."))
    assert _untouched(text, "Arm")


def test_prose_with_commas_is_no_table():
    text = ("Plan reviewed with patient, daughter, and nurse.\n"
            "Denies fever, chills, night sweats.\n"
            "Continue diet, exercise, metformin.\n")
    assert find_phi(text) == []


def test_json_keys_and_arrays():
    text = ('{"kind": "Person", "given": ["Ottilie"], "family": "Brannagh", '
            '"addr": {"line": ["9 Quarry Lane"], "city": "Ballymena", "postalCode": "BT43 5AB"}, '
            '"coding": {"system": "http://loinc.org", "code": "2345-7"}, '
            '"deviceName": [{"name": "infusion pump"}], "client_id": "intake-svc-2"}')
    _check_categories(text, [("Ottilie", "NAME"), ("Brannagh", "NAME"), ("9 Quarry Lane", "ADDRESS"),
                            ("Ballymena", "ADDRESS"), ("BT43 5AB", "ZIP")])
    _check(text, kept=("http://loinc.org", "2345-7", "infusion pump", "intake-svc-2"))


def test_xml_elements_key_values_and_fhir_references():
    text = ("<visit><acctNumber>HB-5520193</acctNumber><ward>4B</ward></visit>\n"
            "GET /fhir/Observation?subject=pt-33019&code=8867-4 user=rkowal mrn=77120934 lvl=INFO\n"
            "ref Patient/88213-x, Encounter/enc-4410921 {\"user\": \"svc-nightly-sync\"}\n")
    _check(text, found=("HB-5520193", "pt-33019", "77120934", "88213-x", "enc-4410921", "rkowal"))
    _check(text, kept=("8867-4", "INFO", "4B", "svc-nightly-sync"))


# --- towns and addresses -------------------------------------------------------------------------
def test_towns_after_prepositions_and_commas():
    text = ("Retired miner who moved from Wollongong last spring; daughter drove down from "
            "Toowoomba. Prior imaging at Northgate Radiology, Geelong.")
    _check(text, found=("Wollongong", "Toowoomba", "Geelong"), category="ADDRESS")


def test_words_and_facilities_after_prepositions_are_no_towns():
    text = ("Transferred to Leeds General Infirmary overnight. Fluent in Spanish. Started on "
            "Lasix, Norvasc. Lives in Denial about prognosis. Followed in Cardiology clinic.")
    _check(text, kept=("Leeds", "Spanish", "Lasix", "Norvasc", "Denial", "Cardiology"))


def test_address_block_lines_units_and_postcodes():
    text = ("Fernhill Surgery\n23 Orchard Rise\nMalvern\nWR14 2GE\n\n"
            "Home: Flat 7, 112 Canal Wharf, Stourport DY13 8QX\n"
            "c/o 41 Kirkgate Brae, Stirling\n")
    _check(text, found=("23 Orchard Rise", "Malvern", "WR14 2GE", "Flat 7, 112 Canal Wharf", "Stourport",
                  "DY13 8QX", "41 Kirkgate Brae"))
    assert _untouched(text, "Fernhill Surgery")


def test_units_and_towns_after_a_street():
    text = ("Mailing: 77 Pelican Bay Rd, Lot 22, Port Lavaca, TX 77979.\n"
            "Domicilio: 310 Calle Los Olivos, apt. 5B, Watsonville, CA 95076.\n"
            "Postal: 6/58 Shearwater Pde, Kiama 2533\n")
    _check(text, found=("Lot 22", "Port Lavaca", "310 Calle Los Olivos", "apt. 5B", "Watsonville",
                  "6/58 Shearwater Pde", "Kiama", "2533"))


def test_labelled_places_and_postcodes():
    text = ("Birthplace: Kumasi, Ghana   Village: Nkawie   Ward: Oforikrom\n"
            "Dirección: Av. Hidalgo 88, C.P. 44100 Guadalajara. PIN: 641018. Office - Coimbatore - 641002\n")
    _check(text, found=("Kumasi", "Nkawie", "Oforikrom", "44100", "641018", "641002", "Coimbatore"))
    assert _untouched(text, "Ghana")


def test_place_labels_with_ordinary_words_stay():
    text = "Residence: Home with spouse. Ward: Medical, bed 4. City: Unknown."
    _check(text, kept=("Home with spouse", "Medical", "Unknown"))


# --- identifiers, plates, numbers ------------------------------------------------------------------
def test_identifiers_joined_by_dots_and_slashes_after_a_label():
    text = ("UHID: KMC.0033812945   IP No: IPD/26/00931   Reg. No. KMC/4410\n"
            "Group no: BX 551902   Medi-Cal CIN 90012345B   NSS: 1299 84 5521 3\n")
    _check(text, found=("KMC.0033812945", "IPD/26/00931", "KMC/4410", "551902", "90012345B",
                  "1299 84 5521 3"))


def test_dotted_codes_without_a_label_stay():
    text = "Started ABX.2 protocol per ID/ASP. Version V.12 of the order set. CT/PET reviewed."
    _check(text, kept=("ABX.2", "V.12", "CT/PET"))


def test_plates_and_last_four():
    text = ("Tow yard holds the van (Queensland plate 5JQ 802). Identity check: SSN (last 4): 7719; "
            "verified last four of social is 0382.")
    _check_categories(text, [("5JQ 802", "VEHICLE"), ("7719", "SSN"), ("0382", "SSN")])


def test_plate_lookalikes_stay():
    text = "Platelets 212 on repeat. Tagged stage 3 lesion; plate reader batch fine."
    _check(text, kept=("212", "3", "batch"))


# --- dates, phones, URLs ------------------------------------------------------------------------
def test_dates_spaced_holidays_and_month_parts():
    text = ("DOB: 23 07 1950. Fall on Boxing Day; flare after Black Friday shopping and again by "
            "mid-August. Knee op Sept '24. Admitted the evening of Anzac Day.")
    _check(text, found=("23 07 1950", "Boxing Day", "Black Friday", "mid-August", "Sept '24", "Anzac Day"), category="DATE")


def test_spaced_numbers_that_are_no_dates():
    text = "Counts 12 10 2024 units dispensed. Scores 3 4 1999 steps. Grip 12 09 1950 kPa."
    assert not any(c == "DATE" for _, _, c in find_phi(text))


def test_area_code_then_spaced_number_and_standards_urls():
    text = ("Ward phone 044-2811 6620. Codes from http://snomed.info/sct and "
            "https://terminology.hl7.org/CodeSystem/v3-ActCode; portal https://mychart.lakeshore-ortho.com/x/9912")
    assert _covered(text, "044-2811 6620", "PHONE")
    assert _untouched(text, "http://snomed.info/sct")
    assert _untouched(text, "https://terminology.hl7.org/CodeSystem/v3-ActCode")
    assert _covered(text, "https://mychart.lakeshore-ortho.com/x/9912", "URL")


def test_age_with_a_capital_y():
    text = "ED triage: 96Y female, fall at home; 46Y son present."
    assert _covered(text, "96", "AGE")
    assert _untouched(text, "46")


def test_labelled_address_stops_at_its_postcode_and_starts_at_its_number():
    text = ("Texted: new address fyi - we moved to 88 Tamarack Way, Duluth MN 55803, could you "
            "fix the chart? Trial enrolment under protocol NEURO-AD-114, NCT04411873.")
    assert _covered(text, "88 Tamarack Way, Duluth MN 55803")
    _check(text, kept=("fyi", "moved", "could you", "fix the chart", "NEURO-AD-114", "NCT04411873"))


def test_national_numbers_compact_stamps_rural_boxes_and_year_first_dates():
    text = ("NRIC T0412873J, PPSN 7654321KA, CURP MAPL720415MJCRRS02. Card OHIP 4471 882 019 KQ.\n"
            "DTEND:20270311T081500Z\nMail to RR 4 Box 118, Elkins. Apartado 2291.\n"
            "Specimen drawn 2026 Feb 17 before dialysis.")
    _check(text, found=("T0412873J", "7654321KA", "MAPL720415MJCRRS02", "4471 882 019 KQ",
                  "20270311T081500Z", "RR 4 Box 118", "Apartado 2291", "2026 Feb 17"))


def test_vital_signs_are_no_rural_routes():
    text = "HR 96, RR 18, HC 44 cm, BP 122/70; box 2 of 3 checked."
    _check(text, kept=("RR 18", "HC 44", "box 2"))


def test_streets_without_numbers_and_in_other_letters():
    text = ("Picked up at the junction of Wattle Rd and Kerr Ave. Home 9 Pōhutukawa Street, "
            "Whakatāne 3120. Seen at Mercy St. Joseph campus.")
    _check(text, found=("Wattle Rd", "Kerr Ave", "9 Pōhutukawa Street", "Whakatāne", "3120"))
    assert _untouched(text, "Mercy St")


def test_dictated_digits_german_two_word_streets_localities_and_fhir_ages():
    text = ("Transcript: the claim number is C as in Charlie 7 1 1 0 4 9 and he counts 1 2 3 4 5.\n"
            "Ferienadresse: Harburger Ring 7, 21073 Hamburg. Clinic: Kukatpally Colony, Secunderabad - 500003.\n"
            '{"extension": [{"valueAge": {"value": 97, "unit": "a"}}, {"valueAge": {"value": 67}}]}')
    _check(text, found=("C as in Charlie 7 1 1 0 4 9", "Harburger Ring 7", "21073", "Hamburg", "Kukatpally",
                  "Secunderabad", "500003", "97"))
    _check(text, kept=("1 2 3 4 5", "67"))


def test_date_sides_spelled_emails_and_handles():
    text = ("Scan booked 14/Feb/2026; prior MRI Nov.2025; away 8-11 June. Write to "
            "m.okafor(at)fastmail.com or skype: mo.okafor.85; posts as @mokafor_art on Instagram.")
    _check_categories(text, [("14/Feb/2026", "DATE"), ("Nov.2025", "DATE"), ("8-11 June", "DATE"),
                            ("m.okafor(at)fastmail.com", "EMAIL"), ("mo.okafor.85", None),
                            ("@mokafor_art", None)])


def test_ranges_and_handles_lookalikes():
    text = "Grade 3-4 Nausea. Dose 2 - 3 tabs. Meet @ noon; insta-gel applied; RR 18-22 bpm."
    assert not any(c in ("DATE", "URL") for _, _, c in find_phi(text))


def test_spoken_day_of_month_spaced_dob_and_unnumbered_street_before_postcode():
    text = ("Caller said she was born on the twenty third of august nineteen forty. DOB 07 11 1938.\n"
            "Practice: Cae Glas Surgery, Priory Street, Cardigan SA43 1BZ.")
    _check(text, found=("twenty third of august nineteen forty", "07 11 1938", "Priory Street",
                  "Cardigan", "SA43 1BZ"))
    assert _untouched(text, "Cae Glas Surgery")


def test_ordinals_of_things_are_no_dates():
    text = "Second of three siblings; the third of four drills; first of many visits."
    assert not any(c == "DATE" for _, _, c in find_phi(text))


def test_postcode_first_town_lines_medicare_irn_and_pin_without_dash():
    text = ("Adresse: 9 Chemin des Vignes\n38000 Grenoble\n"
            "Medicare 4412 08813 2/1 valid to 11/28. Office: Koramangala, Bengaluru 560034.")
    _check(text, found=("38000", "Grenoble", "4412 08813 2/1", "Bengaluru", "560034"))


def test_six_digit_numbers_after_words_are_no_pins():
    text = "Platelets 150000 on day 3; counted 250000 cells; Room 412000 wing."
    assert not any(c in ("ZIP", "ADDRESS") for _, _, c in find_phi(text))


def test_town_naming_a_practice_site():
    text = "Follow-up at the Reading clinic; results to the Cardiology office and the Memory clinic."
    assert _covered(text, "Reading", "ADDRESS")
    _check(text, kept=("Cardiology", "Memory"))
