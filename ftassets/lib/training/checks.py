"""Config checks both training recipes run before any training step: a bad setting fails in
seconds with a message that names the field, not after minutes of training or with a stack trace
from deep inside trl.

`check_settings` needs nothing but the config (the Dagster assets call it before launching);
`check_against_model` needs the base model's config and module names; `check_qlora_backend`
proves bitsandbytes can quantize and de-quantize on this machine."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")


class RecipeConfigError(ValueError):
    """A recipe setting that cannot work; the message starts with the field name."""


def _fail(field: str, value, why: str):
    raise RecipeConfigError(f"{field}={value!r}: {why}")


def check_settings(cfg) -> None:
    """Range checks on the fields a recipe config has (SFT and DPO share most of them)."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    get = lambda name: getattr(cfg, name)  # noqa: E731
    positive_int = ("lora_r", "micro_batch_size", "gradient_accumulation_steps", "eval_steps", "max_length",
                    "logging_steps")
    for name in positive_int:
        if name in fields and (not isinstance(get(name), int) or get(name) < 1):
            _fail(name, get(name), "must be an integer >= 1")
    for name in ("lora_alpha", "learning_rate", "beta"):
        if name in fields and not get(name) > 0:
            _fail(name, get(name), "must be > 0")
    if "lora_dropout" in fields and not 0 <= cfg.lora_dropout < 1:
        _fail("lora_dropout", cfg.lora_dropout, "must be in [0, 1)")
    if "warmup_ratio" in fields and not 0 <= cfg.warmup_ratio < 1:
        _fail("warmup_ratio", cfg.warmup_ratio, "must be a share of the steps in [0, 1)")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        _fail("max_steps", cfg.max_steps, "must be -1 (use epochs) or >= 1")
    if cfg.max_steps == -1 and not cfg.epochs > 0:
        _fail("epochs", cfg.epochs, "must be > 0 when max_steps is -1")
    if cfg.precision not in ("auto", "bf16", "fp16", "fp32"):
        _fail("precision", cfg.precision, "must be auto, bf16, fp16 or fp32")
    if cfg.lr_scheduler not in SCHEDULERS:
        _fail("lr_scheduler", cfg.lr_scheduler, f"must be one of {', '.join(SCHEDULERS)}")
    if not cfg.target_modules.strip() or any(not t.strip() for t in cfg.target_modules.split(",")):
        _fail("target_modules", cfg.target_modules, "must be 'all-linear' or comma-separated module names")
    if "lora_top_layers" in fields and (not isinstance(cfg.lora_top_layers, int) or cfg.lora_top_layers < 0):
        _fail("lora_top_layers", cfg.lora_top_layers, "must be an integer >= 0 (0: adapters on every layer)")
    if "early_stopping_patience" in fields and cfg.early_stopping_patience < 0:
        _fail("early_stopping_patience", cfg.early_stopping_patience, "must be >= 0 (0 turns early stopping off)")


def check_precision_device(precision: str) -> None:
    import torch

    if precision == "fp16" and not torch.cuda.is_available():
        _fail("precision", precision, "fp16 with a loss scaler needs a CUDA device; use bf16 or fp32 on CPU")


def check_against_model(cfg, model_dir: str) -> None:
    """Sequence length within the model's context window (read from its config.json)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    context = config.get("max_position_embeddings")
    if context and cfg.max_length > context:
        _fail("max_length", cfg.max_length, f"above the base model's context window of {context} tokens")
    layers = config.get("num_hidden_layers")
    if layers and getattr(cfg, "lora_top_layers", 0) > layers:
        _fail("lora_top_layers", cfg.lora_top_layers, f"the base model has {layers} decoder layers")


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
