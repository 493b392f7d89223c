"""Merging adapters into a standalone model, and proving the merge changed nothing.

"The adapter worked in the notebook but behaved differently after export" is caught here: the
parity check runs the same prompts through adapter-on-base and through the merged model and
compares logits and greedy outputs.
"""

from __future__ import annotations

from pathlib import Path

from ftassets.lib.core.files import atomic_directory, write_json_atomic
from ftassets.lib.core.models import adapter_model


def merge_adapters(base_model: str, adapters: list[str], target: Path, extra: dict[str, dict] | None = None) -> Path:
    """Write base + adapters (merged) as safetensors with tokenizer and generation config, and the
    `extra` JSON files ({file name: content}), all in one staging folder published in one rename."""
    from transformers import GenerationConfig

    from ftassets.lib.core.models import load_tokenizer

    stacked = adapter_model(base_model, adapters)
    merged = stacked.merge_and_unload(adapter_names=list(stacked.active_adapters))
    tokenizer = load_tokenizer(Path(base_model))
    with atomic_directory(target) as staging:
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            GenerationConfig.from_pretrained(base_model).save_pretrained(staging)
        except OSError:
            GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
                             ).save_pretrained(staging)
        for name, content in (extra or {}).items():
            write_json_atomic(staging / name, content)
    return Path(target)


def parity(reference, candidate, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 24) -> dict:
    """Max |logit difference| on the rendered prompts and whether greedy outputs are identical."""
    import torch

    from ftassets.lib.core.generation import generate

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    max_diff = 0.0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            a = reference(**ids).logits.float()
            b = candidate(**ids).logits.float()
            max_diff = max(max_diff, (a - b).abs().max().item())
    out_a = generate(reference, tokenizer, prompts, max_new_tokens=max_new_tokens)
    out_b = generate(candidate, tokenizer, prompts, max_new_tokens=max_new_tokens)
    mismatches = [i for i, (x, y) in enumerate(zip(out_a, out_b)) if x != y]
    return {"max_logit_diff": max_diff, "greedy_mismatches": len(mismatches), "prompts": len(prompts),
            "first_mismatch": mismatches[0] if mismatches else None}
