"""Forgetting: general-capability benchmarks through EleutherAI lm-eval, base vs tuned.

Each benchmark is a local `{query, choices, gold}` JSONL file run as an lm-eval multiple-choice
task (`dataset_path: json`, 0-shot, log-likelihood of each choice) against a model already in
memory (`HFLM(pretrained=<model>)`): nothing is downloaded. Each item's 0/1 outcome is kept, so the
release gate compares base and tuned on the same items (a paired interval against the contract's margin).
"""

from __future__ import annotations

import math
from pathlib import Path


def task_config(name: str, path: str | Path) -> dict:
    """An lm-eval task config for a local {query, choices, gold} JSONL file."""
    return {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": "{{query}}", "doc_to_choice": "{{choices}}", "doc_to_target": "{{gold}}",
        "target_delimiter": " ",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def evaluate(model, tokenizer, benchmarks: dict[str, str | Path], limit: int | None = None,
             batch_size: int = 16) -> dict[str, dict]:
    """{name: {"acc", "acc_stderr", "acc_norm", "n", "correct": [0/1 per item in doc order]}}."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    if not benchmarks:
        return {}
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[task_config(name, path) for name, path in sorted(benchmarks.items())], num_fewshot=0,
        limit=limit, log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
        torch_random_seed=0, fewshot_random_seed=0)
    results = {}
    for name in sorted(benchmarks):
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        correct = [int(s["acc"]) for s in samples]
        norm = [float(s["acc_norm"]) for s in samples]
        n = len(correct)
        acc = sum(correct) / n if n else 0.0
        results[name] = {"acc": round(acc, 4), "acc_stderr": round(_stderr(correct), 4),
                         "acc_norm": round(sum(norm) / n, 4) if n else 0.0, "n": n, "correct": correct}
    return results


def _stderr(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def drops(base: dict[str, dict], tuned: dict[str, dict]) -> dict[str, dict]:
    """Per benchmark: accuracy drop in points (base - tuned) and the paired standard error of the
    difference in points (the release gate holds the drop's interval to the contract's margin)."""
    out = {}
    for name in sorted(set(base) & set(tuned)):
        b, t = base[name]["correct"], tuned[name]["correct"]
        if len(b) != len(t):
            raise ValueError(f"forgetting benchmark {name}: {len(b)} base items vs {len(t)} tuned items")
        drop = 100.0 * (base[name]["acc"] - tuned[name]["acc"])
        stderr = 100.0 * _stderr([x - y for x, y in zip(b, t)])
        out[name] = {"base_acc": base[name]["acc"], "tuned_acc": tuned[name]["acc"], "drop_points": round(drop, 2),
                     "stderr_points": round(stderr, 2), "n": len(b)}
    return out
