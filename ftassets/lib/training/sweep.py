"""Choosing training settings on the validation split only.

A sweep is declared in the data folder (`governance/sweep.yaml`): `base` SFT settings every trial
shares and a `grid` of settings to vary (any `SftSettings` field, or one task's mixture weight as
`task_weights.<task>`). Each grid point is one trial: the SFT recipe trains it on the train split and
keeps its best checkpoint on the contract's selection metric, measured on the validation split (so
the number of steps is chosen by the checkpoints inside a trial). The sweep then picks the trial
with the best validation score. Only the train split, the validation split, the contract and the
base weights are inputs: the frozen test set, the gold set and the forgetting benchmarks are never
read, so they stay unbiased judges of the chosen setting."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import load_yaml
from ftassets.lib.training.settings import RecipeConfigError, SftSettings

SWEEP_FILE = "governance/sweep.yaml"
MAX_TRIALS = 64  # a grid larger than this is almost always a typo (each trial is a training run)
WEIGHT_AXIS = "task_weights."


class Trial(BaseModel):
    """One grid point: its partition key, the values it varies, and its whole settings."""

    key: str
    folder: str
    values: dict[str, Any]
    settings: dict[str, Any]


class SweepPlan(BaseModel):
    """The declared sweep: shared settings and the grid, checked when it is built."""

    model_config = ConfigDict(extra="forbid")

    base: dict[str, Any] = Field(default_factory=dict, description="SFT settings every trial shares")
    grid: dict[str, list[Any]] = Field(description="setting -> values to try; the trials are every combination")

    @field_validator("grid")
    @classmethod
    def _axes(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("grid: declare at least one setting to vary")
        for axis, values in grid.items():
            if axis.startswith(WEIGHT_AXIS):
                if not axis[len(WEIGHT_AXIS):].strip():
                    raise ValueError(f"grid.{axis}: name the task (task_weights.<task>)")
            elif axis not in SftSettings.model_fields or axis in ("resume", "task_weights"):
                raise ValueError(f"grid.{axis}: not an SFT setting that a sweep can vary "
                                 f"(one of {', '.join(sorted(set(SftSettings.model_fields) - {'resume'}))}, "
                                 f"or task_weights.<task>)")
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{axis}: give a non-empty list of values")
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"grid.{axis}: a value is listed twice ({values})")
        size = 1
        for values in grid.values():
            size *= len(values)
        if size > MAX_TRIALS:
            raise ValueError(f"grid: {size} trials (every combination); at most {MAX_TRIALS}")
        return grid

    def trials(self) -> list[Trial]:
        """Every combination of the grid, in the order declared, each with settings that build."""
        axes = list(self.grid)
        out = []
        for combo in itertools.product(*(self.grid[a] for a in axes)):
            values = dict(zip(axes, combo))
            key = trial_key(values)
            try:
                settings = SftSettings(**apply(self.base, values))
            except RecipeConfigError as exc:
                raise ValueError(f"trial {key}: {exc}") from None
            out.append(Trial(key=key, folder=folder_name(key), values=values,
                             settings=settings.model_dump(mode="json")))
        return out


def apply(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The base settings with one grid point's values set (a task weight inside `task_weights`)."""
    out = {**base, "task_weights": dict(base.get("task_weights") or {})}
    for axis, value in values.items():
        if axis.startswith(WEIGHT_AXIS):
            out["task_weights"][axis[len(WEIGHT_AXIS):]] = value
        else:
            out[axis] = value
    return out


def trial_key(values: dict[str, Any]) -> str:
    """The trial's Dagster partition key: the values it varies, readable (`learning_rate=0.001,...`)."""
    return ",".join(f"{axis}={value}" for axis, value in values.items())


def folder_name(key: str) -> str:
    """A file-system-safe folder for a trial, unique by a hash of its key."""
    readable = re.sub(r"[^A-Za-z0-9._=-]+", "_", key)[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def load_plan(data_dir: Path | str) -> SweepPlan:
    """The data folder's sweep declaration; every problem names the file and the key."""
    path = Path(data_dir) / SWEEP_FILE
    if not path.is_file():
        raise GovernanceError(f"{path}: no sweep declared (write {SWEEP_FILE} with `base:` settings and a `grid:`)")
    try:
        plan = SweepPlan.model_validate(load_yaml(path))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(x) for x in error["loc"])
        raise GovernanceError(f"{path}: {where}: {error['msg'].removeprefix('Value error, ')}") from None
    try:
        SftSettings(**apply(plan.base, {}))
    except RecipeConfigError as exc:
        raise GovernanceError(f"{path}: base.{exc}") from None
    try:
        plan.trials()
    except ValueError as exc:
        raise GovernanceError(f"{path}: {exc}") from None
    return plan


def trial_score(summary: dict) -> dict:
    """What a finished trial scored on validation: the contract's selection metric at its best
    checkpoint (task success, higher is better; or validation loss, lower is better)."""
    if summary.get("selected_on") == "eval_task_success":
        return {"metric": "task_success", "value": summary["best_task_success"], "step": summary["best_step"],
                "validation_loss": dict(map(tuple, summary.get("validation_loss_curve") or [])).get(
                    summary["best_step"]),
                "task_success_curve": summary.get("task_success_curve", [])}
    return {"metric": "loss", "value": summary["best_validation_loss"], "step": summary["best_step"],
            "validation_loss": summary["best_validation_loss"]}


class SweepIncomplete(GovernanceError):
    """Some trials of the current plan have no result for the current inputs."""


def choose(trials: list[Trial], records: dict[str, dict | None], fingerprints: dict[str, dict]) -> dict:
    """The best trial on validation, with the whole grid. `records`: each trial's stored record (or
    None); `fingerprints`: what each trial's record must have been trained on now (settings and input
    hashes). A missing or stale trial is an error naming it: a sweep never chooses among results of
    other data. Ties on the metric go to the lower validation loss at the kept step, then grid order."""
    missing = [t.key for t in trials if records.get(t.key) is None]
    stale = [t.key for t in trials if records.get(t.key) is not None
             and records[t.key]["fingerprint"] != fingerprints[t.key]]
    if missing or stale:
        raise SweepIncomplete("sweep incomplete: " + "; ".join(
            part for part in (f"never trained: {', '.join(missing)}" if missing else "",
                              f"trained on other inputs or settings (re-run): {', '.join(stale)}" if stale else "")
            if part) + " (materialize these sft_trial partitions, or run `ftassets sweep`)")
    metrics = {records[t.key]["score"]["metric"] for t in trials}
    if len(metrics) != 1:
        raise SweepIncomplete(f"trials were scored on different metrics ({sorted(metrics)}): re-run them")
    metric = metrics.pop()
    sign = 1 if metric == "task_success" else -1

    def rank(index_trial):
        index, trial = index_trial
        score = records[trial.key]["score"]
        loss = score.get("validation_loss")
        return (-sign * score["value"], loss if loss is not None else float("inf"), index)

    best_index, best = min(enumerate(trials), key=rank)
    grid = [{"key": t.key, **t.values, "score": records[t.key]["score"]["value"],
             "best_step": records[t.key]["score"]["step"],
             "validation_loss": records[t.key]["score"].get("validation_loss"),
             "wall_time_s": records[t.key].get("wall_time_s")} for t in trials]
    score = records[best.key]["score"]
    return {"metric": metric, "higher_is_better": metric == "task_success", "chosen": best.key,
            "chosen_values": best.values, "chosen_step": score["step"], "chosen_score": score["value"],
            "chosen_settings": best.settings, "grid": grid, "trials": len(trials),
            "inputs": records[best.key]["fingerprint"]["inputs"],
            "read": "train and validation splits, the eval contract, the base weights: never the frozen test set, "
                    "the gold set or the forgetting benchmarks"}


def run_config(chosen: dict) -> dict:
    """The chosen settings, every one of them (a later change of a default must not change what they
    mean), as a run config for `sft_adapter` (`ftassets run --config`)."""
    return {"ops": {"sft_adapter": {"config": {k: v for k, v in chosen["chosen_settings"].items() if k != "resume"}}}}


def adapter_uses_choice(chosen: dict, adapter_config: dict) -> bool:
    """Whether an SFT adapter was trained with exactly the sweep's chosen settings (resume aside)."""
    return all(adapter_config.get(k) == v for k, v in chosen["chosen_settings"].items() if k != "resume")
