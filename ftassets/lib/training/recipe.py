"""The phases both training recipes go through, in order (torchtune's named recipe phases):

    run = setup(settings, io, report)          host checks and settings, precision, seed
    ... the recipe loads its policy and data ...
    prepare(run, inputs, has_eval)              checkpoint folder, resume point, task selection
    ... the recipe builds its trl trainer from trainer_args(run, has_eval) and callbacks(run) ...
    outcome = train(run, trainer)               train (resuming), stop on divergence
    summary = finish(run, trainer, tokenizer, outcome, ...)   adapter, summary, checkpoints removed

SFT (`sft.py`) and DPO (`dpo.py`) differ only in what they load and which trainer they build; the
checkpoint handling, the trl arguments they share and the summary are this one code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    settings: object  # SftSettings or DpoSettings
    io: object  # RecipeIO
    report: object
    precision: str
    host: dict
    process: object = None
    checkpoints: Path | None = None
    resume_from: str | None = None
    guard: object = None
    extra_callbacks: list = field(default_factory=list)
    selection: object = None  # TaskSelection when the contract picks checkpoints on the task (task_eval.py)


@dataclass
class Outcome:
    result: object
    wall_s: float
    trainable: int
    total: int


def setup(settings, io, report, extra_callbacks=()) -> Run:
    """Checks that need the host or the base model (fail in seconds, naming the field), the host
    settings, the precision, the seed."""
    from transformers import set_seed

    from ftassets.lib.core.models import weights_files
    from ftassets.lib.training.checks import (
        check_against_model,
        check_packing,
        check_precision_device,
        check_qlora_backend,
    )
    from ftassets.lib.training.host import host_settings, resolve_precision

    host = host_settings(settings)
    precision = resolve_precision(settings.precision)
    check_precision_device(precision)
    check_against_model(settings, io.base_model)
    check_packing(getattr(settings, "packing", False))
    if getattr(settings, "qlora", False):
        check_qlora_backend()
    weights_files(Path(io.base_model))  # safetensors only
    set_seed(settings.seed)
    return Run(settings, io, report, precision, host, extra_callbacks=list(extra_callbacks))


def prepare(run: Run, inputs: dict[str, str | None], has_eval: bool) -> None:
    """Where checkpoints go and which one to resume from (`inputs`, and the contract and files the
    task metric reads, are hashed into the fingerprint), and the task selection the contract asks for."""
    from ftassets.lib.training.checkpoints import prepare_checkpoints

    io = run.io
    inputs = {**inputs, "contract_file": io.contract_file, "task_eval_file": io.task_eval_file, "gold_file": io.gold_file}
    run.process, run.checkpoints, run.resume_from = prepare_checkpoints(run.settings, io, inputs, run.report)
    task_selection(run, has_eval)


def task_selection(run: Run, has_eval: bool) -> None:
    """When the contract (`io.contract_file`) picks checkpoints on the task or stops on the gold set,
    the callback that generates and scores at each evaluation, on `io.task_eval_file` (validation)."""
    import json

    from ftassets.lib.core.contract import EvalContract
    from ftassets.lib.training.task_eval import TaskSelection

    if not run.io.contract_file:
        return
    contract = EvalContract.model_validate(json.loads(Path(run.io.contract_file).read_text(encoding="utf-8")))
    selection = contract.selection
    gold_stop = selection.gold_stop and not run.io.sweep_trial  # the gold set never chooses a sweep's settings
    if selection.metric == "loss" and not gold_stop:
        return
    if not has_eval:
        raise ValueError(f"selection.metric={selection.metric}, gold_stop={gold_stop} in the eval contract "
                         f"need evaluations, and this run has no validation split")
    validation = _jsonl(run.io.task_eval_file or run.io.validation_file)
    gold = _jsonl(run.io.gold_file) if gold_stop else []
    if gold_stop and not gold:
        raise ValueError("selection.gold_stop in the eval contract needs the gold set (gold_file)")
    run.selection = TaskSelection(contract, validation, gold, run.report)
    if selection.metric == "task_success" and not run.selection.items:
        raise ValueError(f"selection.metric=task_success: the validation split has no item of a declared task "
                         f"(declared: {sorted(contract.tasks)})")


def _jsonl(path: str | None) -> list[dict]:
    from ftassets.lib.core.files import read_jsonl

    return read_jsonl(Path(path)) if path and Path(path).is_file() else []


def trainer_args(run: Run, has_eval: bool) -> dict:
    """The trl arguments both recipes share, from the settings object; the best checkpoint is the one
    with the lowest validation loss, or the highest declared task success when the contract says so."""
    import torch

    from ftassets.lib.training.task_eval import METRIC

    on_task = run.selection is not None and run.selection.on_task
    s = run.settings
    return dict(
        output_dir=str(run.checkpoints), max_length=s.max_length,
        per_device_train_batch_size=s.micro_batch_size, per_device_eval_batch_size=s.micro_batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps, learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler, warmup_steps=s.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        num_train_epochs=s.epochs, max_steps=s.max_steps, seed=s.seed, data_seed=s.seed,
        logging_steps=s.logging_steps, eval_strategy="steps" if has_eval else "no", eval_steps=s.eval_steps,
        save_strategy="steps", save_steps=s.eval_steps, save_total_limit=2,
        load_best_model_at_end=has_eval, metric_for_best_model=METRIC if on_task else "eval_loss",
        greater_is_better=bool(on_task),
        bf16=run.precision == "bf16", fp16=run.precision == "fp16", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=s.gradient_checkpointing)


def callbacks(run: Run, has_eval: bool) -> list:
    """Divergence guard, progress reporting, any extra callbacks, and early stopping on validation loss."""
    from transformers import EarlyStoppingCallback

    from ftassets.lib.training.callbacks import DivergenceGuard, ProgressReporter

    run.guard = DivergenceGuard()
    out = [run.guard, ProgressReporter(run.report), tensorboard_callback(run), *run.extra_callbacks]
    if run.selection is not None:  # before early stopping: it adds the metric early stopping reads
        out.append(run.selection)
    if has_eval and run.settings.early_stopping_patience > 0:
        out.append(EarlyStoppingCallback(early_stopping_patience=run.settings.early_stopping_patience))
    return out


def tensorboard_callback(run: Run):
    """transformers' own TensorBoard callback; the assets point it outside the adapter folder (event files
    carry times and host names, which the adapter's content hash must not)."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    folder = Path(run.io.tensorboard_dir or Path(run.io.output_dir) / "runs")
    return TensorBoardCallback(SummaryWriter(log_dir=str(folder)))


def train(run: Run, trainer, name: str) -> Outcome:
    """Train, resuming from the checkpoint `prepare` chose; a divergence is an error that says where
    the last good checkpoint is, and no adapter is written."""
    from ftassets.lib.training.checkpoints import divergence_message
    from ftassets.lib.training.lora import trainable_parameters

    trainable, total = trainable_parameters(trainer.model)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    wall = time.perf_counter() - started
    if run.guard.reason:
        raise RuntimeError(f"{name} {divergence_message(run.guard.reason, run.checkpoints)}")
    return Outcome(result, wall, trainable, total)


def _best(run: Run, state) -> dict:
    """The checkpoint the Trainer kept, by the metric it chose on (validation loss unless the task)."""
    if run.selection is None or not run.selection.on_task:
        return {"selected_on": "eval_loss"}
    return {"selected_on": "eval_task_success", "best_step": state.best_global_step,
            "best_task_success": state.best_metric}


def finish(run: Run, trainer, tokenizer, outcome: Outcome, asset: str, extra_files: dict[str, dict] | None = None,
           extra_summary: dict | None = None) -> dict:
    """Save the adapter (and `extra_files`, by catalog role), write the training summary, then remove
    the checkpoints: the adapter is the result, checkpoints only serve a resume."""
    import shutil

    from ftassets.lib.core.catalog import file_name
    from ftassets.lib.core.files import write_json_atomic
    from ftassets.lib.training.callbacks import summarize_history

    out = Path(run.io.output_dir)
    trainer.model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for role, payload in (extra_files or {}).items():
        write_json_atomic(out / file_name(asset, role), payload)
    state = trainer.state
    selection = run.selection.summary(trainer.state) if run.selection is not None else {}
    stop = ("gold_pass_rate_drop" if selection.get("gold_stop_reason") else
            "max_steps" if state.global_step >= state.max_steps else "early_stop")
    summary = {
        "trainable_parameters": outcome.trainable, "total_parameters": outcome.total,
        "trainable_percent": round(100.0 * outcome.trainable / outcome.total, 4),
        "global_steps": state.global_step,
        "stop_reason": stop,
        "final_train_loss": round(outcome.result.training_loss, 5), "wall_time_s": round(outcome.wall_s, 2),
        "precision": run.precision, **run.host, "resumed_from": run.resume_from,
        "config": {**run.io.model_dump(), **run.settings.model_dump()}, **summarize_history(state.log_history),
        **selection, **_best(run, state), **(extra_summary or {}),
    }
    write_json_atomic(out / file_name(asset, "summary"), summary)
    shutil.rmtree(run.checkpoints, ignore_errors=True)
    return summary
