"""DPO recipe (trl DPOTrainer + peft) that starts from the SFT adapter.

The SFT adapter is merged into the base weights in memory, and a fresh LoRA adapter is trained
on top; with peft, the reference model is the same network with the adapter disabled, i.e. the
SFT policy, as DPO expects. The saved DPO adapter therefore applies to "base + SFT adapter"
(recorded in its adapter stack file). The phases are SFT's (`recipe.py`). Runs on its own:

    python -m ftassets.lib.training.dpo --base-model data/artifacts/base_model \
        --sft-adapter data/artifacts/sft_adapter --train-file data/artifacts/preference_pairs/train.jsonl \
        --validation-file data/artifacts/preference_pairs/validation.jsonl --output-dir /tmp/dpo --max-steps 10
"""

from __future__ import annotations

import json
from pathlib import Path

from ftassets.lib.training.settings import DpoSettings, RecipeIO, parse_args


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


def sft_system_prompt(path: str | None) -> str | None:
    """The most common system turn of the SFT split (None when it has none, or no file is given)."""
    from collections import Counter

    if not path or not Path(path).is_file():
        return None
    from ftassets.lib.core.files import read_jsonl

    turns = Counter()
    for record in read_jsonl(Path(path)):
        first = record["messages"][0]
        turns[first["content"] if first["role"] == "system" else None] += 1
    turns.pop(None, None)
    return turns.most_common(1)[0][0] if turns else None


def load_pairs(settings: DpoSettings, io: RecipeIO):
    """Train and validation pairs; without a validation file, `validation_fraction` is split off (seeded)."""
    from datasets import Dataset

    system = settings.system_prompt if settings.system_prompt is not None else sft_system_prompt(io.sft_train_file)
    rows = read_pairs(io.train_file, system)
    if not rows:
        raise ValueError(f"{io.train_file}: no preference pairs")
    if io.validation_file:
        held_out = read_pairs(io.validation_file, system)
        return Dataset.from_list(rows), Dataset.from_list(held_out) if held_out else None
    data = Dataset.from_list(rows)
    if settings.validation_fraction <= 0 or len(rows) < 10:
        return data, None
    split = data.train_test_split(test_size=settings.validation_fraction, seed=settings.seed)
    return split["train"], split["test"]


def load_policy(io: RecipeIO):
    """Base weights with the SFT adapter merged in: the DPO starting point and reference."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if not io.sft_adapter:
        raise ValueError("sft_adapter: DPO starts from an SFT adapter; give its folder")
    base = AutoModelForCausalLM.from_pretrained(io.base_model, dtype=torch.float32, use_safetensors=True,
                                                trust_remote_code=False)
    return PeftModel.from_pretrained(base, io.sft_adapter).merge_and_unload()


def main(settings: DpoSettings, io: RecipeIO, report=print, callbacks=()) -> dict:
    from trl import DPOConfig, DPOTrainer

    from ftassets.lib.core.models import load_tokenizer
    from ftassets.lib.training import recipe
    from ftassets.lib.training.checks import check_lengths
    from ftassets.lib.training.lora import lora_config

    run = recipe.setup(settings, io, report, callbacks)
    tokenizer = load_tokenizer(Path(io.base_model))
    model = load_policy(io)
    train, validation = load_pairs(settings, io)
    for split, name in ((train, "preference pairs"), (validation, "validation pairs")):
        if split is not None:
            check_lengths(tokenizer, [r["prompt"] + r[side] for r in split for side in ("chosen", "rejected")],
                          settings.max_length, f"{name} (chosen and rejected sides)")
    has_eval = validation is not None
    recipe.prepare(run, {"base_model": io.base_model, "sft_adapter": io.sft_adapter, "pairs_file": io.train_file,
                         "sft_train_file": io.sft_train_file,
                         "validation_file": io.validation_file}, has_eval)
    trainer = DPOTrainer(model=model, ref_model=None, args=DPOConfig(**recipe.trainer_args(run, has_eval),
                                                                     beta=settings.beta),
                         train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
                         callbacks=recipe.callbacks(run, has_eval), peft_config=lora_config(settings, model))
    outcome = recipe.train(run, trainer, "DPO")
    if not run.process.is_main_process:  # rank 0 writes the adapter and the summary
        return {"rank": run.process.process_index, "global_steps": trainer.state.global_step}
    return recipe.finish(run, trainer, tokenizer, outcome, "dpo_adapter",
                         extra_files={"stack": {"base_model": io.base_model, "merged_below": [io.sft_adapter]}},
                         extra_summary={"pairs": len(train)})


if __name__ == "__main__":
    io, settings = parse_args(DpoSettings, __doc__.split("\n")[0])
    summary = main(settings, io)
    print(json.dumps({k: v for k, v in summary.items() if "curve" not in k}, indent=2))
