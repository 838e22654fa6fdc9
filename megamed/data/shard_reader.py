"""Random access into WebDataset shards through their manifest (specs: SHARDS_FORMAT.md).

`Manifest` reads `OUT/manifest.json` into flat arrays (one row per sample: shard, and the
byte offset/size of each member); `ShardFiles` opens the tars lazily, checks each shard's
size and sha256 against the manifest once per process, and reads one member with a single
`pread` of its 512-byte tar header plus its data. Nothing is streamed from a shard's start.

Two kinds of failure, two error types:
  ShardError(path, reason)  the manifest or a whole shard is unusable (wrong format, foreign
                            preprocessing, truncated file, checksum mismatch): the run stops.
  SampleError(key, reason)  one sample is unreadable (bad tar header, truncated member, bad
                            npy header, bad UTF-8, bad JSON, wrong shape): the loader skips
                            it, counts it and replaces it. The reason never quotes content.

`inspect_sample` decides whether a sample is good from the small members (json, txt) and the
array headers only, so every pipeline stage, whatever fields it reads, reaches the same
verdict on the same sample; `load_array` then reads an array's data for the stages that
need it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

FORMAT = "megamed-shards/1"
EXTS = ("json", "txt", "img.npy", "ecg.npy", "eeg.npy")
ARRAYS = {"image": "img.npy", "ecg": "ecg.npy", "eeg": "eeg.npy"}
TAR_BLOCK = 512
NPY_HEADER_READ = 1024  # np.save pads its header to 64 bytes; 1 KiB holds any ordinary one


class ShardError(ValueError):
    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # so a worker process can hand it back with its type intact
        return type(self), (self.path, self.reason)


class SampleError(ValueError):
    def __init__(self, key: str, reason: str):
        super().__init__(f"sample {key}: {reason}")
        self.key, self.reason = key, reason

    def __reduce__(self):
        return type(self), (self.key, self.reason)


def preprocess_hash(preprocess: dict) -> str:
    return hashlib.sha256(json.dumps(preprocess, sort_keys=True).encode()).hexdigest()


class Manifest:
    """The shards of one corpus. Sample i (0 <= i < len) is the i-th member in manifest order.

    offsets/sizes: int64 [num_samples, len(EXTS)], -1 where a sample lacks that member.
    """

    def __init__(self, root, expected_preprocess_hash: Optional[str] = None):
        self.root = Path(root)
        path = self.root / "manifest.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ShardError(path, "no manifest.json in this folder (was make_shards run "
                                   "to the end?)") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ShardError(path, f"not a JSON manifest ({type(e).__name__})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ShardError(path, f"format {found!r}, expected {FORMAT!r}")
        self.preprocess = doc.get("preprocess") or {}
        self.preprocess_hash = doc.get("preprocess_hash")
        if self.preprocess_hash != preprocess_hash(self.preprocess):
            raise ShardError(path, "preprocess_hash does not match its own preprocess config "
                                   "(the manifest was edited by hand)")
        if expected_preprocess_hash is not None and self.preprocess_hash != expected_preprocess_hash:
            raise ShardError(path, f"shards were made with preprocess_hash "
                                   f"{self.preprocess_hash[:12]}..., this run expects "
                                   f"{expected_preprocess_hash[:12]}...: rebuild the shards "
                                   f"with this run's preprocessing or point at the right folder")
        self.shards = doc.get("shards") or []
        self._index(path)
        if doc.get("num_samples") != len(self.keys):
            raise ShardError(path, f"num_samples {doc.get('num_samples')} but the shards list "
                                   f"{len(self.keys)} members")
        if not self.keys:
            raise ShardError(path, "the manifest lists no samples")

    def _index(self, path: Path) -> None:
        keys, shard_of, rows = [], [], []
        for s, shard in enumerate(self.shards):
            lacking = [k for k in ("name", "bytes", "sha256") if k not in shard]
            if lacking:
                raise ShardError(path, f"shard entry {s} lacks {', '.join(lacking)}")
            members = shard.get("members") or []
            if shard.get("samples") != len(members):
                raise ShardError(self.root / str(shard.get("name")),
                                 f"manifest says {shard.get('samples')} samples but lists "
                                 f"{len(members)} members")
            for m in members:
                files = m.get("files") or {}
                keys.append(str(m.get("key")))
                shard_of.append(s)
                rows.append([files.get(ext, (-1, -1)) for ext in EXTS])
        self.keys = keys
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        table = np.asarray(rows, dtype=np.int64).reshape(len(keys), len(EXTS), 2)
        self.offsets, self.sizes = table[..., 0], table[..., 1]
        # A member outside its shard is a broken manifest, not a corrupt sample: refuse it
        # here, so no stage ever reads past a shard's end.
        shard_bytes = np.asarray([int(s["bytes"]) for s in self.shards], np.int64)
        present = self.sizes >= 0
        outside = present & ((self.offsets < TAR_BLOCK)
                             | (self.offsets + self.sizes > shard_bytes[self.shard_of][:, None]))
        if outside.any():
            sample, column = (int(v[0]) for v in np.nonzero(outside))
            raise ShardError(path, f"member {keys[sample]}.{EXTS[column]} lies outside "
                                   f"{self.shards[self.shard_of[sample]]['name']}")

    def __len__(self) -> int:
        return len(self.keys)

    def has(self, index: int, ext: str) -> bool:
        return bool(self.sizes[index, EXTS.index(ext)] >= 0)


def _tar_header_problem(header: bytes, size: int) -> Optional[str]:
    """Why this 512-byte ustar header does not announce a member of `size` bytes, or None."""
    stored = header[148:156].rstrip(b"\0 ")
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])  # checksum field read as spaces
    try:
        if int(stored or b"x", 8) != computed:
            return "tar header checksum mismatch"
    except ValueError:
        return "tar header checksum field unreadable"
    field = header[124:136]
    if field[0] & 0x80:  # GNU base-256 size for members over 8 GiB
        announced = int.from_bytes(field[1:], "big")
    else:
        try:
            announced = int(field.rstrip(b"\0 ") or b"0", 8)
        except ValueError:
            return "tar header size field unreadable"
    if announced != size:
        return f"tar header announces {announced} bytes, manifest {size}"
    return None


@dataclass(frozen=True)
class ArrayHeader:
    shape: tuple
    dtype: np.dtype
    fortran: bool
    data_start: int  # byte offset of the array data inside the member


def _npy_header_length(blob: bytes) -> Optional[int]:
    """Bytes up to the end of an npy header, from its length field; None if not npy."""
    if len(blob) < 12 or blob[:6] != b"\x93NUMPY":
        return None
    if blob[6] == 1:
        return 10 + int.from_bytes(blob[8:10], "little")
    return 12 + int.from_bytes(blob[8:12], "little")


def _npy_header(blob: bytes, size: int, key: str, ext: str) -> ArrayHeader:
    f = io.BytesIO(blob)
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
    except (ValueError, OSError, SyntaxError, EOFError) as e:
        raise SampleError(key, f"{ext}: not a readable npy header ({type(e).__name__})") from None
    if dtype.kind != "f":
        raise SampleError(key, f"{ext}: dtype {dtype}, expected a float array")
    expected = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected != size:
        raise SampleError(key, f"{ext}: member holds {size} bytes, its npy header needs "
                               f"{expected} (truncated or padded array)")
    return ArrayHeader(tuple(int(d) for d in shape), dtype, bool(fortran), f.tell())


@dataclass
class SampleInfo:
    """What every stage knows about a good sample: its text, metadata and array headers."""
    index: int
    key: str
    text: Optional[str]
    meta: dict
    arrays: dict  # modality ("image" | "ecg" | "eeg") -> ArrayHeader


class ShardFiles:
    """Open tar files of one manifest, per process. Reads are `os.pread`, so descriptors
    inherited by forked DataLoader workers are safe to share."""

    def __init__(self, manifest: Manifest, verify_sha256: bool = True):
        self.manifest, self.verify_sha256 = manifest, verify_sha256
        self._fds: dict[int, int] = {}
        # Shards whose sha256 this process, or the process that dispatches its work, has
        # checked: a DataLoader worker is told, so each rank hashes a shard once, not once
        # per worker.
        self.verified: set[int] = set()

    def __getstate__(self):  # spawned workers open their own descriptors
        return {**self.__dict__, "_fds": {}}

    def _fd(self, shard: int) -> int:
        if shard not in self._fds:
            entry = self.manifest.shards[shard]
            path = self.manifest.root / entry["name"]
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as e:
                raise ShardError(path, f"cannot open ({e.strerror})") from None
            size = os.fstat(fd).st_size
            if size != entry["bytes"]:
                os.close(fd)
                raise ShardError(path, f"{size} bytes on disk, manifest says {entry['bytes']} "
                                       f"(truncated or replaced shard)")
            if (self.verify_sha256 and shard not in self.verified
                    and self._sha256(fd, size) != entry["sha256"]):
                os.close(fd)
                raise ShardError(path, "sha256 does not match the manifest (corrupted or "
                                       "replaced shard)")
            self.verified.add(shard)
            self._fds[shard] = fd
        return self._fds[shard]

    @staticmethod
    def _sha256(fd: int, size: int) -> str:
        digest, pos = hashlib.sha256(), 0
        while pos < size:
            chunk = os.pread(fd, 1 << 22, pos)
            if not chunk:
                break
            digest.update(chunk)
            pos += len(chunk)
        return digest.hexdigest()

    def verify(self, shards) -> None:
        """Opens (and so checks) these shards now; raises ShardError for a bad one."""
        for shard in shards:
            self._fd(int(shard))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def read(self, index: int, ext: str, limit: Optional[int] = None) -> bytes:
        """The member's bytes (its first `limit` bytes when given), after checking its tar
        header. Raises SampleError for a member the manifest does not list or a bad header."""
        m, col = self.manifest, EXTS.index(ext)
        key, offset, size = m.keys[index], int(m.offsets[index, col]), int(m.sizes[index, col])
        if size < 0:
            raise SampleError(key, f"no {ext} member")
        want = size if limit is None else min(size, limit)
        blob = os.pread(self._fd(int(m.shard_of[index])), TAR_BLOCK + want, offset - TAR_BLOCK)
        if len(blob) != TAR_BLOCK + want:
            raise SampleError(key, f"{ext}: truncated member ({len(blob) - TAR_BLOCK} of "
                                   f"{want} bytes)")
        problem = _tar_header_problem(blob[:TAR_BLOCK], size)
        if problem:
            raise SampleError(key, f"{ext}: {problem}")
        return blob[TAR_BLOCK:]

    def inspect_sample(self, index: int, shapes: dict) -> SampleInfo:
        """Validates sample `index` without reading array data. `shapes` maps a modality to
        its expected array shape (None: any); an image may have 1 channel where C expected."""
        key = self.manifest.keys[index]
        try:
            meta = json.loads(self.read(index, "json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SampleError(key, f"json: not valid UTF-8 JSON ({type(e).__name__})") from None
        if not isinstance(meta, dict):
            raise SampleError(key, "json: not an object")
        text = None
        if self.manifest.has(index, "txt"):
            try:
                text = self.read(index, "txt").decode("utf-8")
            except UnicodeDecodeError as e:
                raise SampleError(key, f"txt: not valid UTF-8 (byte {e.start})") from None
        arrays = {}
        for modality, ext in ARRAYS.items():
            if self.manifest.has(index, ext):
                arrays[modality] = self.array_header(index, ext)
                _check_shape(key, modality, arrays[modality].shape, shapes.get(modality))
        return SampleInfo(index, key, text, meta, arrays)

    def array_header(self, index: int, ext: str) -> ArrayHeader:
        size = int(self.manifest.sizes[index, EXTS.index(ext)])
        blob = self.read(index, ext, limit=NPY_HEADER_READ)
        need = _npy_header_length(blob)
        if need is not None and len(blob) < need <= size:
            blob = self.read(index, ext, limit=need)  # a legal header longer than 1 KiB
        return _npy_header(blob, size, self.manifest.keys[index], ext)

    def read_array_into(self, index: int, ext: str, header: ArrayHeader, out: np.ndarray) -> None:
        """Reads the array straight into `out` (C-contiguous, header's shape and dtype) with
        one preadv: no intermediate bytes object, no copy."""
        m, col = self.manifest, EXTS.index(ext)
        offset, size = int(m.offsets[index, col]), int(m.sizes[index, col])
        head = bytearray(TAR_BLOCK + header.data_start)
        got = os.preadv(self._fd(int(m.shard_of[index])), [head, memoryview(out).cast("B")],
                        offset - TAR_BLOCK)
        if got != TAR_BLOCK + size:
            raise SampleError(m.keys[index], f"{ext}: truncated member ({got - TAR_BLOCK} of "
                                             f"{size} bytes)")
        problem = _tar_header_problem(bytes(head[:TAR_BLOCK]), size)
        if problem:
            raise SampleError(m.keys[index], f"{ext}: {problem}")

    def load_array(self, index: int, ext: str, header: ArrayHeader) -> np.ndarray:
        blob = self.read(index, ext)
        return np.ndarray(header.shape, header.dtype, buffer=blob, offset=header.data_start,
                          order="F" if header.fortran else "C")


def _check_shape(key: str, modality: str, shape: tuple, expected: Optional[tuple]) -> None:
    if expected is None:
        return
    if modality == "image":
        ok = (len(shape) == len(expected) and shape[1:] == tuple(expected[1:])
              and shape[0] in (1, expected[0]))
    else:
        ok = shape == tuple(expected)
    if not ok:
        raise SampleError(key, f"{modality} shape {list(shape)}, this loader expects "
                               f"{list(expected)}")
