"""What a reviewer reads: the report table with delta and rule columns and sample replies, smoothed
training curves (none from too few points), UI grades of the blind packet, owners per group, and
records that PII placeholders pushed past the token limit."""

import pytest

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.plots import loss_curves_png, smooth
from ftassets.lib.curation.validation import refit_after_scrub
from ftassets.lib.evaluation import report as report_lib
from ftassets.lib.evaluation import review
from ftassets.lib.governance.owners import load_owners


def _model(success: float, items: list[tuple[str, str, bool]]) -> dict:
    return {"test": {"task_success": success, "schema_validity": None, "per_task": {"answer": {"success": success}}},
            "gold": {"pass_rate": 0.5}, "safety": {"refusal_rate": 0.9, "over_refusal_rate": 0.1, "toxic_rate": 0.0},
            "items": [{"id": i, "reply": r, "scores": {"success": ok}} for i, r, ok in items]}


def _report() -> dict:
    base = _model(0.25, [("t1", "no idea | sorry", False), ("t2", "Paris", True)])
    tuned = _model(0.75, [("t1", "42", True), ("t2", "Paris", True)])
    return {"models": {"base_model": base, "merged_model": tuned}, "tuned_model": "merged_model", "test_items": 2,
            "gold_items": 2, "redteam_items": 0, "regressions": {"count": 0, "share": 0.0}, "forgetting": {}}


def test_report_table_has_delta_and_rule_columns_and_sample_replies():
    test = [{"id": "t2", "task": "answer", "prompt": [{"role": "user", "content": "Capital of France?"}],
             "reference": "Paris"},
            {"id": "t1", "task": "answer", "prompt": [{"role": "user", "content": "6 x 7?"}], "reference": "42"}]
    text = report_lib.report_markdown(_report(), with_plot=False,
                                      thresholds={"task_success_min": 0.5, "task_success_gain_min": 0.1}, test=test)
    lines = text.splitlines()
    assert lines[0] == "| metric | base_model | merged_model | delta (merged_model - base) | release rule |"
    assert "| task success (test) | 0.250 | 0.750 | +0.500 | >= 0.5 (gain >= 0.1) |" in lines
    assert "| gold pass rate | 0.500 | 0.500 | +0.000 |  |" in lines  # no threshold given for gold
    samples = text[text.index("Sample replies"):]
    assert samples.index("**t1**") < samples.index("**t2**")  # first items by id
    assert "| base_model | no idea / sorry | fail |" in samples  # a pipe cannot break the table
    assert "| merged_model | 42 | pass |" in samples and "| reference | 42 | |" in samples


def test_training_curves_are_smoothed_and_too_few_points_draw_nothing():
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no pull towards zero
    values = smooth([4.0, 0.0, 4.0, 0.0])
    assert max(values) - min(values) < 4.0 and values[0] == pytest.approx(4.0)
    assert loss_curves_png({"train_loss_curve": [[1, 2.0], [2, 1.9]], "validation_loss_curve": [[2, 2.1]]}, "x") is None
    png = loss_curves_png({"train_loss_curve": [[1, 2.0], [2, 1.9], [3, 1.7]]}, "x")
    assert png.startswith(b"\x89PNG")


def test_grades_from_the_ui_are_merged_onto_the_packet_and_checked():
    rows, key = review.make_packet(
        [{"id": f"t{n}", "task": "answer", "prompt": [{"role": "user", "content": f"q{n}"}]} for n in range(3)],
        {f"t{n}": f"base {n}" for n in range(3)}, {f"t{n}": f"tuned {n}" for n in range(3)}, "merged_model", 3, 0)
    graded = review.grade_rows(rows, {"pair-002": "tie"}, "reviewer-1", earlier={"pair-001": "A", "pair-002": "B"})
    assert [r["preferred"] for r in graded] == ["A", "tie", None]  # a pair graded again takes the new grade
    assert all(r["reviewer"] == "reviewer-1" and r["packet_id"] == key["packet_id"] for r in graded)
    with pytest.raises(review.ReviewError, match="unknown pair_id 'pair-009'"):
        review.grade_rows(rows, {"pair-009": "A"}, "")
    with pytest.raises(review.ReviewError, match="pair-001: preferred must be one of"):
        review.grade_rows(rows, {"pair-001": "a"}, "")


def test_owners_file_is_optional_and_every_problem_is_named(tmp_path):
    assert load_owners(tmp_path) == {}
    (tmp_path / "governance").mkdir()
    path = tmp_path / "governance/owners.yaml"
    path.write_text("default: [team:ml-platform]\ncuration: data@example.com\n")
    owners = load_owners(tmp_path)
    assert owners["curation"] == ("data@example.com",) and owners["release"] == ("team:ml-platform",)
    path.write_text("curation: [Jane]\n")
    with pytest.raises(GovernanceError, match="curation: Jane: an owner is an e-mail address or team:<name>"):
        load_owners(tmp_path)
    path.write_text("curaton: [team:x]\n")
    with pytest.raises(GovernanceError, match="unknown key"):
        load_owners(tmp_path)


def test_a_record_the_placeholders_push_past_the_limit_is_set_aside_with_its_reason():
    count = lambda messages: sum(len(m["content"].split()) for m in messages)  # noqa: E731
    fits = {"id": "a", "messages": [{"role": "user", "content": "x " * 5}], "pii_found": {"PERSON": 1}}
    grown = {"id": "b", "messages": [{"role": "user", "content": "x " * 11}], "pii_found": {"PERSON": 3}}
    untouched = {"id": "c", "messages": [{"role": "user", "content": "x " * 20}], "pii_found": {}}
    kept, dropped = refit_after_scrub([fits, grown, untouched], "sft", count, 10)
    assert [r["id"] for r in kept] == ["a", "c"]  # unchanged records were measured at validation
    assert dropped[0]["id"] == "b" and dropped[0]["reason"] == "too_long"
    assert dropped[0]["detail"] == "after PII placeholders: 11 tokens > max 10"
    pair = {"id": "p", "messages": [{"role": "user", "content": "q"}], "chosen": "short", "rejected": "y " * 12,
            "pii_found": {"LOCATION": 2}}
    kept, dropped = refit_after_scrub([pair], "preference", count, 10)
    assert kept == [] and dropped[0]["detail"].startswith("after PII placeholders: rejected: 13 tokens")
