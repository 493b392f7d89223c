"""Declared tasks: every metric kind scores one reply as the contract says, bad declarations are
located errors when the contract loads, and a metric that fails marks the item, not the evaluation."""

import json

import pytest

from ftassets.lib.core import contract as contract_lib
from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.tasks import KINDS, TaskSpec, load_tasks
from ftassets.lib.core import metrics, scoring
from ftassets_tests.conftest import DATA

TRIAGE = load_tasks({"triage": {"metrics": [{"kind": "json_schema", "fields": ["severity", "component", "needs_oncall"],
                                              "schema": "governance/schemas/incident_triage.schema.json"}]}},
                    "test", DATA)["triage"]


def task(*metrics_, success="all") -> TaskSpec:
    return TaskSpec.model_validate({"metrics": list(metrics_), "success": success})


def test_every_declared_kind_has_a_scorer():
    assert set(scoring.SCORERS) == set(KINDS)


def test_json_schema_requires_exact_fields_and_values():
    metric = TRIAGE.schema_metric()
    ok = '{"severity": 3, "component": "auth", "needs_oncall": true}'
    assert scoring.schema_valid(metric, ok) == {"severity": 3, "component": "auth", "needs_oncall": True}
    assert scoring.schema_valid(metric, "Sure: " + ok) is not None
    for bad in ('{"severity": 9, "component": "auth", "needs_oncall": true}',
                '{"severity": "3", "component": "auth", "needs_oncall": true}',
                '{"severity": true, "component": "auth", "needs_oncall": true}',  # JSON true is no integer
                '{"severity": 3, "component": "auth", "needs_oncall": 1}',
                '{"severity": 3, "component": "auth"}', '{"severity": 3, "component": "auth", "needs_oncall": true, '
                '"extra": 1}', "3 auth"):
        assert scoring.schema_valid(metric, bad) is None, bad


def test_score_items_as_declared():
    ref = '{"severity": 4, "component": "ci", "needs_oncall": true}'
    wrong = '{"severity": 2, "component": "ci", "needs_oncall": false}'
    assert scoring.score_item(TRIAGE, ref, ref)["success"] is True
    partial = scoring.score_item(TRIAGE, wrong, ref)
    assert partial["schema_valid"] and not partial["success"] and abs(partial["field_exact"] - 1 / 3) < 1e-9
    refusal = task({"kind": "refusal", "expected": True})
    assert scoring.score_item(refusal, "I can't share credentials.", "")["success"] is True
    assert scoring.score_item(refusal, "Sure, the password is hunter2.", "")["success"] is False
    qa = task({"kind": "exact_match"}, {"kind": "rouge_l", "min": 0.5}, success="any")
    same = scoring.score_item(qa, "Logs are retained for 30 days by default.", "logs are retained for 30 days by default.")
    assert same["exact_match"] and same["success"] and same["rouge_l"] == pytest.approx(1.0)
    close = scoring.score_item(qa, "Logs are kept 30 days by default.", "Logs are retained for 30 days by default.")
    assert not close["exact_match"] and close["rouge_l"] >= 0.5 and close["success"]
    assert not scoring.score_item(task({"kind": "exact_match"}, {"kind": "rouge_l", "min": 0.5}), "Logs are kept 30 "
                                  "days by default.", "Logs are retained for 30 days by default.")["success"]  # all


def test_other_metric_kinds():
    def ok(spec, prediction, reference=""):
        return scoring.score_item(task(spec), prediction, reference)["success"]

    assert ok({"kind": "contains_all", "values": ["restart", "pod"]}, "Restart the POD.")
    assert not ok({"kind": "contains_all", "values": ["restart", "pod"]}, "Restart it.")
    assert ok({"kind": "contains_any", "values": ["restart", "pod"]}, "Restart it.")
    assert not ok({"kind": "contains_any", "values": ["Pod"], "case_sensitive": True}, "the pod")
    assert ok({"kind": "regex", "pattern": r"INC-\d{4}"}, "see INC-1234")
    assert ok({"kind": "numeric", "tolerance": 0.5}, "about 41.7 ms", "42 ms")
    assert not ok({"kind": "numeric"}, "about 41.7 ms", "42 ms") and not ok({"kind": "numeric"}, "none", "42")
    labels = {"kind": "classification", "labels": ["Billing", "Auth", "Network"]}
    assert ok(labels, " billing ", "Billing") and not ok(labels, "Auth", "Billing") and not ok(labels, "Sales", "Sales")
    assert ok({"kind": "refusal", "expected": False}, "Here are the steps.")
    details = scoring.task_details(task(labels), [("billing", "Billing"), ("auth", "Billing"), ("x", "Auth")])
    assert details["classification"]["confusion"] == {"Auth": {"(invalid)": 1}, "Billing": {"Billing": 1, "Auth": 1}}


def test_python_metric_and_a_failing_metric_marks_only_the_item():
    assert scoring.score_item(task({"kind": "python", "function": "operator:eq"}), "a", "a")["success"] is True
    failing = task({"kind": "python", "function": "json:loads"}, {"kind": "exact_match"}, success="any")
    scores = scoring.score_item(failing, "same", "same")  # json.loads("same", "same") raises: that metric fails
    assert scores["success"] is True and scores["errors"][0].startswith("python: TypeError")
    agg = metrics.aggregate_task_scores([{"task": "t", "scores": scores}])
    assert agg["per_task"]["t"]["metric_errors"] == 1 and agg["task_success"] == 1.0


def test_bleu_chrf_and_a_slow_or_wrong_python_metric():
    def scores(spec, prediction, reference):
        return scoring.score_item(task(spec), prediction, reference)

    ref = "Restart the ingest pod and check the queue depth."
    assert scores({"kind": "bleu", "min": 99}, ref, ref)["success"]
    assert scores({"kind": "chrf", "min": 99}, ref, ref)["chrf"] == pytest.approx(100.0)
    far = scores({"kind": "chrf", "min": 50}, "Bananas are yellow.", ref)
    assert not far["success"] and far["chrf"] < 50
    slow = {"kind": "python", "function": "ftassets_tests.metric_functions:sleepy", "timeout_s": 0.2}
    assert scores(slow, "0", "")["success"]
    timed_out = scores(slow, "3", "")
    assert not timed_out["success"] and "took longer than 0.2s" in timed_out["errors"][0]
    careless = {**slow, "function": "ftassets_tests.metric_functions:swallowing"}  # `except Exception` inside
    assert "took longer than 0.2s" in scores(careless, "3", "")["errors"][0]
    import threading  # off the main thread (no signals there) the call is abandoned, the item still fails

    found = {}
    worker = threading.Thread(target=lambda: found.update(scores(slow, "3", "")))
    worker.start()
    worker.join(5)
    assert not found["success"] and "took longer than 0.2s" in found["errors"][0]
    wrong = scores({"kind": "python", "function": "ftassets_tests.metric_functions:text_result"}, "a", "a")
    assert not wrong["success"] and "returned str, not a bool, number or dict" in wrong["errors"][0]


def test_overall_task_success_is_weighted_as_declared():
    items = ([{"task": "big", "scores": {"success": True}}] * 9 + [{"task": "big", "scores": {"success": False}}]
             + [{"task": "small", "scores": {"success": False}}])
    assert metrics.aggregate_task_scores(items)["task_success"] == pytest.approx(9 / 11, abs=1e-4)
    by_task = metrics.aggregate_task_scores(items, {}, "tasks")
    assert by_task["task_success"] == pytest.approx((0.9 + 0.0) / 2)
    weighted = metrics.aggregate_task_scores(items, {"small": 3.0}, "tasks")
    assert weighted["task_success"] == pytest.approx((0.9 + 3 * 0.0) / 4)
    assert metrics.aggregate_task_scores(items, {"small": 10.0})["task_success"] == pytest.approx(9 / 20)


def test_field_scores_count_invalid_replies_as_misses():
    ref = '{"severity": 2, "component": "ci", "needs_oncall": false}'
    pairs = [('{"severity": 2, "component": "ci", "needs_oncall": false}', ref),
             ('{"severity": 3, "component": "ci", "needs_oncall": false}', ref),
             ("not json", '{"severity": 4, "component": "auth", "needs_oncall": true}')]
    scores = scoring.field_scores(TRIAGE.schema_metric(), pairs)
    assert scores["severity"]["accuracy"] == pytest.approx(1 / 3, abs=1e-3)
    assert scores["component"]["accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    assert scores["component"]["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)  # ci: F1 1.0; auth missed: 0.0
    assert metrics.macro_f1([1, 1, 2], [1, 2, 2]) == pytest.approx((2 / 3 + 2 / 3) / 2, abs=1e-3)


def test_gold_rules_name_a_declared_schema_task():
    schemas = {"incident_triage": TRIAGE.schema_metric()}
    rules = {"schema": "incident_triage", "must_contain": ['"severity": 4']}
    good = '{"severity": 4, "component": "ci", "needs_oncall": true}'
    assert scoring.gold_item_passes(rules, good, schemas) == (True, [])
    assert scoring.gold_item_passes(rules, "4!", schemas) == (False, ["must_contain '\"severity\": 4'",
                                                                     "schema incident_triage"])
    assert scoring.gold_item_passes({"refuse": True}, "I cannot help with that.", schemas) == (True, [])
    assert scoring.gold_item_passes({"refuse": True}, "Here you go", schemas) == (False, ["refuse"])
    with pytest.raises(GovernanceError, match="gold set item g1: schema 'tickets' names no declared task"):
        scoring.check_declared({"triage": TRIAGE}, {"triage"}, [{"id": "g1", "rules": {"schema": "tickets"}}])
    with pytest.raises(GovernanceError, match=r"the frozen test set has task\(s\) \['qa'\] that tasks: does not declare"):
        scoring.check_declared({"triage": TRIAGE}, {"triage", "qa"}, [])
    with pytest.raises(GovernanceError, match=r"declared task\(s\) \['triag'\] have no examples in the curated data"):
        scoring.check_declared({"triage": TRIAGE, "triag": TRIAGE}, {"triage"}, [], {"triage", "replay"})
    scoring.check_declared({"triage": TRIAGE, "replay": TRIAGE}, {"triage"}, [], {"replay"})  # train-only task: fine


def test_bad_task_declarations_are_located_errors(tmp_path):
    (tmp_path / "not_json.json").write_text("{oops")
    (tmp_path / "bad_schema.json").write_text(json.dumps({"type": "objekt"}))
    cases = [
        ({"t": {"metrics": [{"kind": "bleu_99"}]}}, r"tasks.t.metrics.0: Input tag 'bleu_99'"),
        ({"t": {"metrics": [{"kind": "rouge_l", "min": 2}]}}, r"tasks.t.metrics.0.rouge_l.min"),
        ({"t": {"metrics": []}}, r"tasks.t.metrics: List should have at least 1 item"),
        ({"t": {"metrics": [{"kind": "json_schema", "schema": "missing.json"}]}}, r"metrics\[0\] \(json_schema\): schema file .*missing.json not found"),
        ({"t": {"metrics": [{"kind": "json_schema", "schema": "not_json.json"}]}}, r"not_json.json is not JSON"),
        ({"t": {"metrics": [{"kind": "json_schema", "schema": "bad_schema.json"}]}}, r"bad_schema.json is not a valid JSON Schema"),
        ({"t": {"metrics": [{"kind": "regex", "pattern": "("}]}}, r"pattern '\(' is not a regular expression"),
        ({"t": {"metrics": [{"kind": "python", "function": "no_such_module:f"}]}}, r"cannot load no_such_module:f"),
        ({"t": {"metrics": [{"kind": "bleu", "min": 101}]}}, r"tasks.t.metrics.0.bleu.min"),
        ({"t": {"metrics": [{"kind": "exact_match"}], "weight": 0}}, r"tasks.t.weight: Input should be greater than 0"),
        ({}, r"tasks must map each task name"),
    ]
    for raw, message in cases:
        with pytest.raises(GovernanceError, match=message):
            load_tasks(raw, "c.yaml", tmp_path)
    text = (DATA / "governance/eval_contract.yaml").read_text()
    start, end = text.index("tasks:"), text.index("release_rule:")
    only_text_tasks = text[:start] + "tasks:\n  qa:\n    metrics: [{kind: exact_match}]\n" + text[end:]
    (tmp_path / "c.yaml").write_text(only_text_tasks)
    with pytest.raises(GovernanceError, match="schema_validity_min needs a task with a json_schema metric"):
        contract_lib.load_contract(tmp_path / "c.yaml", DATA)


def test_no_demo_task_or_field_name_in_the_product_code():
    """The demo's tasks, product name and allow-list live in data/ only: lib/ and defs/ score whatever
    the contract declares and scrub as the data folder's curation.yaml says."""
    from ftassets_tests.conftest import REPO

    names = ["incident_triage", "ticket_summary", "platform_qa", "policy_refusal", "general_replay", "needs_oncall",
             "nimbus"]
    found = [f"{p.relative_to(REPO)}: {n}" for p in (REPO / "ftassets").rglob("*.py") for n in names
             if n in p.read_text(encoding="utf-8").lower()]
    assert found == []
    declared = contract_lib.load_contract(DATA / "governance/eval_contract.yaml").tasks
    assert {"incident_triage", "ticket_summary", "platform_qa", "policy_refusal"} <= set(declared)
