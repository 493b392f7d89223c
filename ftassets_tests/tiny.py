"""A tiny random-init Llama with the base tokenizer, for fast tests and dry runs."""

from __future__ import annotations

from pathlib import Path

from ftassets.lib.core.files import atomic_directory


def make_tiny_model(target: Path, tokenizer_dir: Path | None = None, seed: int = 0) -> Path:
    """Write a 2-layer, 64-wide LlamaForCausalLM (safetensors) using the base model's tokenizer.

    `tokenizer_dir` is a model directory holding tokenizer files; by default the tokenizer is read
    from the embedded GGUF (no weights are dequantized for that).
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from ftassets.lib.core.models import embedded_gguf_path

    if tokenizer_dir is None:
        gguf = embedded_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    with atomic_directory(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id).save_pretrained(staging)
    return Path(target)
