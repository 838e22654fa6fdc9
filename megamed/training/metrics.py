"""Per-step metrics: one progress line on rank 0 and one JSON object per optimizer step.

JSONL fields (a contract, see DESIGN.md): step, loss, lr, grad_norm, tokens (cumulative
tokens consumed through this step), tokens_per_s, mfu (null without a GPU), plus
step_tokens, step_time_s, elapsed_s, with encoders `grad_norm_parts` ({decoder,
image_encoder, waveform_encoder, projector: norm before clipping}), `grad_norm_ratio`
(max/min of those norms over the parts that train), the plan's balance check
`grad_balance` ("ok" where `grad_balance_ratio` <= 2, else "warn"; see `grad_balance`),
`loss_by_input` ({text, image, ecg, eeg: mean loss of the samples with that input}),
`skipped_steps` (updates skipped so far in this run: a non-finite loss or gradient, fp16
overflow) and `nonfinite` (non-finite steps in a row up to this one; training/fault.py), on
the steps that validate (--eval-interval) `val_loss` and `val_ppl` (training/evaluate.py),
and on the steps that report memory (--memory-interval)
`memory`: one dict of bytes per rank (params, main_grads, optimizer, activations, total;
CUDA peak allocated/reserved on a GPU).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import torch

from megamed.hardware import gpu_by_device_name
# Re-exported: the trainer, tools/plan.py and benchmarks/mfu.py read them from here.
from megamed.model.flops import flops_by_part, flops_per_token  # noqa: F401


def peak_flops(device: Optional[torch.device] = None) -> Optional[float]:
    """Peak dense bf16 FLOP/s of the local GPU, or None on a CPU or an unknown GPU."""
    if not torch.cuda.is_available():
        return None
    gpu = gpu_by_device_name(torch.cuda.get_device_name(device))
    return gpu.peak_flops if gpu else None


BALANCE_RATIO = 2.0  # the plan's gradient balance check: part norms within 1:2


def grad_norm_ratio(parts: dict) -> float:
    """Largest over smallest per-part gradient norm among the parts that train (norm > 0);
    1.0 with fewer than two."""
    trained = [v for v in parts.values() if v > 0]
    return max(trained) / min(trained) if len(trained) > 1 else 1.0


def grad_balance(parts: dict, sizes: dict) -> tuple[float, str]:
    """The plan's gradient balance check: (max/min ratio, "ok" within 1:2 else "warn") of
    the per-parameter gradient norm, norm / sqrt(parameters), over the parts that train.

    Per parameter because a part's norm grows with the square root of its size at equal
    per-weight gradients: a 32B decoder's raw norm dwarfs a 0.3B encoder's even when both
    learn equally fast, so raw norms would always "warn". The RMS gradient per weight is
    what the learning rate multiplies (before Adam's normalisation), so it compares how hard
    each part is pushed."""
    rms = [v / math.sqrt(sizes[k]) for k, v in parts.items() if v > 0 and sizes.get(k)]
    ratio = max(rms) / min(rms) if len(rms) > 1 else 1.0
    return ratio, "ok" if ratio <= BALANCE_RATIO else "warn"


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MetricsLogger:
    """Prints progress and appends JSONL; only the rank that logs creates it."""

    def __init__(self, path: Optional[str], total_steps: int, flops_per_tok: float,
                 num_gpus: int, log_interval: int = 1, start_step: int = 0,
                 part_sizes: Optional[dict] = None):
        self.file, self.part_sizes = None, part_sizes or {}
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a")
        self.total_steps, self.log_interval = total_steps, log_interval
        self.flops_per_tok, self.num_gpus = flops_per_tok, num_gpus
        self.peak = peak_flops()
        self.start_time = time.time()
        self.start_step = start_step
        self.counters: dict[str, int] = {}  # running totals (e.g. failed saves) in each record

    def log(self, step: int, loss: float, lr: float, grad_norm: float, step_tokens: int,
            step_time: float, consumed_tokens: int, memory: Optional[list] = None,
            grad_norm_parts: Optional[dict] = None, loss_by_input: Optional[dict] = None,
            validation: Optional[dict] = None, skips: Optional[dict] = None) -> dict:
        tokens_per_s = step_tokens / step_time if step_time > 0 else None
        mfu = None
        if self.peak and tokens_per_s:
            mfu = tokens_per_s * self.flops_per_tok / (self.peak * self.num_gpus)
        elapsed = time.time() - self.start_time
        record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                  "tokens": consumed_tokens, "tokens_per_s": tokens_per_s, "mfu": mfu,
                  "step_tokens": step_tokens, "step_time_s": step_time, "elapsed_s": elapsed}
        record.update(self.counters)
        if memory:
            record["memory"] = memory
        record.update(validation or {})
        record.update(skips or {})
        balance = ""
        if skips and skips["skipped_steps"]:
            balance = f" | skipped {skips['skipped_steps']}"
        if loss_by_input:
            record["loss_by_input"] = loss_by_input
            balance += " | loss " + " ".join(f"{k} {v:.3f}" for k, v in loss_by_input.items())
        if grad_norm_parts:
            record["grad_norm_parts"] = grad_norm_parts
            record["grad_norm_ratio"] = grad_norm_ratio(grad_norm_parts)
            balance += " | grad " + " ".join(f"{k} {v:.3f}" for k, v in grad_norm_parts.items()) + \
                f" (max/min {record['grad_norm_ratio']:.2f})"
            ratio, verdict = grad_balance(grad_norm_parts, self.part_sizes)
            record["grad_balance_ratio"], record["grad_balance"] = ratio, verdict
            balance += f" | grad_balance {verdict} {ratio:.2f}"
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if step % self.log_interval == 0 or step == self.total_steps or validation:
            done = step - self.start_step
            eta = elapsed / done * (self.total_steps - step) if done else 0.0
            mfu_text = f" | mfu {mfu:.1%}" if mfu is not None else ""
            val_text = (f" | val_loss {validation['val_loss']:.4f} | val_ppl "
                        f"{validation['val_ppl']:.2f}" if validation else "")
            print(f"step {step:>6}/{self.total_steps} | loss {loss:.4f} | lr {lr:.3e} | "
                  f"grad norm {grad_norm:.3f}{val_text} | {tokens_per_s or 0:,.0f} tok/s"
                  f"{mfu_text} | "
                  f"elapsed {format_duration(elapsed)} | eta {format_duration(eta)}{balance}",
                  flush=True)
        return record

    def close(self) -> None:
        if self.file:
            self.file.close()
