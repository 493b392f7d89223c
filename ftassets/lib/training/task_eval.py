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
from ftassets.lib.core.scoring import check_declared, gold_item_passes, schema_tasks, score_item

METRIC = "eval_task_success"
GOLD = "eval_gold_pass_rate"


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
    evaluation's metrics and to the Trainer's log history (so curves survive a resume: checkpoints
    carry trainer_state.json), and stops when the gold pass rate falls. Every rank of a multi-process
    run scores the same sample the same way (greedy, CPU-deterministic), so they agree on the best step."""

    def __init__(self, contract: EvalContract, validation: list[dict], gold: list[dict], report):
        selection = contract.selection
        self.contract, self.report = contract, report
        self.items = [{"task": r["meta"]["task"], "prompt": r["messages"][:-1], "reference": r["messages"][-1]["content"]}
                      for r in validation_sample(validation, set(contract.tasks), selection.sample, selection.seed)]
        self.gold = gold if selection.gold_stop else []
        if self.gold:  # an undeclared schema task is an error now, not after the first evaluation
            check_declared(contract.tasks, set(), self.gold)
        self.seconds = 0.0
        self.stop_reason: str | None = None
        self.log_history: list[dict] = []

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
        found = {}
        if self.items:
            scored = [{"task": i["task"], "scores": score_item(self.contract.tasks[i["task"]], reply, i["reference"])}
                      for i, reply in zip(self.items, replies)]
            failed = [s["scores"]["errors"][0] for s in scored if s["scores"].get("errors")]
            if len(failed) == len(scored):  # a metric that cannot run must not pick the first checkpoint silently
                raise RuntimeError(f"every validation item's task metric failed at step {state.global_step}; "
                                   f"first: {failed[0]}")
            weights = {name: t.weight for name, t in self.contract.tasks.items()}
            found[METRIC] = aggregate_task_scores(scored, weights, self.contract.task_success_average)["task_success"]
        if self.gold:
            found[GOLD] = self._gold_rate(replies[len(self.items):])
            previous = self._curve(state, GOLD)
            if previous and found[GOLD] < previous[-1][1]:
                step, before = previous[-1]
                self.stop_reason = (f"gold pass rate fell from {before} at step {step} to {found[GOLD]} at step "
                                    f"{state.global_step}: training stopped; investigate before training further")
                control.should_training_stop = True
        metrics.update(found)  # the Trainer's best-checkpoint choice and early stopping read these
        if self.stop_reason and control.should_training_stop and args.metric_for_best_model in metrics:
            # the step where gold fell is never the one kept (selection runs after this callback)
            metrics[args.metric_for_best_model] = float("-inf") if args.greater_is_better else float("inf")
        entry = next((h for h in reversed(state.log_history) if h.get("step") == state.global_step
                      and "eval_loss" in h), None)
        if entry is not None:  # the Trainer logged this evaluation before calling back: add ours to it
            entry.update(found)
        self.seconds += time.perf_counter() - started
        self.report({"event": "task_eval", "step": state.global_step, **found,
                     "seconds": round(time.perf_counter() - started, 2)})

    @property
    def on_task(self) -> bool:
        """The contract picks the checkpoint by the task metric (else by loss; gold may still stop)."""
        return self.contract.selection.metric == "task_success"

    def _gold_rate(self, replies: list[str]) -> float:
        schemas = schema_tasks(self.contract.tasks)
        return round(sum(gold_item_passes(g["rules"], r, schemas)[0] for g, r in zip(self.gold, replies))
                     / len(self.gold), 4)

    @staticmethod
    def _curve(state, key: str) -> list[list]:
        return [[h["step"], h[key]] for h in state.log_history if key in h]

    def summary(self, state) -> dict:
        return {"selection": self.contract.selection.model_dump(), "task_eval_items": len(self.items),
                "task_success_curve": self._curve(state, METRIC), "gold_pass_rate_curve": self._curve(state, GOLD),
                "task_eval_seconds": round(self.seconds, 2), "gold_stop_reason": self.stop_reason}
