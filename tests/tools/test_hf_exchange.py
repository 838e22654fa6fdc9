"""Hugging Face exchange: a tiny Llama-shaped run saved at TP1 and at TP2 x PP2 (ZeRO-1,
tied embeddings, a padded vocabulary) exports to a folder that `transformers`'
LlamaForCausalLM loads and whose logits equal megamed's own forward of the checkpoint at its
layout; importing the export at TP2 gives a checkpoint that trains on (`--load`) and whose
forward equals the HF logits, and exporting that again gives the same tensors bit for bit.
Bad input gets one line and exit 2 naming the file or the reason."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from distributed import run_distributed
from megamed import checkpoint
from megamed.config import load_config, resolve
from megamed.model.build import build_chunks
from megamed.parallel import collectives as C
from megamed.parallel.random import seed_streams
from megamed.parallel.state import ParallelState
from megamed.training.trainer import pretrain

REPO = Path(__file__).resolve().parents[2]


def _import_transformers():
    """transformers imports Hugging Face's `kernels` package; the repository's top-level
    kernels/ folder (installed as megamed.kernels) would shadow it when the repository root
    is on sys.path (`python -m pytest`), so that one is imported first without the root."""
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO]
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

# vocab 250: padded to 256 rows at TP1 and TP2, so the padding is cut and restored.
MODEL = {"num_layers": 4, "vocab_size": 250, "seq_length": 32, "rope_theta": 5000.0,
         "norm_eps": 1e-6}
TP1 = {"model": dict(MODEL), "parallel": {}}
TP2_PP2 = {"model": dict(MODEL, tie_embeddings=True), "parallel": {"zero_stage": 1}}
TOKENS = torch.randint(0, 250, (2, 24), generator=torch.Generator().manual_seed(3))


def _cfg(run, tp, pp):
    """One step of 2 micro batches at a high learning rate: every weight moves away from
    its initial value (norms from 1), which is all the comparison needs."""
    return load_config("tiny", {"model": run["model"],
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


def test_tp1_export_matches_transformers(tmp_path):
    logits = _only(run_distributed(_train_then_logits, 1, TP1, 1, 1, str(tmp_path / "ckpt")))
    assert export_hf.main(["--load", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf")]) == 0
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json",
                                                                   "model.safetensors"]
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["architectures"], config["vocab_size"], config["rope_theta"],
            config["tie_word_embeddings"]) == (["LlamaForCausalLM"], 250, 5000.0, False)
    _assert_close(logits, _hf_logits(tmp_path / "hf"))


def test_tp2_pp2_zero1_export_is_sharded_and_matches_transformers(tp2_pp2):
    root, logits = tp2_pp2
    index = json.loads((root / "hf" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all((root / "hf" / f).stat().st_size < 250_000 for f in files)
    assert "lm_head.weight" not in index["weight_map"]  # tied
    _assert_close(logits, _hf_logits(root / "hf"))


def _import_train_logits(hf, ckpt, trained):
    """The imported checkpoint at TP2 resumes (`--load`) for 1 step, and its own logits."""
    logits = _logits(_cfg(TP2_PP2, 2, 1), ckpt, TOKENS)
    losses = pretrain(_cfg(TP2_PP2, 2, 1), save=trained, load=ckpt)
    return logits, losses


def test_import_at_tp2_matches_and_round_trips_bit_for_bit(tp2_pp2, tmp_path):
    root, _ = tp2_pp2
    assert import_hf.main(["--hf", str(root / "hf"), "--save", str(tmp_path / "ckpt"),
                           "--tp", "2", "--pp", "1", "--profile", "tiny", "--zero-stage",
                           "1"]) == 0
    results = run_distributed(_import_train_logits, 2, str(root / "hf"), str(tmp_path / "ckpt"),
                              str(tmp_path / "trained"))
    logits, losses = _only([r[0] for r in results]), results[0][1]
    _assert_close(logits, _hf_logits(root / "hf"))
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses[0]["loss"]))
    assert export_hf.main(["--load", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf"),
                           "--max-shard-size", "200kB"]) == 0
    for name in ["config.json", "model.safetensors.index.json"]:
        assert (tmp_path / "hf" / name).read_text() == (root / "hf" / name).read_text()
    for f in sorted((root / "hf").glob("*.safetensors")):
        a, b = load_file(f), load_file(tmp_path / "hf" / f.name)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (f.name, k)


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
