"""Batched, left-padded chat generation used by evaluation and parity checks."""

from __future__ import annotations


def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 64,
             temperature: float = 0.0, batch_size: int = 48, seed: int = 0) -> list[str]:
    """Generate one reply per conversation (greedy when temperature == 0)."""
    import torch

    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    try:
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            kwargs = {"do_sample": False}
            if temperature > 0:
                torch.manual_seed(seed + start)
                kwargs = {"do_sample": True, "temperature": temperature, "top_p": 1.0}
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id, **kwargs)
            new = out[:, batch["input_ids"].shape[1]:]
            outputs.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = previous_side
    return outputs


def task_settings(policy: dict, task: str) -> dict:
    """A task's decoding settings: its entry over the policy's default over greedy, 64 tokens."""
    return {"max_new_tokens": 64, "temperature": 0.0, **policy["default"], **policy.get(task, {})}


def generate_by_task(model, tokenizer, items: list[dict], policy: dict) -> list[str]:
    """One reply per item ({"task", "prompt": messages}) in order; each task is generated as its own
    batch with its decoding policy (`policy`: {"default": {...}, task: {...}} as in decoding_policy.yaml)."""
    replies: list[str | None] = [None] * len(items)
    for task in sorted({i["task"] for i in items}):
        idx = [n for n, i in enumerate(items) if i["task"] == task]
        settings = task_settings(policy, task)
        outs = generate(model, tokenizer, [items[n]["prompt"] for n in idx],
                        max_new_tokens=settings["max_new_tokens"], temperature=settings["temperature"])
        for n, out in zip(idx, outs):
            replies[n] = out
    return replies
