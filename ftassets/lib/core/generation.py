"""Batched, left-padded chat generation used by evaluation and parity checks."""

from __future__ import annotations


def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int | list[int] = 64,
             temperature: float = 0.0, batch_size: int = 48, seed: int = 0,
             stopped: list | None = None) -> list[str]:
    """Generate one reply per conversation (greedy when temperature == 0), in input order.

    `max_new_tokens` may be one limit per conversation: each batch generates up to its largest limit
    and every reply is cut at its own (for greedy decoding that is the same reply a separate call
    with the smaller limit gives). Conversations are batched by prompt length, so little padding.
    `stopped`, when given, receives per conversation (prompt tokens, tokens generated, whether it ended
    at EOS)."""
    import torch

    limits = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(conversations)
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda n: lengths[n])
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str | None] = [None] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = tokenizer([texts[n] for n in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            kwargs = {"do_sample": False}
            if temperature > 0:
                torch.manual_seed(seed + start)
                kwargs = {"do_sample": True, "temperature": temperature, "top_p": 1.0}
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max(limits[n] for n in chunk),
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs)
            new = out[:, batch["input_ids"].shape[1]:]
            for row, n in enumerate(chunk):
                outputs[n] = tokenizer.decode(new[row, :limits[n]], skip_special_tokens=True).strip()
                if stopped is not None:
                    ends = (new[row, :limits[n]] == tokenizer.eos_token_id).nonzero()
                    stopped[n] = (lengths[n], *((int(ends[0]) + 1, True) if len(ends)
                                                else (min(limits[n], new.shape[1]), False)))
    finally:
        tokenizer.padding_side = previous_side
    return outputs


def task_settings(policy: dict, task: str) -> dict:
    """A task's decoding settings: its entry over the policy's default over greedy, 64 tokens."""
    return {"max_new_tokens": 64, "temperature": 0.0, **policy["default"], **policy.get(task, {})}


def generate_by_task(model, tokenizer, items: list[dict], policy: dict) -> list[str]:
    """One reply per item ({"task", "prompt": messages}) in order, each with its task's decoding
    settings (`policy`: {"default": {...}, task: {...}} as in decoding_policy.yaml). Tasks that share
    a temperature are generated together, each reply cut at its task's token limit."""
    replies: list[str | None] = [None] * len(items)
    settings = [task_settings(policy, i["task"]) for i in items]
    for temperature in sorted({s["temperature"] for s in settings}):
        idx = [n for n, s in enumerate(settings) if s["temperature"] == temperature]
        outs = generate(model, tokenizer, [items[n]["prompt"] for n in idx],
                        max_new_tokens=[settings[n]["max_new_tokens"] for n in idx], temperature=temperature)
        for n, out in zip(idx, outs):
            replies[n] = out
    return replies
