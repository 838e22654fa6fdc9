"""Structured hostile DICOM inputs, by family, and a runner that feeds one family to the
readers in this (child) process under an address-space limit and a per-call watchdog.

    python tests/data/hostile_dicom.py FAMILY [--no-limit]

Families: deep nesting in every encoding, photometric x bit depth x samples combinations,
fragment counts, offset tables, deflate ratios, byte-level mutations of real files. Each
input names the reason its DicomError must give where the outcome is certain. The runner
prints one JSON line: counts, the slowest call, and every failure (a non-DicomError, a
DicomError without the expected reason, an array where an error was due). A crash kills
the process and a hang trips the watchdog, which exits with status 3: the test that starts
the runner (test_dicom_hostile.py) reports all three.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_factory import (DEFLATED, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, RLE, UNDEFINED,  # noqa: E402
                           deflated, delimiter, element, element_header, encapsulated_pixel_data,
                           image_attributes, item_header, nested_sequences, part10, rle_frame)

from megamed.data.dicom import DicomError, decode_pixels, read_header, read_image  # noqa: E402

ADDRESS_SPACE = 2 << 30  # bytes: a loader worker's share of a node, as the issue sets it
CALL_TIMEOUT_S = 5.0  # CPU seconds per call: the "hang"
WALL_TIMEOUT_S = 60.0  # a stall that burns no CPU
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MiB, GiB = 1 << 20, 1 << 30
NESTED_TOO_DEEP = "nested deeper than 64"


@dataclass
class Hostile:
    label: str
    data: bytes
    # A phrase the DicomError reason must hold, from the pixel readers and from read_header;
    # None: an array (or header) or any DicomError will do.
    expect: str | None = None
    expect_header: str | None = None
    readers: tuple[str, ...] = ("decode_pixels", "read_image", "read_header")
    needs_limit: bool = False  # only meaningful (and only affordable) under the address-space limit


READERS = {"decode_pixels": decode_pixels, "read_image": read_image, "read_header": read_header}


def _native_pixels(length: int, **encoding) -> bytes:
    return element_header(0x7FE00010, "OW", length, **encoding) + bytes(length)


def _small_image(**encoding) -> bytes:
    return image_attributes(2, 2, **encoding) + _native_pixels(4, **encoding)


# ---------------------------------------------------------------- deep nesting

def nesting():
    """Sequences nested past the bound in explicit LE, implicit LE and explicit BE, with
    defined and undefined lengths, through an undefined-length UN (implicit inside) and in a
    deflated dataset; an image follows, so pixel readers that skip the sequence succeed."""
    for depth in (65, 1000, 20000):
        for defined in (True, False):
            kind = f"depth {depth} {'defined' if defined else 'undefined'}"
            for syntax, explicit, little in ((EXPLICIT_LE, True, True), (IMPLICIT_LE, False, True),
                                             (EXPLICIT_BE, True, False)):
                enc = dict(explicit=explicit, little=little)
                body = nested_sequences(depth, defined=defined, **enc) + _small_image(**enc)
                yield Hostile(f"{syntax} {kind}", part10(body, syntax), expect_header=NESTED_TOO_DEEP)
            inner = nested_sequences(depth - 1, explicit=False, defined=defined)
            un = (element_header(0x00091010, "UN", UNDEFINED) + item_header(UNDEFINED) + inner
                  + delimiter("item") + delimiter("sequence"))
            body = un + _small_image()
            # Without the header, only undefined lengths are parsed as items (and must fail).
            yield Hostile(f"UN {kind}", part10(body, EXPLICIT_LE), None if defined else NESTED_TOO_DEEP,
                          NESTED_TOO_DEEP)
            body = nested_sequences(depth, defined=defined) + _small_image()
            yield Hostile(f"deflated {kind}", part10(deflated(body), DEFLATED), expect_header=NESTED_TOO_DEEP)
    # Implicit VR values of defined length that parse as items are sequences: mixing them
    # with undefined lengths must not restart the count (issue 9, item 2).
    enc = dict(explicit=False)
    mixed = nested_sequences(40, defined=False, **enc)
    mixed = nested_sequences(40, defined=True, core=mixed, **enc)
    yield Hostile("implicit mixed 80", part10(mixed + _small_image(**enc), IMPLICIT_LE),
                  expect_header=NESTED_TOO_DEEP)


# ---------------------------------------------------------------- photometric x bits x samples

PHOTOMETRICS = ("MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", "YBR_RCT", "XYZ")


def photometric():
    """Native images of every photometric interpretation with every bit depth, sample count
    and planar configuration, each with the pixel lengths 1, 2 and 3 samples would need (so
    a check that counts samples one way and a decoder that reads another is caught)."""
    for syntax, little in ((EXPLICIT_LE, True), (EXPLICIT_BE, False)):
        for name in PHOTOMETRICS:
            for bits in (1, 8, 16, 12, 32, 64):
                for samples in (1, 2, 3, 4):
                    for planar in ((0, 1) if samples > 1 else (None,)):
                        for rows, columns in ((3, 5), (16, 16)):
                            attributes = image_attributes(rows, columns, samples=samples, bits=bits, photometric=name,
                                                          planar=planar, little=little)
                            lengths = {(rows * columns * s * bits + 7) // 8 for s in (1, 2, 3)} | {0}
                            for length in sorted(lengths):
                                length += length % 2
                                yield Hostile(f"{syntax} {name} {bits} bits x {samples} planar {planar} "
                                              f"{rows}x{columns} {length} B",
                                              part10(attributes + _native_pixels(length, little=little), syntax),
                                              readers=("decode_pixels", "read_image"))
    # Issue 9, item 1: 1-bit YBR_FULL_422 read three samples per pixel past a buffer sized
    # for two; at 4096 x 4096 the read ran 2 MB past the end.
    attributes = image_attributes(4096, 4096, samples=3, bits=1, photometric="YBR_FULL_422")
    data = part10(attributes + _native_pixels(4096 * 4096 * 2 // 8), EXPLICIT_LE)
    yield Hostile("YBR_FULL_422 1 bit 4096x4096", data, "BitsAllocated is 1")
    attributes = image_attributes(16, 16, samples=1, photometric="YBR_FULL")
    yield Hostile("YBR_FULL 1 sample", part10(attributes + _native_pixels(256), EXPLICIT_LE), "expected 3 for YBR_FULL")
    # Sizes whose products overflow 64 bits if computed carelessly.
    for rows, frames in ((65535, 2**31 - 1), (65535, 2**20), (1, 2**31 - 1)):
        attributes = image_attributes(rows, 65535, samples=3, bits=64, frames=frames)
        yield Hostile(f"{rows}x65535x3x64 bits x {frames} frames", part10(attributes + _native_pixels(64), EXPLICIT_LE),
                      readers=("decode_pixels", "read_image"))
    for name in ("MONOCHROME2", "RGB", "YBR_FULL_422"):
        for bits in (8, 16):
            samples = 1 if name == "MONOCHROME2" else 3
            segments = samples * bits // 8
            attributes = image_attributes(8, 8, samples=samples, bits=bits, photometric=name, planar=0)
            data = part10(attributes + encapsulated_pixel_data([rle_frame(64, segments)]), RLE)
            yield Hostile(f"RLE {name} {bits} bits", data, readers=("decode_pixels", "read_image"))


# ---------------------------------------------------------------- fragments and offset tables

def _rle_image(fragments: list[bytes] | bytes, frames: int, *, basic=None, rows: int = 1, columns: int = 1,
               extended: tuple[list[int], list[int]] | None = None) -> bytes:
    """An RLE file of `fragments` (or Pixel Data already encapsulated, as bytes)."""
    body = image_attributes(rows, columns, frames=frames)
    if extended:
        offsets, lengths = extended
        body += element(0x7FE00001, "OV", struct.pack(f"<{len(offsets)}Q", *offsets))
        body += element(0x7FE00002, "OV", struct.pack(f"<{len(lengths)}Q", *lengths))
    pixels = fragments if isinstance(fragments, bytes) else encapsulated_pixel_data(fragments, basic)
    return part10(body + pixels, RLE)


def _offsets(fragments: list[bytes]) -> list[int]:
    at, out = 0, []
    for fragment in fragments:
        out.append(at)
        at += 8 + len(fragment)
    return out


def fragments():
    """Fragment counts up to 400,000 with and without offset tables; a frame's fragments
    joined; images the header justifies but the address space cannot hold."""
    for count in (1000, 400_000):
        tiny = [b"\0\0"] * count
        bare = encapsulated_pixel_data(tiny)
        yield Hostile(f"{count} fragments, 1 frame", _rle_image(bare, 1), "RLE frame 0")
        yield Hostile(f"{count} fragments, {count} frames, BOT", _rle_image(tiny, count, basic=_offsets(tiny)),
                      "RLE frame 0")
        yield Hostile(f"{count} fragments, {count} frames", _rle_image(bare, count), "RLE frame 0")
        yield Hostile(f"{count} fragments, {count // 2} frames", _rle_image(bare, count // 2), "no offset table")
        jpeg = part10(image_attributes(1, 1) + bare, JPEG_BASELINE)
        yield Hostile(f"{count} JPEG fragments", jpeg, readers=("read_header",))
    frames = [rle_frame(1)] * 100_000
    yield Hostile("100000 RLE frames, BOT", _rle_image(frames, len(frames), basic=_offsets(frames)))
    # A 25 MB RLE file that decodes to 1.6 GB: justified by the format (a 2-byte run gives
    # 128 pixels), refused by the address space, and the refusal is a DicomError.
    big = part10(image_attributes(45000, 45000) + encapsulated_pixel_data([rle_frame(45000 * 45000)]), RLE)
    yield Hostile("RLE 45000x45000 under the address-space limit", big, "out of memory", readers=("decode_pixels",),
                  needs_limit=True)


def offset_tables():
    """Extended and Basic Offset Tables that reuse a fragment, point inside one, go
    backwards, disagree with the lengths or with Number of Frames."""
    one = [rle_frame(64 * 64)]
    # Issue 9, item 4: 16,384 frames of 1024 x 1024 all at offset 0 asked for 16 GiB.
    for frames, size in ((16384, 256), (16384, 1024), (2, 64)):
        data = _rle_image(one, frames, rows=size, columns=size, extended=([0] * frames, [len(one[0])] * frames))
        yield Hostile(f"EOT {frames} x offset 0, {size}x{size}", data, "not increasing")
    three = [rle_frame(16 * 16)] * 3
    offsets, lengths = _offsets(three), [len(f) for f in three]
    yield Hostile("EOT valid", _rle_image(three, 3, rows=16, columns=16, extended=(offsets, lengths)))
    yield Hostile("EOT inside a fragment", _rle_image(three, 3, rows=16, columns=16,
                                                      extended=([0, 4, offsets[2]], lengths)), "not the start")
    yield Hostile("EOT backwards", _rle_image(three, 3, rows=16, columns=16,
                                              extended=(offsets[::-1], lengths)), "not increasing")
    yield Hostile("EOT lengths disagree", _rle_image(three, 3, rows=16, columns=16,
                                                     extended=(offsets, [1, 2, 3])), "disagrees")
    yield Hostile("EOT short", _rle_image(three, 3, rows=16, columns=16, extended=(offsets[:2], lengths)),
                  "Extended Offset Table lists 2")
    yield Hostile("EOT past the end", _rle_image(three, 3, rows=16, columns=16,
                                                 extended=([0, 1 << 40, 1 << 41], lengths)), "not the start")
    yield Hostile("BOT repeats", _rle_image(three, 3, rows=16, columns=16, basic=[0, 0, 0]), "not increasing")
    yield Hostile("BOT backwards", _rle_image(three, 3, rows=16, columns=16, basic=offsets[::-1]), "not increasing")
    yield Hostile("BOT inside", _rle_image(three, 3, rows=16, columns=16, basic=[0, 2, offsets[2]]), "not the start")
    yield Hostile("BOT 2 of 3", _rle_image(three, 3, rows=16, columns=16, basic=offsets[:2]), "lists 2 frames")
    yield Hostile("BOT for 2**31-1 frames", _rle_image(three, 2**31 - 1, rows=16, columns=16, basic=offsets),
                  "lists 3 frames")
    odd = encapsulated_pixel_data(three, offsets)
    table = len(element_header(0x7FE00010, "OB", 0))
    odd = odd[:table] + item_header(10) + odd[table + 8:table + 18] + odd[table + 20:]  # 10 bytes: not 4n
    yield Hostile("BOT of 10 bytes", part10(image_attributes(16, 16, frames=3) + odd, RLE), "multiple of 4")


# ---------------------------------------------------------------- deflate ratios

def deflate():
    """Deflated datasets whose stream holds far more than the header justifies: a 16 x 16
    image with 1 MiB to 1 GiB of zeros behind it (ratios up to about 1000:1), a Pixel Data
    length that lies, no image attributes, no Pixel Data at all."""
    image = image_attributes(16, 16)
    for zeros in (MiB, 64 * MiB, GiB):
        bomb = "deflate bomb" if zeros > 4 * MiB else None  # 4 MiB: the margin for trailing elements
        stream = deflated(image + element_header(0x7FE00010, "OB", zeros), zeros)
        yield Hostile(f"16x16 over {zeros >> 20} MiB", part10(stream, DEFLATED), bomb or "Pixel Data has", bomb)
        stream = deflated(image + _native_pixels(256) + element_header(0xFFFCFFFC, "OB", zeros), zeros)
        yield Hostile(f"16x16, then {zeros >> 20} MiB of padding", part10(stream, DEFLATED), bomb, bomb)
    big = image_attributes(1024, 1024, bits=16)
    stream = deflated(big + element_header(0x7FE00010, "OW", 0xFFFFFFF0), GiB)
    yield Hostile("1024x1024 over 1 GiB", part10(stream, DEFLATED), "deflate bomb", "deflate bomb")
    # Nothing in the header bounds these: the memory limit does (every reader inflates
    # alike, so one reader each keeps the run short).
    stream = deflated(element_header(0x7FE00010, "OB", GiB), GiB)
    yield Hostile("no image attributes, 1 GiB Pixel Data", part10(stream, DEFLATED), "memory limit",
                  readers=("decode_pixels",))
    stream = deflated(element_header(0x00091010, "OB", GiB), GiB)
    yield Hostile("no Pixel Data, 1 GiB private element", part10(stream, DEFLATED), expect_header="memory limit",
                  readers=("read_header",))
    good = deflated(image_attributes(64, 64) + _native_pixels(64 * 64))
    yield Hostile("64x64 valid", part10(good, DEFLATED))
    for label, stream in (("truncated", good[:len(good) // 2]), ("corrupt", b"\xff" * 64 + good)):
        yield Hostile(f"{label} stream", part10(stream, DEFLATED), "deflated dataset", "deflated dataset")


# ---------------------------------------------------------------- mutations of real files

MUTATED = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
           "image_dfl.dcm", "rtdose_rle.dcm", "SC_rgb_rle_16bit_2frame.dcm", "ExplVR_BigEnd.dcm",
           "liver_1frame.dcm", "SC_ybr_full_422_uncompressed.dcm", "waveform_ecg.dcm",
           "rtdose.dcm", "nested_priv_SQ.dcm"]


def mutants(rng, data: bytes, count: int):
    """Byte flips, overwrites near the start (where the structure is), truncations, and
    item or delimitation tags dropped in at random."""
    for _ in range(count):
        kind = rng.integers(4)
        mutant = bytearray(data)
        if kind == 0:
            for at in rng.integers(0, len(data), rng.integers(1, 9)):
                mutant[at] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            for at in rng.integers(0, min(len(data), 1500), rng.integers(1, 5)):
                mutant[at] = int(rng.integers(256))
        elif kind == 2:
            mutant = mutant[:int(rng.integers(0, len(data)))]
        else:
            at = int(rng.integers(0, len(data)))
            mutant[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xfe\xff\x00\xe0",
                                            b"\xfe\xff\xdd\xe0", b"\x00\x00\x00\x00"])
        yield bytes(mutant)


def mutation():
    from dicom_factory import image_dataset, reencapsulate, to_bytes
    from pydicom.data import get_testdata_file
    from pydicom.uid import RLELossless

    rng = np.random.default_rng(7)
    sources = [Path(get_testdata_file(name)).read_bytes() for name in MUTATED]
    sources.append(to_bytes(reencapsulate(image_dataset(
        np.arange(300, dtype=np.uint16).reshape(3, 10, 10), bits_allocated=16, frames=3, syntax=RLELossless))))
    for k, data in enumerate(sources):
        for m, mutant in enumerate(mutants(rng, data, 2000)):
            yield Hostile(f"source {k} mutant {m}", mutant)


FAMILIES = {"nesting": nesting, "photometric": photometric, "fragments": fragments,
            "offset_tables": offset_tables, "deflate": deflate, "mutation": mutation}


# ---------------------------------------------------------------- runner

class Watchdog:
    """Exits the process (status 3, stacks dumped) when a call spends more than
    CALL_TIMEOUT_S of CPU (a spin), or WALL_TIMEOUT_S of wall-clock time (a stall): CPU time,
    because on a shared machine a 5 s wall-clock bound trips on other people's load. A thread
    that polls costs nothing per call (faulthandler's timer starts a thread per arming,
    0.2 ms); the decoder releases the GIL while it parses and decodes, so the thread runs
    during a hang there. The parent's timeout catches any other hang."""

    def __init__(self):
        self.started = None  # (process CPU seconds, monotonic seconds) at the call's start
        threading.Thread(target=self._watch, daemon=True).start()

    def arm(self):
        self.started = (time.process_time(), time.monotonic())

    def disarm(self):
        self.started = None

    def _watch(self):
        while True:
            time.sleep(0.1)
            started = self.started
            if started is None:
                continue
            cpu, wall = time.process_time() - started[0], time.monotonic() - started[1]
            if cpu > CALL_TIMEOUT_S or wall > WALL_TIMEOUT_S:
                print(f"hang: a call ran {cpu:.1f} s of CPU, {wall:.1f} s in all", file=sys.stderr, flush=True)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(3)


def run(family: str, limited: bool) -> dict:
    """Every input of `family` through its readers, under a Watchdog."""
    import megamed._dicom

    watchdog = Watchdog()
    summary = {"family": family, "extension": megamed._dicom.__file__, "inputs": 0, "arrays": 0, "errors": 0,
               "slowest_s": 0.0, "slowest": "", "failures": []}
    for case in FAMILIES[family]():
        if case.needs_limit and not limited:
            continue
        summary["inputs"] += 1
        print(case.label, file=sys.stderr, flush=True)  # the last line names a hang's input
        for reader in case.readers:
            start = time.perf_counter()
            watchdog.arm()
            failure = None
            expect = case.expect_header if reader == "read_header" else case.expect
            try:
                READERS[reader](case.data)
                summary["arrays"] += 1
                if expect:
                    failure = f"returned, expected a DicomError saying {expect!r}"
            except DicomError as e:
                summary["errors"] += 1
                if e.path != "<bytes>" or not e.reason or (expect and expect not in e.reason):
                    failure = f"DicomError {e.reason!r}, expected one saying {expect!r}"
            except Exception as e:  # noqa: BLE001 - exactly what this runner looks for
                failure = f"{type(e).__name__}: {e}"
            finally:
                watchdog.disarm()
            elapsed = time.perf_counter() - start
            if elapsed > summary["slowest_s"]:
                summary["slowest_s"], summary["slowest"] = elapsed, f"{case.label} / {reader}"
            if failure:
                summary["failures"].append(f"{case.label} / {reader}: {failure}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--no-limit", action="store_true",
                        help="no address-space limit (AddressSanitizer reserves terabytes of it)")
    args = parser.parse_args()
    if not args.no_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    print(json.dumps(run(args.family, limited=not args.no_limit)))


if __name__ == "__main__":
    main()
