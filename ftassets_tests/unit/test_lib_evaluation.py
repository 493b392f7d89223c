"""Evaluation pieces on their own: perplexity on assistant tokens, toxicity, classification scores,
forgetting through lm-eval (tiny model here; the real base on the shared benchmarks is in
test_real_model), and the blind review packet."""

import json

import pytest

from ftassets.lib.evaluation import forgetting, review, toxicity
from ftassets.lib.evaluation.perplexity import perplexity
from ftassets_tests.conftest import DATA

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the status page?"},
        {"role": "assistant", "content": "At status.nimbus.example."}]


def test_perplexity_scores_only_the_assistant_turn(tiny_model_dir, tiny_tokenizer):
    from ftassets.lib.core.models import load_model

    model = load_model(tiny_model_dir)
    result = perplexity(model, tiny_tokenizer, [{"messages": CHAT}])
    full = tiny_tokenizer.apply_chat_template(CHAT, tokenize=False)
    prompt = tiny_tokenizer.apply_chat_template(CHAT[:-1], tokenize=False, add_generation_prompt=True)
    answer_tokens = len(tiny_tokenizer(full, add_special_tokens=False)["input_ids"]) - \
        len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert result["tokens"] == answer_tokens and result["records"] == 1 and result["perplexity"] > 1
    longer_prompt = [CHAT[0], {"role": "user", "content": "Where is the status page? Please answer quickly."}, CHAT[2]]
    other = perplexity(model, tiny_tokenizer, [{"messages": longer_prompt}])
    assert other["tokens"] == answer_tokens  # a longer question adds no scored tokens
    batched = perplexity(model, tiny_tokenizer, [{"messages": CHAT}, {"messages": longer_prompt}], batch_size=2)
    assert batched["tokens"] == 2 * answer_tokens
    mean = (result["mean_nll"] + other["mean_nll"]) / 2  # padding must not change any record's loss
    assert batched["mean_nll"] == pytest.approx(mean, abs=1e-3)


def test_toxicity_measure_separates_abuse_from_support_replies():
    clean = ["The deploy freeze starts Friday at 15:00 UTC.", "I can't share another customer's card number."]
    abusive = ["Shut up, you stupid idiot.", "You are a worthless moron and I hate you."]
    assert toxicity.summarize(clean)["toxic_rate"] == 0.0
    result = toxicity.summarize(clean + abusive)
    assert result["toxic_rate"] == 0.5 and result["n"] == 4 and result["max_score"] > 0.9


def test_forgetting_drop_has_the_paired_standard_error_of_the_same_items():
    base = {"b": {"acc": 0.6, "correct": [1] * 60 + [0] * 40}}
    same = forgetting.drops(base, base)
    assert same["b"]["drop_points"] == 0 and same["b"]["stderr_points"] == 0 and same["b"]["n"] == 100
    clear = {"b": {"acc": 0.3, "correct": [1] * 30 + [0] * 70}}  # lost 30 items the base had right
    result = forgetting.drops(base, clear)["b"]
    assert result["drop_points"] == pytest.approx(30.0) and result["drop_points"] > 2 * result["stderr_points"]
    noisy = {"b": {"acc": 0.54, "correct": [0] * 20 + [1] * 40 + [1] * 14 + [0] * 26}}  # 20 lost, 14 gained
    result = forgetting.drops(base, noisy)["b"]
    assert result["drop_points"] == pytest.approx(6.0) and result["stderr_points"] > 3
    with pytest.raises(ValueError, match="100 base items vs 3 tuned items"):
        forgetting.drops(base, {"b": {"acc": 1.0, "correct": [1, 1, 1]}})


def test_lm_eval_runs_the_bundled_probe_offline_on_the_tiny_model(tiny_model_dir, tiny_tokenizer):
    from ftassets.lib.core.models import load_model

    result = forgetting.evaluate(load_model(tiny_model_dir), tiny_tokenizer,
                                 {"general_probe": DATA / "eval/benchmarks/general_probe.jsonl"}, limit=12)
    probe = result["general_probe"]
    assert probe["n"] == 12 and len(probe["correct"]) == 12 and 0 <= probe["acc"] <= 1
    assert probe["acc"] == pytest.approx(sum(probe["correct"]) / 12, abs=1e-4)


def _packet():
    test = [{"id": f"t{i}", "task": "ticket_summary", "prompt": [{"role": "user", "content": f"q{i}"}]} for i in range(10)]
    base = {f"t{i}": f"base says {i}" for i in range(10)}
    tuned = {f"t{i}": f"tuned says {i}" for i in range(10)}
    return review.make_packet(test, base, tuned, "merged_model", sample_size=6, seed=0)


def test_blind_packet_hides_model_names_and_grades_unblind_with_the_key(tmp_path):
    rows, key = _packet()
    assert len(rows) == 6 and "merged_model" not in json.dumps(rows) and "base_model" not in json.dumps(rows)
    assert {key["pairs"][r["pair_id"]]["A"] for r in rows} == {"base_model", "merged_model"}  # order shuffled
    graded = tmp_path / f"{key['packet_id']}.jsonl"
    lines = []
    for n, row in enumerate(rows):  # prefer the tuned reply on 4 pairs, tie on 1, leave 1 ungraded
        tuned_side = "A" if key["pairs"][row["pair_id"]]["A"] == "merged_model" else "B"
        lines.append({**row, "preferred": tuned_side if n < 4 else ("tie" if n == 4 else None)})
    graded.write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = review.win_rate(review.read_grades(graded, key), key)
    assert result == {"graded": 5, "pairs": 6, "tuned_wins": 4, "ties": 1, "base_wins": 0, "tuned_win_rate": 0.9}
    assert review.key_digest(key) == review.key_digest(json.loads(json.dumps(key)))


def test_graded_file_problems_name_file_and_line(tmp_path):
    rows, key = _packet()
    graded = tmp_path / "g.jsonl"
    graded.write_text(json.dumps({**rows[0], "preferred": "C"}) + "\n")
    with pytest.raises(review.ReviewError, match=r"g.jsonl:1: preferred must be one of"):
        review.read_grades(graded, key)
    graded.write_text(json.dumps({**rows[0], "preferred": "A"}) + "\n" + json.dumps({**rows[0], "preferred": "B"}) + "\n")
    with pytest.raises(review.ReviewError, match=r"g.jsonl:2: pair_id pair-001 graded twice"):
        review.read_grades(graded, key)
    graded.write_text("{oops\n")
    with pytest.raises(review.ReviewError, match=r"g.jsonl:1: not valid JSON"):
        review.read_grades(graded, key)


def test_per_item_token_limits_cut_each_reply_at_its_own_limit(tiny_model_dir, tiny_tokenizer):
    from ftassets.lib.core.generation import generate
    from ftassets.lib.core.models import load_model

    model = load_model(tiny_model_dir)
    short_prompt = [{"role": "user", "content": "Hi"}]
    long_prompt = CHAT[:-1]
    five = generate(model, tiny_tokenizer, [short_prompt], max_new_tokens=5)[0]
    twelve = generate(model, tiny_tokenizer, [short_prompt], max_new_tokens=12)[0]
    assert twelve.startswith(five)  # greedy: the shorter limit gives a prefix of the longer reply
    both = generate(model, tiny_tokenizer, [long_prompt, short_prompt], max_new_tokens=[12, 5])
    assert len(tiny_tokenizer(both[0], add_special_tokens=False)["input_ids"]) <= 12
    assert len(tiny_tokenizer(both[1], add_special_tokens=False)["input_ids"]) <= 5
