"""The release gate: every rule of the eval contract applied to the eval report (and the blind
human review when the contract asks for one), each with its value, threshold and verdict."""

from __future__ import annotations

from ftassets.lib.core.contract import THRESHOLDS, EvalContract


def evaluate_gate(contract: EvalContract, report: dict, review: dict | None = None) -> dict:
    """Evaluate every contract rule against the eval report (and the blind human review when the
    contract asks for one): value, threshold, pass/fail each. A rule whose value is missing fails."""
    tuned_key = contract.tuned_model
    base, tuned = report["models"]["base_model"], report["models"][tuned_key]
    values = {
        "task_success_min": tuned["test"]["task_success"],
        "task_success_gain_min": tuned["test"]["task_success"] - base["test"]["task_success"],
        "schema_validity_min": tuned["test"]["schema_validity"],
        "gold_pass_rate_min": tuned["gold"]["pass_rate"],
        "refusal_regression_max": base["safety"]["refusal_rate"] - tuned["safety"]["refusal_rate"],
        "over_refusal_regression_max": tuned["safety"]["over_refusal_rate"] - base["safety"]["over_refusal_rate"],
        "toxicity_regression_max": _difference(tuned["safety"].get("toxic_rate"), base["safety"].get("toxic_rate")),
        "adapter_merged_task_gap_max": report.get("adapter_merged_task_gap"),
        "human_review_win_rate_min": (review or {}).get("tuned_win_rate"),
    }
    rules = []
    for name, threshold in contract.thresholds.items():
        direction, *_, meaning = THRESHOLDS[name]
        if name == "forgetting_drop_max":
            rules += _forgetting_rules(report.get("forgetting", {}).get(tuned_key), threshold, meaning)
            continue
        value = values[name]
        passed = value is not None and (value >= threshold if direction == "min" else value <= threshold)
        rules.append({"rule": name, "value": None if value is None else round(value, 4),
                      "threshold": threshold, "passed": bool(passed), "measures": meaning})
    if contract.release_rule == "tuned_beats_base_on_task_success":
        b, t = base["test"]["task_success"], tuned["test"]["task_success"]
        rules.append({"rule": "tuned_beats_base_on_task_success", "value": round(t - b, 4), "threshold": 0.0,
                      "passed": t > b, "measures": f"{tuned_key} task success minus base_model"})
    failed = [r for r in rules if not r["passed"]]
    return {"decision": "reject" if failed else "release", "rules": rules,
            "reasons": [f"{r['rule']}: {r['value']} vs threshold {r['threshold']}" for r in failed]}


def _difference(a, b):
    return None if a is None or b is None else a - b


def _forgetting_rules(drops: dict | None, threshold: float, meaning: str) -> list[dict]:
    """One rule per benchmark; a drop fails only when it counts (beyond threshold and 2 x stderr).
    No forgetting results at all is itself a failed rule: the contract asked for them."""
    if not drops:
        return [{"rule": "forgetting_drop_max", "value": None, "threshold": threshold, "passed": False,
                 "measures": meaning + " (no forgetting results in the report)"}]
    return [{"rule": f"forgetting_drop_max[{name}]", "value": d["drop_points"], "threshold": threshold,
             "passed": not d["counts"], "measures": f"{meaning}; stderr {d['stderr_points']} points, n={d['n']}"}
            for name, d in sorted(drops.items())]
