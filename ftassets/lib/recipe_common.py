"""Pieces both training recipes share: precision choice, LoRA config, run summaries."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


def resolve_precision(precision: str) -> str:
    """'auto' picks bf16 where the hardware runs it natively (CUDA bf16, CPU avx512_bf16)."""
    if precision != "auto":
        if precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {precision!r}")
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    cpu_bf16 = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return "bf16" if "AVX512" in cpu_bf16.upper() else "fp32"


def lora_config(r: int, alpha: int, dropout: float, target_modules: str, top_layers: int = 0, model=None):
    """peft LoRA settings; `top_layers` > 0 puts adapters on the model's last `top_layers` decoder
    layers only, so the backward pass stops there (cheaper steps, fewer parameters)."""
    from peft import LoraConfig

    from ftassets.lib.recipe_checks import linear_layer_names

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

    from ftassets.lib.files import sha256_file, sha256_tree

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

    from ftassets.lib.files import write_json_atomic

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
