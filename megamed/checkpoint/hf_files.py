"""Safetensors files as Hugging Face lays them out: one STEM.safetensors, or above a size
STEM-0000i-of-0000n.safetensors shards with STEM.safetensors.index.json ({"metadata":
{"total_size"}, "weight_map": {tensor: file}}). Used by hf.py for the model and encoders."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from megamed.checkpoint.format import CheckpointError
from megamed.config import ConfigError


def parse_size(text: str) -> int:
    """'5GB' -> 5e9 bytes, '200MiB' -> 200 * 2**20, '1000' -> 1000 (HF's units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ConfigError(f"--max-shard-size {text!r}: expected a size like 5GB, 500MB, "
                          f"200MiB or a number of bytes")
    unit = (match.group(2) or "B").upper()
    power = " KMGT".index(unit[0]) if unit != "B" else 0
    return int(float(match.group(1)) * (1024 if "I" in unit else 1000) ** power)


def write_safetensors(tensors: dict[str, torch.Tensor], out: Path, max_shard_bytes: int,
                      stem: str = "model") -> list[Path]:
    """`tensors` (in order) as OUT/model.safetensors, or, above `max_shard_bytes`, as
    shards of at most that size (a tensor larger than it alone) with the index."""
    shards, size = [[]], 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    if len(shards) == 1:
        files = [f"{stem}.safetensors"]
    else:
        files = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for file, names in zip(files, shards):
        save_file({n: tensors[n].contiguous() for n in names}, str(out / file),
                  metadata={"format": "pt"})
    if len(files) > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size()
                                                for t in tensors.values())},
                 "weight_map": {n: f for f, names in zip(files, shards) for n in names}}
        (out / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return [out / f for f in files]


def read_safetensors(folder: Path, stem: str = "model") -> tuple[dict[str, torch.Tensor],
                                                                  dict[str, Path]]:
    """Every tensor of FOLDER/STEM.safetensors (or of the shards its index lists), with the
    file each came from."""
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted({folder / f for f in weight_map.values()})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(index, f"unreadable index ({e})") from None
    elif single.exists():
        files = [single]
    else:
        raise CheckpointError(single, f"missing, and no {index.name}: not a Hugging Face "
                                      f"model folder in safetensors format")
    tensors, source = {}, {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    tensors[name], source[name] = f.get_tensor(name), file
        except FileNotFoundError:
            raise CheckpointError(file, f"missing (listed in {index.name})") from None
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise CheckpointError(file, f"unreadable safetensors file ({type(e).__name__}: "
                                        f"{e})") from None
    return tensors, source
