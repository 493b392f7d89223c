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
    rows (input_ids, labels) in the same order. Reports counts and the first failing row index."""
    results = []
    for index in range(min(limit, len(examples), len(prepared))):
        row = prepared[index]
        results.append(audit_example(tokenizer, examples[index]["prompt"], examples[index]["completion"],
                                     row["input_ids"], row["labels"]))
    failures = [i for i, r in enumerate(results) if not (r["round_trip"] and r["mask_exact"])]
    return {"audited": len(results), "round_trip_ok": sum(r["round_trip"] for r in results),
            "mask_exact_ok": sum(r["mask_exact"] for r in results),
            "first_failure_row": failures[0] if failures else None,
            "first_failure": results[failures[0]] if failures else None}
