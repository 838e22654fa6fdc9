"""The C++ scanners of the text detector (csrc/deid_scan.cpp, in the megamed._dicom extension)
where the extension is built; each has a pure-Python original in patterns.py that gives the
same spans (tests/data/test_deid_text.py compares them) and runs wherever it is not."""
from __future__ import annotations

import os

try:
    from megamed import _dicom
except ImportError:              # built without pybind11: the Python originals run
    _dicom = None
if os.environ.get("MEGAMED_DEID_NATIVE") == "0":     # the Python originals, to compare
    _dicom = None


def id_scanner(label_ends: frozenset[str]):
    """A function text -> [(start, end), ...] that does what patterns._id_values does for ASCII
    text, or None where the extension is missing or older than this module."""
    make = getattr(_dicom, "deid_id_scanner", None)
    return make(set(label_ends)) if make is not None else None


def place_word_scanner(endings: tuple[str, ...], triggers: frozenset[str]):
    """A function text -> [start, ...] that does what patterns._place_word_starts does for
    ASCII text, or None."""
    make = getattr(_dicom, "deid_place_word_scanner", None)
    return make(list(endings), set(triggers)) if make is not None else None


def function(name: str):
    """The extension's function `name` (csrc/deid_scan.cpp, see its doc), or None."""
    return getattr(_dicom, name, None)
