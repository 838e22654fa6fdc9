"""Keyed pseudonyms: every surrogate is a function of (key, kind, value) through HMAC-SHA256.

Python's `hash()` is salted per process, so the seed's `hash(sample_id)` gives a different
pseudonym in every worker; an HMAC under a secret key gives the same one in every process and
machine, and nobody without the key can recompute the mapping from a list of patient names.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import string

from megamed.data.deid import lexicon

KEY_ENV = "MEGAMED_DEID_KEY_FILE"
MIN_KEY_BYTES = 16
MAX_SHIFT_DAYS = 3650


class DeidError(Exception):
    """De-identification refused or failed. Messages name the file and the reason, never PHI."""


def load_key(path: str | os.PathLike | None = None) -> bytes:
    """The key from `path`, else from the file named by $MEGAMED_DEID_KEY_FILE. No default."""
    path = path or os.environ.get(KEY_ENV)
    if not path:
        raise DeidError(f"no de-identification key: pass --key-file or set {KEY_ENV} "
                        "(there is no default key, on purpose)")
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as e:
        raise DeidError(f"{path}: cannot read the key file ({e.strerror})") from None
    if len(key) < MIN_KEY_BYTES:
        raise DeidError(f"{path}: key has {len(key)} bytes, need at least {MIN_KEY_BYTES} "
                        "(e.g. `head -c 32 /dev/urandom | xxd -p > key`)")
    return key


def key_id(key: bytes) -> str:
    """A public name for the key (recorded in outputs): a hash of it, never the key itself."""
    return "sha256:" + hashlib.sha256(b"megamed-deid-key-id\0" + key).hexdigest()[:16]


_UID_CACHE = 1 << 16


class Pseudonymizer:
    """Deterministic surrogates under one secret key (HMAC-SHA256).

    The same key gives the same surrogate for the same value in every object and process;
    another key gives other surrogates.
    """

    def __init__(self, key: bytes):
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, (bytes, bytearray)) or not key:
            raise DeidError("Pseudonymizer needs a non-empty key (bytes); there is no default key")
        self._key = bytes(key)
        self.key_id = key_id(self._key)
        self._uids: dict[str, str] = {}     # the UIDs of a study repeat in every file


    def digest(self, kind: str, value: str) -> bytes:
        """HMAC-SHA256(key, kind NUL value): 32 bytes."""
        return hmac.new(self._key, kind.encode() + b"\0" + value.encode("utf-8", "replace"),
                        hashlib.sha256).digest()

    def number(self, kind: str, value: str) -> int:
        return int.from_bytes(self.digest(kind, value), "big")

    # --- DICOM ---------------------------------------------------------------------------
    def uid(self, uid: str) -> str:
        """`2.25.<decimal of 128 bits of the HMAC>`: at most 44 characters, valid UID syntax."""
        out = self._uids.get(uid)
        if out is None:
            if len(self._uids) >= _UID_CACHE:
                self._uids.clear()
            out = "2.25." + str(int.from_bytes(self.digest("uid", uid.strip())[:16], "big"))
            self._uids[uid] = out
        return out

    def patient_id(self, patient: str) -> str:
        """A non-empty pseudonymous patient id, distinct for distinct patients (80 bits)."""
        return "PSN" + _base32(self.number("patient", patient.strip()), 16)

    def patient_name(self, patient: str) -> str:
        """A DICOM person name for the patient: `Anon^<id>`, so it is never a real person."""
        return "ANON^" + _base32(self.number("patient", patient.strip()), 16)

    def date_shift_days(self, patient: str) -> int:
        """One non-zero per-patient offset in [-3650, -1] days (dates move into the past)."""
        return -(1 + self.number("date-shift", patient.strip()) % MAX_SHIFT_DAYS)

    # --- text surrogates -----------------------------------------------------------------
    def name_part(self, token: str, role: str, attempt: int = 0) -> str:
        """A surrogate first or last name (role 'first' / 'last') in the token's letter case."""
        pool = lexicon.surrogate_first() if role == "first" else lexicon.surrogate_last()
        n = self.number("name", f"{token.lower()}\0{attempt}")
        return _same_case(token, pool[n % len(pool)])

    def shaped(self, kind: str, value: str, attempt: int = 0) -> str:
        """Same shape as `value`: digits -> keyed digits, letters -> keyed letters, rest kept."""
        stream = self.digest("shape-" + kind, f"{value}\0{attempt}")
        stream += self.digest("shape2-" + kind, f"{value}\0{attempt}")
        out = []
        for i, ch in enumerate(value):
            b = stream[i % len(stream)] ^ (i // len(stream))
            if ch.isdigit():
                out.append(string.digits[b % 10])
            elif ch.isalpha():
                letter = string.ascii_uppercase[b % 26]
                out.append(letter if ch.isupper() else letter.lower())
            else:
                out.append(ch)
        return "".join(out)

    def token(self, kind: str, value: str, length: int = 8) -> str:
        return _base32(self.number(kind, value), length).lower()


def _base32(n: int, length: int) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    out = []
    for _ in range(length):
        n, r = divmod(n, 32)
        out.append(alphabet[r])
    return "".join(out)


def _same_case(model: str, word: str) -> str:
    if model.isupper() and len(model) > 1:
        return word.upper()
    if model.islower():
        return word.lower()
    return word[:1].upper() + word[1:].lower()
