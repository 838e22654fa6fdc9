"""PHI de-identification: clinical text, DICOM headers, waveform headers, keyed pseudonyms.

    from megamed.data.deid import find_phi, deidentify_text, deidentify_dicom, Pseudonymizer, DeidError

Everything that replaces a value does it with an HMAC-SHA256 under one secret key
(`load_key`), so the same patient gets the same pseudonym in every file, shard and process.
"""
from megamed.data.deid.pseudonym import DeidError, Pseudonymizer, key_id, load_key
from megamed.data.deid.text import CATEGORIES, deidentify_text, deidentify_wfdb_header, find_phi
from megamed.data.deid.dicom import deidentify_dicom, read_dicom
from megamed.data.deid.dicom_fast import deidentify_dicom_bytes, deidentify_dicom_file

__all__ = ["find_phi", "deidentify_text", "deidentify_dicom", "Pseudonymizer", "DeidError",
           "load_key", "key_id", "deidentify_wfdb_header", "deidentify_dicom_file",
           "deidentify_dicom_bytes", "read_dicom", "CATEGORIES"]
