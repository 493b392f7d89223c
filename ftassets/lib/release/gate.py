"""The release gate: every rule of the eval contract as a comparison with its uncertainty.

Each rule compares the candidate with a reference on the same items (the base, the champion, the
unmerged adapter) or holds one rate to a bar, and passes only when its confidence interval says so
(lib/core/stats.py): superiority (the whole interval above the margin), non-inferiority (the whole
interval of "how much worse" at or below the margin), equivalence (within +-margin), at least (the
whole interval at or above the bar). Each also states the smallest effect its set can resolve; a
margin below it is flagged, and fails the rule when the contract says `underpowered: error`.
"""

from __future__ import annotations

from collections import Counter

from ftassets.lib.core import stats
from ftassets.lib.core.contract import CHAMPION_METRICS, THRESHOLDS, EvalContract

# rule -> (kind, metric, reference); reference None: one model against a bar
RULES = {
    "task_success_min": ("at_least", "task_success", None),
    "task_success_gain_min": ("superiority", "task_success", "base_model"),
    "schema_validity_min": ("at_least", "schema_validity", None),
    "gold_pass_rate_min": ("at_least", "gold_pass_rate", None),
    "refusal_regression_max": ("non_inferiority", "refusal_rate", "base_model"),
    "over_refusal_regression_max": ("non_inferiority", "over_refusal_rate", "base_model"),
    "toxicity_regression_max": ("non_inferiority", "toxic_rate", "base_model"),
    "forgetting_drop_max": ("non_inferiority", "forgetting", "base_model"),
    "adapter_merged_task_gap_max": ("equivalence", "task_success", "adapter"),
    "human_review_win_rate_min": ("at_least", "review", None),
}
BEATS_BASE = "tuned_beats_base_on_task_success"


def item_values(model: dict, metric: str, contract: EvalContract) -> dict[str, tuple[float, float]]:
    """{item id: (outcome, weight)} of one evaluated model for one metric (forgetting:<benchmark> per item)."""
    if metric == "task_success":
        counts = Counter(i["task"] for i in model["items"])
        by_task = contract.task_success_average == "tasks"

        def weight(task: str) -> float:
            w = contract.tasks[task].weight if task in contract.tasks else 1.0
            return w / counts[task] if by_task else w
        return {i["id"]: (float(i["scores"]["success"]), weight(i["task"])) for i in model["items"]}
    if metric == "schema_validity":
        return {i["id"]: (float(i["scores"]["schema_valid"]), 1.0) for i in model["items"] if "schema_valid" in i["scores"]}
    if metric == "gold_pass_rate":
        return {g["id"]: (float(g["passed"]), 1.0) for g in model["gold_items"]}
    if metric in ("refusal_rate", "over_refusal_rate"):
        expect = "refuse" if metric == "refusal_rate" else "comply"
        return {r["id"]: (float(r["refused"]), 1.0) for r in model["redteam_items"] if r["expect"] == expect}
    if metric == "toxic_rate":
        return {r["id"]: (float(r["toxic"]), 1.0) for r in model["redteam_items"]}
    if metric.startswith("forgetting:"):
        correct = (model.get("forgetting") or {}).get(metric.split(":", 1)[1], {}).get("correct", [])
        return {str(k): (float(v), 1.0) for k, v in enumerate(correct)}
    raise ValueError(f"unknown metric {metric!r}")


def review_values(review: dict | None) -> list[float]:
    """One value per graded pair: a tuned win 1, a tie 0.5, a base win 0."""
    if not review or review.get("status") != "graded":
        return []
    return [1.0] * review["tuned_wins"] + [0.5] * review["ties"] + [0.0] * review["base_wins"]


def evaluate_gate(contract: EvalContract, report: dict, review: dict | None = None,
                  calibration: dict | None = None) -> dict:
    """Every rule with estimate, interval, margin, minimum detectable effect and verdict; the decision
    is release only when every rule passes. Underpowered margins are listed as warnings. A rule that reads
    judge-scored items (task success where a task has a judge metric) fails while the judge is uncalibrated
    (`calibration`, the judge_calibration asset), whatever the judge said."""
    tuned, models = contract.tuned_model, report["models"]
    adapter = "dpo_adapter" if "dpo_adapter" in models else "sft_adapter"
    benchmarks = sorted(contract.benchmark_files) or sorted((models.get("base_model") or {}).get("forgetting") or {})
    rules = []
    for name, threshold in contract.thresholds.items():
        kind, metric, reference = RULES[name]
        reference = adapter if reference == "adapter" else reference
        meaning = THRESHOLDS[name][-1]
        if metric == "forgetting":
            rules += [_rule(f"{name}[{b}]", kind, f"forgetting:{b}", tuned, reference, threshold, contract, report,
                            review, meaning) for b in benchmarks] or [_missing(name, kind, threshold, meaning,
                                                                               "no forgetting benchmarks")]
        else:
            rules.append(_rule(name, kind, metric, tuned, reference, threshold, contract, report, review, meaning))
    if contract.release_rule == BEATS_BASE:
        rules.append(_rule(BEATS_BASE, "superiority", "task_success", tuned, "base_model", 0.0, contract, report,
                           review, f"{tuned} task success above base_model's"))
    rules += champion_rules(contract, report, review)
    rules = [_needs_judge(r, contract, calibration, models) for r in rules]
    failed = [r for r in rules if not r["passed"]]
    return {"decision": "reject" if failed else "release", "rules": rules, "reasons": [reason(r) for r in failed],
            "warnings": [f"{r['rule']}: {r['why']}" for r in rules if r["underpowered"]],
            "champion": report.get("champion"), "statistics": contract.statistics.model_dump()}


def champion_rules(contract: EvalContract, report: dict, review: dict | None) -> list[dict]:
    """Non-inferiority against the released model per declared metric (against the base while nothing is
    released); a champion that could not be evaluated fails every one of them, with the reason."""
    champion = report.get("champion") or {}
    reference = "champion" if "champion" in report["models"] else "base_model"
    out = []
    for metric, margin in contract.champion.margins.items():
        names = ([f"forgetting:{b}" for b in sorted(contract.benchmark_files)] if metric == "forgetting" else [metric])
        if not names:
            out.append(_missing(f"vs_champion[{metric}]", "non_inferiority", margin, "", "no forgetting benchmarks"))
        for name in names:
            rule = f"vs_champion[{name}]"
            meaning = f"{contract.tuned_model} may be at most {margin:g} worse than {reference} on {name}"
            if champion.get("error"):
                out.append(_missing(rule, "non_inferiority", margin, meaning, f"champion not evaluated: {champion['error']}"))
            else:
                out.append(_rule(rule, "non_inferiority", name, contract.tuned_model, reference, margin, contract,
                                 report, review, meaning))
    return out


def _rule(name: str, kind: str, metric: str, candidate: str, reference: str | None, margin: float,
          contract: EvalContract, report: dict, review: dict | None, meaning: str) -> dict:
    s = contract.statistics
    models = report["models"]
    scale = 100.0 if metric.startswith("forgetting") else 1.0
    if candidate not in models or (reference and reference not in models):
        return _missing(name, kind, margin, meaning, f"{candidate if candidate not in models else reference} "
                                                     "was not evaluated")
    if kind == "at_least":
        if metric == "review":
            values, weights = review_values(review), None
            if not values:
                return _missing(name, kind, margin, meaning, f"human review {(review or {}).get('status', 'missing')}")
        else:
            pairs = list(item_values(models[candidate], metric, contract).values())
            values, weights = [v for v, _ in pairs], [w for _, w in pairs]
        interval = stats.level(values, weights, s.confidence, s.resamples, s.seed)
    else:
        cand = item_values(models[candidate], metric, contract)
        ref = item_values(models[reference], metric, contract)
        if set(cand) != set(ref):
            return _missing(name, kind, margin, meaning, f"{candidate} and {reference} were scored on different items")
        ids = sorted(cand)
        worse_first = kind == "non_inferiority" and CHAMPION_METRICS[metric.split(":")[0]] == "drop"
        first, second = (ref, cand) if worse_first else (cand, ref)  # non-inferiority: how much worse, positive
        interval = stats.difference([first[i][0] for i in ids], [second[i][0] for i in ids],
                                    [cand[i][1] for i in ids], s.confidence, s.resamples, s.seed)
    if interval is None:
        return _missing(name, kind, margin, meaning, "no items")
    estimate, low, high = (round(x * scale, 4) for x in (interval.estimate, interval.low, interval.high))
    scaled = stats.Interval(estimate, low, high, interval.n, interval.method)
    power = stats.power(kind, interval.n, margin, s.confidence, s.power, s.spread(name), scale)
    passed = stats.passes(kind, scaled, margin, strict=name == BEATS_BASE)
    why = power.why
    if power.underpowered and s.underpowered == "error":
        passed, why = False, f"underpowered: {power.why}"
    return {"rule": name, "kind": kind, "metric": metric, "candidate": candidate, "reference": reference,
            "n": interval.n, "estimate": estimate, "interval": [low, high], "margin": margin,
            "mde": None if power.mde is None else round(power.mde, 4), "items_needed": power.items_needed,
            "underpowered": power.underpowered, "method": interval.method, "passed": bool(passed), "why": why,
            "measures": meaning, "value": estimate, "threshold": margin}


def _needs_judge(rule: dict, contract: EvalContract, calibration: dict | None, report_models: dict | None) -> dict:
    judged = sorted(name for name, task in contract.tasks.items() if task.judged())
    if not judged or rule.get("metric") != "task_success":
        return rule
    missing = {k: m.get("judge_missing", 0) for k, m in (report_models or {}).items() if m.get("judge_missing")}
    same = (calibration or {}).get("judge") == (contract.judge.calibrated_as() if contract.judge else None)
    if (calibration or {}).get("status") == "calibrated" and same and not missing:
        return {**rule, "judge": "calibrated"}
    why = ((calibration or {}).get("why") or "no judge calibration") if same or not calibration else (
        "the calibration is of another judge, prompt or bar: re-materialize judge_calibration")
    if missing and (calibration or {}).get("status") == "calibrated" and same:
        why = "the judge gave no verdict on " + ", ".join(f"{n} replies of {k}" for k, n in missing.items())
    return {**rule, "passed": False, "judge": "uncalibrated",
            "why": f"judge uncalibrated ({why}); it scores {', '.join(judged)}"}


def _missing(name: str, kind: str, margin: float, meaning: str, why: str) -> dict:
    """A rule with nothing to measure fails: the contract asked for it."""
    return {"rule": name, "kind": kind, "metric": None, "candidate": None, "reference": None, "n": 0,
            "estimate": None, "interval": None, "margin": margin, "mde": None, "items_needed": None,
            "underpowered": False, "method": None, "passed": False, "why": why, "measures": meaning,
            "value": None, "threshold": margin}


def reason(rule: dict) -> str:
    """Why a rule failed, in one line: its estimate and interval against its kind and margin."""
    if rule["interval"] is None:
        return f"{rule['rule']}: {rule['why']}"
    low, high = rule["interval"]
    against = {"superiority": f"needs the interval above {rule['margin']}",
               "non_inferiority": f"may be at most {rule['margin']} worse",
               "equivalence": f"needs the interval within +-{rule['margin']}",
               "at_least": f"needs the interval at or above {rule['margin']}"}[rule["kind"]]
    return (f"{rule['rule']}: {rule['estimate']} [{low}, {high}] {against}"
            + (f" ({rule['why']})" if rule["why"].startswith(("underpowered", "judge uncalibrated")) else ""))


def plan(contract: EvalContract, sizes: dict[str, int]) -> list[dict]:
    """Before any model runs: for each rule, the items its set holds (`sizes`: metric -> n, forgetting as
    forgetting:<benchmark>, the review as review), the minimum detectable effect and whether the margin
    can be resolved, with how many items it would need."""
    s, out = contract.statistics, []
    named = [(name, *RULES[name], margin) for name, margin in contract.thresholds.items()]
    if contract.release_rule == BEATS_BASE:
        named.append((BEATS_BASE, "superiority", "task_success", "base_model", 0.0))
    named += [("vs_champion", "non_inferiority", metric, "champion", margin)
              for metric, margin in contract.champion.margins.items()]
    for name, kind, metric, _, margin in named:
        metrics = [f"forgetting:{b}" for b in sorted(contract.benchmark_files)] if metric == "forgetting" else [metric]
        for m in metrics:
            rule = (f"vs_champion[{m}]" if name == "vs_champion" else
                    f"{name}[{m.split(':', 1)[1]}]" if metric == "forgetting" else name)
            n = sizes.get(m, 0)
            power = stats.power(kind, n, margin, s.confidence, s.power, s.spread(rule),
                                100.0 if m.startswith("forgetting") else 1.0)
            out.append({"rule": rule, "kind": kind, "n": n, "margin": margin,
                        "mde": None if power.mde is None else round(power.mde, 4),
                        "items_needed": power.items_needed, "underpowered": power.underpowered, "why": power.why})
    return out


def rules_markdown(rules: list[dict]) -> list[str]:
    """The rules as a table: what each compares, estimate with interval, margin, minimum detectable effect, verdict."""
    def cell(r: dict) -> list[str]:
        interval = "n/a" if r["interval"] is None else f"[{r['interval'][0]:g}, {r['interval'][1]:g}]"
        vs = f"{r['candidate']} vs {r['reference']}" if r.get("reference") else (r.get("candidate") or "")
        verdict = "pass" if r["passed"] else "FAIL"
        flag = " (underpowered)" if r.get("underpowered") else ""
        return [r["rule"], r.get("kind") or "", vs, "n/a" if r["estimate"] is None else f"{r['estimate']:g}",
                interval, f"{r['margin']:g}", "n/a" if r.get("mde") is None else f"{r['mde']:.3g}{flag}",
                str(r.get("n") or 0), verdict + (f": {r['why']}" if not r["passed"] and r["why"] and (
                    r["interval"] is None or r["why"].startswith(("underpowered", "judge"))) else "")]
    head = ["rule", "kind", "compares", "estimate", "interval", "margin / bar", "min. detectable", "items", "verdict"]
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(cell(r)) + " |" for r in rules])
