"""The release gate's statistics on synthetic per-item outcomes: intervals, kinds, power, the champion."""

import pytest

from ftassets.lib.core import contract, stats
from ftassets.lib.core.contract import Champion, Statistics
from ftassets.lib.release.gate import evaluate_gate, plan
from ftassets_tests.conftest import DATA


def _model(task, gold=(1,) * 40, refuse=(1,) * 20, over=(0,) * 12, toxic=(0,) * 32, probe=(1,) * 60 + (0,) * 60):
    return {"items": [{"id": f"t{i:03d}", "task": "platform_qa", "scores": {"success": bool(v)}}
                      for i, v in enumerate(task)],
            "gold_items": [{"id": f"g{i:03d}", "passed": bool(v)} for i, v in enumerate(gold)],
            "redteam_items": [{"id": f"r{i:03d}", "expect": "refuse", "refused": bool(v), "toxic": False}
                              for i, v in enumerate(refuse)]
            + [{"id": f"b{i:03d}", "expect": "comply", "refused": bool(v), "toxic": False} for i, v in enumerate(over)]
            + [{"id": f"x{i:03d}", "expect": "comply_toxic_probe", "refused": False, "toxic": bool(v)}
               for i, v in enumerate(toxic)],
            "forgetting": {"general_probe": {"correct": list(probe)}}}


def _contract(thresholds, release_rule="thresholds_only", **update):
    c = contract.load_contract(DATA / "governance/eval_contract.yaml")
    return c.model_copy(update={"thresholds": thresholds, "release_rule": release_rule, "champion": Champion(),
                                "statistics": Statistics(resamples=2000), **update})


def _report(base, tuned, **more):
    return {"models": {"base_model": base, "merged_model": tuned, **more}}


def _rule(gate, name):
    return next(r for r in gate["rules"] if r["rule"] == name)


def test_a_two_item_difference_on_a_small_set_is_reported_unresolvable():
    base, tuned = _model([0] * 20), _model([1, 1] + [0] * 18)
    gate = evaluate_gate(_contract({"task_success_gain_min": 0.05}, "tuned_beats_base_on_task_success"),
                         _report(base, tuned))
    gain = _rule(gate, "task_success_gain_min")
    assert gain["estimate"] == 0.1 and gain["interval"][0] <= 0 < gain["interval"][1]
    assert gain["underpowered"] and gain["mde"] > 0.05 and gain["items_needed"] > 20
    assert not gain["passed"] and not _rule(gate, "tuned_beats_base_on_task_success")["passed"]
    assert gate["decision"] == "reject" and gate["warnings"] and "needs" in gate["warnings"][0]
    # the same 10-point gain on 800 items is resolved: the interval clears the margin
    big = evaluate_gate(_contract({"task_success_gain_min": 0.05}, "tuned_beats_base_on_task_success"),
                        _report(_model([0] * 800), _model([1] * 80 + [0] * 720)))
    assert big["decision"] == "release", big["reasons"]
    assert not _rule(big, "task_success_gain_min")["underpowered"]


def test_underpowered_as_error_fails_the_rule_even_when_its_interval_passes():
    c = _contract({"refusal_regression_max": 0.1},
                  statistics=Statistics(resamples=2000, underpowered="error"))
    gate = evaluate_gate(c, _report(_model([0] * 20), _model([0] * 20)))  # identical refusals: [0, 0]
    rule = _rule(gate, "refusal_regression_max")
    assert rule["interval"] == [0.0, 0.0] and rule["underpowered"] and not rule["passed"]
    assert "underpowered" in gate["reasons"][0]
    warn = evaluate_gate(_contract({"refusal_regression_max": 0.1}), _report(_model([0] * 20), _model([0] * 20)))
    assert warn["decision"] == "release" and warn["warnings"]


def test_non_inferiority_needs_the_whole_interval_within_the_margin():
    c = _contract({"forgetting_drop_max": 5})
    base = _model([0] * 10)
    same = evaluate_gate(c, _report(base, _model([0] * 10)))
    assert same["decision"] == "release" and _rule(same, "forgetting_drop_max[general_probe]")["interval"] == [0, 0]
    lost = _model([0] * 10, probe=(1,) * 55 + (0,) * 65)  # 5 of 120 items lost: 4.2 points, under the margin
    gate = evaluate_gate(c, _report(base, lost))
    rule = _rule(gate, "forgetting_drop_max[general_probe]")
    assert rule["estimate"] == pytest.approx(4.1667, abs=1e-3) and rule["interval"][1] > 5
    assert gate["decision"] == "reject" and "may be at most 5 worse" in gate["reasons"][0]
    # refusing less often where refusal is expected is "worse"; refusing more is not
    refuses_more = evaluate_gate(_contract({"refusal_regression_max": 0.1}),
                                 _report(_model([0] * 10, refuse=(0,) * 20), _model([0] * 10)))
    assert refuses_more["decision"] == "release" and _rule(refuses_more, "refusal_regression_max")["estimate"] == -1.0


def test_a_bar_needs_the_interval_above_it_and_a_perfect_small_set_cannot_clear_a_high_bar():
    c = _contract({"gold_pass_rate_min": 0.9})
    small = evaluate_gate(c, _report(_model([0] * 10), _model([0] * 10, gold=(1,) * 10)))
    rule = _rule(small, "gold_pass_rate_min")
    assert rule["estimate"] == 1.0 and rule["interval"][0] < 0.9 and rule["method"] == "wilson"
    assert not rule["passed"] and rule["underpowered"] and rule["items_needed"] == 35
    big = evaluate_gate(c, _report(_model([0] * 10), _model([0] * 10, gold=(1,) * 100)))
    assert big["decision"] == "release"


def test_a_candidate_that_beats_the_base_but_loses_to_the_champion_is_rejected():
    c = _contract({"task_success_gain_min": 0.2}, "tuned_beats_base_on_task_success",
                  champion=Champion(margins={"task_success": 0.1}))
    base, champion, candidate = _model([1] * 10 + [0] * 190), _model([1] * 180 + [0] * 20), _model([1] * 120 + [0] * 80)
    gate = evaluate_gate(c, _report(base, candidate, champion=champion))
    assert _rule(gate, "task_success_gain_min")["passed"] and _rule(gate, "tuned_beats_base_on_task_success")["passed"]
    vs = _rule(gate, "vs_champion[task_success]")
    assert vs["reference"] == "champion" and vs["estimate"] == 0.3 and not vs["passed"]
    assert gate["decision"] == "reject" and gate["reasons"][0].startswith("vs_champion[task_success]: 0.3")
    # nothing released yet: the champion is the base, which the candidate beats
    first = evaluate_gate(c, _report(base, candidate))
    assert first["decision"] == "release" and _rule(first, "vs_champion[task_success]")["reference"] == "base_model"
    # a champion that could not be loaded fails the comparison with its reason
    broken = evaluate_gate(c, {**_report(base, candidate), "champion": {"error": "bundle replaced"}})
    assert "champion not evaluated: bundle replaced" in broken["reasons"][0]


def test_adapter_and_merged_must_be_equivalent_and_the_review_must_be_graded():
    c = _contract({"adapter_merged_task_gap_max": 0.05, "human_review_win_rate_min": 0.5})
    base, merged = _model([0] * 100), _model([1] * 60 + [0] * 40)
    review = {"status": "graded", "tuned_wins": 60, "ties": 10, "base_wins": 10}
    gate = evaluate_gate(c, _report(base, merged, dpo_adapter=_model([1] * 60 + [0] * 40)), review)
    assert gate["decision"] == "release", gate["reasons"]
    drifted = evaluate_gate(c, _report(base, merged, dpo_adapter=_model([1] * 50 + [0] * 50)), review)
    assert drifted["reasons"][0].startswith("adapter_merged_task_gap_max: 0.1 [")
    pending = evaluate_gate(c, _report(base, merged, dpo_adapter=merged), {"status": "pending"})
    assert pending["reasons"] == ["human_review_win_rate_min: human review pending"]


def test_plan_flags_margins_the_sets_cannot_resolve_before_any_model_runs():
    c = _contract({"task_success_gain_min": 0.05, "gold_pass_rate_min": 0.5, "forgetting_drop_max": 5},
                  champion=Champion(margins={"task_success": 0.1}))
    rows = {r["rule"]: r for r in plan(c, {"task_success": 51, "gold_pass_rate": 40, "forgetting:general_probe": 120})}
    assert rows["task_success_gain_min"]["underpowered"] and rows["task_success_gain_min"]["items_needed"] > 51
    assert not rows["gold_pass_rate_min"]["underpowered"]
    # 120 items, 20% planned discordance, 95% / 80%: about 11.5 points is the smallest drop it can show
    assert rows["forgetting_drop_max[general_probe]"]["mde"] == pytest.approx(11.45, abs=0.05)
    assert rows["vs_champion[task_success]"]["underpowered"]


def test_intervals_shrink_with_items_and_review_size_follows_the_margin():
    small = stats.difference([1] * 6 + [0] * 14, [0] * 20, None, 0.95, 2000, 0)
    big = stats.difference([1] * 60 + [0] * 140, [0] * 200, None, 0.95, 2000, 0)
    assert small.low < big.low < 0.3 < big.high < small.high
    assert stats.review_size(0.15, 0.95, 0.8) == 88 and stats.review_size(0.3, 0.95, 0.8) == 22
    with pytest.raises(ValueError, match="same items"):
        stats.difference([1, 0], [1], None, 0.95, 2000, 0)


def test_few_items_never_give_a_collapsed_interval_and_margins_of_zero_are_flagged():
    three = stats.difference([1, 1, 1], [0, 0, 0], None, 0.95, 2000, 0)  # the bootstrap alone says [1, 1]
    assert three.low < 0 < three.high and "McNemar" in three.method
    gate = evaluate_gate(_contract({}, "tuned_beats_base_on_task_success"), _report(_model([0] * 3), _model([1] * 3)))
    assert gate["decision"] == "reject"  # 3 of 3 won shows nothing
    flagged = stats.power("non_inferiority", 51, 0.0, 0.95, 0.8, 0.447)
    assert flagged.underpowered and "passes only when no item differs" in flagged.why
    assert not stats.power("superiority", 51, 0.0, 0.95, 0.8, 0.447).underpowered
    two_sided = stats.power("equivalence", 51, 0.06, 0.95, 0.8, 0.02 ** 0.5)
    assert two_sided.underpowered and two_sided.mde == pytest.approx(0.0642, abs=1e-4) and two_sided.items_needed == 59
