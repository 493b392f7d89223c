import shutil

import pytest

from ftassets.lib.core import contract
from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.governance import license as governance
from ftassets_tests.conftest import DATA


def test_bundled_record_is_allowed_for_commercial_use():
    record = governance.load_base_model_record(DATA / "governance/base_model.yaml")
    policy = governance.load_license_policy(DATA / "governance/license_policy.yaml")
    assert governance.license_decision(record, policy) == (
        True, "license 'apache-2.0' is allowed for intended_use 'commercial'")


def test_non_commercial_license_is_refused_for_commercial_use():
    record = governance.load_base_model_record(DATA / "governance/base_model.yaml")
    policy = governance.load_license_policy(DATA / "governance/license_policy.yaml")
    swapped = governance.BaseModelRecord(**{**record.to_dict(), "license": "cc-by-nc-4.0",
                                            "known_risks": record.known_risks})
    allowed, reason = governance.license_decision(swapped, policy)
    assert not allowed and "cc-by-nc-4.0" in reason


def test_record_missing_fields_is_a_located_error(tmp_path):
    path = tmp_path / "base_model.yaml"
    path.write_text("model: x\nlicense: mit\n")
    with pytest.raises(GovernanceError, match=r"base_model.yaml: missing required field\(s\): revision"):
        governance.load_base_model_record(path)


def _contract(tmp_path, text):
    path = tmp_path / "eval_contract.yaml"  # loaded with data_dir=DATA so the decoding policy resolves
    path.write_text((DATA / "governance/eval_contract.yaml").read_text() + text)
    return path


def test_contract_rejects_unknown_metric_and_out_of_range(tmp_path):
    assert contract.load_contract(DATA / "governance/eval_contract.yaml").tuned_model == "merged_model"
    bad = (DATA / "governance/eval_contract.yaml").read_text().replace("gold_pass_rate_min: 0.5", "bleu_min: 0.5")
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(GovernanceError, match="thresholds.bleu_min: unknown metric"):
        contract.load_contract(tmp_path / "c.yaml", DATA)
    bad = (DATA / "governance/eval_contract.yaml").read_text().replace("task_success_min: 0.5", "task_success_min: 7")
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(GovernanceError, match=r"task_success_min: 7 out of range"):
        contract.load_contract(tmp_path / "c.yaml", DATA)
    with pytest.raises(GovernanceError, match="file not found"):
        contract.load_contract(tmp_path / "missing.yaml")
    bad = (DATA / "governance/eval_contract.yaml").read_text().replace(
        "models: [base_model, dpo_adapter, merged_model]", "models: [base_model, merged_model]")
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(GovernanceError, match="adapter_merged_task_gap_max needs merged_model and an adapter"):
        contract.load_contract(tmp_path / "c.yaml", DATA)


def test_contract_forgetting_benchmarks_resolve_with_hashes_or_fail_by_name(tmp_path):
    c = contract.load_contract(DATA / "governance/eval_contract.yaml", digest=lambda p: f"size {p.stat().st_size}")
    probe = DATA / "eval/benchmarks/general_probe.jsonl"
    assert c.benchmark_files["general_probe"].sha256 == f"size {probe.stat().st_size}"
    assert c.benchmark_paths() == {"general_probe": str(probe)}
    benchmarks = {**c.forgetting.benchmarks, "arc": "eval/benchmarks/arc_missing.jsonl"}
    with pytest.raises(GovernanceError, match="forgetting.benchmarks.arc: .*arc_missing.jsonl not found"):
        contract.resolve_benchmarks(benchmarks, lambda rel: DATA / rel, lambda p: "0")
    bad = (DATA / "governance/eval_contract.yaml").read_text().replace(
        "general_probe: eval/benchmarks/general_probe.jsonl", "general_probe: [not, a, path]")
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(GovernanceError, match="forgetting.benchmarks must map a task name to a JSONL"):
        contract.load_contract(tmp_path / "c.yaml", DATA)


def test_decoding_policy_file_is_validated_with_its_location(tmp_path):
    c = contract.load_contract(DATA / "governance/eval_contract.yaml")
    assert c.decoding["incident_triage"]["temperature"] == 0.0 and c.decoding["ticket_summary"]["temperature"] > 0
    policy = tmp_path / "governance/decoding_policy.yaml"
    shutil.copytree(DATA / "governance/schemas", tmp_path / "governance/schemas")  # the tasks' schema files
    path = policy.parent / "eval_contract.yaml"
    path.write_text((DATA / "governance/eval_contract.yaml").read_text())
    policy.write_text("default: {max_new_tokens: 40}\nticket_summary: {temperature: 5}\n")
    with pytest.raises(GovernanceError, match=r"decoding_policy.yaml: ticket_summary.temperature: 5 out of range"):
        contract.load_contract(path)
    policy.write_text("default: {max_new_tokens: 40, top_k: 3}\n")
    with pytest.raises(GovernanceError, match=r"decoding_policy.yaml: default: only"):
        contract.load_contract(path)
    policy.unlink()
    with pytest.raises(GovernanceError, match=r"decoding_policy.yaml: file not found"):
        contract.load_contract(path)
    path.write_text(path.read_text().replace("sample_size: auto", "sample_size: 0"))
    policy.write_text("default: {max_new_tokens: 40}\n")
    with pytest.raises(GovernanceError, match=r"human_review.sample_size must be an integer in \[1, 1000\]"):
        contract.load_contract(path)


def test_contract_object_holds_every_default_and_rejects_unknown_keys(tmp_path):
    c = contract.load_contract(DATA / "governance/eval_contract.yaml")
    assert (c.parity.max_logit_diff, c.parity.prompts) == (0.001, 8)
    # the demo sizes its review packet from power: a win rate 0.25 above the bar at 95% / 80%
    assert (c.human_review.sample_size, c.human_review.auto_size, c.human_review.blind_compare, c.forgetting.limit) == (
        32, True, True, 0)
    assert c.decoding_policy_sha256 == __import__("hashlib").sha256(
        (DATA / "governance/decoding_policy.yaml").read_bytes()).hexdigest()
    assert contract.EvalContract.model_validate_json(c.model_dump_json()) == c  # what contract.json round-trips
    text = (DATA / "governance/eval_contract.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text.replace("parity:\n", "partiy:\n"))
    with pytest.raises(GovernanceError, match="c.yaml: unknown key\\(s\\) partiy"):
        contract.load_contract(tmp_path / "c.yaml", DATA)
    (tmp_path / "c.yaml").write_text(text.replace("  prompts: 8", "  prompts: 8\n  promts: 4"))
    with pytest.raises(GovernanceError, match="c.yaml: parity.promts: Extra inputs are not permitted"):
        contract.load_contract(tmp_path / "c.yaml", DATA)
    sparse = "\n".join(line for line in text.splitlines() if not line.startswith(("parity:", "  max_logit", "  prompts")))
    (tmp_path / "c.yaml").write_text(sparse + "\n")
    assert contract.load_contract(tmp_path / "c.yaml", DATA).parity == contract.Parity()


def test_contract_selection_and_task_average_are_checked(tmp_path):
    c = contract.load_contract(DATA / "governance/eval_contract.yaml")
    assert c.selection.metric == "task_success" and c.selection.gold_stop is False
    assert c.task_success_average == "items" and all(t.weight == 1.0 for t in c.tasks.values())
    text = (DATA / "governance/eval_contract.yaml").read_text()
    cases = [(text.replace("  metric: task_success ", "  metric: bleu_score "), "selection.metric: Input should be"),
             (text.replace("  sample: 32 ", "  sample: 0 "), "selection.sample: Input should be greater than"),
             (text.replace("  gold_stop: false", "  gold_stopp: false"), "selection.gold_stopp: Extra inputs"),
             (text.replace("release_rule:", "task_success_average: mean\nrelease_rule:"),
              "task_success_average must be items or tasks, got 'mean'")]
    for variant, message in cases:
        (tmp_path / "c.yaml").write_text(variant)
        with pytest.raises(GovernanceError, match=message):
            contract.load_contract(tmp_path / "c.yaml", DATA)
