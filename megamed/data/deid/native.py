"""The C++ scanners of the text detector (csrc/deid_scan.cpp, in the megamed._dicom extension)
where the extension is built; each has a pure-Python original in patterns.py that gives the
same spans (tests/data/test_deid_text.py compares them) and runs wherever it is not."""
from __future__ import annotations

try:
    from megamed import _dicom
except ImportError:              # built without pybind11: the Python originals run
    _dicom = None


def id_scanner(label_ends: frozenset[str]):
    """A function text -> [(start, end), ...] that does what patterns._id_values does for ASCII
    text, or None where the extension is missing or older than this module."""
    make = getattr(_dicom, "deid_id_scanner", None)
    return make(set(label_ends)) if make is not None else None
