"""lib/ unit tests for formats, validation, dedup and splits on the bundled sample data."""

import json

from ftassets.lib.core.models import count_chat_tokens
from ftassets.lib.curation import dedup, formats, splits
from ftassets.lib.curation.validation import role_order_reason, validate_sources
from ftassets_tests.conftest import DATA

ALLOWED = {"cc-by-4.0", "apache-2.0"}  # the sample sources: support chats, base-model replay


def _validate(tokenizer, sources=None, max_tokens=1024):
    sources = sources or formats.discover_sources(DATA / "raw")
    return validate_sources(sources, lambda m: count_chat_tokens(tokenizer, m), max_tokens, ALLOWED)


def test_sample_data_is_validated_with_every_rejection_located(tiny_tokenizer):
    sft, pref = _validate(tiny_tokenizer)
    raw_lines = sum(1 for name in ("support_chat/examples.jsonl", "general_replay/replay.jsonl")
                    for line in (DATA / "raw" / name).read_bytes().split(b"\n") if line.strip())
    assert len(sft.kept) + len(sft.quarantined) == raw_lines == 432 + 93
    assert sft.reasons == {"bad_role_order": 2, "duplicate_id": 1, "empty_assistant": 1, "invalid_json": 1,
                           "invalid_utf8": 1, "missing_messages": 1, "too_long": 1, "unknown_role": 1}
    bad = {q["id"]: q for q in sft.quarantined}
    assert bad["sc-bad-02"]["reason"] == "unknown_role"
    assert bad["sc-bad-02"]["origin"]["file"] == "raw/support_chat/examples.jsonl"
    assert isinstance(bad["sc-bad-02"]["origin"]["line"], int)
    assert len(pref.kept) == 104 and not pref.quarantined
    assert {r["meta"]["task"] for r in sft.kept} == {"incident_triage", "ticket_summary", "platform_qa", "policy_refusal",
                                                     "general_replay"}


def test_do_not_train_and_unlicensed_sources_never_pass(tiny_tokenizer, tmp_path):
    folder = tmp_path / "raw" / "scraped"
    folder.mkdir(parents=True)
    (folder / "data.jsonl").write_text(json.dumps({"prompt": "hi", "response": "hello"}) + "\n")
    (folder / "source.yaml").write_text("license: cc-by-nc-4.0\nprovenance: web\nkind: sft\n")
    sft, _ = _validate(tiny_tokenizer, formats.discover_sources(tmp_path / "raw"))
    assert sft.kept == [] and sft.reasons == {"license_not_allowed": 1}
    (folder / "source.yaml").write_text("license: cc-by-4.0\nprovenance: web\nkind: sft\ndo_not_train: true\n")
    sft, _ = _validate(tiny_tokenizer, formats.discover_sources(tmp_path / "raw"))
    assert sft.kept == [] and sft.reasons == {"do_not_train": 1}


def test_alpaca_and_sharegpt_convert_to_messages(shared_data):
    alpaca = json.loads((shared_data / "sft/alpaca_en_demo.json").read_text())[0]
    assert formats.detect_format(alpaca) == "alpaca"
    messages = formats.to_messages(alpaca, "alpaca")
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["content"] == alpaca["output"]
    item = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    assert formats.to_messages(item, "sharegpt") == [{"role": "user", "content": "hi"},
                                                     {"role": "assistant", "content": "hello"}]


def test_role_order():
    msg = lambda r: {"role": r, "content": "x"}  # noqa: E731
    assert role_order_reason([msg("system"), msg("user"), msg("assistant")]) is None
    assert role_order_reason([msg("user"), msg("assistant"), msg("user"), msg("assistant")]) is None
    assert role_order_reason([msg("assistant"), msg("user")]) == "bad_role_order"
    assert role_order_reason([msg("user"), msg("assistant"), msg("assistant")]) == "bad_role_order"
    assert role_order_reason([msg("tool"), msg("assistant")]) == "unknown_role"


def _rec(i, user, answer="ok"):
    return {"id": i, "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def test_dedup_drops_exact_and_near_duplicates_with_pointer():
    text = "Since 10:00 UTC, the primary Postgres cluster is completely down for all customers."
    records = [_rec("a", text), _rec("b", text), _rec("c", text.replace(" ", "  ", 2).rstrip(".") + "!"),
               _rec("d", "What is the default log retention on Nimbus?")]
    kept, dropped = dedup.deduplicate(records, threshold=0.9)
    assert [r["id"] for r in kept] == ["a", "d"]
    assert [(d["id"], d["reason"], d["duplicate_of"]) for d in dropped] == [
        ("b", "exact_duplicate", "a"), ("c", "exact_duplicate", "a")]  # whitespace/punctuation normalize away
    near = _rec("e", text.replace("all customers", "all our customers"))  # 5-gram Jaccard 0.90
    unrelated = _rec("f", text.replace("primary Postgres cluster", "VPN gateway in eu-west"))  # Jaccard 0.55
    kept, dropped = dedup.deduplicate([records[0], near, unrelated], threshold=0.8)
    assert [(d["id"], d["reason"], d["duplicate_of"]) for d in dropped] == [("e", "near_duplicate", "a")]
    assert [r["id"] for r in kept] == ["a", "f"]
    assert 0.8 <= dropped[0]["similarity"] < 1.0


def test_a_frozen_test_member_is_kept_whatever_sorts_first():
    """New data whose folder sorts first and copies a frozen test item must not evict the test item."""
    text = "Since 10:00 UTC, the primary Postgres cluster is completely down for all customers."
    records = [_rec("aaa_new-1", text), _rec("aaa_new-2", text.replace("all customers", "all our customers")),
               _rec("support-7", text), _rec("support-8", "Which port does the metrics agent listen on?")]
    kept, dropped = dedup.deduplicate(records, threshold=0.8)
    assert "support-7" in [d["id"] for d in dropped]  # source order alone would drop the test member
    kept, dropped = dedup.deduplicate(records, threshold=0.8, protected={"support-7"})
    assert [r["id"] for r in kept] == ["support-7", "support-8"]  # still in source order
    assert [(d["id"], d["reason"], d["duplicate_of"]) for d in dropped] == [
        ("aaa_new-1", "exact_duplicate", "support-7"), ("aaa_new-2", "near_duplicate", "support-7")]


def test_cluster_report_names_kept_and_removed_with_similarity():
    text = "Since 10:00 UTC, the primary Postgres cluster is completely down for all customers."
    records = [_rec("a", text), _rec("b", text), _rec("c", text.replace("all customers", "all our customers")),
               _rec("d", "Which port does the metrics agent listen on?"), _rec("e", "which port does the metrics agent listen on")]
    kept, dropped = dedup.deduplicate(records, threshold=0.8)
    report = dedup.cluster_report(dropped)
    assert [(c["kept_id"], c["size"]) for c in report] == [("a", 3), ("d", 2)]
    assert [(r["id"], r["reason"]) for r in report[0]["removed"]] == [("b", "exact_duplicate"), ("c", "near_duplicate")]
    assert report[0]["removed"][0]["similarity"] == 1.0 and report[0]["removed"][1]["similarity"] < 1.0
    assert len(kept) + sum(c["size"] - 1 for c in report) == len(records)


def test_preference_pairs_deduplicate_on_prompt_and_both_replies():
    def pair(i, chosen, rejected="Unsure."):
        return {"id": i, "messages": [{"role": "user", "content": "What port does the metrics agent use?"}],
                "chosen": chosen, "rejected": rejected}
    pairs = [pair("p1", "Port 9102."), pair("p2", "Port 9102."), pair("p3", "It listens on 9102."),
             pair("p4", "Port 9102.", rejected="Port 80.")]
    kept, dropped = dedup.deduplicate(pairs, text_of=dedup.pair_text)
    assert [p["id"] for p in kept] == ["p1", "p3", "p4"]  # same prompt, different replies: distinct data
    assert [(d["id"], d["duplicate_of"]) for d in dropped] == [("p2", "p1")]


def test_decontamination_drops_copies_of_held_out_prompts():
    index = dedup.ContaminationIndex([("test:1", "How long are logs kept by default on the Nimbus platform?")])
    kept, dropped = dedup.decontaminate([_rec("x", "How long are logs kept by default on the Nimbus platform"),
                                         _rec("y", "Which port does the metrics agent listen on?")], index)
    assert [r["id"] for r in kept] == ["y"] and dropped[0]["duplicate_of"] == "test:1"


def test_decontamination_compares_items_not_their_shared_instruction_template():
    template = ("Triage this incident. Reply with JSON only, with the keys \"severity\" (a number: the higher, "
                "the more urgent), \"component\" (database, auth, network, storage, billing or ci) and "
                "\"needs_oncall\" (true or false).\n")
    incidents = ["After the last deploy, deploy jobs is broken for a single team.",
                 "Since 08:45 UTC today, persistent volumes fails for one user only.",
                 "As of this morning, file uploads shows a cosmetic glitch in the UI.",
                 "Right now, the build runners has a problem affecting just one account."]
    index = dedup.ContaminationIndex([(f"gold:{n}", template + text) for n, text in enumerate(incidents)])
    assert len(index.boilerplate) == 1  # the instruction line, seen in all 4 held-out prompts
    # Whole-text Jaccard of two different incidents under the template is ~0.8: without the template
    # rule this other incident would be dropped as a copy.
    other = template + "After the last deploy, the OAuth callback is broken for a single team."
    assert dedup.minhash(other).jaccard(dedup.minhash(template + incidents[0])) >= 0.75
    copied = template + "After the last deploy, deploy jobs is broken for a single team!"
    reworded = "Please triage: after the last deploy, deploy jobs is broken for a single team"
    kept, dropped = dedup.decontaminate([_rec("other", other), _rec("copy", copied), _rec("reworded", reworded)], index)
    assert [r["id"] for r in kept] == ["other"]
    assert {d["id"]: d["duplicate_of"] for d in dropped} == {"copy": "gold:0", "reworded": "gold:0"}


def test_split_assignment_is_stable_when_data_grows():
    ids = [f"id-{i}" for i in range(300)]
    before = {i: splits.assign_split(i, 7, 0.15, 0.1) for i in ids}
    after = {i: splits.assign_split(i, 7, 0.15, 0.1) for i in ids + [f"new-{i}" for i in range(50)]}
    assert all(after[i] == before[i] for i in ids)
    assert 25 < sum(v == "test" for v in before.values()) < 70
    assert splits.assign_split("id-1", 7, 0.15, 0.1, hint="test") == "test"
