"""lib/release/export.py: a merged llama model written as GGUF (f16, q8_0) reads back through transformers with
the same weights (to the precision's error), chat template, EOS and tokens; a wrong template is caught."""

import json
import shutil

import pytest

from ftassets.lib.core.models import load_model, load_tokenizer
from ftassets.lib.release.export import load_gguf, template_parity, write_gguf

CONVERSATIONS = [[{"role": "user", "content": "How do I reset my VPN token?"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Triage: runners down."}]]


@pytest.mark.parametrize("quant, tolerance", [("f16", 1e-3), ("q8_0", 2e-2)])
def test_a_gguf_export_reads_back_with_the_same_weights_template_and_tokens(tmp_path, tiny_model_dir, quant, tolerance):
    written = write_gguf(tiny_model_dir, tmp_path / f"model-{quant}.gguf", quant, "tiny")
    assert written["tensors"] > 0 and len(written["sha256"]) == 64 and not list(tmp_path.glob(".*partial"))
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    exported, exported_tokenizer = load_gguf(tmp_path / f"model-{quant}.gguf")
    ours, theirs = model.state_dict(), exported.state_dict()
    assert set(ours) == set(theirs)
    worst = max(float((ours[k] - theirs[k]).abs().max()) for k in ours)
    assert worst <= tolerance, worst  # Q and K rows too: their rotary reordering is undone on load
    assert template_parity(tokenizer, exported_tokenizer, CONVERSATIONS) == []


def test_a_wrong_chat_template_or_another_architecture_is_caught(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    template = broken / "chat_template.jinja"
    if template.is_file():
        template.write_text(template.read_text().replace("<|im_start|>", "<|im_begin|>"))
    else:
        config = json.loads((broken / "tokenizer_config.json").read_text())
        config["chat_template"] = config["chat_template"].replace("<|im_start|>", "<|im_begin|>")
        (broken / "tokenizer_config.json").write_text(json.dumps(config))
    write_gguf(broken, tmp_path / "broken.gguf", "f16", "broken")
    _, exported_tokenizer = load_gguf(tmp_path / "broken.gguf")
    problems = template_parity(load_tokenizer(tiny_model_dir), exported_tokenizer, CONVERSATIONS)
    assert problems == ["conversation 0: the chat template renders differently",
                        "conversation 1: the chat template renders differently"]
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="covers llama-architecture models; this is 'gpt2'"):
        write_gguf(broken, tmp_path / "other.gguf", "f16", "other")
    with pytest.raises(ValueError, match="quant 'q4_k'"):
        write_gguf(tiny_model_dir, tmp_path / "q.gguf", "q4_k", "tiny")
