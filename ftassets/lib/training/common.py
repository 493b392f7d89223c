"""Pieces both training recipes share: precision choice, LoRA config, run summaries."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


def resolve_precision(precision: str) -> str:
    """'auto': bf16 (fp16 without it) on CUDA; on a CPU, bf16 only where its matmuls measure faster
    than fp32's here and now. A capability flag is not enough: this project's 2-core Intel Xeon
    has avx512_bf16, yet runs bf16 matmuls at ~180 GFLOP/s against ~330 in fp32, while a 2-core AMD
    machine measured ~298 against ~82."""
    if precision != "auto":
        if precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {precision!r}")
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    speed = cpu_matmul_gflops()
    return "bf16" if speed["bf16"] > CPU_BF16_MARGIN * speed["fp32"] else "fp32"


CPU_BF16_MARGIN = 1.2  # bf16 autocast adds casts (~8% of op time in a profile): it must win clearly
_MATMUL_SHAPE = (1024, 576, 1536)  # tokens x hidden x MLP width of a SmolLM2-135M batch


def matmul_gflops(dtype, m: int, k: int, n: int, repeats: int, warmup: int = 1) -> float:
    """GFLOP/s of an (m x k) @ (k x n) product: the fastest of `repeats` timed runs (the best, not the
    mean: on a shared machine a neighbour's burst should not lower the figure)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(warmup):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def cpu_matmul_gflops(repeats: int = 8) -> dict[str, float]:
    """GFLOP/s of one training-sized matmul in fp32 and bf16 on this CPU (the best of `repeats`,
    ~0.2 s in all). Cached: a process measures once."""
    if not _measured:
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            _measured[name] = round(matmul_gflops(dtype, *_MATMUL_SHAPE, repeats=repeats), 1)
    return dict(_measured)


_measured: dict[str, float] = {}


def keep_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory for reuse instead of handing it back to the kernel.

    Its defaults serve every tensor over the (adaptive, at most 32 MiB) mmap threshold with a fresh
    mmap and trim the heap top on free, so each training step maps, page-faults and unmaps the same
    activations and logit tiles again: measured on SmolLM2-135M LoRA, 96 examples, 2 cores, the kernel
    took 56 s of the process's 165 s of CPU time and the epoch 92 s; with this, the kernel took 10 s
    and the epoch 53-58 s, with identical losses. The cost is that the
    process keeps its peak heap until it exits (a training process reaches its peak every step
    anyway). Returns False where the C library is not glibc (nothing changed)."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    trim = libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
    mmap = libc.mallopt(m_mmap_threshold, ctypes.c_int(2**30))  # only single blocks over 1 GiB get their own mmap
    return bool(trim and mmap)


def score_labelled_positions_only() -> bool:
    """Have trl's fused LM head project only the positions that carry a label on a CPU too.

    trl (1.16) runs the 49k-vocabulary head over just the labelled (completion) positions on
    CUDA/XPU, but everywhere else over every position, prompt and padding included, so that compiled
    tile shapes stay fixed (its comment names Neuron). Eager CPU training compiles nothing, and the
    loss is the same sum over the same labelled positions either way. Measured (96 examples, 2
    cores, completion = 66% of the real tokens): epoch 57.2 s -> 50.8 s, the same losses.

    It rebinds the name `_use_triton` inside `trl.trainer.utils` only, which that module consults
    for this one decision; the kernel module keeps its own and still picks the plain torch tiles
    off CUDA. Returns False (nothing changed) where this trl has no such name."""
    import trl.trainer.utils as trl_utils

    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None or getattr(decide, "ftassets_cpu_compact", False):
        return decide is not None

    def compact_on_cpu(device) -> bool:
        return device.type == "cpu" or decide(device)

    compact_on_cpu.ftassets_cpu_compact = True
    trl_utils._use_triton = compact_on_cpu
    return True


def host_settings(cfg) -> dict:
    """Process-wide settings a recipe makes before loading anything, as recorded in its summary: the
    allocator setting, labelled-positions-only scoring, and on a CPU with precision auto the matmul
    speeds that chose the precision."""
    settings = {"keep_freed_memory": keep_freed_memory() if cfg.keep_freed_memory else False,
                "score_labelled_positions_only": score_labelled_positions_only()}
    if cfg.precision == "auto" and not torch.cuda.is_available():
        settings["cpu_matmul_gflops"] = cpu_matmul_gflops()
    return settings


def lora_config(r: int, alpha: int, dropout: float, target_modules: str, top_layers: int = 0, model=None):
    """peft LoRA settings; `top_layers` > 0 puts adapters on the model's last `top_layers` decoder
    layers only, so the backward pass stops there (cheaper steps, fewer parameters)."""
    from peft import LoraConfig

    from ftassets.lib.training.checks import linear_layer_names

    targets = target_modules if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",")]
    layers = None
    num_layers = model.config.num_hidden_layers if model is not None else 0
    if 0 < top_layers < num_layers:
        layers = list(range(num_layers - top_layers, num_layers))
        if targets == "all-linear":  # peft takes a layer subset only with named targets
            targets = sorted(linear_layer_names(model))
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                      layers_to_transform=layers, bias="none", task_type="CAUSAL_LM")


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


class DivergenceGuard(TrainerCallback):
    """Stops training when the loss is NaN/inf, or spikes above `spike_factor` x a reference (the
    larger of the first logged loss and the highest of the last `window` logged losses) AND above
    `min_spike_loss` nats per token.

    Not the best or the median: length-grouped batches have honestly different losses (a batch of
    short JSON answers sits at ~0.15 while a batch of summaries sits at ~1.5, and several of either
    kind can come in a row), so only a loss well above everything this run has shown recently, and
    above where it started, counts as divergence. The floor exists because the first batch of a
    rarely sampled task can be hard: a demo run with up-weighted short tasks logged 0.83, 0.50, 0.33,
    0.15, 0.12, 0.78 and then 2.92 on its first summary batch, which is 3.5x the reference but an
    ordinary loss for a pretrained model; a diverged one goes far beyond 4 (uniform guessing over a
    49k vocabulary is 10.8)."""

    def __init__(self, spike_factor: float = 3.0, window: int = 8, min_spike_loss: float = 4.0):
        self.spike_factor, self.window, self.min_spike_loss = spike_factor, window, min_spike_loss
        self.first: float | None = None
        self.recent: list[float] = []
        self.reason: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not math.isfinite(loss):
            self.reason = f"non-finite training loss {loss} at step {state.global_step}"
        elif self.recent:
            reference = max(self.first, max(self.recent))
            if loss > self.spike_factor * reference and loss > self.min_spike_loss:
                self.reason = (f"loss spike {loss:.4f} > {self.spike_factor} x reference {reference:.4f} "
                               f"(max of the first loss and the last {len(self.recent)} logged) and > "
                               f"{self.min_spike_loss} "
                               f"at step {state.global_step}")
        if self.first is None:
            self.first = loss
        self.recent = (self.recent + [loss])[-self.window:]
        if self.reason:  # stop, and do not checkpoint the diverged weights over the last good ones
            control.should_training_stop = True
            control.should_save = control.should_evaluate = False


class ProgressReporter(TrainerCallback):
    """Forwards every Trainer log line to a callable (Dagster log, Pipes message, print)."""

    def __init__(self, report):
        self.report = report
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.report({"step": state.global_step, **{k: float(v) for k, v in logs.items()
                                                       if isinstance(v, (int, float))}})


def summarize_history(log_history: list[dict], prefix: str = "") -> dict:
    train = [(h["step"], round(h["loss"], 5)) for h in log_history if "loss" in h]
    evals = [(h["step"], round(h["eval_loss"], 5)) for h in log_history if "eval_loss" in h]
    best = min(evals, key=lambda x: x[1]) if evals else None
    extra = {}
    for key in ("eval_rewards/margins", "eval_rewards/accuracies"):
        series = [(h["step"], round(h[key], 5)) for h in log_history if key in h]
        if series:
            extra[key.replace("eval_", "").replace("/", "_")] = series
    return {"train_loss_curve": train, "validation_loss_curve": evals,
            "best_step": best[0] if best else None, "best_validation_loss": best[1] if best else None,
            **extra}


def run_fingerprint(cfg, inputs: dict[str, str]) -> dict:
    """What makes two runs the same run: every setting except where it writes, and the content hash
    of every input (base weights, data files, a starting adapter). A checkpoint is resumed only by
    a run with an equal fingerprint."""
    import dataclasses

    from ftassets.lib.core.files import sha256_file, sha256_tree

    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("output_dir", "checkpoint_dir", "resume")}
    hashes = {}
    for name, path in inputs.items():
        if path:
            p = Path(path)
            hashes[name] = sha256_tree(p) if p.is_dir() else sha256_file(p)
    return {"settings": settings, "inputs": hashes}


def _complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without a readable one was cut off."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def checkpoint_step(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def _checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The Trainer's `checkpoint-<step>` folders, newest first."""
    import re

    found = (p for p in Path(checkpoint_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name))
    return sorted(found, key=checkpoint_step, reverse=True)


def resume_point(checkpoint_dir: Path, fingerprint: dict, resume: bool, report, main_process: bool = True) -> str | None:
    """The newest complete checkpoint of an interrupted run with this fingerprint, or None.

    Checkpoints of a different run (other data, other settings) and checkpoints cut off mid-write
    are removed, so a resumed run can only continue exactly the run that was interrupted. In a
    multi-process launch only the main process cleans up (it runs first); the others only look."""
    import shutil

    from ftassets.lib.core.files import write_json_atomic

    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / "fingerprint.json"
    same_run = marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(fingerprint))
    if resume and same_run:
        for checkpoint in _checkpoints(checkpoint_dir):
            if _complete(checkpoint):
                report({"event": "resume", "checkpoint": str(checkpoint)})
                return str(checkpoint)
            if not main_process:
                continue
            report({"event": "discard_incomplete_checkpoint", "checkpoint": str(checkpoint)})
            shutil.rmtree(checkpoint)
    if not main_process:
        return None
    if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
        report({"event": "discard_checkpoints", "reason": "resume off" if not resume else
                "no complete checkpoint" if same_run else "different settings or inputs",
                "checkpoint_dir": str(checkpoint_dir)})
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, fingerprint)
    return None


def prepare_checkpoints(cfg, inputs: dict[str, str], report):
    """Both recipes: where checkpoints go (`checkpoint_dir`, default `<output_dir>/checkpoints`), and
    the checkpoint to resume from, decided by the main process first. Returns (process, checkpoint
    dir, resume checkpoint or None); `process` is this process's accelerate state (one process, or
    one rank of `accelerate launch`)."""
    from accelerate import PartialState

    checkpoints = Path(cfg.checkpoint_dir or Path(cfg.output_dir) / "checkpoints")
    fingerprint = run_fingerprint(cfg, inputs)
    process = PartialState(cpu=not torch.cuda.is_available())
    with process.main_process_first():
        resume_from = resume_point(checkpoints, fingerprint, cfg.resume, report, process.is_main_process)
    return process, checkpoints, resume_from


def divergence_message(reason: str, checkpoint_dir: Path) -> str:
    """Divergence error: what happened and where the last good state is (kept for inspection/resume)."""
    kept = [p for p in _checkpoints(checkpoint_dir) if _complete(p)]
    where = (f"the last checkpoint saved before the divergence was seen is kept at {kept[0]}" if kept
             else "no checkpoint was saved before it")
    return f"training diverged: {reason}; no adapter was written; {where}"
