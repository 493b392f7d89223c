import pytest

from ftassets.lib import contract, governance
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
    with pytest.raises(governance.GovernanceError, match=r"base_model.yaml: missing required field\(s\): revision"):
        governance.load_base_model_record(path)


def _contract(tmp_path, text):
    path = tmp_path / "eval_contract.yaml"
    path.write_text((DATA / "governance/eval_contract.yaml").read_text() + text)
    return path


def test_contract_rejects_unknown_metric_and_out_of_range(tmp_path):
    assert contract.load_contract(DATA / "governance/eval_contract.yaml")["tuned_model"] == "merged_model"
    bad = (DATA / "governance/eval_contract.yaml").read_text().replace("gold_pass_rate_min: 0.5", "bleu_min: 0.5")
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(governance.GovernanceError, match="thresholds.bleu_min: unknown metric"):
        contract.load_contract(tmp_path / "c.yaml")
    bad = (DATA / "governance/eval_contract.yaml").read_text().replace("task_success_min: 0.5", "task_success_min: 7")
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(governance.GovernanceError, match=r"task_success_min: 7 out of range"):
        contract.load_contract(tmp_path / "c.yaml")
    with pytest.raises(governance.GovernanceError, match="file not found"):
        contract.load_contract(tmp_path / "missing.yaml")


def test_contract_forgetting_benchmarks_resolve_with_hashes_or_fail_by_name(tmp_path):
    c = contract.load_contract(DATA / "governance/eval_contract.yaml")
    files = contract.resolve_benchmarks(c, lambda rel: DATA / rel, lambda p: p.stat().st_size)
    assert set(files) == {"general_probe"} and files["general_probe"]["sha256"] > 0
    c["forgetting"]["benchmarks"]["arc"] = "eval/benchmarks/arc_missing.jsonl"
    with pytest.raises(governance.GovernanceError, match="forgetting.benchmarks.arc: .*arc_missing.jsonl not found"):
        contract.resolve_benchmarks(c, lambda rel: DATA / rel, lambda p: 0)
    bad = (DATA / "governance/eval_contract.yaml").read_text().replace(
        "general_probe: eval/benchmarks/general_probe.jsonl", "general_probe: [not, a, path]")
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(governance.GovernanceError, match="forgetting.benchmarks must map a task name to a JSONL"):
        contract.load_contract(tmp_path / "c.yaml")


def _model(success, schema, gold, refusal, over):
    return {"test": {"task_success": success, "schema_validity": schema}, "gold": {"pass_rate": gold},
            "safety": {"refusal_rate": refusal, "over_refusal_rate": over}}


def test_gate_releases_only_when_every_rule_passes():
    c = contract.load_contract(DATA / "governance/eval_contract.yaml")
    report = {"models": {"base_model": _model(0.2, 0.0, 0.3, 0.5, 0.1),
                         "merged_model": _model(0.8, 1.0, 0.9, 0.55, 0.1)}, "adapter_merged_task_gap": 0.0}
    assert contract.evaluate_gate(c, report)["decision"] == "release"
    report["models"]["merged_model"]["safety"]["refusal_rate"] = 0.3  # 20 points less refusal than base
    gate = contract.evaluate_gate(c, report)
    assert gate["decision"] == "reject"
    assert gate["reasons"] == ["refusal_regression_max: 0.2 vs threshold 0.1"]
