"""Text de-identification: measured recall/precision on the labelled corpus, no planted PHI in
the output, ordinary clinical text unchanged, consistent keyed surrogates, keys, the CLIs."""
import datetime as dt
import json
import os
import re
import subprocess
import sys

import pytest

from megamed.data.deid import (DeidError, Pseudonymizer, deidentify_text, deidentify_wfdb_header,
                               find_phi, key_id, load_key)
from megamed.data.deid import evaluate
from megamed.data.deid.corpus import generate
from megamed.data.deid.folder import REPORT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import deid as deid_tool  # noqa: E402  (tools/deid.py, the CLI itself)
KEY = b"unit-test-key-0123456789"


@pytest.fixture(scope="module")
def corpus():
    return generate(140, seed=11)


def test_recall_and_precision_reach_the_targets(corpus):
    result = evaluate.score(corpus)
    overall = result["overall"]
    print(evaluate.table(result))
    assert overall["gold_tokens"] > 2500
    assert overall["recall"] >= 0.99, evaluate.table(result)
    assert overall["precision"] >= 0.90, evaluate.table(result)
    assert result["per_category"]["NAME"]["recall"] >= 0.97


def test_score_counts_tokens_as_the_issue_defines():
    doc = {"text": "Seen by Dr. Ann Lee on 3/4/51.", "spans": [[12, 19, "NAME"], [23, 29, "DATE"]]}
    half = evaluate.score([doc], detector=lambda text: [(12, 15, "NAME")])
    # gold tokens: Ann, Lee, 3, 4, 51 -> only "Ann" is overlapped by a predicted span
    assert half["overall"]["gold_tokens"] == 5 and half["overall"]["found"] == 1
    assert half["overall"]["precision"] == 1.0
    wrong = evaluate.score([doc], detector=lambda text: [(0, 4, "NAME")])
    assert wrong["overall"]["found"] == 0 and wrong["overall"]["precision"] == 0.0


def test_no_planted_phi_survives(corpus):
    """Every planted string the detector found is gone from the output, in both styles; the
    ones that survive are exactly the detector's misses, which the recall target bounds."""
    ps = Pseudonymizer(KEY)
    survivors = planted_n = 0
    for i, doc in enumerate(corpus[:70]):
        text = doc["text"]
        style = ("surrogate", "tag")[i % 2]
        out = deidentify_text(text, ps, style=style)
        found = find_phi(text)
        outside = _non_phi_text(text, doc["spans"]).lower()
        for s, e, cat in doc["spans"]:
            planted = text[s:e]
            if planted.lower() in outside:
                continue          # the same string also occurs as ordinary text
            planted_n += 1
            covered = all(any(fs <= m.start() and m.end() <= fe for fs, fe, _ in found)
                          for m in re.finditer(r"\w+", planted))
            survived = re.search(rf"(?<!\w){re.escape(planted)}(?!\w)", out, re.I)
            assert not (covered and survived), (cat, planted, out)
            survivors += bool(survived)
    assert survivors <= 0.01 * planted_n, (survivors, planted_n)


def _non_phi_text(text, spans):
    keep, pos = [], 0
    for s, e, _ in sorted(spans):
        keep.append(text[pos:s])
        pos = e
    keep.append(text[pos:])
    return " ".join(keep)


ORDINARY = [
    "History of Parkinson's disease and Hodgkin lymphoma; Bell's palsy in 2015.",
    "BP 120/80, HR 72, RR 14, SpO2 98% on room air, temp 36.8.",
    "Na 139, K 3.9, Cl 101, HCO3 24, BUN 18, Cr 0.9, glucose 112, Hgb 13.2, WBC 7.4.",
    "PR 158 ms, QRS 88 ms, QT/QTc 380/412 ms, axis 30 degrees.",
    "A 12/3 mm nodule in the right lower lobe, previously 10 x 8 mm.",
    "Motor strength 5/5 throughout, pain 4/10, grade 3/6 holosystolic murmur.",
    "Metoprolol 50 mg BID, lisinopril 20 mg daily, Lasix 40 mg IV, Coumadin 5 mg.",
    "The 64-year-old man was diagnosed in 2019 and had a CABG in 2008.",
    "Will follow up in two weeks. Hope is to discharge home; a grace period for the co-pay.",
    "Frank hematuria resolved. Brown sputum. White count 12.1. Rose from 37.2 to 38.4.",
    "Glasgow Coma Scale 14, Wells score 3, Gleason 4+3, Killip class II, Apgar 9.",
    "Wolff-Parkinson-White pattern absent; Guillain-Barre syndrome ruled out.",
    "Foley catheter in place; Swan-Ganz removed; Holter ordered; Doppler negative.",
]


@pytest.mark.parametrize("sentence", ORDINARY)
def test_ordinary_clinical_text_is_unchanged(sentence):
    assert deidentify_text(sentence, Pseudonymizer(KEY)) == sentence, find_phi(sentence)


def test_surrogates_are_consistent_under_one_key_and_differ_under_another():
    doc1 = "Patient: Jolene Vasquez-Oduya. Seen by Dr. Abernathy on 3/4/2019."
    doc2 = "Mrs. Vasquez-Oduya called Dr. Abernathy back."
    a1 = deidentify_text(doc1, Pseudonymizer(KEY))
    a2 = deidentify_text(doc2, Pseudonymizer(KEY))      # a separate object, same key
    b1 = deidentify_text(doc1, Pseudonymizer(b"a-different-key-987654321"))
    doctor = re.search(r"Dr\. (\w+)", a1).group(1)
    assert re.search(r"Dr\. (\w+)", a2).group(1) == doctor != "Abernathy"
    assert a1 != b1 and "Abernathy" not in a1 + a2 + b1 and "Vasquez" not in a1 + a2 + b1
    assert a1.endswith(" on 2019.")                     # Safe Harbor: the year only
    # ... and in another process (Python's hash() would differ there)
    code = ("import sys; from megamed.data.deid import *; "
            f"print(deidentify_text({doc1!r}, Pseudonymizer({KEY!r})))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, check=True).stdout.strip()
    assert other == a1


def test_date_shift_keeps_intervals_per_patient():
    text = "Admitted 3/4/2019, discharged 03/10/2019; seen again March 30, 2019."
    ps = Pseudonymizer(KEY)
    out = deidentify_text(text, ps, dates="shift", patient="P-1")
    again = deidentify_text("Follow-up on 2019-03-30.", ps, dates="shift", patient="P-1")
    found = re.findall(r"\d{1,2}/\d{1,2}/\d{4}|[A-Z][a-z]+ \d{1,2}, \d{4}", out)
    days = [dt.datetime.strptime(found[0], "%m/%d/%Y"), dt.datetime.strptime(found[1], "%m/%d/%Y"),
            dt.datetime.strptime(found[2], "%B %d, %Y")]
    assert (days[1] - days[0]).days == 6 and (days[2] - days[0]).days == 26
    assert days[0] != dt.datetime(2019, 3, 4)
    assert again == f"Follow-up on {days[2]:%Y-%m-%d}."
    other = deidentify_text(text, ps, dates="shift", patient="P-2")
    assert other != out


def test_tag_style_and_ages():
    out = deidentify_text("Mr. Okafor is a 93 yo; his brother is 71.", Pseudonymizer(KEY),
                          style="tag")
    assert out == "Mr. [NAME] is a [AGE] yo; his brother is 71."


def test_wfdb_header_comments_only():
    header = ("s0010 2 1000 38400\ns0010.dat 16 2000 16 0 -489 -8337 0 i\n"
              "s0010.dat 16 2000 16 0 -490 3190 0 ii\n"
              "# age: 94\n# Referring: Dr. Hildegard Pfeiffer, admitted 12/01/1990\n")
    out = deidentify_wfdb_header(header, Pseudonymizer(KEY))
    assert out.splitlines()[:3] == header.splitlines()[:3]
    assert "94" not in out and "Pfeiffer" not in out and "12/01" not in out
    assert "1990" in out


def test_keys_are_required_and_never_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("MEGAMED_DEID_KEY_FILE", raising=False)
    with pytest.raises(DeidError, match="no de-identification key"):
        load_key()
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    with pytest.raises(DeidError, match="at least"):
        load_key(short)
    with pytest.raises(DeidError):
        Pseudonymizer(b"")
    good = tmp_path / "key"
    good.write_bytes(KEY + b"\n")
    monkeypatch.setenv("MEGAMED_DEID_KEY_FILE", str(good))
    assert load_key() == KEY
    assert KEY.decode() not in key_id(KEY) and key_id(KEY) != key_id(b"x" + KEY)


def test_folder_tool_reports_refuses_and_skips(tmp_path, monkeypatch, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "note.txt").write_text("Pt Zbigniew Kaczmarek seen 4/5/2020, call 555-867-5309.")
    (src / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 7)
    (src / "blob.bin").write_bytes(b"\0\1")
    key = tmp_path / "key"
    key.write_bytes(KEY)
    monkeypatch.delenv("MEGAMED_DEID_KEY_FILE", raising=False)
    args = [str(src), str(dst), "--quiet"]
    assert deid_tool.main(args) == 2
    assert "no de-identification key" in capsys.readouterr().err
    assert deid_tool.main(args + ["--key-file", str(key)]) == 1      # two files refused
    report = json.loads((dst / REPORT).read_text())
    assert report["files"]["text"] == 1 and report["files"]["refused"] == 2
    assert {r["file"] for r in report["refused"]} == {"bad.dcm", "blob.bin"}
    assert report["text_categories"] == {"NAME": 1, "DATE": 1, "PHONE": 1}
    assert report["key_id"] == key_id(KEY) and KEY.decode() not in json.dumps(report)
    out = (dst / "note.txt").read_text()
    assert "Kaczmarek" not in out and "867-5309" not in out
    assert deid_tool.main(args + ["--key-file", str(key)]) == 1
    report = json.loads((dst / REPORT).read_text())
    assert report["files"]["skipped (already done)"] == 1 and report["files"]["text"] == 1


def test_evaluate_cli_prints_the_table(tmp_path, corpus, capsys):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d["text"], "spans": d["spans"]}) + "\n"
                            for d in corpus[:14]))
    assert evaluate.main([str(path), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert "| **overall** |" in printed and "| NAME |" in printed
    assert "most frequent misses" in printed and "most frequent false positives" in printed


def test_accented_names_and_degenerate_input():
    out = deidentify_text("Patient José Núñez seen by Dr. Müller-Lüdenscheidt; daughter Zoë called.",
                          Pseudonymizer(KEY))
    for planted in ("José", "Núñez", "Müller", "Zoë"):
        assert planted not in out, out
    assert out.startswith("Patient ") and " seen by Dr. " in out
    # long runs that once made an identifier pattern quadratic now take linear time
    assert find_phi("1" * 50000) == [(0, 50000, "OTHER_ID")]


def test_anchored_scans_equal_finditer():
    """The anchored scans (patterns._anchored) give exactly re.finditer's matches, for every
    pattern that find_phi scans from an anchor."""
    import random
    from megamed.data.deid import patterns as P
    rng = random.Random(0)
    parts = ["may ", "May", "in ", "through-", "since May be ", "call ", "reached at ", "tel: ",
             "555-1234", "5551-2345", " x ", "number 123.4567", "pager", "\n", ".", "at", "12", "March 3rd, 2019",
             "Jan. 5th", "Sept", "Dec", "decreased", "MAR 19", "of 2019", "marked", ", ",
             "12-Mar", "03MAR2019", "3 mar 19", "+1 (555) 123-4567", "(555)", "1-800-555-0199",
             "ext. 1234", "Ext 55", "x4455", "extension #  321", "next 555", "Pgr# 4567", "BEEPER 12",
             "box 9", "workK 555-1234", "ph:555.1234", "(555) 867-5309", "555-867-5309", "192.168.0.12", "10.1.2.3.4", "age 93", "aged ",
             "at age ninety-three", "a hundred and two", "turned 101", "93 yo", "99-year-old",
             "lives in Springfield", "Moved from Lake Mary", "travelled to Boston", "address: ",
             "Patient address 12 Oak St", "residing at 4 Elm", "9", "1", "0", " ", "-", "/",
             "123-45-6789", "02139-1234", "3/4/51", "2019-03-04", "03/2019", "5th of March",
             "12 Main Street", "1999-12", "4.5.2019", "AB1234567", "1HGCM82633A004352",
             "MRN 12345678", "AB-12345", "12345-ABC-99", "X9Y-77-Z8", "JH4KA7561PC008269",
             "Medical record number: ", "SSN ", "member id is ", "Serial no. ", "Acct #",
             "license plate ", "DEA ", "policy number of ", "ID", "S/N:", "march fourth",
             "september the twenty-first, nineteen fifty", "Mar-22-2019", "sept-3-19", "S19-004417",
             "since january", "Smith, 97,", "A19-031", "Christmas Eve", "the fourth of July",
             "Mother's Day", "new years", "Labour Day", "july", "memorial"]
    for trial in range(600):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 30)))
        low = text.lower()
        got = [m.span() for m in P._anchored(P._MAY_ALONE, text, P._literal_anchor(low, "may"),
                                             P._MAY_BACK)]
        assert got == [m.span() for m in P._MAY_ALONE.finditer(text)], text
        for anchor in (P._regex_anchor(P._PHONE7, text), P._phone7_after_letter(text)):
            got = [m.span() for m in P._anchored(P._LOCAL_PHONE, text, anchor,
                                                 P._LOCAL_PHONE_BACK)]
            assert got == [m.span() for m in P._LOCAL_PHONE.finditer(text)], text
        # the holiday gate: one of its words is in every match
        assert not P._HOLIDAY.search(text) or any(w in low for w in P._HOLIDAY_WORDS), text
        # (pattern, anchor, how far before its anchor a match may start, anchor on lower case)
        for rx, anchor, back, lower in (
                (P._DATE_MONTH_FIRST, P._MONTH_WORD, 0, True),
                (P._MONTH_ALONE, P._MONTH_CAPITAL, 0, False),
                (P._DATE_RES[8], P._MONTH_WORD, 0, True), (P._DATE_RES[9], P._MONTH_WORD, 0, True),
                (P._LOWER_MONTH, P._LOWER_MONTH_NAME, P._MAY_BACK, False),
                (P._LOWER_MONTH, P._MONTH_WORD, P._MAY_BACK, True),
                (P._AGE_AFTER_NAME, P._AGE_AFTER_COMMA, 41, False),
                (P._PHONE, P._PHONE_CORE, P._PHONE_BACK, False),
                (P._EXTENSION, P._EXTENSION_WORD, 0, True), (P._IP, P._IP_HINT, 2, False),
                (P._AGE_RES[0], P._AGE_START, 0, True), (P._AGE_RES[1], P._AGE_CUE, 3, True),
                (P._CITY_CONTEXT, P._CITY_CUE, 0, True),
                (P._ADDRESS_LABEL, P._ADDRESS_CUE, len("patient "), True)):
            got = [m.span() for m in P._anchored(rx, text, P._regex_anchor(anchor, low if lower
                                                                           else text), back)]
            assert got == [m.span() for m in rx.finditer(text)], (rx.pattern[:30], text)
        # the one scan at the starts of digit runs (patterns.run_matches), pattern by pattern
        for end in range(len(text) + 1) if trial < 150 else ():   # labels grouped by letter
            a = P._ID_LABEL_BEFORE.search(text, max(0, end - 48), end)
            b = P._ID_LABEL_FAST.search(text, max(0, end - 48), end)
            assert (a and (a.span(), a.lastgroup)) == \
                (b and (b.span(), b.lastgroup.rsplit("_", 1)[0])), (end, text)
        runs, words = P.run_matches(text), P.word_matches(text)
        for name, rx in {**P._RUN_PATTERNS, **P._WORD_PATTERNS}.items():
            assert sorted(runs.get(name, []) + words.get(name, [])) == \
                [m.span() for m in rx.finditer(text)], (name, text)
        text += rng.choice(["", " MRN" + " :\t \u00a0" * 6 + "4417", "é-  \n\n  : 12"])
        # _may_follow_label's window shortcut says what the character loop says
        for start in range(len(text) + 1) if trial < 150 else ():
            assert P._may_follow_label(text, start) == _may_follow_label_loop(text, start)


def _may_follow_label_loop(text: str, start: int) -> bool:
    """patterns._may_follow_label's definition, on the reversed text: the letters before the
    separators (":#=.-" and white space) are non-ASCII or the end of some label."""
    from itertools import dropwhile, takewhile
    from megamed.data.deid import patterns as P
    rest = dropwhile(lambda c: c in ":#=.-" or c.isspace(), reversed(text[:start]))
    word = "".join(takewhile(str.isalpha, rest))
    return not word.isascii() or word[::-1].lower() in P._LABEL_ENDS


def test_find_phi_time_grows_linearly_with_text_length(corpus):
    """Ten times the text must not take a hundred times the time (a scan per match of every
    earlier match, a window that grows with the text): 10x the text gets 30x the CPU time at
    most, a margin that a shared machine's noise does not reach and quadratic work does."""
    import time
    notes = "\n\n".join(doc["text"] for doc in corpus)
    while len(notes) < 100_000:
        notes += "\n\n" + notes
    small, big = notes[:10_000], notes[:100_000]

    def cpu(text: str) -> float:
        best = float("inf")
        for _ in range(2):
            t0 = time.process_time()
            find_phi(text)
            best = min(best, time.process_time() - t0)
        return best

    find_phi(small)                       # word lists loaded, token caches warm
    assert cpu(big) < 30 * cpu(small)


def test_a_facility_word_three_tokens_on_vetoes_a_surname():
    """find_names skips the veto rules for a token with no verdict of its own unless the next
    token is a veto head; a facility word 2-3 tokens on vetoes too (_facility_follows), so
    those tokens must not take the shortcut (names._far_veto)."""
    for text in ("Seen at Kowalski Valley Clinic today.",
                 "Transferred to Okafor Family Medicine Center.",
                 "Seen at Nguyen Pediatric Assisted Living."):
        assert find_phi(text) == [], text
    assert [c for *_, c in find_phi("Mr. Kowalski was seen today.")] == ["NAME"]


def test_native_identifier_scan_equals_the_python_one(corpus):
    """csrc/deid_scan.cpp (patterns._NATIVE_ID_VALUES) gives patterns._id_values' values on
    ASCII text: the corpus and random text built from the characters the loop treats apart."""
    import random
    from megamed.data.deid import patterns as P
    if P._NATIVE_ID_VALUES is None:
        pytest.skip("megamed._dicom was built without deid_id_scanner")
    rng = random.Random(3)
    parts = ["MRN", "mrn:", "Acct #", " #", "#:", "ID", "id is ", "no.", "Serial No. ", "S/N ",
             "1234567", "12", "123", "2019", "A1B2-C3", "19-9", "E19-0211", "ab", "Z", "-", ".",
             "/", ":", "=", " ", "\t", "\n", "\x1c", "\x0b", "_", ",", "x" * 30, "9" * 30,
             "A-" * 15, "12./-" * 6, "MR #", "policy number of ", "dea ", "é", "UHC ", "BCBS-"]
    texts = [doc["text"] for doc in corpus]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    for text in texts:
        if text.isascii():
            assert P._NATIVE_ID_VALUES(text) == list(P._id_values(text)), text


def test_native_word_scans_equal_the_python_ones(corpus):
    """csrc/deid_scan.cpp's capitalised place/state words and month anchors are those of
    patterns._place_word_starts and patterns._month_starts_python on ASCII text."""
    import random
    from megamed.data.deid import patterns as P
    if P._NATIVE_PLACE_WORDS is None or P._month_starts is P._month_starts_python:
        pytest.skip("megamed._dicom was built without the deid word scanners")
    rng = random.Random(5)
    parts = ["Springfield", "Bellton", "Xton", "Danielburgh", "MA", "Ma", "New", "York", "Rhode",
             "Island", "Virginia", "WAshington", "Boston1", "Hamton_", "_Ridgeview", "Oakwood",
             "jan", "Mar", "decreased", "summary", "marked", "May", "sept", "oct.", "novel",
             "1jun", "_feb", "a", "A", " ", "\n", ",", "-", ".", "'", "0", "_", "\x1c", "É"]
    texts = [doc["text"] for doc in corpus]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for text in (t for t in texts if t.isascii()):
        assert P._NATIVE_PLACE_WORDS(text) == P._place_word_starts(text), text
        low = text.lower()
        assert P._month_starts(low) == P._month_starts_python(low), text


def test_native_anchors_are_every_position_of_their_patterns(corpus):
    """csrc/deid_scan.cpp's anchor lists (patterns._NATIVE_ANCHORS) hold every position where
    their pattern matches, as _regex_anchor finds them, on ASCII text."""
    import random
    from megamed.data.deid import more_patterns as M, patterns as P
    if P._native_anchor_starts is None:
        pytest.skip("megamed._dicom was built without deid_anchor_starts")
    rng = random.Random(7)
    parts = ["(555)", " 867-5309", "555/123 4567", "555.1234", "5551234", "(55) ", "123-", "\x1c",
             "10.1.2.3", "1.22.333.4", "1.2345.6", "9.", ".", "Jan", "January", "Janx1", "Sept",
             "Dec_", "MAR", "age", "aged 93", "turned", "ninety", "one hundred", "a hundred",
             "hundred", "99", "101", "120", "9", "1", "0", " ", "\n", "-", "/", "\t", "(", ")", "a",
             "5th", "2ND", "3rD", "1s", "AB12", "MRN-", "X", "Q_", "Zz9", "_A1", "ext. 12", "x4",
             "extension #  3", "pgr 1", "pgr1", "ext7", "beeper#2", "pager", "next 5", "_x1", "call ", "ph:",
             "0161 496 0000", "96y", "93/F", "QLD 4", "350", "2QT", "+4", ":5", "12 Kingsway",
             "555 0147", "1O2"]
    texts = [doc["text"] for doc in corpus]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for text in (t for t in texts if t.isascii()):
        for rx, kind in P._NATIVE_ANCHORS.items():
            on = text.lower() if kind.startswith("age") else text
            assert P._native_anchor_starts(kind, on) == \
                [p for p in range(len(on) + 1) if rx.match(on, p)], (kind, on)
        if M._native_digit_at is not None:                         # (more_patterns' anchor)
            assert M._native_digit_at("digit_start", text) == \
                [p for p in range(len(text) + 1) if M._DIGIT_AT.match(text, p)], text
            assert {k: [m.span() for m in v] for k, v in M.digit_starts(text).items()} == \
                _finditer_digit_starts(M, text), text
        for group in (P._TEXT_KINDS, P._LOW_KINDS):                # (the one-call table)
            assert P._native_anchor_table(text, group) == \
                [P._native_anchor_starts(kind, text) for kind in group], text
        find, phone7 = P._phone7_after_letter(text), []           # (not a pattern: a filter)
        while (a := find(phone7[-1] + 1 if phone7 else 0)) >= 0:
            phone7.append(a)
        assert P._native_anchor_starts("phone7_letter", text) == phone7, text


def _finditer_digit_starts(M, text: str) -> dict:
    """more_patterns.digit_starts as finditer gives it: (name, span) lists."""
    out = {name: [] for name in M._DIGIT_START.groupindex}
    for m in M._DIGIT_START.finditer(text):
        out[m.lastgroup].append(m.span())
    return out


def test_native_token_split_and_shouted_lines_equal_the_python_ones(corpus):
    """csrc/deid_scan.cpp's token split and all-capitals lines (names._split_ascii,
    names._native_uncased) are those of the regexes they stand for, on ASCII text."""
    import random
    from megamed.data.deid import names as N
    if N._native_uncased is None or N._split_ascii == N._TOKEN_SPLIT_ASCII.split:
        pytest.skip("megamed._dicom was built without the deid token scanners")
    rng = random.Random(9)
    parts = ["O'Brien", "Smith's", "x--y", "'a", "a'", "-b", "co-pay", "A", "BP", "HELLO WORLD",
             "SHOUTED LINE WITH MANY CAPITALS", "Mixed", "lower", "\n", "\r\n", " ", "12", "_",
             "\x1c", ":", "MD", "I", "é", ""]
    texts = [doc["text"] for doc in corpus] + [doc["text"].upper() for doc in corpus]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    for text in (t for t in texts if t.isascii()):
        assert N._split_ascii(text) == N._TOKEN_SPLIT_ASCII.split(text), text
        assert N._native_uncased(text) == N._uncased_regions_python(text), text


def test_native_run_masks_miss_no_match_of_the_digit_scan(corpus):
    """run_matches tries each pattern only where csrc's deid_run_masks sets its bit: the same
    spans as the scan of every digit run, and no pattern matches at a run where its bit is
    clear, on the corpus and on random text around digit runs."""
    import random
    from megamed.data.deid import patterns as P
    if P._native_run_masks is None:
        pytest.skip("megamed._dicom was built without deid_run_masks")
    assert sorted(P._RUN_BITS) == sorted(P._RUN_PATTERNS)
    rng = random.Random(11)
    parts = ["1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567", "0",
             "/", ".", "-", " ", "  ", "   ", "\t", "\n", ",", ":", "%", "'", "st", "nd", "th",
             "Rd", "B", "N", "W. ", "North ", "Main ", "main ", "elm ", "street", "Street", "St",
             "avenue", "of ", "OF ", "Mar", "march", "JAN", "Sept", "may", "mg", "bpm", "days",
             "Oak Lane", "AB", "X", "A-", "19", "20", "2019", "(", "#", "_", "é", "e", "-jan",
             " Sep", "Of ", "ST", "rd ", "1HGCM82633A004352", "ABC", "\x1c", "-Mar-", "1st "]
    texts = [doc["text"] for doc in corpus]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 40))) for _ in range(4000)]
    for text in (t for t in texts if t.isascii()):
        assert P.run_matches(text) == P._scan(P._RUN_SCANNER, text), text
        masks = dict(P._native_run_masks(text))
        for a in (m.start() for m in re.finditer(r"(?<!\d)\d", text)):
            for k, name in enumerate(P._RUN_BITS):
                if P._RUN_PATTERNS[name].match(text, a):
                    assert masks.get(a, 0) >> k & 1, (name, a, text)


def test_native_literal_gates_equal_their_python_originals(corpus):
    """The one C++ pass of gates.py answers every registered gate as its Python original does
    (any literal in the text, or in text.lower()), on ASCII text; and each gate answers the
    same through the pass as without it, also where texts alternate (the per-text memo)."""
    import random
    from megamed.data.deid import gates as G, names, patterns  # noqa: F401  (register gates)
    if G._native_gates is None:
        pytest.skip("megamed._dicom was built without deid_literal_gates")
    rng = random.Random(13)
    words = sorted({w for g in G._GATES for w in g.words})
    parts = words + [w.upper() for w in words] + [w[:-1] for w in words] + \
        ["a", "Z", " ", "\n", "-", ".", "0", "(", "é"]
    texts = [doc["text"] for doc in corpus] + ["", "--", " on", "On ", "MAY", "zIp"]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    table = G._native_gates([("x", False, 0), ("", True, 1), ("AB", True, 2), ("ab", True, 2),
                             ("é", False, 3)], 4)
    assert table("xAb") == bytes([1, 1, 1, 0]) and table("") == bytes([0, 1, 0, 0])
    for text in texts:
        for gate in G._GATES:
            want = G._any_literal(text, gate.words, gate.lower)
            assert gate(text) == want, (gate.words, text)
            if text.isascii():
                assert G._scan(text)[1][gate.index] == want, (gate.words, text)


def test_native_transcriptions_are_current():
    """Each C++ piece runs only while the Python it transcribes is unchanged (native.py); a rule
    change there makes it fall back to its Python original. This test says so: update
    csrc/deid_scan.cpp to the change (the native_* tests compare), then native.TRANSCRIBED."""
    from megamed.data.deid import names, native, patterns  # noqa: F401  (fills CURRENT)
    stale = {k: v for k, v in native.CURRENT.items() if native.TRANSCRIBED.get(k) != v}
    assert not stale, f"the Python of these C++ pieces changed (now running in Python): {stale}"
    assert set(native.CURRENT) == set(native.TRANSCRIBED)


def test_native_token_parts_equal_the_python_ones(corpus):
    """csrc's deid_token_parts (names._native_parts): the gaps, tokens and their positions of
    names._token_parts_python, and of the regex split it stands for, on ASCII text."""
    import random
    from megamed.data.deid import names as N
    if N._native_parts is None:
        pytest.skip("megamed._dicom was built without deid_token_parts")
    rng = random.Random(11)
    parts = ["O'Brien", "Smith's", "x--y", "'a", "a'", "-b", "co-pay", "A", "BP", "\n", " ",
             "12", "_", "\x1c", ":", "MD", "I", "", "a-'b", "Mary-Kate", ", ", "'"]
    texts = [doc["text"] for doc in corpus] + ["", "a", " ", "'", "ab cd"]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for text in (t for t in texts if t.isascii()):
        native = N._native_parts(text)
        assert native == N._token_parts_python(text), text
        split = N._TOKEN_SPLIT_ASCII.split(text)
        gaps, tokens, starts, ends = native
        assert gaps == split[0::2] and tokens == split[1::2], text
        assert [text[s:e] for s, e in zip(starts, ends)] == tokens, text
        assert [text[e:s] for e, s in zip([0] + ends, starts + [len(text)])] == gaps, text
