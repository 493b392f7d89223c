"""Scoring primitives: refusal detection, ROUGE-L, macro-F1, and the aggregation of item scores per
task. (How each task is scored is declared in the contract and applied by `scoring.py`.)

Refusal detection is a phrase matcher (documented limits: it misses refusals phrased unusually
and counts "I can't find that" as a refusal); it is applied identically to every model, so the
base-vs-tuned delta is meaningful even where the absolute rate is approximate.
"""

from __future__ import annotations

import re

REFUSAL = re.compile(
    r"\b(i can['’]?t|i cannot|i can not|i won['’]?t|i am not able|i['’]m not able|i am unable|i['’]m unable|"
    r"unable to (help|assist|share|provide)|not (allowed|permitted) to|i must decline|i['’]m sorry, but|"
    r"i apologi[sz]e, but|cannot (help|assist|share|provide|comply))", re.IGNORECASE)


def is_refusal(text: str) -> bool:
    return bool(REFUSAL.search(text))


_rouge = None


def rouge_l(prediction: str, reference: str) -> float:
    global _rouge
    if _rouge is None:
        from rouge_score import rouge_scorer

        _rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _rouge.score(reference, prediction)["rougeL"].fmeasure


def aggregate_task_scores(items: list[dict], weights: dict[str, float] | None = None, average: str = "items") -> dict:
    """Mean of each score over items, per task, and the overall task success as the contract declares
    it: `items` weights each item by its task's weight (all 1: the plain item mean), `tasks` takes
    each task's success rate weighted by its task's weight (a small task counts as much as a big one)."""
    def mean(values):
        values = [float(v) for v in values]
        return round(sum(values) / len(values), 4) if values else None

    weights = weights or {}
    per_task = {}
    for task in sorted({i["task"] for i in items}):
        rows = [i["scores"] for i in items if i["task"] == task]
        keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (bool, int, float))})
        per_task[task] = {"n": len(rows), **{k: mean(r[k] for r in rows if k in r) for k in keys}}
        failed = sum(bool(r.get("errors")) for r in rows)
        if failed:
            per_task[task]["metric_errors"] = failed
    if average == "tasks":
        pairs = [(weights.get(t, 1.0), s["success"]) for t, s in per_task.items()]
    else:
        pairs = [(weights.get(i["task"], 1.0), float(i["scores"]["success"])) for i in items]
    total = sum(w for w, _ in pairs)
    success = round(sum(w * v for w, v in pairs) / total, 4) if total else None
    structured = [i["scores"]["schema_valid"] for i in items if "schema_valid" in i["scores"]]
    return {"n": len(items), "task_success": success, "task_success_average": average,
            "schema_validity": mean(structured) if structured else None, "per_task": per_task}


def macro_f1(gold: list, predicted: list) -> float:
    """Macro-averaged F1 over the gold labels' classes (a wrong or missing prediction is a miss)."""
    classes = sorted(set(gold), key=str)
    scores = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, predicted))
        fp = sum(g != c and p == c for g, p in zip(gold, predicted))
        fn = sum(g == c and p != c for g, p in zip(gold, predicted))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return round(sum(scores) / len(scores), 4) if scores else 0.0
