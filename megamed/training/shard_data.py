"""Training on WebDataset shards (`--data-shards DIR`, or the demo corpus): the model config
the tokenizer and the manifest imply, the demo corpus cache, and the trainer's data source.

Config. The tokenizer (`--tokenizer`, else the one the manifest names) fixes the model's
vocabulary (`model.vocab_size` = its size; the embedding is padded from it) and the
encoders' placeholder ids (`<image>`, `<ecg>`, `<eeg>` of the tokenizer). The arrays the
shards hold (the manifest's preprocessing) must be the shapes the encoders take, else the
run stops before it starts. Every such problem is a ConfigError naming the file.

Demo corpus. `--data-source demo` (the `demo` profile's default from the command line) builds
the demo corpus (pydicom's real CT, MR and ECG files; megamed/data/demo.py) with the
preprocessing the profile's encoders take (`preprocess.for_encoders`) and a tokenizer, once,
into $MEGAMED_CACHE/demo-<preprocess hash>-v<vocab> (default ~/.cache/megamed). A file lock
makes the first process build it while the others (ranks of the same machine) wait, then
reuse it. Its
de-identification key is fixed and public (the demo patients are fictional), so every
machine builds byte-identical shards and the same tokenizer.

Source. `ShardSource.micro_batch(step, micro, fields)` is TokenSource's call; the steps come
in order from the loader's iterator (its reader processes prefetch the next micro batches)
and a step's micro batches are kept until the next step is asked for. Its `state_dict` is
the consumed-sample count the checkpoint stores (key "data").
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from megamed.config import Config, ConfigError, ModelConfig
from megamed.data.batch import MicroBatch
from megamed.data.loader import LoaderConfig, LoaderStateError, ShardLoader
from megamed.data.packing import TokenBudget
from megamed.data.preprocess import PreprocessConfig, array_shapes, for_encoders
from megamed.data.tokenizer import Tokenizer, TokenizerError

DEMO_KEY = hashlib.sha256(b"megamed demo corpus: fictional patients").hexdigest()
DEMO_STUDIES = 18  # 5 shards of 4: three studies of each kind, seconds to build
MIN_DEMO_VOCAB = 512  # a tokenizer needs 256 byte pieces + 7 specials; tiny's 256 is too few


def cache_dir() -> Path:
    return Path(os.environ.get("MEGAMED_CACHE") or Path.home() / ".cache" / "megamed")


def demo_corpus(model: ModelConfig) -> Path:
    """The shards folder of the demo corpus for this model's encoders, built on first use."""
    preprocess = for_encoders(model.encoders())
    vocab_size = max(model.vocab_size, MIN_DEMO_VOCAB)
    root = cache_dir() / f"demo-{preprocess.hash()[:12]}-v{vocab_size}"
    ready = root / "READY"
    if ready.exists():
        return root / "shards"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per machine; the others wait here
        if not ready.exists():
            _build_demo(root, preprocess, vocab_size)
            ready.write_text("built\n")
    return root / "shards"


def _build_demo(root: Path, preprocess: PreprocessConfig, vocab_size: int) -> None:
    from megamed.data.demo import make_demo  # pydicom and the shard writer: only when building
    if root.exists():  # an earlier build that did not finish
        shutil.rmtree(root)
    print(f"building the demo corpus (real DICOM and ECG files from pydicom) into {root}",
          file=sys.stderr, flush=True)
    root.mkdir(parents=True)
    (root / "demo.key").write_text(DEMO_KEY)
    make_demo(root, DEMO_STUDIES, key_file=root / "demo.key", tokenizer=True,
              preprocess=preprocess, vocab_size=vocab_size)


def prepare_data(cfg: Config) -> Config:
    """`cfg` with the shards folder filled in (demo corpus) and the model's vocabulary and
    placeholder ids taken from the tokenizer; unchanged without shards."""
    d = cfg.data
    if d.source == "demo" and not d.shards:
        cfg = cfg.replace(data={"shards": str(demo_corpus(cfg.model))})
    if not cfg.data.shards:
        return cfg
    manifest_path = Path(cfg.data.shards) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{manifest_path}: unreadable manifest ({type(e).__name__})") from None
    path = cfg.data.tokenizer or (manifest.get("tokenizer") or {}).get("path")
    if not path:
        raise ConfigError(f"{manifest_path} names no tokenizer: pass --tokenizer PATH")
    try:
        tokenizer = Tokenizer(path)
    except TokenizerError as e:
        raise ConfigError(f"tokenizer {e}") from None
    model = with_tokenizer(cfg.model, tokenizer)
    check_shapes(manifest_path, manifest.get("preprocess") or {}, model, cfg.profile)
    cfg = cfg.replace(data={"source": "shards", "tokenizer": str(path)})
    return dataclasses.replace(cfg, model=model)


def with_tokenizer(model: ModelConfig, tokenizer) -> ModelConfig:
    """The model with the tokenizer's vocabulary size and placeholder ids."""
    changes = {"vocab_size": tokenizer.vocab_size}
    for name, e in model.encoders().items():
        changes[f"{name}_encoder"] = dataclasses.replace(
            e, placeholder_id=getattr(tokenizer, f"{name}_id"))
    return dataclasses.replace(model, **changes)


def check_shapes(where: Path, preprocess: dict, model: ModelConfig, profile: str) -> None:
    """The shards' array shapes (from their preprocessing) against the encoders' inputs."""
    try:
        shapes = array_shapes(PreprocessConfig.from_dict(preprocess))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: unusable preprocess config ({e})") from None
    for name, e in model.encoders().items():
        expected = (e.channels, *e.shape)
        if tuple(shapes[name]) != expected:
            raise ConfigError(
                f"{where}: the shards hold {name} arrays {list(shapes[name])}, the profile's "
                f"{name} encoder takes {list(expected)}; rebuild them with "
                f"tools/make_shards.py --model-profile {profile} or choose a profile that "
                f"matches them")


def loader_config(cfg: Config) -> LoaderConfig:
    m, t, d = cfg.model, cfg.train, cfg.data
    encoders = m.encoders()
    shapes = {name: (e.channels, *e.shape) for name, e in encoders.items()}
    return LoaderConfig(
        seq_length=m.seq_length, global_batch=t.global_batch, micro_batch=t.micro_batch,
        seed=t.seed, num_workers=d.loader_workers, prefetch=d.loader_prefetch,
        max_skip_fraction=d.max_skip_fraction, eval_fraction=d.eval_fraction,
        budget=TokenBudget(**{n: encoders[n].tokens if n in encoders else 0
                              for n in ("image", "ecg", "eeg")}),
        image_shape=shapes.get("image"), ecg_shape=shapes.get("ecg"),
        eeg_shape=shapes.get("eeg"))


class ShardSource:
    """Micro batches of this rank's ShardLoader on `device` (see the module docstring)."""

    def __init__(self, loader: ShardLoader, device):
        self.loader, self.device = loader, device
        self._steps = None            # the loader's iterator, from the next step on
        self._step: Optional[int] = None
        self._batches: list = []
        self._restored = False        # consumed_samples came from a checkpoint
        self.consumed = loader.consumed_samples  # after the last step asked for, any stage

    @classmethod
    def for_rank(cls, cfg: Config, state, device) -> "ShardSource":
        tokenizer = Tokenizer(cfg.data.tokenizer)
        loader = ShardLoader.for_rank(cfg.data.shards, tokenizer, loader_config(cfg), state)
        if state.rank == 0:
            ids = ", ".join(f"{n} {e.placeholder_id}" for n, e in cfg.model.encoders().items())
            print(f"data: {loader.num_samples} samples in {len(loader.manifest.shards)} shards "
                  f"of {cfg.data.shards}; tokenizer {cfg.data.tokenizer}: {tokenizer.vocab_size} "
                  f"pieces (the model's vocabulary)" + (f", placeholder ids {ids}" if ids else ""),
                  flush=True)
        return cls(loader, device)

    def held_out(self) -> "ShardSource":
        """The validation split of the same shards (`--eval-fraction`), for evaluate.py."""
        return ShardSource(self.loader.held_out(), self.device)

    def micro_batch(self, step: int, micro: int, fields: frozenset) -> MicroBatch:
        self.consumed = (step + 1) * self.loader.config.global_batch
        if not fields:  # a middle stage: reads nothing
            return MicroBatch()
        if step != self._step:
            self._batches, self._step = self._read_step(step), step
        batch = self._batches[micro]
        missing = [f for f in fields if getattr(batch, f) is None]
        if missing:  # not what this stage prefetches: read it now
            batch = self.loader.micro_batch(step, micro, fields)
        return MicroBatch(**{f: getattr(batch, f) for f in fields}).to(self.device)

    def _read_step(self, step: int) -> list:
        g = self.loader.config.global_batch
        if self.loader.consumed_samples != step * g:
            if self._restored:
                raise LoaderStateError(
                    f"the checkpoint's loader consumed {self.loader.consumed_samples} samples, "
                    f"but step {step} x global batch {g} = {step * g}: resume with the "
                    f"global batch it was saved with")
            self.loader.consumed_samples, self._steps = step * g, None
        if self._steps is None:
            self._steps = iter(self.loader)
        self._restored = False
        return next(self._steps)

    def state_dict(self) -> dict:
        return dict(self.loader.state_dict(), consumed_samples=self.consumed,
                    global_batch=self.loader.config.global_batch)

    def load_state_dict(self, state: dict) -> None:
        """Refused on every rank alike (before any step) for another corpus, seed or global
        batch: the saved consumed count would not be this run's step boundary."""
        g = self.loader.config.global_batch
        if state.get("global_batch", g) != g:
            raise LoaderStateError(f"the checkpoint's loader ran with global batch "
                                   f"{state['global_batch']}, this run's is {g}: resume with "
                                   f"the global batch it was saved with")
        self.loader.load_state_dict(state)
        self.consumed = self.loader.consumed_samples
        self._steps, self._step, self._restored = None, None, True

    def close(self) -> None:
        """Stops the reader processes (they also end with this process)."""
        if self._steps is not None:
            self._steps.close()
            self._steps = None
