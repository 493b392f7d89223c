"""Perplexity on the assistant's final turn only (the tokens training puts loss on).

Each conversation is rendered with the tokenizer's chat template; the prompt rendering (with the
generation prompt) is a prefix of the full rendering, and only the tokens after it (the answer and
the end-of-turn marker) are scored. Token-weighted over the whole split: exp(total NLL / tokens).
"""

from __future__ import annotations

import math


def _encode(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], int] | None:
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        return None
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
    if len(ids) <= len(prompt_ids):
        return None
    return ids, len(prompt_ids)


def perplexity(model, tokenizer, records: list[dict], batch_size: int = 16, max_length: int = 1024) -> dict:
    """{"perplexity", "mean_nll", "tokens", "records", "skipped"} over `records` (canonical chat
    records whose last message is the assistant's answer)."""
    import torch

    encoded = [_encode(tokenizer, r["messages"], max_length) for r in records]
    rows = [e for e in encoded if e is not None]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        for i, (ids, prompt_len) in enumerate(chunk):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            attention[i, :len(ids)] = 1
            labels[i, prompt_len:len(ids)] = torch.tensor(ids[prompt_len:])
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(model.device),
                           attention_mask=attention.to(model.device)).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(logits.device)
        nll = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                                shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
        total_nll += float(nll)
        total_tokens += int((shift_labels != -100).sum())
    mean = total_nll / total_tokens if total_tokens else float("nan")
    return {"perplexity": round(math.exp(mean), 4) if total_tokens else None,
            "mean_nll": round(mean, 5) if total_tokens else None, "tokens": total_tokens,
            "records": len(rows), "skipped": len(records) - len(rows)}
