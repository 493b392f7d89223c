"""Checkpoints chosen on the task, not only on loss: at each evaluation the recipe generates on a
seeded sample of the validation split with the contract's decoding policy, scores the replies with
the declared task metrics, and hands `eval_task_success` to the Trainer, which keeps the best
checkpoint by it and stops early on it (`selection.metric: task_success`). With
`selection.gold_stop`, the gold set is generated too and a pass rate lower than at the previous
evaluation stops training with the reason. The frozen test set is never read here."""

from __future__ import annotations

import random
import time

import torch
from transformers import TrainerCallback

from ftassets.lib.core.contract import EvalContract
from ftassets.lib.core.generation import generate_by_task
from ftassets.lib.core.metrics import aggregate_task_scores
from ftassets.lib.core.scoring import gold_item_passes, schema_tasks, score_item

METRIC = "eval_task_success"


def validation_sample(records: list[dict], tasks: set[str], size: int, seed: int) -> list[dict]:
    """Up to `size` records of declared tasks, taken round-robin over the tasks from a seeded shuffle
    of each task's records, so a small task is represented even beside a big one."""
    rng = random.Random(seed)
    by_task: dict[str, list[dict]] = {}
    for record in records:
        task = record.get("meta", {}).get("task")
        if task in tasks and record.get("messages"):
            by_task.setdefault(task, []).append(record)
    for rows in by_task.values():
        rng.shuffle(rows)
    out, depth = [], 0
    while len(out) < size and any(depth < len(rows) for rows in by_task.values()):
        out += [rows[depth] for _, rows in sorted(by_task.items()) if depth < len(rows)]
        depth += 1
    return out[:size]


class TaskSelection(TrainerCallback):
    """Adds the declared task success on a validation sample (and the gold pass rate) to every
    evaluation's metrics, records both curves, and stops when the gold pass rate falls."""

    def __init__(self, contract: EvalContract, validation: list[dict], gold: list[dict], report):
        selection = contract.selection
        self.contract, self.report = contract, report
        self.items = [{"task": r["meta"]["task"], "prompt": r["messages"][:-1], "reference": r["messages"][-1]["content"]}
                      for r in validation_sample(validation, set(contract.tasks), selection.sample, selection.seed)]
        self.gold = gold if selection.gold_stop else []
        self.task_curve: list[list] = []  # [step, value], as the loss curves
        self.gold_curve: list[list] = []
        self.seconds = 0.0
        self.stop_reason: str | None = None

    def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
        if metrics is None or model is None or not (self.items or self.gold):
            return
        started = time.perf_counter()
        prompts = [{"task": i["task"], "prompt": i["prompt"]} for i in self.items]
        prompts += [{"task": g["task"], "prompt": g["messages"]} for g in self.gold]
        was_training = model.training
        model.eval()
        try:  # sampled tasks seed torch: fork the RNG so training's random stream is untouched
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
                replies = generate_by_task(model, processing_class, prompts, self.contract.decoding)
        finally:
            model.train(was_training)
        scored = [{"task": i["task"], "scores": score_item(self.contract.tasks[i["task"]], reply, i["reference"])}
                  for i, reply in zip(self.items, replies)]
        if scored:
            weights = {name: t.weight for name, t in self.contract.tasks.items()}
            success = aggregate_task_scores(scored, weights, self.contract.task_success_average)["task_success"]
            metrics[METRIC] = success  # the Trainer's best-checkpoint choice and early stopping read this
            self.task_curve.append([state.global_step, success])
        if self.gold:
            self._gold_step(state, control, metrics, replies[len(self.items):])
        self.seconds += time.perf_counter() - started
        self.report({"event": "task_eval", "step": state.global_step, **{k: v for k, v in metrics.items()
                                                                         if k in (METRIC, "eval_gold_pass_rate")},
                     "seconds": round(time.perf_counter() - started, 2)})

    def _gold_step(self, state, control, metrics, replies: list[str]) -> None:
        schemas = schema_tasks(self.contract.tasks)
        rate = round(sum(gold_item_passes(g["rules"], r, schemas)[0] for g, r in zip(self.gold, replies))
                     / len(self.gold), 4)
        metrics["eval_gold_pass_rate"] = rate
        if self.gold_curve and rate < self.gold_curve[-1][1]:
            step, before = self.gold_curve[-1]
            self.stop_reason = (f"gold pass rate fell from {before} at step {step} to {rate} at step "
                                f"{state.global_step}: training stopped; investigate before training further")
            control.should_training_stop = True
        self.gold_curve.append([state.global_step, rate])

    def summary(self) -> dict:
        return {"selection": self.contract.selection.model_dump(), "task_eval_items": len(self.items),
                "task_success_curve": self.task_curve, "gold_pass_rate_curve": self.gold_curve,
                "task_eval_seconds": round(self.seconds, 2), "gold_stop_reason": self.stop_reason}
