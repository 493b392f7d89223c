"""Trainer callbacks both recipes use: the divergence guard, progress reporting, and the summary of
the Trainer's log history."""

from __future__ import annotations

import math
import time

from transformers import TrainerCallback


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
