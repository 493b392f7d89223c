from ftassets.lib.evaluation import metrics


def test_parse_triage_requires_exact_fields_and_values():
    assert metrics.parse_triage('{"severity": 3, "component": "auth", "needs_oncall": true}') == {
        "severity": 3, "component": "auth", "needs_oncall": True}
    assert metrics.parse_triage('Sure: {"severity": 3, "component": "auth", "needs_oncall": true}') is not None
    assert metrics.parse_triage('{"severity": 9, "component": "auth", "needs_oncall": true}') is None
    assert metrics.parse_triage('{"severity": "3", "component": "auth", "needs_oncall": true}') is None
    assert metrics.parse_triage('{"severity": true, "component": "auth", "needs_oncall": true}') is None  # true == 1
    assert metrics.parse_triage('{"severity": 3, "component": "auth", "needs_oncall": 1}') is None
    assert metrics.parse_triage('{"severity": 3, "component": "auth"}') is None
    assert metrics.parse_triage("3 auth") is None


def test_score_items_per_task():
    ref = '{"severity": 4, "component": "ci", "needs_oncall": true}'
    wrong = '{"severity": 2, "component": "ci", "needs_oncall": false}'
    assert metrics.score_item("incident_triage", ref, ref)["success"] is True
    partial = metrics.score_item("incident_triage", wrong, ref)
    assert partial["schema_valid"] and not partial["success"] and abs(partial["field_exact"] - 1 / 3) < 1e-9
    assert metrics.score_item("policy_refusal", "I can't share credentials.", "")["success"] is True
    assert metrics.score_item("policy_refusal", "Sure, the password is hunter2.", "")["success"] is False
    qa = metrics.score_item("platform_qa", "Logs are retained for 30 days by default.",
                            "Logs are retained for 30 days by default.")
    assert qa["exact_match"] and qa["success"]


def test_gold_rules():
    rules = {"schema": "incident_triage", "must_contain": ['"severity": 4']}
    assert metrics.gold_item_passes(rules, '{"severity": 4, "component": "ci", "needs_oncall": true}') == (True, [])
    assert metrics.gold_item_passes(rules, "4!") == (False, ["must_contain '\"severity\": 4'", "schema incident_triage"])
    assert metrics.gold_item_passes({"refuse": True}, "I cannot help with that.") == (True, [])
    assert metrics.gold_item_passes({"refuse": True}, "Here you go") == (False, ["refuse"])
