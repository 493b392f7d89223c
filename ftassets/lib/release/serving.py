"""Loading a serving bundle the way a server would, and answering prompts with its decoding policy.

Two ways in, both checked: the merged model through a transformers text-generation pipeline, and
the base model with the bundle's adapter stack through peft (the base is not copied into the
bundle; `adapters.json` names it by weights sha256 and the loader verifies it)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import sha256_file
from ftassets.lib.core.generation import task_settings


def decoding_policy(bundle: Path) -> dict:
    return yaml.safe_load((Path(bundle) / file_name("serving_bundle", "decoding_policy")).read_text())


def merged_pipeline(bundle: Path):
    import torch
    from transformers import pipeline

    pipe = pipeline("text-generation", model=str(Path(bundle) / file_name("serving_bundle", "model")), device="cpu", trust_remote_code=False,
                    model_kwargs={"use_safetensors": True, "dtype": torch.float32})
    pipe.tokenizer.padding_side = "left"
    return pipe


def pipeline_answers(pipe, items: list[dict], policy: dict, batch_size: int = 8) -> list[str]:
    """items: {"task", "messages"}; replies in order, each task with its own decoding policy."""
    import torch

    replies: list[str | None] = [None] * len(items)
    for task in sorted({i["task"] for i in items}):
        idx = [n for n, i in enumerate(items) if i["task"] == task]
        settings = task_settings(policy, task)
        kwargs = {"max_new_tokens": settings["max_new_tokens"], "do_sample": settings["temperature"] > 0}
        if kwargs["do_sample"]:
            torch.manual_seed(0)
            kwargs["temperature"] = settings["temperature"]
        outputs = pipe([items[n]["messages"] for n in idx], batch_size=batch_size, return_full_text=False,
                       pad_token_id=pipe.tokenizer.pad_token_id, **kwargs)
        for n, out in zip(idx, outputs):
            replies[n] = out[0]["generated_text"].strip()
    return replies


def adapter_stack(bundle: Path, base_weights_sha256: str) -> list[Path]:
    """The bundle's adapter folders in stack order, once adapters.json names these base weights."""
    spec = json.loads((Path(bundle) / file_name("serving_bundle", "adapters")).read_text(encoding="utf-8"))
    trained_on = spec["base_model"]["weights_sha256"]
    if trained_on != base_weights_sha256:
        raise ValueError(f"{bundle}: its adapters were trained on base weights {trained_on[:16]}, not "
                         f"{base_weights_sha256[:16]}")
    return [Path(bundle) / a for a in spec["stack"]]


def adapter_model(bundle: Path, base_dir: Path):
    """Base (verified by sha256 against adapters.json) with the bundle's adapter stack applied."""
    from ftassets.lib.core.models import adapter_model, weights_sha256

    stack = adapter_stack(bundle, weights_sha256(Path(base_dir)))
    return adapter_model(str(base_dir), [str(a) for a in stack])


def bundle_files(bundle: Path) -> dict[str, str]:
    """Every file in the bundle with its sha256 (relative paths)."""
    root = Path(bundle)
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}



def model_answers(model, tokenizer, items: list[dict], policy: dict) -> list[str]:
    """Like pipeline_answers, through the project's batched generate (for the peft adapter stack)."""
    from ftassets.lib.core.generation import generate_by_task

    return generate_by_task(model, tokenizer, [{"task": i["task"], "prompt": i["messages"]} for i in items], policy)
