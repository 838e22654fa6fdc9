"""The text tokenizer: a sentencepiece BPE model with byte fallback (no unknown tokens: any
byte sequence encodes), trained on reports from text files or shards.

Ids 0-3 are pad, unk, bos, eos; `<image>`, `<ecg>`, `<eeg>` follow as control symbols, so a
report that happens to contain the string "<image>" cannot produce a modality placeholder:
placeholders enter a sequence only by id (`Tokenizer.image_id`, ...).
"""
from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
MODALITY_TOKENS = ("<image>", "<ecg>", "<eeg>")
MAX_LINE_BYTES = 4096  # sentencepiece's max_sentence_length default: longer lines are split


class TokenizerError(ValueError):
    """A tokenizer model or training input that cannot be used."""


def _lines(text: str) -> Iterator[str]:
    for line in text.splitlines():
        line = line.strip()
        while len(line.encode()) > MAX_LINE_BYTES:  # split rather than let sentencepiece drop it
            yield line[:MAX_LINE_BYTES // 4]
            line = line[MAX_LINE_BYTES // 4:]
        if line:
            yield line


def texts_from_files(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """The UTF-8 text of each file (a file that is not UTF-8 raises TokenizerError naming it)."""
    for path in paths:
        try:
            yield Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{path}: cannot read as UTF-8 text ({type(e).__name__})") from None


def texts_from_shards(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """The `.txt` members (de-identified reports) of WebDataset tar shards."""
    for path in paths:
        try:
            with tarfile.open(path, "r:") as tar:
                for info in tar:
                    if info.isfile() and info.name.partition(".")[2] == "txt":
                        yield tar.extractfile(info).read().decode("utf-8")
        except (OSError, tarfile.TarError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{path}: unreadable shard ({type(e).__name__}: {e})") from None


def train_tokenizer(texts: Iterable[str], model_prefix: str | os.PathLike, vocab_size: int,
                    *, threads: int = 1, verbose: bool = False) -> Path:
    """Trains BPE with byte fallback on `texts` (documents; fed line by line) and writes
    `<model_prefix>.model` and `.vocab`. `vocab_size` is an upper bound: a corpus too small
    to fill it gives a smaller vocabulary (read `Tokenizer.vocab_size`)."""
    if vocab_size < 256 + 4 + len(MODALITY_TOKENS) + 1:
        raise TokenizerError(f"vocab_size {vocab_size} is too small: byte fallback alone needs "
                             f"256 pieces plus {4 + len(MODALITY_TOKENS)} special tokens")
    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    lines = (line for text in texts for line in _lines(text))
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines, model_prefix=str(prefix), model_type="bpe",
            vocab_size=vocab_size, hard_vocab_limit=False, byte_fallback=True,
            character_coverage=0.9995, split_digits=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
            pad_piece=PAD, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
            control_symbols=list(MODALITY_TOKENS), num_threads=threads,
            input_sentence_size=2_000_000, shuffle_input_sentence=True,
            minloglevel=0 if verbose else 1)
    except RuntimeError as e:
        raise TokenizerError(f"sentencepiece training failed: {e}") from None
    return prefix.with_suffix(".model")


class Tokenizer:
    """A trained model: `encode(text) -> list[int]`, `decode(ids) -> str`, the special ids
    and `vocab_size` (the model's embedding is padded from it)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
            self._sp = spm.SentencePieceProcessor(model_proto=data)
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"{path}: not a sentencepiece model ({type(e).__name__})") from None
        self.sha256 = hashlib.sha256(data).hexdigest()
        ids = {piece: self._sp.piece_to_id(piece) for piece in (PAD, BOS, EOS) + MODALITY_TOKENS}
        missing = [p for p, i in ids.items() if i == self._sp.unk_id()]
        if missing:
            raise TokenizerError(f"{path}: model lacks the special tokens {missing}; train it "
                                 "with tools/train_tokenizer.py")
        self.pad_id, self.bos_id, self.eos_id = ids[PAD], ids[BOS], ids[EOS]
        self.image_id, self.ecg_id, self.eeg_id = (ids[t] for t in MODALITY_TOKENS)
        self.special_ids = {name: ids[piece] for name, piece in
                            zip(("pad", "bos", "eos", "image", "ecg", "eeg"), ids)}

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        return self._sp.encode(text, add_bos=bos, add_eos=eos)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode(list(ids))

    def id_to_piece(self, token: int) -> str:
        return self._sp.id_to_piece(token)

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"
