"""The eval contract (what a release must show) and the release gate that applies it.

`data/governance/eval_contract.yaml` is versioned with the data; an unknown metric, a threshold
out of range or a missing file is a clear, located error rather than a silently ignored rule.
"""

from __future__ import annotations

from pathlib import Path

from ftassets.lib.governance import GovernanceError, load_yaml

# metric -> (direction, lower bound, upper bound, what it measures on the report)
THRESHOLDS = {
    "task_success_min": ("min", 0.0, 1.0, "tuned task success on the frozen test set"),
    "schema_validity_min": ("min", 0.0, 1.0, "tuned JSON schema validity on structured items"),
    "gold_pass_rate_min": ("min", 0.0, 1.0, "tuned gold-set pass rate"),
    "refusal_regression_max": ("max", 0.0, 1.0, "base refusal rate minus tuned, on refuse-expected prompts"),
    "over_refusal_regression_max": ("max", 0.0, 1.0, "tuned over-refusal minus base, on benign prompts"),
    "adapter_merged_task_gap_max": ("max", 0.0, 1.0, "|task success adapter - merged|"),
}
RELEASE_RULES = {"tuned_beats_base_on_task_success"}
MODEL_KEYS = {"base_model", "sft_adapter", "dpo_adapter", "merged_model"}


def load_contract(path: Path) -> dict:
    path = Path(path)
    data = load_yaml(path)
    where = str(path)
    for key in ("version", "models", "tuned_model", "thresholds", "release_rule", "decoding"):
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
        if not isinstance(value, (int, float)) or not low <= value <= high:
            raise GovernanceError(f"{where}: thresholds.{name}: {value!r} out of range [{low}, {high}]")
    if data["release_rule"] not in RELEASE_RULES:
        raise GovernanceError(f"{where}: release_rule {data['release_rule']!r} unknown (known: {sorted(RELEASE_RULES)})")
    decoding = data["decoding"]
    if not isinstance(decoding, dict) or "default" not in decoding:
        raise GovernanceError(f"{where}: decoding must have a 'default' entry")
    for task, policy in decoding.items():
        if set(policy) - {"max_new_tokens", "temperature"}:
            raise GovernanceError(f"{where}: decoding.{task}: only max_new_tokens and temperature are allowed")
    benchmarks = (data.get("forgetting") or {}).get("benchmarks", {})
    if not isinstance(benchmarks, dict) or not all(isinstance(v, str) and v for v in benchmarks.values()):
        raise GovernanceError(f"{where}: forgetting.benchmarks must map a task name to a JSONL file path")
    parity = data.get("parity", {})
    if "max_logit_diff" in parity and not 0 < float(parity["max_logit_diff"]) < 10:
        raise GovernanceError(f"{where}: parity.max_logit_diff out of range (0, 10)")
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


def decoding_for(contract: dict, task: str) -> dict:
    return {"max_new_tokens": 64, "temperature": 0.0, **contract["decoding"]["default"],
            **contract["decoding"].get(task, {})}


def evaluate_gate(contract: dict, report: dict) -> dict:
    """Evaluate every contract rule against the eval report: value, threshold, pass/fail each."""
    tuned_key = contract["tuned_model"]
    base, tuned = report["models"]["base_model"], report["models"][tuned_key]
    values = {
        "task_success_min": tuned["test"]["task_success"],
        "schema_validity_min": tuned["test"]["schema_validity"],
        "gold_pass_rate_min": tuned["gold"]["pass_rate"],
        "refusal_regression_max": base["safety"]["refusal_rate"] - tuned["safety"]["refusal_rate"],
        "over_refusal_regression_max": tuned["safety"]["over_refusal_rate"] - base["safety"]["over_refusal_rate"],
        "adapter_merged_task_gap_max": report.get("adapter_merged_task_gap"),
    }
    rules = []
    for name, threshold in contract["thresholds"].items():
        direction, *_, meaning = THRESHOLDS[name]
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
