"""A small JPEG Lossless encoder (ITU-T T.81 Annex H, process 14) for the tests: every
selection value 1-7, precision 2-16, 1 or 3 components (interleaved or one scan each),
point transform, restart intervals, and shuffled Huffman tables whose codes run up to 14
bits. Its output is checked by decoding it with pydicom + pylibjpeg-libjpeg, the reference,
so a mistake here makes a test fail, never pass."""
from __future__ import annotations

import struct

import numpy as np

# Codes per length 1..16 for 17 categories (Kraft sum below 1): short codes for the first
# values, one code per length from 4 bits on, so long codes exercise the slow decode path.
_LENGTHS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(body) + 2) + body


def _huffman(values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(code, length) per category 0-16 for the canonical code of _LENGTHS (T.81 C.2)."""
    codes, lengths = np.zeros(17, np.int64), np.zeros(17, np.int64)
    code, k = 0, 0
    for length, count in enumerate(_LENGTHS, start=1):
        for _ in range(count):
            codes[values[k]], lengths[values[k]] = code, length
            code, k = code + 1, k + 1
        code <<= 1
    return codes, lengths


def _predictions(plane: np.ndarray, predictor: int, initial: int, restart_lines: int) -> np.ndarray:
    """T.81 H.1.2.1 and Table H.1 for one component plane [rows, cols] (int64)."""
    ra = np.zeros_like(plane)
    ra[:, 1:] = plane[:, :-1]
    rb = np.zeros_like(plane)
    rb[1:] = plane[:-1]
    rc = np.zeros_like(plane)
    rc[1:, 1:] = plane[:-1, :-1]
    pred = {1: ra, 2: rb, 3: rc, 4: ra + rb - rc, 5: ra + ((rb - rc) >> 1),
            6: rb + ((ra - rc) >> 1), 7: (ra + rb) >> 1}[predictor].copy()
    pred[:, 0] = rb[:, 0]
    first = np.zeros(plane.shape[0], bool)
    first[::restart_lines or plane.shape[0]] = True  # each restart interval starts anew
    pred[first] = ra[first]
    pred[first, 0] = initial
    return pred


def _words(diff: np.ndarray, codes: np.ndarray, lengths: np.ndarray):
    """(code word, its length in bits) per difference (T.81 H.1.2.2, F.1.2.1)."""
    d = diff & 0xFFFF
    d = np.where(d > 32768, d - 65536, d)
    ssss = np.where(d == 0, 0, np.floor(np.log2(np.maximum(np.abs(d), 1))).astype(np.int64) + 1)
    extra_bits = np.where(ssss == 16, 0, ssss)
    extra = np.where(d < 0, d + (1 << ssss) - 1, d) & ((1 << extra_bits) - 1)
    return (codes[ssss] << extra_bits) | extra, lengths[ssss] + extra_bits


def _bits(word: np.ndarray, nbits: np.ndarray) -> np.ndarray:
    """The words' bits, most significant first, as 0/1 uint8."""
    total = int(nbits.sum())
    starts = np.repeat(np.cumsum(nbits) - nbits, nbits)
    shifts = np.repeat(nbits, nbits) - 1 - (np.arange(total) - starts)
    return ((np.repeat(word, nbits) >> shifts) & 1).astype(np.uint8)


def _bytes(bits: np.ndarray) -> bytes:
    """Pads with 1-bits to a whole byte (F.1.2.3) and stuffs a 0x00 after each 0xFF."""
    pad = (-len(bits)) % 8
    data = np.packbits(np.concatenate([bits, np.ones(pad, np.uint8)])).tobytes()
    return data.replace(b"\xff", b"\xff\x00")


def encode(pixels: np.ndarray, precision: int, predictor: int = 1, point_transform: int = 0,
           restart_lines: int = 0, interleaved: bool = True, seed: int = 0) -> bytes:
    """JPEG Lossless bytes of `pixels` [rows, cols] or [rows, cols, components], unsigned
    values below 2**precision. `restart_lines` puts an RSTm marker every that many lines."""
    planes = pixels[..., None] if pixels.ndim == 2 else pixels
    rows, cols, ncomp = planes.shape
    rng = np.random.default_rng(seed)
    tables = [list(rng.permutation(17)) for _ in range(min(ncomp, 2))]
    out = [b"\xff\xd8"]
    for index, values in enumerate(tables):
        lengths = bytes(_LENGTHS)
        out.append(_segment(0xC4, bytes([index]) + lengths + bytes(int(v) for v in values)))
    components = b"".join(bytes([c + 1, 0x11, 0]) for c in range(ncomp))
    out.append(_segment(0xC3, struct.pack(">BHHB", precision, rows, cols, ncomp) + components))
    if restart_lines:
        out.append(_segment(0xDD, struct.pack(">H", restart_lines * cols)))
    shifted = planes.astype(np.int64) >> point_transform
    initial = 1 << (precision - point_transform - 1)
    diffs = np.stack([shifted[..., c] - _predictions(shifted[..., c], predictor, initial, restart_lines)
                      for c in range(ncomp)], axis=-1)  # rows, cols, components
    scans = [list(range(ncomp))] if interleaved else [[c] for c in range(ncomp)]
    for scan in scans:
        header = bytes([len(scan)]) + b"".join(bytes([c + 1, (c % len(tables)) << 4]) for c in scan)
        out.append(_segment(0xDA, header + bytes([predictor, 0, point_transform])))
        step = restart_lines or rows
        for n, start in enumerate(range(0, rows, step)):
            if n:
                out.append(bytes([0xFF, 0xD0 + (n - 1) % 8]))
            words, nbits = zip(*[_words(diffs[start:start + step, :, c].ravel(),
                                        *_huffman(tables[c % len(tables)])) for c in scan])
            # Interleaved scans take one sample of each component in turn (T.81 A.2.3).
            out.append(_bytes(_bits(np.stack(words, -1).ravel(), np.stack(nbits, -1).ravel())))
    out.append(b"\xff\xd9")
    return b"".join(out)

