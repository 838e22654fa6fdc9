"""Name rules that use context and structure (megamed/data/deid/names.py): each case names the
words that must be found as NAME and the look-alikes that must not be. The wording is new (no
evaluation set has these sentences)."""
from __future__ import annotations

import re

import pytest

from megamed.data.deid import find_phi


def _name_words(text: str) -> set[str]:
    """The words of `text` that a NAME span overlaps."""
    spans = [(s, e) for s, e, c in find_phi(text) if c == "NAME"]
    return {m.group(0) for m in _WORD.finditer(text)
            if any(a < m.end() and m.start() < b for a, b in spans)}


_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


FOUND = [
    # romanised Korean / Chinese given names written syllable-hyphen-syllable
    ("Scrub nurse: Seo-yeon Kang, RN", ["Seo-yeon", "Kang"]),
    ("Called Min-jun Cho about the biopsy.", ["Min-jun", "Cho"]),
    # credentials that are evidence for the name before them
    ("Adaugo Chukwuemeka, CCC-SLP   License 88213", ["Adaugo", "Chukwuemeka"]),
    ("Signed: Okwudili Obiora, EMT-P", ["Okwudili", "Obiora"]),
    # lower-case dictation after "doctor"
    ("please fax to doctor chidinma obi at the renal unit", ["chidinma", "obi"]),
    # particles inside a name
    ("Reviewed with K. van den Broek (nephrology)", ["K", "van", "den", "Broek"]),
    ("Dr Gareth ap Rhys called back", ["Gareth", "ap", "Rhys"]),
    # nicknames: after a label, and the family name after a quoted nickname
    ("Theodora Pappas (goes by \"Teddy\") returns for review. Teddy reports less pain.",
     ["Theodora", "Pappas", "Teddy"]),
    ('Cornelius "Neil" Vandersloot-Ames, case manager', ["Cornelius", "Neil",
                                                        "Vandersloot-Ames"]),
    # a relative's name that is also an English word, after a possessive kinship phrase
    ("She came in with her grandson Ash and left at noon.", ["Ash"]),
    # structure: HL7 caret names, quoted CSV cells, user fields, name-part labels
    ("PID|1||55012^^^MRN||BRENNAN^OTTILIE^F||19440312|F", ["BRENNAN", "OTTILIE", "F"]),
    ('id,name,dob\n7,"Quist, Harriet",1950-01-02\n8,"Marsh, T.",1961-03-04',
     ["Quist", "Harriet", "Marsh", "T"]),
    ("2026-01-04T08:00Z export user=pwhitlock rows=40", ["pwhitlock"]),
    ("Family name: ORMEROD   Given name(s): Ivy\nFirst: Winter   MI: J", ["ORMEROD", "Winter", "J"]),
    # cells under a header that names people
    ("visit | pt initials | arm\nV1 | J.Q.W. | B\nV2 | S.T. | A", ["J", "Q", "W", "S", "T"]),
    ("site\tsurgeon\tcase\nOR4\tAmadi Okafor\tTKA", ["Amadi", "Okafor"]),
    # initials joined by hyphens, a lower-case family initial after a lower-case given name
    ("Screening no. 22   Initials: P-J-R   Arm: B", ["P-J-R"]),
    ("night nurse: marisol t. on until 07:00", ["marisol", "t"]),
    # short capitals after an initial before a credential; initials after "attested"
    ("Result phoned to T. NGO RN on 5 West.", ["T", "NGO"]),
    ("Resident note reviewed, attested PQS", ["PQS"]),
    # the author of a quoted e-mail; a lower-case name after "doctor" whose first part
    # starts a longer word (amara: amaranth)
    ("> On Wed, 4 Feb 2026, Tanvir Chowdhury wrote:\n> ok", ["Tanvir", "Chowdhury"]),
    ("this is doctor amara okonkwo dictating", ["amara", "okonkwo"]),
    # messages signed with a dash at the line end
    ("Labs drawn, K 5.9, repeat ordered. -TMR\nNext item", ["TMR"]),
    ("Daughter updated by phone at 14:10. -Rosalind\n", ["Rosalind"]),
    # a role after the name, and the short form of a given name found in the note
    ("Birth plan agreed with Tui Rangihau (doula) on Monday.", ["Tui", "Rangihau"]),
    ("Josephine Akintola presented to triage. Later Jos asked for water.",
     ["Josephine", "Akintola", "Jos"]),
    # reference initials before a slash and a field gap
    ("Dictated by RKP / typed 02.03.26", ["RKP"]),
]

NOT_FOUND = [
    # a kinship word is the label, not the name
    ("Mother Delphine at bedside, anxious.", ["Mother"], ["Delphine"]),
    ("Lives with nan and two cousins.", ["nan"], []),
    # places named after persons
    ("Transferred from the James Cook for a PCI bed.", ["James", "Cook"], []),
    ("Follow-up at Sacred Heart St. Anthony clinic next week.", ["Anthony"], []),
    ("Records requested from Mount Sinai and Johns Hopkins.", ["Mount", "Sinai", "Johns",
                                                               "Hopkins"], []),
    ("Moved here from Saskatchewan in 2019, originally from Nebraska.",
     ["Saskatchewan", "Nebraska"], []),
    # lower-case eponym phrases in dictation
    ("the glasgow blatchford score was four and murphy sign negative.",
     ["glasgow", "blatchford", "murphy"], []),
    ("xray shows a boxer fracture, no colles fracture; dictated by maria kowalski",
     ["colles"], ["maria", "kowalski"]),
    # a list of eponymous diseases; the same surnames after "Drs." stay names
    ("PMH: Kawasaki, Graves, Addison; no Crohn disease.", ["Graves", "Addison"], []),
    ("Co-managed by Drs. Graves, Addison and Lindqvist.", [], ["Graves", "Addison",
                                                             "Lindqvist"]),
    # firms, makers and their products
    ("Letter from Dunleavy, Marchetti & Associates regarding the claim.",
     ["Dunleavy", "Marchetti"], []),
    ("Mattress: Stryker Isolibrium surface in use.", ["Isolibrium"], []),
    # credentials, contractions, specialists, nationalities, clinical shorthand
    ("Evaluated by Ngaire Tomoana, PMHNP-BC. I'm told she'll return.",
     ["PMHNP-BC", "I'm", "she'll"], ["Ngaire", "Tomoana"]),
    ("Covering physiatrist: Dr. Imre Balogh", ["physiatrist"], ["Imre", "Balogh"]),
    ("Interpreter: Somali, in person.", ["Somali"], []),
    ("Dispo: home with services. Mech soft diet.", ["Dispo", "Mech"], []),
    ("Evening shift to Night shift handoff complete.", ["Evening", "Night"], []),
    # a family history phrase after a kinship word
    ("FH: his father Deceased at 71; her aunt Ovarian cancer.", ["Deceased", "Ovarian"], []),
    # lab codes with carets are not names
    ("OBX|4|NM|2951-2^SODIUM^LN||139|mmol/L", ["SODIUM", "LN"], []),
    # a language before a role word; a clipped word that starts a found given name
    ("Her mother prefers Amharic, interpreter booked.", ["Amharic"], []),
    ("Maxwell Tierney admitted. Max HR 140 overnight.", ["Max", "HR"], ["Maxwell", "Tierney"]),
    # a bare "Name" column of a medication table
    ("Name | Dose | Route\nLosartan | 50 mg | PO\nWarfarin | 5 mg | PO", ["Losartan"], []),
    ("On balance, the team wrote: continue current plan.", ["the", "team"], []),
    # hyphenated words with a lower-case part
    ("Re-do sternotomy was discussed; Pre-op labs fine; Co-pay waived.",
     ["Re-do", "Pre-op", "Co-pay"], []),
]


@pytest.mark.parametrize("text,names", FOUND)
def test_names_found(text, names):
    found = _name_words(text)
    assert set(names) <= found, (text, set(names) - found)


@pytest.mark.parametrize("text,not_names,names", NOT_FOUND)
def test_look_alikes_not_names(text, not_names, names):
    found = _name_words(text)
    assert not set(not_names) & found, (text, set(not_names) & found)
    assert set(names) <= found, (text, set(names) - found)
