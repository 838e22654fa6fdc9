"""The GPUs megamed plans for and measures on: one table shared by the trainer's MFU
(`training/metrics.py`), the capacity planner (`tools/plan.py`) and the benchmarks.

Peak FLOP/s are dense bf16 (not the 2x "with sparsity" figures vendors also print).
Bandwidths are per GPU and direction, as the collectives see them: NVLink inside a node,
the node's network share across nodes (profile M-32B: 4 x 200G InfiniBand per node of 8
H200; S-32B: 2 x 100G RoCE per node of 8 A100).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class GPU:
    name: str
    match: str                 # substring of torch.cuda.get_device_name()
    memory_gb: float
    peak_flops: float          # dense bf16 FLOP/s
    hbm_gbs: float             # memory bandwidth, GB/s
    intra_node_gbs: float      # NVLink, per GPU, one direction
    inter_node_gbs: float      # network per node, one direction
    per_node: int = 8


GPUS = {
    "h200": GPU("H200 141GB", "H200", 141, 989e12, 4800, 450, 100),
    "h100": GPU("H100 80GB", "H100", 80, 989e12, 3350, 450, 100),
    "a100-80gb": GPU("A100 80GB", "A100", 80, 312e12, 2039, 300, 25),
    "l40s": GPU("L40S 48GB", "L40S", 48, 362e12, 864, 32, 25),
    "a10": GPU("A10 24GB", "A10", 24, 125e12, 600, 32, 12.5),
}


def gpu_by_device_name(name: str) -> Optional[GPU]:
    """The table's entry for a CUDA device name ("NVIDIA H200", "NVIDIA A100-SXM4-80GB"),
    or None for a GPU it does not know. Longer matches first: "A100" is not "A10"."""
    for gpu in sorted(GPUS.values(), key=lambda g: -len(g.match)):
        if gpu.match in name:
            return gpu
    return None
