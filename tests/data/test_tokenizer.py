"""Tokenizer: trained BPE with byte fallback, checked against sentencepiece itself."""
import importlib
import random
from pathlib import Path

import pytest
import sentencepiece as spm
import webdataset as wds

from megamed.config import load_config
from megamed.data.tokenizer import MODALITY_TOKENS, Tokenizer, TokenizerError, train_tokenizer

REPO = Path(__file__).resolve().parents[2]
WORDS = ("patient presents with chest pain dyspnea the ct shows no acute findings lung nodule "
         "ecg sinus rhythm rate bpm qrs ms eeg normal background impression stable").split()
PROBES = ["Patient presents with chest pain, 12.5 mm nodule.",
          "ECG: QTc 452 ms; 漢字 and émigré — unseen characters",
          "  two  spaces\tand a tab", "<image> is plain text here", ""]


def _documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 20)))
                      + f" {rng.randint(0, 999)}.{rng.randint(0, 9)} mm" for _ in range(3))
            for _ in range(n)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_tokenizer(_documents(200), tmp_path_factory.mktemp("tok") / "tok", 600)


def test_encode_decode_and_specials_match_sentencepiece(model):
    tok, sp = Tokenizer(model), spm.SentencePieceProcessor(model_file=str(model))
    assert tok.vocab_size == sp.get_piece_size() <= 600
    for text in PROBES:
        assert tok.encode(text) == sp.encode(text)
        assert tok.encode(text, bos=True, eos=True) == [sp.bos_id()] + sp.encode(text) + [sp.eos_id()]
        assert tok.decode(tok.encode(text)) == sp.decode(sp.encode(text)) == text
        assert sp.unk_id() not in tok.encode(text)  # byte fallback: nothing is unknown
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (sp.pad_id(), sp.bos_id(), sp.eos_id())
    modality = [tok.image_id, tok.ecg_id, tok.eeg_id]
    assert modality == [sp.piece_to_id(t) for t in MODALITY_TOKENS]
    assert len(set(tok.special_ids.values())) == 6 and all(sp.is_control(i) for i in modality)
    assert not set(modality) & set(tok.encode("<image> <ecg> <eeg>"))  # text cannot inject them
    pieces = [tok.id_to_piece(i) for i in tok.encode("漢")]
    assert pieces[-3:] == ["<0xE6>", "<0xBC>", "<0xA2>"]


def test_a_model_without_the_special_tokens_is_refused(tmp_path):
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_documents(50)), vocab_size=100,
                                   model_prefix=str(tmp_path / "plain"), minloglevel=2)
    with pytest.raises(TokenizerError, match="special tokens"):
        Tokenizer(tmp_path / "plain.model")
    with pytest.raises(TokenizerError, match="not a sentencepiece model"):
        Tokenizer(REPO / "setup.py")


def test_cli_trains_on_text_files_and_shards(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    tool = importlib.import_module("train_tokenizer")
    docs = _documents(120, seed=1)
    (tmp_path / "a.txt").write_text("\n\n".join(docs[:60]))
    with wds.TarWriter(str(tmp_path / "shard-000000.tar"), encoder=False) as sink:
        for k, doc in enumerate(docs[60:]):
            sink.write({"__key__": f"s{k:04d}", "txt": doc.encode(), "json": b"{}"})
    assert tool.main([str(tmp_path / "a.txt"), str(tmp_path), "--out", str(tmp_path / "m"),
                      "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"asked {load_config('demo').model.vocab_size}" in out  # vocab size from the profile
    tok = Tokenizer(tmp_path / "m.model")
    assert tok.decode(tok.encode(docs[100])) == docs[100]
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    assert tool.main([str(tmp_path / "bad.txt"), "--out", str(tmp_path / "n"), "--quiet"]) == 2
    assert "bad.txt" in capsys.readouterr().err
