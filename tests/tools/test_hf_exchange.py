"""Hugging Face exchange. Tiny Llama-shaped runs, saved at TP1 (ZeRO-3, the multimodal
profile: image and ECG encoders) and at TP2 x PP2 (ZeRO-1, tied embeddings), with a padded
vocabulary, export to folders that `transformers`' LlamaForCausalLM loads with logits equal
to megamed's own forward of each checkpoint at its layout; the tokenizer encodes as ours.
Importing an export (at TP1 with the encoders, at TP2) and exporting again gives the same
files bit for bit; the TP2 import resumes with `--load` and its forward equals the HF
logits. A random LlamaForCausalLM saved by transformers imports at TP2 with equal logits and
exports to the same tensors. Bad input gets one line and exit 2 naming the file or the
reason."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from distributed import run_distributed
from megamed import checkpoint
from megamed.checkpoint.format import read_manifest
from megamed.checkpoint.hf_files import parse_size
from megamed.config import Config, ConfigError, load_config, resolve
from megamed.data.tokenizer import Tokenizer, train_tokenizer
from megamed.model.build import build_chunks
from megamed.parallel import collectives as C
from megamed.parallel.random import seed_streams
from megamed.parallel.state import ParallelState
from megamed.training.trainer import pretrain

REPO = Path(__file__).resolve().parents[2]


def _import_transformers():
    """transformers imports Hugging Face's `kernels` package; the repository's top-level
    kernels/ folder (installed as megamed.kernels) and benchmarks/kernels.py would shadow it
    when the repository root or benchmarks/ is on sys.path (`python -m pytest`; other test
    modules add benchmarks/ while they are collected), so the real one is imported first with
    no folder of the repository on the path."""
    saved = sys.path[:]
    ours = {REPO, *(d for d in REPO.iterdir() if d.is_dir() and d.name != ".venv")}
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in ours]
    shadow = sys.modules.get("kernels")
    if shadow is not None and not hasattr(shadow, "CUDAProperties"):
        del sys.modules["kernels"]  # a module of this repository cached under that name
    try:
        import kernels  # noqa: F401  (cached in sys.modules for transformers)
    except ImportError:
        pass  # transformers without hub kernels
    finally:
        sys.path[:] = saved
    return pytest.importorskip("transformers")


transformers = _import_transformers()
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, str(REPO / "tools"))
import export_hf  # noqa: E402
import import_hf  # noqa: E402

# vocab 300: padded to 384 rows at TP1 and 512 at TP2, so the padding is cut and restored.
MODEL = {"num_layers": 4, "vocab_size": 300, "seq_length": 32, "rope_theta": 5000.0,
         "norm_eps": 1e-6}
# + image and ECG encoders; ZeRO-3, whose optimizer shards the converter cannot read: the
# export reads the model files alone.
TP1 = {"profile": "tiny-mm", "model": dict(MODEL), "parallel": {"zero_stage": 3}}
TP2_PP2 = {"profile": "tiny", "model": dict(MODEL, tie_embeddings=True),
           "parallel": {"zero_stage": 1}}
IMPORTED = dict(TP2_PP2, parallel={})  # the profile's ZeRO stage and buckets
# Above the modality placeholder ids (3, 4): text tokens only.
TOKENS = torch.randint(8, 300, (2, 24), generator=torch.Generator().manual_seed(3))
REPORTS = ["CT chest: no acute findings. Mild emphysema in both upper lobes.",
           "ECG: sinus rhythm, 72 bpm, normal axis; no ST changes.",
           "Impression: 3 mm nodule in the right lower lobe, follow up in 12 months."] * 20


def _cfg(run, tp, pp):
    """One step of 2 micro batches at a high learning rate: every weight moves away from
    its initial value (norms from 1), which is all the comparison needs."""
    return load_config(run["profile"], {"model": run["model"],
                                       "parallel": dict(run["parallel"], tp=tp, pp=pp),
                                       "train": {"steps": 1, "global_batch": 2, "seed": 7,
                                                 "log_interval": 100, "lr": 2e-2,
                                                 "warmup_steps": 0}})


def _logits(cfg, ckpt, tokens):
    """megamed's forward of CKPT at cfg's TP x PP (this process one rank): the full logits
    [b, s, vocab] on the last stage's TP rank 0, None elsewhere."""
    cfg = resolve(cfg, dist.get_world_size(), "cpu")
    state = ParallelState.create(cfg.parallel.tp, cfg.parallel.pp)
    chunk, = build_chunks(cfg, state.tp_group, state.pp_rank, torch.device("cpu"),
                          seed_streams(0, state.tp_rank, state.pp_rank))
    _, payload = checkpoint.load(ckpt, state, cfg)
    chunk.load_state_dict(payload["model"][0])
    chunk.eval()
    with torch.no_grad():
        x = tokens
        if not state.is_first_stage:
            x = torch.empty(*tokens.shape, cfg.model.hidden_size)
            dist.recv(x, state.prev_rank)
        out = chunk(x)
        if not state.is_last_stage:
            dist.send(out, state.next_rank)
            return None
        full = C.all_gather(out, state.tp_group, -1)[..., :cfg.model.vocab_size]
    return full if state.tp_rank == 0 else None


def _train_then_logits(run, tp, pp, ckpt):
    """Trains saving to CKPT, then the logits of CKPT."""
    pretrain(_cfg(run, tp, pp), save=ckpt)
    return _logits(_cfg(run, tp, pp), ckpt, TOKENS)


def _only(results):
    found = [r for r in results if r is not None]
    assert len(found) == 1
    return found[0]


def _hf_logits(folder):
    model = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(TOKENS).logits


def _assert_close(ours, theirs):
    error = (ours - theirs).abs().max() / theirs.abs().max()
    assert error <= 1e-5, f"relative error {error:.2e}"


@pytest.fixture(scope="module")
def tp2_pp2(tmp_path_factory):
    """The TP2 x PP2 run's checkpoint, its logits and its export (in 200 kB shards)."""
    root = tmp_path_factory.mktemp("tp2_pp2")
    logits = _only(run_distributed(_train_then_logits, 4, TP2_PP2, 2, 2, str(root / "ckpt")))
    assert export_hf.main(["--load", str(root / "ckpt"), "--out", str(root / "hf"),
                           "--max-shard-size", "200kB"]) == 0
    return root, logits


def _assert_same_files(a: Path, b: Path):
    """Folders A and B hold the same files; safetensors tensors equal bit for bit (dtype
    too), every other file byte for byte."""
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for name in names:
        if name.suffix != ".safetensors":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
            continue
        ta, tb = load_file(a / name), load_file(b / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), (name, k)


def test_tp1_multimodal_export_matches_transformers_and_round_trips(tmp_path):
    logits = _only(run_distributed(_train_then_logits, 1, TP1, 1, 1, str(tmp_path / "ckpt")))
    tokenizer = train_tokenizer(REPORTS, tmp_path / "tok" / "tokenizer", 300)
    hf = tmp_path / "hf"
    assert export_hf.main(["--load", str(tmp_path / "ckpt"), "--out", str(hf),
                           "--tokenizer", str(tokenizer)]) == 0
    assert sorted(str(p.relative_to(hf)) for p in hf.rglob("*") if p.is_file()) == [
        "config.json", "encoders/ecg.json", "encoders/ecg.safetensors", "encoders/image.json",
        "encoders/image.safetensors", "model.safetensors", "tokenizer.model",
        "tokenizer_config.json"]
    config = json.loads((hf / "config.json").read_text())
    assert (config["architectures"], config["vocab_size"], config["rope_theta"],
            config["tie_word_embeddings"], config["bos_token_id"]) == (
        ["LlamaForCausalLM"], 300, 5000.0, False, 2)
    _assert_close(logits, _hf_logits(hf))
    ours, theirs = Tokenizer(tokenizer), transformers.AutoTokenizer.from_pretrained(hf)
    for text in REPORTS[:3]:
        assert theirs(text)["input_ids"] == ours.encode(text, bos=True)
    # Import (encoders and tokenizer included) and export again: the same files.
    assert import_hf.main(["--hf", str(hf), "--save", str(tmp_path / "imported"), "--tp", "1",
                           "--pp", "1"]) == 0
    assert export_hf.main(["--load", str(tmp_path / "imported"), "--out",
                           str(tmp_path / "again")]) == 0
    _assert_same_files(hf, tmp_path / "again")


def test_tp2_pp2_zero1_export_is_sharded_and_matches_transformers(tp2_pp2):
    root, logits = tp2_pp2
    index = json.loads((root / "hf" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all((root / "hf" / f).stat().st_size < 250_000 for f in files)
    assert "lm_head.weight" not in index["weight_map"]  # tied
    _assert_close(logits, _hf_logits(root / "hf"))


def _saved_cfg(ckpt):
    """The config an imported checkpoint records (a foreign model has no profile), for one
    step of 2 micro batches."""
    _, meta = read_manifest(Path(ckpt))
    return Config.from_dict(meta["config"]).replace(
        train={"steps": 1, "global_batch": 2, "grad_accum_steps": None, "log_interval": 100})


def _imported_logits(ckpt, foreign, trained):
    """Both imported checkpoints' logits at TP2; the first resumes (`--load`) with the
    profile's settings for a step."""
    logits = [_logits(_cfg(IMPORTED, 2, 1), ckpt, TOKENS),
              _logits(_saved_cfg(foreign), foreign, TOKENS)]
    losses = pretrain(_cfg(IMPORTED, 2, 1), save=trained, load=ckpt)
    return logits, losses


def _foreign_llama(folder):
    """A random LlamaForCausalLM saved by transformers itself (its own config.json and
    names, GQA, an untied head, norms away from 1)."""
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)


def test_import_at_tp2_matches_and_round_trips_bit_for_bit(tp2_pp2, tmp_path):
    root, _ = tp2_pp2
    _foreign_llama(tmp_path / "foreign")
    # The command line: the training settings are the exported run's profile's
    # (the defaults for the foreign model, with buckets it can fill).
    for hf, ckpt in [(root / "hf", "ckpt"), (tmp_path / "foreign", "foreign_ckpt")]:
        assert import_hf.main(["--hf", str(hf), "--save", str(tmp_path / ckpt), "--tp", "2",
                               "--pp", "1"]) == 0
    results = run_distributed(_imported_logits, 2, str(tmp_path / "ckpt"),
                              str(tmp_path / "foreign_ckpt"), str(tmp_path / "trained"))
    (ours, foreign), losses = results[0]  # TP rank 0 holds the gathered logits
    _assert_close(ours, _hf_logits(root / "hf"))
    _assert_close(foreign, _hf_logits(tmp_path / "foreign"))
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses[0]["loss"]))
    assert export_hf.main(["--load", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf"),
                           "--max-shard-size", "200kB"]) == 0
    _assert_same_files(root / "hf", tmp_path / "hf")
    # transformers' own file: the same tensors after import and export.
    assert export_hf.main(["--load", str(tmp_path / "foreign_ckpt"), "--out",
                           str(tmp_path / "foreign_again")]) == 0
    theirs = load_file(tmp_path / "foreign" / "model.safetensors")
    again = load_file(tmp_path / "foreign_again" / "model.safetensors")
    assert theirs.keys() == again.keys()
    for k in theirs:
        assert theirs[k].dtype == again[k].dtype and torch.equal(theirs[k], again[k]), k


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_non_llama_and_bad_input_are_refused_in_one_line(tp2_pp2, tmp_path, capsys):
    root, _ = tp2_pp2
    # A GPT-2-shaped profile: refused before any weight is read.
    gpt2 = tmp_path / "gpt2"
    shutil.copytree(root / "ckpt", gpt2)
    meta_path = next(gpt2.glob("step_*")) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["model"].update(norm="layernorm", add_bias=True)
    meta_path.write_text(json.dumps(meta))
    assert export_hf.main(["--load", str(gpt2), "--out", str(tmp_path / "x")]) == 2
    assert "norm layernorm" in _error_line(capsys) and not (tmp_path / "x").exists()
    assert export_hf.main(["--load", str(root / "ckpt"), "--out", str(root / "hf")]) == 2
    assert "not empty" in _error_line(capsys)  # an earlier export is not mixed with this one
    assert export_hf.main(["--load", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert str(tmp_path / "none") in _error_line(capsys)
    # A shard with a transposed tensor, then a folder without config.json.
    bad = tmp_path / "bad_hf"
    shutil.copytree(root / "hf", bad)
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    key = "model.layers.1.mlp.down_proj.weight"
    shard = bad / index["weight_map"][key]
    tensors = load_file(shard)
    tensors[key] = tensors[key].t().contiguous()
    save_file(tensors, shard, metadata={"format": "pt"})
    assert import_hf.main(["--hf", str(bad), "--save", str(tmp_path / "c"), "--tp", "1",
                           "--pp", "1"]) == 2
    err = _error_line(capsys)
    assert shard.name in err and key in err and "(64, 128)" in err
    (bad / "config.json").unlink()
    assert import_hf.main(["--hf", str(bad), "--save", str(tmp_path / "c"), "--tp", "1",
                           "--pp", "1"]) == 2
    assert "config.json" in _error_line(capsys)


def test_shard_sizes_parse_as_hugging_face_writes_them():
    assert [parse_size(s) for s in ("5GB", "200MiB", "1.5kB", "1000")] == [
        5 * 10**9, 200 * 2**20, 1500, 1000]
    with pytest.raises(ConfigError, match="5XB"):
        parse_size("5XB")
