"""GGUF export of a released model (the merged safetensors of a kept bundle), for llama.cpp and Ollama.

Written with the maintained `gguf` package: its tensor-name map for the architecture, its writer, its
Q8_0 quantizer, and its SpecialVocab for merges and special tokens. The file carries the model's own
chat template, BOS/EOS/pad ids and byte-level BPE vocabulary, so a runtime renders prompts and stops
as the evaluated model did. Llama-architecture models only (SmolLM2 and the Llama family): another
architecture is refused by name rather than written wrong. Attention Q and K rows are reordered the way
llama.cpp's own converter does (its rotary layout); transformers' GGUF loader undoes it.

Whether an export answers like the evaluated model is measured, not assumed: `parity` reloads the file
with transformers (`gguf_file=`) and compares the rendered chat template, EOS and greedy replies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ftassets.lib.core.files import sha256_file
from ftassets.lib.core.models import weights_files

QUANTS = ("f16", "q8_0")


def write_gguf(model_dir: Path, target: Path, quant: str, name: str, pre: str = "default") -> dict:
    """Write `model_dir` (a merged llama model: config.json, model.safetensors, tokenizer files) as one GGUF
    file at `target` (atomically); returns what was written (tensors, bytes, sha256). `pre` is llama.cpp's
    pre-tokenizer name (the base GGUF's, e.g. "smollm", when the tokenizer is the base's)."""
    import gguf
    from safetensors import safe_open

    if quant not in QUANTS:
        raise ValueError(f"quant {quant!r}: one of {', '.join(QUANTS)}")
    model_dir, target = Path(model_dir), Path(target)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise ValueError(f"{model_dir}: GGUF export covers llama-architecture models; this is "
                         f"{config.get('model_type')!r}")
    layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    writer = gguf.GGUFWriter(str(partial), "llama")
    try:
        writer.add_name(name)
        writer.add_block_count(layers)
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(config["hidden_size"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(float(config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
        writer.add_vocab_size(config["vocab_size"])
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, model_dir, pre)
        count = 0
        for shard in weights_files(model_dir):
            with safe_open(str(shard), framework="pt") as weights:
                for key in weights.keys():
                    if key == "lm_head.weight" and config.get("tie_word_embeddings"):
                        continue  # tied: GGUF without output.weight reloads tied
                    new = names.get_name(key, try_suffixes=(".weight", ".bias"))
                    if new is None:
                        raise ValueError(f"{model_dir}: no GGUF name for tensor {key!r}")
                    data = weights.get_tensor(key).float().numpy()
                    if key.endswith("self_attn.q_proj.weight"):
                        data = _rotary_order(data, heads)
                    elif key.endswith("self_attn.k_proj.weight"):
                        data = _rotary_order(data, kv_heads)
                    _add_tensor(writer, new, data, quant)
                    count += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return {"file": target.name, "quant": quant, "tensors": count, "bytes": target.stat().st_size,
            "sha256": sha256_file(target)}


def _rotary_order(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order for Q/K (convert_hf_to_gguf.py LlamaModel.permute): within each head, the
    two rotary halves interleaved."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _add_tensor(writer, name: str, data: np.ndarray, quant: str) -> None:
    import gguf

    if data.ndim == 1:  # norms stay f32, as llama.cpp's converter keeps them
        writer.add_tensor(name, data.astype(np.float32))
    elif quant == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0),
                          raw_dtype=gguf.GGMLQuantizationType.Q8_0)


def _add_tokenizer(writer, model_dir: Path, pre: str) -> None:
    """The byte-level BPE vocabulary (tokenizer.json, token types from its added tokens), merges and special
    token ids (gguf's SpecialVocab), and the model's own chat template."""
    import gguf
    from transformers import AutoTokenizer

    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if spec["model"]["type"] != "BPE":
        raise ValueError(f"{model_dir}: GGUF export covers byte-level BPE tokenizers; this is {spec['model']['type']}")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    vocab = dict(spec["model"]["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    vocab.update({content: t["id"] for content, t in added.items()})
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for token, index in vocab.items():
        tokens[index] = token
        types[index] = (gguf.TokenType.CONTROL if added.get(token, {}).get("special")
                        else gguf.TokenType.USER_DEFINED if token in added else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=size)
    special.chat_template = None  # written below from the tokenizer that rendered the evaluated prompts
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def load_gguf(path: Path):
    """(model, tokenizer) read back from a GGUF file by transformers (dequantized to float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


def template_parity(tokenizer, exported_tokenizer, conversations: list[list[dict]]) -> list[str]:
    """What differs between the two tokenizers on these conversations: the rendered chat template, the token
    ids of the rendering, the EOS token; [] when nothing does."""
    problems = []
    if tokenizer.eos_token != exported_tokenizer.eos_token:
        problems.append(f"EOS {exported_tokenizer.eos_token!r}, not {tokenizer.eos_token!r}")
    for n, conversation in enumerate(conversations):
        a = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        b = exported_tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        if a != b:
            problems.append(f"conversation {n}: the chat template renders differently")
        elif tokenizer(a, add_special_tokens=False)["input_ids"] != exported_tokenizer(b, add_special_tokens=False)["input_ids"]:
            problems.append(f"conversation {n}: the rendered prompt tokenizes differently")
    return problems


CHATML_TEMPLATE = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
                   '<|im_start|>assistant\n')
SAMPLES = [[{"role": "user", "content": "Hello"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]]


def _chatml(messages: list[dict]) -> str:
    """What CHATML_TEMPLATE renders (Ollama's Go template, written out in Python)."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def ollama_modelfile(tokenizer, policy: dict, gguf_name: str) -> tuple[str | None, str]:
    """(an Ollama Modelfile for the GGUF file, how it was verified) or (None, why not). Its TEMPLATE is
    ChatML in Go template syntax; it is written only when the model's own chat template renders exactly
    what that template renders on sample conversations (with and without a system turn, the model's
    default system prompt becoming SYSTEM). Its parameters come from the decoding policy's default."""
    default_system = None
    rendered = tokenizer.apply_chat_template(SAMPLES[0], tokenize=False, add_generation_prompt=True)
    if rendered.startswith("<|im_start|>system\n") and rendered != _chatml(SAMPLES[0]):
        default_system = rendered[len("<|im_start|>system\n"):rendered.index("<|im_end|>")]
    for sample in SAMPLES:
        expected = _chatml(([{"role": "system", "content": default_system}] if default_system and
                            sample[0]["role"] != "system" else []) + sample)
        if tokenizer.apply_chat_template(sample, tokenize=False, add_generation_prompt=True) != expected:
            return None, "the chat template is not ChatML: no Ollama template is derived from it"
    settings = policy.get("default", {})
    stops = sorted({"<|im_end|>", tokenizer.eos_token} - {None})
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{CHATML_TEMPLATE}"""']
    if default_system:
        lines.append(f'SYSTEM """{default_system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines += [f"PARAMETER temperature {settings.get('temperature', 0.0)}",
              f"PARAMETER num_predict {settings.get('max_new_tokens', 64)}"]
    return "\n".join(lines) + "\n", f"ChatML verified on {len(SAMPLES)} sample conversations"
