"""Running one model over the frozen test set, the gold set and the red-team prompts.

Generation is batched and grouped by task so each task gets its decoding policy from the contract.
"""

from __future__ import annotations

from ftassets.lib.contract import decoding_for
from ftassets.lib.generation import generate
from ftassets.lib.metrics import aggregate_task_scores, gold_item_passes, is_refusal, score_item


def _generate_by_task(model, tokenizer, items: list[dict], contract: dict) -> list[str]:
    replies: list[str | None] = [None] * len(items)
    for task in sorted({i["task"] for i in items}):
        idx = [n for n, i in enumerate(items) if i["task"] == task]
        policy = decoding_for(contract, task)
        outs = generate(model, tokenizer, [items[n]["prompt"] for n in idx],
                        max_new_tokens=policy["max_new_tokens"], temperature=policy["temperature"])
        for n, out in zip(idx, outs):
            replies[n] = out
    return replies


def test_items(records: list[dict]) -> list[dict]:
    return [{"id": r["id"], "task": r["meta"]["task"], "prompt": r["messages"][:-1],
             "reference": r["messages"][-1]["content"]} for r in records]


def evaluate_model(model, tokenizer, test: list[dict], gold: list[dict], redteam: list[dict],
                   contract: dict) -> dict:
    replies = _generate_by_task(model, tokenizer, test, contract)
    scored = [{"id": t["id"], "task": t["task"], "reply": reply,
               "scores": score_item(t["task"], reply, t["reference"])} for t, reply in zip(test, replies)]
    gold_inputs = [{"task": g["task"], "prompt": g["messages"]} for g in gold]
    gold_replies = _generate_by_task(model, tokenizer, gold_inputs, contract)
    gold_rows = []
    for g, reply in zip(gold, gold_replies):
        passed, failed = gold_item_passes(g["rules"], reply)
        gold_rows.append({"id": g["id"], "passed": passed, "failed_rules": failed, "reply": reply})
    rt_replies = _generate_by_task(model, tokenizer, [{"task": "redteam", "prompt": r["messages"]}
                                                      for r in redteam], contract)
    refuse = [is_refusal(x) for r, x in zip(redteam, rt_replies) if r["expect"] == "refuse"]
    benign = [is_refusal(x) for r, x in zip(redteam, rt_replies) if r["expect"] == "comply"]
    return {
        "test": aggregate_task_scores(scored),
        "gold": {"n": len(gold_rows), "pass_rate": _rate([g["passed"] for g in gold_rows]),
                 "failed": [g["id"] for g in gold_rows if not g["passed"]]},
        "safety": {"refusal_rate": _rate(refuse), "over_refusal_rate": _rate(benign),
                   "n_refuse_expected": len(refuse), "n_benign": len(benign)},
        "items": scored, "gold_items": gold_rows,
        "redteam_items": [{"id": r["id"], "expect": r["expect"], "refused": is_refusal(x), "reply": x}
                          for r, x in zip(redteam, rt_replies)],
    }


def regressions(base: dict, tuned: dict) -> dict:
    """Test items the base got right and the tuned model got wrong (`base_only_correct`)."""
    base_ok = {i["id"] for i in base["items"] if i["scores"]["success"]}
    lost = [i["id"] for i in tuned["items"] if i["id"] in base_ok and not i["scores"]["success"]]
    n = len(tuned["items"])
    return {"base_only_correct": lost, "count": len(lost), "share": round(len(lost) / n, 4) if n else 0.0}


def _rate(bits: list[bool]) -> float:
    return round(sum(bits) / len(bits), 4) if bits else 0.0


def report_markdown(report: dict) -> str:
    models = list(report["models"])
    rows = [("task success (test)", lambda m: m["test"]["task_success"]),
            ("schema validity (triage)", lambda m: m["test"]["schema_validity"]),
            ("gold pass rate", lambda m: m["gold"]["pass_rate"]),
            ("refusal rate (refuse expected)", lambda m: m["safety"]["refusal_rate"]),
            ("over-refusal (benign)", lambda m: m["safety"]["over_refusal_rate"])]
    tasks = sorted({t for m in report["models"].values() for t in m["test"]["per_task"]})
    for task in tasks:
        rows.append((f"{task} success", lambda m, t=task: m["test"]["per_task"].get(t, {}).get("success")))
    lines = ["| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name, get in rows:
        cells = []
        for key in models:
            value = get(report["models"][key])
            cells.append("n/a" if value is None else f"{value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    reg = report["regressions"]
    lines += ["", f"Frozen test items: {report['test_items']}; gold items: {report['gold_items']}; "
                  f"red-team prompts: {report['redteam_items']}.",
              f"Regressions (base right, {report['tuned_model']} wrong): {reg['count']} ({reg['share']:.1%})."]
    return "\n".join(lines)
