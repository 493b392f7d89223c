"""DPO recipe (trl DPOTrainer + peft) that starts from the SFT adapter.

The SFT adapter is merged into the base weights in memory, and a fresh LoRA adapter is trained
on top; with peft, the reference model is the same network with the adapter disabled, i.e. the
SFT policy, as DPO expects. The saved DPO adapter therefore applies to "base + SFT adapter"
(recorded in `adapter_stack.json`). Runs on its own:

    python -m ftassets.lib.training.dpo --base-model data/artifacts/base_model \
        --sft-adapter data/artifacts/sft_adapter --pairs-file data/artifacts/preference_pairs/train.jsonl \
        --validation-file data/artifacts/preference_pairs/validation.jsonl --output-dir /tmp/dpo --max-steps 10
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
class DpoRecipeConfig:
    base_model: str
    sft_adapter: str
    pairs_file: str
    output_dir: str
    validation_file: str | None = None  # held-out pairs; without it, validation_fraction is split off
    system_prompt: str = ""
    beta: float = 0.1
    max_length: int = 512
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    lora_top_layers: int = 0  # adapters on the last N decoder layers only (0: every layer)
    precision: str = "auto"  # CUDA: bf16 (fp16 without it); CPU: bf16 only where it measures faster than fp32
    keep_freed_memory: bool = True  # glibc keeps freed tensor memory instead of re-mapping it every step
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    epochs: float = 1.0
    max_steps: int = -1
    seed: int = 42
    validation_fraction: float = 0.1
    eval_steps: int = 10
    early_stopping_patience: int = 3  # evaluations without a better validation loss before stopping (0: off)
    logging_steps: int = 5
    gradient_checkpointing: bool = False  # trades ~30% more compute for activation memory
    checkpoint_dir: str = ""  # where checkpoints go (every eval_steps); default <output_dir>/checkpoints
    resume: bool = True  # continue an interrupted run with the same settings and inputs from its last checkpoint


def read_pairs(path: str, system_prompt: str) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            prompt = list(r["messages"])
            if system_prompt and prompt[0]["role"] != "system":
                prompt.insert(0, {"role": "system", "content": system_prompt})
            rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": r["chosen"]}],
                         "rejected": [{"role": "assistant", "content": r["rejected"]}]})
    return rows


def load_pairs(path: str, system_prompt: str, validation_fraction: float, seed: int,
               validation_file: str | None = None):
    from datasets import Dataset

    rows = read_pairs(path, system_prompt)
    if not rows:
        raise ValueError(f"{path}: no preference pairs")
    if validation_file:
        held_out = read_pairs(validation_file, system_prompt)
        return Dataset.from_list(rows), Dataset.from_list(held_out) if held_out else None
    data = Dataset.from_list(rows)
    if validation_fraction <= 0 or len(rows) < 10:
        return data, None
    split = data.train_test_split(test_size=validation_fraction, seed=seed)
    return split["train"], split["test"]


def sft_policy(base_model: str, sft_adapter: str):
    """Base weights with the SFT adapter merged in: the DPO starting point and reference."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32, use_safetensors=True,
                                                trust_remote_code=False)
    return PeftModel.from_pretrained(base, sft_adapter).merge_and_unload()


def main(cfg: DpoRecipeConfig, report=print) -> dict:
    import torch
    from transformers import EarlyStoppingCallback, set_seed
    from trl import DPOConfig, DPOTrainer

    from ftassets.lib.core.files import write_json_atomic
    from ftassets.lib.core.models import load_tokenizer
    from ftassets.lib.training.checks import check_against_model, check_precision_device, check_settings
    from ftassets.lib.training.common import (
        DivergenceGuard,
        ProgressReporter,
        divergence_message,
        host_settings,
        lora_config,
        prepare_checkpoints,
        resolve_precision,
        summarize_history,
        trainable_parameters,
    )

    check_settings(cfg)
    host = host_settings(cfg)
    precision = resolve_precision(cfg.precision)
    check_precision_device(precision)
    check_against_model(cfg, cfg.base_model)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(Path(cfg.base_model))
    model = sft_policy(cfg.base_model, cfg.sft_adapter)
    train, validation = load_pairs(cfg.pairs_file, cfg.system_prompt, cfg.validation_fraction, cfg.seed,
                                   cfg.validation_file)
    has_eval = validation is not None
    process, checkpoints, resume_from = prepare_checkpoints(
        cfg, {"base_model": cfg.base_model, "sft_adapter": cfg.sft_adapter, "pairs_file": cfg.pairs_file,
              "validation_file": cfg.validation_file}, report)
    args = DPOConfig(
        output_dir=str(checkpoints), beta=cfg.beta, max_length=cfg.max_length,
        per_device_train_batch_size=cfg.micro_batch_size, per_device_eval_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps,
        eval_strategy="steps" if has_eval else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.eval_steps, save_total_limit=2,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss", greater_is_better=False,
        bf16=precision == "bf16", fp16=precision == "fp16", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=cfg.gradient_checkpointing,
    )
    guard = DivergenceGuard()
    callbacks = [guard, ProgressReporter(report)]
    if has_eval and cfg.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train, eval_dataset=validation,
                         processing_class=tokenizer, callbacks=callbacks,
                         peft_config=lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules,
                                                 cfg.lora_top_layers, model))
    trainable, total = trainable_parameters(trainer.model)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started
    if guard.reason:
        raise RuntimeError("DPO " + divergence_message(guard.reason, checkpoints))
    if not process.is_main_process:  # rank 0 writes the adapter and the summary
        return {"rank": process.process_index, "global_steps": trainer.state.global_step}
    out = Path(cfg.output_dir)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the adapter is the result; checkpoints only serve a resume
    trainer.model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_json_atomic(out / "adapter_stack.json", {"base_model": cfg.base_model, "merged_below": [cfg.sft_adapter]})
    summary = {
        "trainable_parameters": trainable, "total_parameters": total,
        "trainable_percent": round(100.0 * trainable / total, 4), "global_steps": trainer.state.global_step,
        "stop_reason": "max_steps" if trainer.state.global_step >= trainer.state.max_steps else "early_stop",
        "final_train_loss": round(result.training_loss, 5),
        "wall_time_s": round(wall, 2), "pairs": len(train), "precision": precision, **host, "resumed_from": resume_from,
        "config": dataclasses.asdict(cfg), **summarize_history(trainer.state.log_history),
    }
    write_json_atomic(out / "training_summary.json", summary)
    return summary


def parse_args(argv=None) -> DpoRecipeConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(DpoRecipeConfig):
        required = f.default is dataclasses.MISSING
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)  # "str | None" stays str
        parser.add_argument(flag, type=kind, required=required, default=None if required else f.default)
    return DpoRecipeConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    print(json.dumps({k: v for k, v in main(parse_args()).items() if "curve" not in k}, indent=2))
