"""Checks a recipe runs before any training step, for what its settings object cannot know alone:
the host (fp16 needs CUDA, packing needs flash-attn, QLoRA needs a working bitsandbytes backend) and
the base model (context window, layer count, module names). A bad setting fails in seconds with a
message that names the field, not after minutes of training or with a stack trace from inside trl.
Range checks on the settings themselves are declared on `settings.py`'s models."""

from __future__ import annotations

import json
from pathlib import Path

from ftassets.lib.training.settings import fail as _fail


def check_precision_device(precision: str) -> None:
    import torch

    if precision == "fp16" and not torch.cuda.is_available():
        _fail("precision", precision, "fp16 with a loss scaler needs a CUDA device; use bf16 or fp32 on CPU")


def check_against_model(settings, model_dir: str) -> None:
    """Sequence length within the model's context window (read from its config.json)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())  # transformers' model config
    context = config.get("max_position_embeddings")
    if context and settings.max_length > context:
        _fail("max_length", settings.max_length, f"above the base model's context window of {context} tokens")
    layers = config.get("num_hidden_layers")
    if layers and settings.lora_top_layers > layers:
        _fail("lora_top_layers", settings.lora_top_layers, f"the base model has {layers} decoder layers")


def linear_layer_names(model) -> set[str]:
    """Leaf names of the model's linear layers inside its decoder layers (the output head excluded)."""
    import torch

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if ".layers." in name and (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Linear4bit")}


def check_target_modules(model, target_modules: str) -> None:
    """Every named target must be a linear layer of the model (peft would fail late, or match nothing)."""
    if target_modules == "all-linear":
        return
    linear = linear_layer_names(model)
    unknown = sorted({t.strip() for t in target_modules.split(",")} - linear)
    if unknown:
        _fail("target_modules", target_modules, f"no linear layer named {', '.join(unknown)} in the base model "
                                                f"(it has {', '.join(sorted(linear))})")


def check_qlora_backend() -> None:
    """QLoRA needs a bitsandbytes backend that quantizes to NF4 and back on this device."""
    try:
        import bitsandbytes.functional as bnbf
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        x = torch.randn(64, 64, device=device)
        packed, state = bnbf.quantize_4bit(x, quant_type="nf4")
        error = (bnbf.dequantize_4bit(packed, state) - x).abs().max().item()
    except Exception as exc:  # any import or kernel failure means the backend is unusable here
        _fail("qlora", True, f"bitsandbytes has no working 4-bit backend on this machine ({type(exc).__name__}: {exc})")
    if not error < 1.0:
        _fail("qlora", True, f"bitsandbytes NF4 round trip is wrong on this machine (max error {error:.3f})")


def check_packing(packing: bool) -> None:
    """trl packs best-fit into padding-free batches, which only FlashAttention 2/3 (CUDA) attends
    correctly; with sdpa the packed examples would attend across each other's boundaries."""
    import importlib.util

    import torch

    if packing and not (torch.cuda.is_available() and importlib.util.find_spec("flash_attn")):
        _fail("packing", True, "padding-free packing needs CUDA and the flash-attn package; on this machine "
                               "keep packing off (group_by_length already removes most padding)")


def check_lengths(tokenizer, conversations: list[list[dict]], max_length: int, what: str) -> None:
    """Every training conversation fits `max_length` tokens as the chat template renders it: trl would
    cut a longer one silently (mid-answer, or with no answer left to learn from). One length policy
    from curation to training: curation quarantines what exceeds its `max_tokens` as `too_long`; this
    refuses a run whose limit is lower than what curation let through, and says what to change."""
    from ftassets.lib.core.models import count_chat_tokens

    lengths = [count_chat_tokens(tokenizer, c) for c in conversations]  # counted as curation counts them
    longer = [n for n in lengths if n > max_length]
    if longer:
        _fail("max_length", max_length,
              f"{len(longer)} of {len(lengths)} {what} are longer (longest {max(longer)} tokens) and would be cut; "
              f"raise max_length to at least {max(longer)}, or set `max_tokens: {max_length}` in the data folder's "
              f"governance/curation.yaml so curation quarantines them as too_long")
