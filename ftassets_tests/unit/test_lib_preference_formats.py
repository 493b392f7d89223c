"""lib/ unit tests: every preference format converts to one canonical record, and bad pairs are
quarantined with a reason instead of crashing the source."""

import json

import pytest

from ftassets.lib.core.models import count_chat_tokens
from ftassets.lib.curation import formats
from ftassets.lib.curation.validation import validate_sources

SYSTEM = {"role": "system", "content": "Be brief."}
CASES = {
    "trl_preference": {"prompt": "Port of the metrics agent?", "chosen": "9102.", "rejected": "No idea."},
    "trl_messages": {"prompt": [SYSTEM, {"role": "user", "content": "Port of the metrics agent?"}],
                     "chosen": [{"role": "assistant", "content": "9102."}],
                     "rejected": [{"role": "assistant", "content": "No idea."}]},
    "openai_dpo": {"input": {"messages": [SYSTEM, {"role": "user", "content": "Port of the metrics agent?"}]},
                   "preferred_output": [{"role": "assistant", "content": "9102."}],
                   "non_preferred_output": [{"role": "assistant", "content": "No idea."}]},
    "sharegpt_preference": {"conversations": [{"from": "human", "value": "Port of the metrics agent?"}],
                            "chosen": {"from": "gpt", "value": "9102."},
                            "rejected": {"from": "gpt", "value": "No idea."}},
    "hh_rlhf": {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Port of the metrics agent?"
                          "\n\nAssistant: 9102.",
                "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Port of the metrics agent?"
                            "\n\nAssistant: No idea."},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_preference_format_is_detected_and_converted(name):
    item = CASES[name]
    fmt = formats.detect_format(item)
    assert fmt == {"trl_messages": "trl_preference"}.get(name, name)
    prompt, chosen, rejected = formats.to_preference(item, fmt)
    assert (chosen, rejected) == ("9102.", "No idea.")
    assert prompt[-1] == {"role": "user", "content": "Port of the metrics agent?"}
    if name == "hh_rlhf":
        assert [m["role"] for m in prompt] == ["user", "assistant", "user"]


def _source(tmp_path, lines, fmt=None):
    folder = tmp_path / "raw" / "prefs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pairs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    spec = "license: cc-by-4.0\nprovenance: test\nkind: preference\n" + (f"format: {fmt}\n" if fmt else "")
    (folder / "source.yaml").write_text(spec)
    return formats.discover_sources(tmp_path / "raw")


def test_bad_pairs_are_quarantined_with_reasons_and_counts_add_up(tiny_tokenizer, tmp_path):
    bad_hh = {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}
    lines = [CASES["trl_preference"], CASES["openai_dpo"], CASES["hh_rlhf"],
             {"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."},
             {"prompt": "Who?", "chosen": "", "rejected": "Me."},
             {"prompt": "Who?", "chosen": {"role": "user", "content": "x"}, "rejected": "Me."},
             bad_hh, {"unrelated": 1}]
    sources = _source(tmp_path, lines)
    _, pref = validate_sources(sources, lambda m: count_chat_tokens(tiny_tokenizer, m), 1024, {"cc-by-4.0"})
    assert len(pref.kept) + len(pref.quarantined) == len(lines)
    assert len(pref.kept) == 3
    assert pref.reasons == {"chosen_equals_rejected": 1, "empty_assistant": 1, "hh_prompts_differ": 1,
                            "reply_not_assistant": 1, "unknown_format": 1}
    assert all(q["origin"]["line"] for q in pref.quarantined)
    kept = pref.kept[1]
    assert kept["messages"][0] == SYSTEM and kept["chosen"] == "9102."


def test_real_sharegpt_preference_file_converts(shared_data, tiny_tokenizer, tmp_path):
    folder = tmp_path / "raw" / "dpo_demo"
    folder.mkdir(parents=True)
    (folder / "pairs.json").write_bytes((shared_data / "preference/dpo_en_demo.json").read_bytes())
    (folder / "source.yaml").write_text("license: apache-2.0\nprovenance: LLaMA-Factory dpo_en_demo\nkind: preference\n")
    _, pref = validate_sources(formats.discover_sources(tmp_path / "raw"),
                               lambda m: count_chat_tokens(tiny_tokenizer, m), 4096, {"apache-2.0"})
    items = json.loads((shared_data / "preference/dpo_en_demo.json").read_text())
    assert len(pref.kept) + len(pref.quarantined) == len(items) == 300
    assert len(pref.kept) >= 280, pref.reasons
    assert set(pref.reasons) <= {"too_long", "chosen_equals_rejected"}
    first = pref.kept[0]
    assert first["messages"][-1]["content"] == items[0]["conversations"][-1]["value"]
    assert first["chosen"] == items[0]["chosen"]["value"]


def test_dpo_prompts_get_the_system_turn_the_sft_data_used(tmp_path):
    """No demo text in the recipe: a preference prompt without a system turn gets the SFT split's most
    common one (or the explicit setting), so DPO sees prompts as SFT did."""
    import json as _json

    from ftassets.lib.training.dpo import read_pairs, sft_system_prompt

    sft = tmp_path / "train_split.jsonl"
    rows = [{"messages": [{"role": "system", "content": "Be a router."}, {"role": "user", "content": "q"},
                          {"role": "assistant", "content": "a"}]}] * 3
    rows += [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 5
    sft.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    assert sft_system_prompt(str(sft)) == "Be a router."  # the most common system turn; turn-less rows don't count
    assert sft_system_prompt(None) is None
    pairs = tmp_path / "pairs_split.jsonl"
    pairs.write_text(_json.dumps({"messages": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}) + "\n")
    assert read_pairs(str(pairs), "Be a router.")[0]["prompt"][0] == {"role": "system", "content": "Be a router."}
    assert read_pairs(str(pairs), None)[0]["prompt"][0]["role"] == "user"
