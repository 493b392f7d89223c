"""Running one model over the frozen test set, the gold set, the red-team prompts, perplexity sets
and forgetting benchmarks, and the side-by-side report.

Generation is batched and grouped by task so each task gets its decoding policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ftassets.lib.core.generation import generate_by_task
from ftassets.lib.core.tasks import TaskSpec
from ftassets.lib.evaluation import forgetting, replies_cache, toxicity
from ftassets.lib.evaluation.replies_cache import RepliesCache
from ftassets.lib.core.metrics import aggregate_task_scores, is_refusal
from ftassets.lib.evaluation.perplexity import perplexity
from ftassets.lib.core.scoring import gold_item_passes, schema_tasks, score_item, task_details


def test_items(records: list[dict]) -> list[dict]:
    return [{"id": r["id"], "task": r["meta"]["task"], "prompt": r["messages"][:-1],
             "reference": r["messages"][-1]["content"]} for r in records]


@dataclass
class EvalInputs:
    """Everything one model is measured on; the same object serves every compared model."""
    test_records: list[dict]
    gold: list[dict]
    redteam: list[dict]
    perplexity_sets: dict[str, list[dict]] = field(default_factory=dict)  # split name -> chat records
    benchmarks: dict[str, str] = field(default_factory=dict)  # forgetting: name -> {query, choices, gold} JSONL
    benchmark_limit: int | None = None

    @property
    def test(self) -> list[dict]:
        return test_items(self.test_records)


def evaluate_model(model, tokenizer, inputs: EvalInputs, decoding: dict, tasks: dict[str, TaskSpec],
                   average: str = "items", judge=None, cache: RepliesCache | None = None,
                   model_id: str | None = None) -> dict:
    """Task metrics, gold rules, safety (refusal, over-refusal, toxicity), perplexity on the
    assistant turns, and forgetting benchmarks, for one model; `average`: how the overall task
    success weighs the tasks (the contract's task_success_average); `judge` (lib/evaluation/judge.py)
    scores the replies of tasks with a judge metric; with a `cache` and the model's `model_id` (its weights
    hashes) the replies come from the cache when the same model already answered the same prompts."""
    test = inputs.test
    prompts = ([{"task": t["task"], "prompt": t["prompt"]} for t in test]
               + [{"task": g["task"], "prompt": g["messages"]} for g in inputs.gold]
               + [{"task": "redteam", "prompt": r["messages"]} for r in inputs.redteam])
    def fresh() -> list[str]:
        return generate_by_task(model, tokenizer, prompts, decoding)  # one batched pass for all

    if cache is not None and model_id:
        entry = replies_cache.key(model_id, replies_cache.fingerprint(model, tokenizer), prompts, decoding)
        generated, cached = cache.replies(entry, len(prompts), fresh)
    else:
        generated, cached = fresh(), False
    replies = generated[:len(test)]
    gold_replies = generated[len(test):len(test) + len(inputs.gold)]
    rt_replies = generated[len(test) + len(inputs.gold):]
    judged = judge_scores(judge, test, replies, tasks)
    scored = [{"id": t["id"], "task": t["task"], "reply": reply,
               "scores": score_item(tasks[t["task"]], reply, t["reference"], judged.get(t["id"]))}
              for t, reply in zip(test, replies)]
    test_scores = aggregate_task_scores(scored, {name: t.weight for name, t in tasks.items()}, average)
    for name, scores in test_scores["per_task"].items():  # per-field and per-label views, as declared
        scores.update(task_details(tasks[name], [(r, t["reference"]) for t, r in zip(test, replies)
                                                 if t["task"] == name]))
    schemas = schema_tasks(tasks)
    gold_rows = []
    for g, reply in zip(inputs.gold, gold_replies):
        passed, failed = gold_item_passes(g["rules"], reply, schemas)
        gold_rows.append({"id": g["id"], "task": g["task"], "passed": passed, "failed_rules": failed, "reply": reply})
    refuse = [is_refusal(x) for r, x in zip(inputs.redteam, rt_replies) if r["expect"] == "refuse"]
    benign = [is_refusal(x) for r, x in zip(inputs.redteam, rt_replies) if r["expect"] == "comply"]
    toxic = toxicity.summarize(rt_replies)
    return {
        "test": test_scores,
        "gold": {"n": len(gold_rows), "pass_rate": _rate([g["passed"] for g in gold_rows]),
                 "per_task": _gold_per_task(gold_rows), "failed": [g["id"] for g in gold_rows if not g["passed"]]},
        "safety": {"refusal_rate": _rate(refuse), "over_refusal_rate": _rate(benign),
                   "n_refuse_expected": len(refuse), "n_benign": len(benign),
                   "toxic_rate": toxic["toxic_rate"], "toxicity_mean": toxic["mean_score"],
                   "toxicity_max": toxic["max_score"]},
        "perplexity": {name: perplexity(model, tokenizer, records) for name, records in inputs.perplexity_sets.items()},
        "forgetting": forgetting.evaluate(model, tokenizer, inputs.benchmarks, inputs.benchmark_limit),
        "items": scored, "gold_items": gold_rows, "replies_cached": cached,
        "judge_missing": sum(1 for v in judged.values() if v is None),
        "redteam_items": [{"id": r["id"], "expect": r["expect"], "refused": is_refusal(x), "reply": x,
                           "toxicity": score, "toxic": score >= toxicity.TOXIC_AT}
                          for r, x, score in zip(inputs.redteam, rt_replies, toxicity.scores(rt_replies))],
    }


def judge_scores(judge, test: list[dict], replies: list[str], tasks: dict[str, TaskSpec]) -> dict[str, float | None]:
    """{item id: the judge's P(yes)} for the items of tasks with a judge metric (none without a judge)."""
    rows = [(t["id"], {"prompt": t["prompt"][-1]["content"], "reply": r, "reference": t["reference"]})
            for t, r in zip(test, replies) if tasks[t["task"]].judged()]
    if judge is None or not rows:
        return {}
    return dict(zip([i for i, _ in rows], judge.scores([row for _, row in rows])))


def _gold_per_task(rows: list[dict]) -> dict:
    tasks = sorted({r["task"] for r in rows})
    return {t: {"n": sum(r["task"] == t for r in rows), "passed": sum(r["passed"] for r in rows if r["task"] == t)}
            for t in tasks}


def forgetting_drops(results: dict[str, dict]) -> dict[str, dict]:
    """Per tuned model: each benchmark's drop against the base (see lib/forgetting.drops)."""
    base = results["base_model"]["forgetting"]
    return {key: forgetting.drops(base, r["forgetting"])
            for key, r in results.items() if key != "base_model"}


def regressions(base: dict, tuned: dict) -> dict:
    """Test items the base got right and the tuned model got wrong (`base_only_correct`)."""
    base_ok = {i["id"] for i in base["items"] if i["scores"]["success"]}
    lost = [i["id"] for i in tuned["items"] if i["id"] in base_ok and not i["scores"]["success"]]
    n = len(tuned["items"])
    return {"base_only_correct": lost, "count": len(lost), "share": round(len(lost) / n, 4) if n else 0.0}


def _rate(bits: list[bool]) -> float:
    return round(sum(bits) / len(bits), 4) if bits else 0.0
