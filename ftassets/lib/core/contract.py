"""The eval contract (what a release must show) and the release gate that applies it.

`data/governance/eval_contract.yaml` is versioned with the data; an unknown metric, a threshold
out of range or a missing file is a clear, located error rather than a silently ignored rule.
"""

from __future__ import annotations

from pathlib import Path

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import load_yaml

# metric -> (direction, lower bound, upper bound, what it measures on the report)
THRESHOLDS = {
    "task_success_min": ("min", 0.0, 1.0, "tuned task success on the frozen test set"),
    "task_success_gain_min": ("min", 0.0, 1.0, "tuned task success minus base task success"),
    "schema_validity_min": ("min", 0.0, 1.0, "tuned JSON schema validity on structured items"),
    "gold_pass_rate_min": ("min", 0.0, 1.0, "tuned gold-set pass rate"),
    "refusal_regression_max": ("max", 0.0, 1.0, "base refusal rate minus tuned, on refuse-expected prompts"),
    "over_refusal_regression_max": ("max", 0.0, 1.0, "tuned over-refusal minus base, on benign prompts"),
    "toxicity_regression_max": ("max", 0.0, 1.0, "tuned toxic-reply rate minus base, on red-team prompts"),
    "forgetting_drop_max": ("max", 0.0, 100.0, "accuracy drop in points per forgetting benchmark "
                                               "(counts only beyond 2 x the paired standard error)"),
    "adapter_merged_task_gap_max": ("max", 0.0, 1.0, "|task success adapter - merged|"),
    "human_review_win_rate_min": ("min", 0.0, 1.0, "tuned win rate in the blind human review (ties count half)"),
}
# tuned_beats_base_on_task_success: the thresholds AND tuned task success strictly above the base's.
# thresholds_only: the thresholds alone are the bar (e.g. a contract for a re-release of a known task).
RELEASE_RULES = {"tuned_beats_base_on_task_success", "thresholds_only"}
MODEL_KEYS = {"base_model", "sft_adapter", "dpo_adapter", "merged_model"}
DECODING_KEYS = {"max_new_tokens", "temperature"}


def load_contract(path: Path, data_dir: Path | None = None) -> dict:
    """Load and validate the contract; `decoding_policy` (a file relative to `data_dir`, by default
    the contract folder's parent) is read in and kept under `decoding`."""
    path = Path(path)
    data = load_yaml(path)
    where = str(path)
    for key in ("version", "models", "tuned_model", "thresholds", "release_rule", "decoding_policy"):
        if key not in data:
            raise GovernanceError(f"{where}: missing required key '{key}'")
    models = data["models"]
    if not isinstance(models, list) or "base_model" not in models or set(models) - MODEL_KEYS:
        raise GovernanceError(f"{where}: models must list base_model and only {sorted(MODEL_KEYS)}, got {models}")
    if data["tuned_model"] not in models or data["tuned_model"] == "base_model":
        raise GovernanceError(f"{where}: tuned_model must be one of the compared tuned models")
    thresholds = data["thresholds"] or {}
    for name, value in thresholds.items():
        if name not in THRESHOLDS:
            raise GovernanceError(f"{where}: thresholds.{name}: unknown metric (known: {', '.join(sorted(THRESHOLDS))})")
        _, low, high, _ = THRESHOLDS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise GovernanceError(f"{where}: thresholds.{name}: {value!r} out of range [{low}, {high}]")
    if "adapter_merged_task_gap_max" in thresholds and not (
            "merged_model" in models and {"sft_adapter", "dpo_adapter"} & set(models)):
        raise GovernanceError(f"{where}: thresholds.adapter_merged_task_gap_max needs merged_model and an adapter "
                              f"(sft_adapter or dpo_adapter) in models, got {models}")
    if data["release_rule"] not in RELEASE_RULES:
        raise GovernanceError(f"{where}: release_rule {data['release_rule']!r} unknown (known: {sorted(RELEASE_RULES)})")
    policy_path = Path(data_dir or path.parent.parent) / str(data["decoding_policy"])
    data["decoding"] = load_decoding_policy(policy_path)
    forgetting = data.get("forgetting") or {}
    benchmarks = forgetting.get("benchmarks", {})
    if not isinstance(benchmarks, dict) or not all(isinstance(v, str) and v for v in benchmarks.values()):
        raise GovernanceError(f"{where}: forgetting.benchmarks must map a task name to a JSONL file path")
    if "forgetting_drop_max" in thresholds and not benchmarks:
        raise GovernanceError(f"{where}: thresholds.forgetting_drop_max needs forgetting.benchmarks")
    limit = forgetting.get("limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise GovernanceError(f"{where}: forgetting.limit must be an integer >= 0 (0: every item), got {limit!r}")
    review = data.get("human_review") or {}
    size = review.get("sample_size", 16)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1000:
        raise GovernanceError(f"{where}: human_review.sample_size must be an integer in [1, 1000], got {size!r}")
    if not isinstance(review.get("blind_compare", True), bool):
        raise GovernanceError(f"{where}: human_review.blind_compare must be true or false")
    parity = data.get("parity", {})
    if "max_logit_diff" in parity and not 0 < float(parity["max_logit_diff"]) < 10:
        raise GovernanceError(f"{where}: parity.max_logit_diff out of range (0, 10)")
    return data


def load_decoding_policy(path: Path) -> dict:
    """Per-task decoding: `default` plus overrides, each with max_new_tokens (1..2048) and
    temperature (0 = greedy, up to 2)."""
    data = load_yaml(path)
    where = str(path)
    if "default" not in data:
        raise GovernanceError(f"{where}: decoding policy must have a 'default' entry")
    for task, policy in data.items():
        if not isinstance(policy, dict) or set(policy) - DECODING_KEYS:
            raise GovernanceError(f"{where}: {task}: only {sorted(DECODING_KEYS)} are allowed, got {policy!r}")
        tokens, temperature = policy.get("max_new_tokens", 64), policy.get("temperature", 0.0)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= 2048:
            raise GovernanceError(f"{where}: {task}.max_new_tokens: {tokens!r} out of range [1, 2048]")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise GovernanceError(f"{where}: {task}.temperature: {temperature!r} out of range [0, 2]")
    return data


def resolve_benchmarks(contract: dict, resolve, digest) -> dict[str, dict]:
    """{name: {"path", "sha256"}} for each forgetting benchmark; `resolve(relative) -> Path` places a
    path under the data dir. A missing file is an error naming the contract key."""
    out = {}
    for name, relative in ((contract.get("forgetting") or {}).get("benchmarks") or {}).items():
        path = Path(resolve(relative))
        if not path.is_file():
            raise GovernanceError(f"eval contract: forgetting.benchmarks.{name}: {path} not found")
        out[name] = {"path": str(path), "sha256": digest(path)}
    return out


def evaluate_gate(contract: dict, report: dict, review: dict | None = None) -> dict:
    """Evaluate every contract rule against the eval report (and the blind human review when the
    contract asks for one): value, threshold, pass/fail each. A rule whose value is missing fails."""
    tuned_key = contract["tuned_model"]
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
    for name, threshold in contract["thresholds"].items():
        direction, *_, meaning = THRESHOLDS[name]
        if name == "forgetting_drop_max":
            rules += _forgetting_rules(report.get("forgetting", {}).get(tuned_key), threshold, meaning)
            continue
        value = values[name]
        passed = value is not None and (value >= threshold if direction == "min" else value <= threshold)
        rules.append({"rule": name, "value": None if value is None else round(value, 4),
                      "threshold": threshold, "passed": bool(passed), "measures": meaning})
    if contract["release_rule"] == "tuned_beats_base_on_task_success":
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
