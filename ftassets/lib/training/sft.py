"""LoRA / QLoRA supervised fine-tuning recipe (trl SFTTrainer + peft), self-contained.

Loss is on the assistant's final turn only: each conversation becomes a conversational
prompt/completion pair, so trl masks every prompt token. The chat template is the base tokenizer's
own, and the first rows of the trainer's tokenized data are audited against it. Settings
(`SftSettings`) are checked when they are built and against the host and base model before it
loads; checkpoints carry a fingerprint of settings and inputs, so a killed run resumes where it
stopped. Runs on its own, unchanged under `accelerate launch`:

    python -m ftassets.lib.training.sft --base-model data/artifacts/base_model \
        --train-file data/artifacts/data_splits/train.jsonl --output-dir /tmp/sft --max-steps 20
    accelerate launch --config_file ftassets/launch_configs/cpu_2proc.yaml -m ftassets.lib.training.sft \
        --base-model ... --train-file ... --output-dir ...
"""

from __future__ import annotations

import json
from pathlib import Path

from ftassets.lib.training.settings import RecipeIO, SftSettings, parse_args


def to_prompt_completion(record: dict) -> dict:
    messages = record["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


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


def load_policy(settings: SftSettings, io: RecipeIO, precision: str):
    """The base model to put LoRA on: float32, or 4-bit NF4 under QLoRA; FlashAttention when packing."""
    import torch
    from transformers import AutoModelForCausalLM

    load_kwargs = {"use_safetensors": True, "trust_remote_code": False, "dtype": torch.float32}
    if settings.packing:
        load_kwargs["attn_implementation"] = "flash_attention_2"
    if settings.qlora:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if precision == "bf16" else torch.float32
        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
    return AutoModelForCausalLM.from_pretrained(io.base_model, **load_kwargs)


def main(settings: SftSettings, io: RecipeIO, report=print, callbacks=()) -> dict:
    """Train and save the adapter; `callbacks`: extra transformers TrainerCallbacks (monitoring, profiling)."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from ftassets.lib.core.models import load_tokenizer
    from ftassets.lib.training import recipe, template_audit
    from ftassets.lib.training.checkpoints import checkpoint_step
    from ftassets.lib.training.checks import check_lengths, check_target_modules
    from ftassets.lib.training.lora import lora_config

    run = recipe.setup(settings, io, report, callbacks)
    tokenizer = load_tokenizer(Path(io.base_model))
    model = load_policy(settings, io, run.precision)
    check_target_modules(model, settings.target_modules)
    train = load_split(io.train_file, settings.task_weights, settings.seed)
    validation = load_split(io.validation_file)  # validation is never re-weighted
    if train is None:
        raise ValueError(f"{io.train_file}: no training examples")
    for split, name in ((train, "training examples"), (validation, "validation examples")):
        if split is not None:
            check_lengths(tokenizer, [r["prompt"] + r["completion"] for r in split], settings.max_length, name)
    has_eval = validation is not None
    recipe.prepare(run, {"base_model": io.base_model, "train_file": io.train_file,
                         "validation_file": io.validation_file}, has_eval)
    args = SFTConfig(**recipe.trainer_args(run, has_eval), completion_only_loss=True,
                     include_num_input_tokens_seen=True, packing=settings.packing,
                     train_sampling_strategy="group_by_length" if settings.group_by_length else "random")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                         processing_class=tokenizer, peft_config=lora_config(settings, model),
                         callbacks=recipe.callbacks(run, has_eval))
    template = template_audit.audit(tokenizer, train, trainer.train_dataset)
    report({"event": "template_audit", **{k: v for k, v in template.items() if k != "first_failure"}})
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    tokens_before = _tokens_at(run.resume_from)
    outcome = recipe.train(run, trainer, "SFT")
    if not run.process.is_main_process:  # rank 0 writes the adapter and the summary
        return {"rank": run.process.process_index, "global_steps": trainer.state.global_step}
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    wall = outcome.wall_s
    return recipe.finish(run, trainer, tokenizer, outcome, "sft_adapter", extra_summary={
        "tokens_seen": tokens, "tokens_per_s": round((tokens - tokens_before) / wall, 2) if wall else None,
        "peak_memory_bytes": int(torch.cuda.max_memory_allocated() if torch.cuda.is_available() else _peak_rss()),
        "template_audit": template, "processes": run.process.num_processes,
        "resumed_at_step": checkpoint_step(run.resume_from) if run.resume_from else None,
        "quantized_4bit_layers": _count_4bit(trainer.model) if settings.qlora else 0})


def _count_4bit(model) -> int:
    """bitsandbytes NF4 layers (peft's LoRA wrapper of one is also called Linear4bit: not counted)."""
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def _tokens_at(checkpoint: str | None) -> int:
    """Tokens a resumed run had already trained on (tokens/s counts only this process's)."""
    if not checkpoint:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0) or 0)


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    io, settings = parse_args(SftSettings, __doc__.split("\n")[0])
    summary = main(settings, io)
    print(json.dumps({k: v for k, v in summary.items() if "curve" not in k}, indent=2))
