"""The C++ scanners of the text detector (csrc/deid_scan.cpp, in the megamed._dicom extension).

Each transcribes a piece of patterns.py / names.py (a loop, an anchor pattern, a necessary
condition of patterns) for ASCII text, and runs only where the extension is built AND that
Python is still what the C++ transcribes: TRANSCRIBED holds a fingerprint of the patterns and
functions each piece stands for. A rule change there (a new pattern, an edited regex or loop)
changes the fingerprint: the piece's Python original runs instead, giving the same spans as
before (just slower), and tests/data/test_deid_text.py::test_native_transcriptions_are_current
fails until csrc/deid_scan.cpp follows the change and the fingerprint is updated here.
MEGAMED_DEID_NATIVE=0 runs every Python original (to compare).
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re

try:
    from megamed import _dicom
except ImportError:              # built without pybind11: the Python originals run
    _dicom = None
if os.environ.get("MEGAMED_DEID_NATIVE") == "0":
    _dicom = None

# piece -> fingerprint of the Python it transcribes (see fingerprint())
TRANSCRIBED = {
    "anchor_age_cue": "26b330235d9f03d9",
    "anchor_age_start": "86fd7181059dff28",
    "anchor_digit_start": "b028cc28150c95e6",
    "anchor_extension_cue": "476357386f93795a",
    "anchor_ip_hint": "ad3d5b27f425ca6e",
    "anchor_month_capital": "ea9d946c35b353b7",
    "anchor_ordinal_hint": "eccac4a391ec4618",
    "anchor_phone7_letter": "91ee20ba94d5442b",
    "anchor_phone_core": "fc67f93bdc2babca",
    "anchor_word_gate": "3a46d622aa2c33c0",
    "id_values": "90a436d8f4336f85",
    "literal_gates": "0da180ae4029e368",
    "month_starts": "17d793db2e8fb5a5",
    "place_words": "e2da3a78eda79aba",
    "run_masks": "f7e30051f2082fba",
    "split_tokens": "d1305b313ca25f93",
    "token_parts": "d1c781330fb3e0c1",
    "uncased_regions": "569d612d86e0908d",
}
# piece -> the fingerprint of that Python now (filled at import; the test compares)
CURRENT: dict[str, str] = {}


def fingerprint(*parts) -> str:
    """A digest of patterns (source and flags) and functions (source text)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, re.Pattern):
            part = f"{part.pattern}\0{int(part.flags)}"
        elif callable(part):
            part = inspect.getsource(part)
        h.update(str(part).encode())
        h.update(b"\1")
    return h.hexdigest()[:16]


def _current(piece: str, stands_for: tuple) -> bool:
    try:
        CURRENT[piece] = fingerprint(*stands_for)
    except (OSError, TypeError):      # no source to read (a frozen build): the Python runs
        CURRENT[piece] = "unreadable"
    return CURRENT[piece] == TRANSCRIBED.get(piece)


def function(name: str, piece: str, *stands_for):
    """The extension's function `name` (see its doc) for `piece`, or None: not built, or the
    Python it transcribes (`stands_for`: patterns, functions) changed since."""
    f = getattr(_dicom, name, None)
    return f if _current(piece, stands_for) and f is not None else None


def id_scanner(label_ends: frozenset[str], *stands_for):
    """A function text -> [(start, end), ...] that does what patterns._id_values does for ASCII
    text, or None."""
    make = function("deid_id_scanner", "id_values", *stands_for)
    return make(set(label_ends)) if make is not None else None


def place_word_scanner(endings: tuple[str, ...], triggers: frozenset[str], *stands_for):
    """A function text -> [start, ...] that does what patterns._place_word_starts does for
    ASCII text, or None."""
    make = function("deid_place_word_scanner", "place_words", *stands_for)
    return make(list(endings), set(triggers)) if make is not None else None
