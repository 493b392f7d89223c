"""Adapter-vs-merged parity: passes for a correct merge, fails loudly for a changed export."""

import pytest
import torch

from ftassets.lib.core.models import adapter_model, load_model
from ftassets.lib.training import merge


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero random weights, so merging really changes the model."""
    from peft import LoraConfig, get_peft_model

    base = load_model(tiny_model_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False, task_type="CAUSAL_LM"))
    path = tmp_path_factory.mktemp("adapter") / "sft"
    peft_model.save_pretrained(path, safe_serialization=True)
    return path


PROMPTS = [[{"role": "user", "content": "What is the default log retention?"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is the API down?"}]]


def test_merged_model_matches_adapter_on_base(tiny_model_dir, tiny_tokenizer, random_adapter, tmp_path):
    merged_dir = merge.merge_adapters(str(tiny_model_dir), [str(random_adapter)], tmp_path / "merged")
    reference = adapter_model(str(tiny_model_dir), [str(random_adapter)])
    merged = load_model(merged_dir)
    result = merge.parity(reference, merged, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    assert result["max_logit_diff"] < 1e-4 and result["greedy_mismatches"] == 0
    # The merge is not a no-op: the adapter changes the base model's logits.
    base = merge.parity(load_model(tiny_model_dir), merged, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    assert base["max_logit_diff"] > 1e-3


def test_parity_detects_a_changed_export(tiny_model_dir, tiny_tokenizer, random_adapter, tmp_path):
    merged_dir = merge.merge_adapters(str(tiny_model_dir), [str(random_adapter)], tmp_path / "merged")
    broken = load_model(merged_dir)
    with torch.no_grad():
        broken.model.layers[0].mlp.down_proj.weight.add_(0.05)
    result = merge.parity(adapter_model(str(tiny_model_dir), [str(random_adapter)]), broken,
                          tiny_tokenizer, PROMPTS, max_new_tokens=8)
    assert result["max_logit_diff"] > 1e-3


def test_an_adapter_stack_applies_every_adapter_and_merges_to_the_same_model(tiny_model_dir, tiny_tokenizer,
                                                                            random_adapter, tmp_path):
    """SFT then DPO (trained on the SFT-merged model): the stack is both adapters live together; it
    equals the merge of both, and differs from the first adapter alone."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    on_top = get_peft_model(adapter_model(str(tiny_model_dir), [str(random_adapter)]).merge_and_unload(),
                            LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"],
                                       init_lora_weights=False, task_type="CAUSAL_LM"))
    second = tmp_path / "dpo"
    on_top.save_pretrained(second, safe_serialization=True)
    stack = [str(random_adapter), str(second)]
    live = adapter_model(str(tiny_model_dir), stack)
    assert list(live.active_adapters) == ["stack_0", "stack_1"]
    merged = load_model(merge.merge_adapters(str(tiny_model_dir), stack, tmp_path / "merged"))
    assert merge.parity(live, merged, tiny_tokenizer, PROMPTS, max_new_tokens=8)["max_logit_diff"] < 1e-4
    first_only = adapter_model(str(tiny_model_dir), stack[:1])
    assert merge.parity(first_only, merged, tiny_tokenizer, PROMPTS, max_new_tokens=8)["max_logit_diff"] > 1e-3
