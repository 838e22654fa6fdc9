"""Literal gates: the cheap necessary conditions that detectors test before their scans.

A detector whose every match holds one of a few literals declares them once, at import:

    _COUNTY_GATE = gates.literals("County", "Parish", "Borough")        # in text
    _HOLIDAY_GATE = gates.literals(*_HOLIDAY_WORDS, lower=True)         # in text.lower()

and runs its regexes only where `_COUNTY_GATE(text)` is true. What a gate answers is exactly
its Python original, `any(w in text for w in words)` (on text.lower() with lower=True); on
ASCII text, where the extension is built, every gate of every detector is answered by ONE C++
pass over the document (csrc/deid_scan.cpp, LiteralGates), made when the first gate is asked
about that text and reused by the others: a gate then costs a lookup, where each `in` costs a
pass of its own (twenty hint words: ~10 us a note). Non-ASCII text, MEGAMED_DEID_NATIVE=0 or
no extension: each gate runs its Python original.

Make gates at import (module level): adding one rebuilds the C++ table on the next pass.
"""
from __future__ import annotations

from megamed.data.deid import native


def _any_literal(text: str, words: tuple[str, ...], lower: bool) -> bool:
    """The Python original of a gate (and what the C++ pass answers for ASCII text)."""
    low = text.lower() if lower else text
    return any(w in low for w in words)


class Gate:
    """True where one of `words` occurs in the text (in text.lower() with `lower`)."""
    __slots__ = ("index", "words", "lower")

    def __init__(self, index: int, words: tuple[str, ...], lower: bool):
        self.index, self.words, self.lower = index, words, lower

    def __call__(self, text: str) -> bool:
        memo = _MEMO                            # (one tuple: read whole, thread-safe)
        if memo[0] is text:                     # (the pass over this text is made)
            return memo[1][self.index] == 1
        if _native_gates is not None and text.isascii():
            return _scan(text)[1][self.index] == 1
        return _any_literal(text, self.words, self.lower)


_GATES: list[Gate] = []
_native_gates = native.function("deid_literal_gates", "literal_gates", _any_literal)
_scanner = None
_MEMO: tuple = (None, b"")          # (the last text scanned, its gate bytes)


def literals(*words: str, lower: bool = False) -> Gate:
    """A gate on `words` (see the module doc); lower: the words are looked for in
    text.lower()."""
    global _scanner, _MEMO
    gate = Gate(len(_GATES), tuple(words), lower)
    _GATES.append(gate)
    _scanner, _MEMO = None, (None, b"")         # (rebuilt with the new gate on next use)
    return gate


def _scan(text: str) -> tuple:
    global _scanner, _MEMO
    if _scanner is None:
        _scanner = _native_gates([(w, g.lower, g.index) for g in _GATES for w in g.words],
                                 len(_GATES))
    memo = _MEMO = (text, _scanner(text))     # (returned from here: another thread may
    return memo                                 # replace _MEMO meanwhile)
