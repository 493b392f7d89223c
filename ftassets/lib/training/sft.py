"""LoRA / QLoRA supervised fine-tuning recipe (trl SFTTrainer + peft), self-contained.

Loss is on the assistant's final turn only: each conversation becomes a conversational
prompt/completion pair, so trl masks every prompt token. The chat template is the base tokenizer's
own, and the first rows of the trainer's tokenized data are audited against it. Settings are checked
before the model loads; checkpoints every `eval_steps` carry a fingerprint of settings and inputs,
so a killed run resumes where it stopped. Runs on its own, unchanged under `accelerate launch`:

    python -m ftassets.lib.training.sft --base-model data/artifacts/base_model \
        --train-file data/artifacts/data_splits/train.jsonl --output-dir /tmp/sft --max-steps 20
    accelerate launch --config_file ftassets/launch_configs/cpu_2proc.yaml -m ftassets.lib.training.sft \
        --base-model ... --train-file ... --output-dir ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SftRecipeConfig:
    base_model: str
    train_file: str
    output_dir: str
    validation_file: str | None = None
    max_length: int = 512
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    lora_top_layers: int = 0  # adapters on the last N decoder layers only (0: every layer)
    precision: str = "auto"  # CUDA: bf16 (fp16 without it); CPU: bf16 only where it measures faster than fp32
    keep_freed_memory: bool = True  # glibc keeps freed tensor memory instead of re-mapping it every step
    micro_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    epochs: float = 2.0
    max_steps: int = -1
    seed: int = 42
    eval_steps: int = 20
    early_stopping_patience: int = 3
    logging_steps: int = 5
    group_by_length: bool = True
    packing: bool = False  # best-fit packing, padding-free: CUDA + FlashAttention only
    gradient_checkpointing: bool = False  # trades ~30% more compute for activation memory
    qlora: bool = False
    task_weights: str = ""  # "incident_triage=2,ticket_summary=0.5": sampling weight per meta.task (default 1)
    checkpoint_dir: str = ""  # where checkpoints go (every eval_steps); default <output_dir>/checkpoints
    resume: bool = True  # continue an interrupted run with the same settings and inputs from its last checkpoint


def to_prompt_completion(record: dict) -> dict:
    messages = record["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def parse_task_weights(text: str) -> dict[str, float]:
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        task, sep, value = part.partition("=")
        if not sep or not task.strip() or float(value) < 0:
            raise ValueError(f"task_weights: expected task=weight (weight >= 0), got {part!r}")
        weights[task.strip()] = float(value)
    return weights


def weighted(records: list[dict], weights: dict[str, float], seed: int) -> list[dict]:
    """Mixture weights: each record of a task appears int(w) times, plus once more with probability
    frac(w) (seeded), so a task's expected share scales with its weight. Weight 1 keeps the data as is."""
    import random

    rng = random.Random(seed)
    out = []
    for record in records:
        w = weights.get(record.get("meta", {}).get("task"), 1.0)
        out += [record] * (int(w) + (rng.random() < w - int(w)))
    return out


def load_split(path: str | None, weights: dict[str, float] | None = None, seed: int = 0):
    from datasets import Dataset

    if not path:
        return None
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    rows = [to_prompt_completion(r) for r in weighted(records, weights or {}, seed)]
    return Dataset.from_list(rows) if rows else None


def main(cfg: SftRecipeConfig, report=print, callbacks=()) -> dict:
    """Train and save the adapter; `callbacks`: extra transformers TrainerCallbacks (monitoring, profiling)."""
    import torch
    from transformers import AutoModelForCausalLM, EarlyStoppingCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    from ftassets.lib.core.files import write_json_atomic
    from ftassets.lib.core.models import load_tokenizer, weights_files
    from ftassets.lib.training import template_audit
    from ftassets.lib.training.checks import (
        check_against_model,
        check_packing,
        check_precision_device,
        check_qlora_backend,
        check_settings,
        check_target_modules,
    )
    from ftassets.lib.training.common import (
        DivergenceGuard,
        ProgressReporter,
        checkpoint_step,
        divergence_message,
        host_settings,
        lora_config,
        prepare_checkpoints,
        resolve_precision,
        trainable_parameters,
    )

    check_settings(cfg)
    host = host_settings(cfg)
    precision = resolve_precision(cfg.precision)
    check_precision_device(precision)
    check_against_model(cfg, cfg.base_model)
    check_packing(cfg.packing)
    if cfg.qlora:
        check_qlora_backend()
    set_seed(cfg.seed)
    weights_files(Path(cfg.base_model))
    tokenizer = load_tokenizer(Path(cfg.base_model))
    load_kwargs = {"use_safetensors": True, "trust_remote_code": False, "dtype": torch.float32}
    if cfg.packing:
        load_kwargs["attn_implementation"] = "flash_attention_2"
    if cfg.qlora:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if precision == "bf16" else torch.float32
        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, **load_kwargs)
    check_target_modules(model, cfg.target_modules)
    train = load_split(cfg.train_file, parse_task_weights(cfg.task_weights), cfg.seed)
    validation = load_split(cfg.validation_file)  # validation is never re-weighted
    if train is None:
        raise ValueError(f"{cfg.train_file}: no training examples")
    has_eval = validation is not None
    process, checkpoints, resume_from = prepare_checkpoints(
        cfg, {"base_model": cfg.base_model, "train_file": cfg.train_file, "validation_file": cfg.validation_file},
        report)
    args = SFTConfig(
        output_dir=str(checkpoints), max_length=cfg.max_length,
        per_device_train_batch_size=cfg.micro_batch_size, per_device_eval_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio in v5
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps,
        eval_strategy="steps" if has_eval else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.eval_steps, save_total_limit=2,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss", greater_is_better=False,
        bf16=precision == "bf16", fp16=precision == "fp16", completion_only_loss=True,
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        include_num_input_tokens_seen=True, gradient_checkpointing=cfg.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random", packing=cfg.packing,
    )
    guard = DivergenceGuard()
    callbacks = [guard, ProgressReporter(report), *callbacks]
    if has_eval and cfg.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                         processing_class=tokenizer, peft_config=lora_config(
                             cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules,
                             cfg.lora_top_layers, model),
                         callbacks=callbacks)
    template = template_audit.audit(tokenizer, train, trainer.train_dataset)
    report({"event": "template_audit", **{k: v for k, v in template.items() if k != "first_failure"}})
    trainable, total = trainable_parameters(trainer.model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    tokens_before = _tokens_at(resume_from)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started
    if guard.reason:
        raise RuntimeError(divergence_message(guard.reason, checkpoints))
    if not process.is_main_process:  # rank 0 writes the adapter and the summary
        return {"rank": process.process_index, "global_steps": trainer.state.global_step}
    summary = _finish(trainer, tokenizer, cfg, result, wall, trainable, total, precision, tokens_before)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the adapter is the result; checkpoints only serve a resume
    summary.update(**host, template_audit=template, processes=process.num_processes, resumed_from=resume_from,
                   resumed_at_step=checkpoint_step(resume_from) if resume_from else None,
                   quantized_4bit_layers=_count_4bit(trainer.model) if cfg.qlora else 0)
    write_json_atomic(Path(cfg.output_dir) / "training_summary.json", summary)
    return summary


def _count_4bit(model) -> int:
    """bitsandbytes NF4 layers (peft's LoRA wrapper of one is also called Linear4bit: not counted)."""
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def _tokens_at(checkpoint: str | None) -> int:
    if not checkpoint:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0) or 0)


def _finish(trainer, tokenizer, cfg, result, wall, trainable, total, precision, tokens_before: int) -> dict:
    """Save the adapter and summarize; tokens/s counts only the tokens this process trained on (a
    resumed run starts with the checkpoint's count)."""
    import torch

    from ftassets.lib.training.common import summarize_history

    out = Path(cfg.output_dir)
    trainer.model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    state = trainer.state
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    history = summarize_history(state.log_history)
    stop = "max_steps" if state.global_step >= state.max_steps else "early_stop"
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available() else _peak_rss())
    summary = {
        "trainable_parameters": trainable, "total_parameters": total,
        "trainable_percent": round(100.0 * trainable / total, 4),
        "global_steps": state.global_step, "stop_reason": stop, "final_train_loss": round(result.training_loss, 5),
        "tokens_seen": tokens, "wall_time_s": round(wall, 2),
        "tokens_per_s": round((tokens - tokens_before) / wall, 2) if wall else None, "peak_memory_bytes": int(peak),
        "precision": precision, "config": dataclasses.asdict(cfg), **history,
    }
    return summary


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parse_args(argv=None) -> SftRecipeConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(SftRecipeConfig):
        flag = "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING
        kind = {"int": int, "float": float, "bool": None}.get(str(f.type).split(" ")[0], str)
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=kind or str, required=required,
                                default=None if required else f.default)
    return SftRecipeConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    print(json.dumps({k: v for k, v in main(parse_args()).items() if "curve" not in k}, indent=2))
