"""Proof that training sees what inference will: each audited example, as the SFT trainer tokenized
it, decodes back to the base tokenizer's own chat-template rendering (round trip), and the tokens
that carry loss are exactly the final assistant turn (its text and the template's end-of-turn
marker), nothing of the system or user turns and nothing of the assistant header.

Runs on the trainer's prepared dataset, so it checks trl's real masking, not a re-implementation."""

from __future__ import annotations


def audit_example(tokenizer, prompt: list[dict], completion: list[dict], input_ids: list[int],
                  labels: list[int]) -> dict:
    full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    trained_positions = [i for i, label in enumerate(labels) if label != -100]
    contiguous_tail = bool(trained_positions) and trained_positions == list(
        range(trained_positions[0], len(input_ids)))
    trained = tokenizer.decode([input_ids[i] for i in trained_positions])
    expected = full[len(prompt_text):] if full.startswith(prompt_text) else None
    content = completion[-1]["content"]
    return {
        "round_trip": tokenizer.decode(input_ids) == full,
        "prompt_is_prefix": expected is not None,
        "mask_exact": expected is not None and contiguous_tail and trained == expected and expected.startswith(content),
        "trained_tokens": len(trained_positions), "tokens": len(input_ids),
    }


def audit(tokenizer, examples, prepared, limit: int = 16) -> dict:
    """`examples`: rows with conversational prompt/completion; `prepared`: the trainer's tokenized
    rows (input_ids, labels) in the same order. Audits `limit` rows spread evenly over the whole split
    (the first rows alone can all be of one source); reports counts, the first failing row and, in
    words, what failed."""
    total = min(len(examples), len(prepared))
    rows = sorted({round(i * (total - 1) / max(limit - 1, 1)) for i in range(min(limit, total))}) if total else []
    results = []
    for index in rows:
        row = prepared[index]
        results.append({"row": index, **audit_example(tokenizer, examples[index]["prompt"],
                                                     examples[index]["completion"], row["input_ids"], row["labels"])})
    failures = [r for r in results if not (r["round_trip"] and r["mask_exact"])]
    return {"audited": len(results), "round_trip_ok": sum(r["round_trip"] for r in results),
            "mask_exact_ok": sum(r["mask_exact"] for r in results),
            "first_failure_row": failures[0]["row"] if failures else None,
            "first_failure": failures[0] if failures else None, "explanation": explain(results)}


def explain(results: list[dict]) -> str:
    """What the audit found, in words, with what to look at."""
    n = len(results)
    bad_trip = sum(not r["round_trip"] for r in results)
    bad_mask = sum(not r["mask_exact"] for r in results)
    if not n:
        return "no training example was audited"
    if not bad_trip and not bad_mask:
        return f"all {n} audited examples: rendered with the base chat template, loss on the final assistant turn only"
    parts = []
    if bad_trip:
        parts.append(f"{bad_trip} of {n} audited examples do not decode back to the base tokenizer's chat-template "
                     f"rendering (the trainer tokenized them differently: a changed chat template or tokenizer?)")
    if bad_mask:
        parts.append(f"{bad_mask} of {n} carry loss on other tokens than exactly the final assistant turn (the "
                     f"prompt is not a prefix of the full rendering, or the mask covers system/user tokens)")
    first = next(r for r in results if not (r["round_trip"] and r["mask_exact"]))
    return "; ".join(parts) + f"; first: row {first['row']} ({first['tokens']} tokens, {first['trained_tokens']} trained)"
