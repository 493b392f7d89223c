"""Evaluation throughput: the project's batched generation (left-padded batches, as eval_report
runs it) against a one-prompt-at-a-time `model.generate` loop, on the same model, the same prompts
and the same greedy decoding, side by side in one run. Checks that both produce the same replies.

    .venv/bin/python benchmarks/eval_throughput.py --prompts 32 [--append-results]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.results import report  # noqa: E402
from ftassets.lib.core.catalog import Catalog


def one_at_a_time(model, tokenizer, conversations, max_new_tokens: int) -> list[str]:
    import torch

    out = []
    for conversation in conversations:
        ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        with torch.no_grad():
            generated = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out.append(tokenizer.decode(generated[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "data/artifacts/base_model"))
    parser.add_argument("--test-file", default=str(Catalog(REPO / "data/artifacts").path("frozen_test_set", "test")))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from ftassets.lib.core.files import read_jsonl
    from ftassets.lib.core.generation import generate
    from ftassets.lib.core.models import load_model, load_tokenizer

    model, tokenizer = load_model(Path(args.model)), load_tokenizer(Path(args.model))
    prompts = [r["messages"][:-1] for r in read_jsonl(Path(args.test_file))][:args.prompts]
    start = time.perf_counter()
    single = one_at_a_time(model, tokenizer, prompts, args.max_new_tokens)
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens)
    batched_s = time.perf_counter() - start
    new_tokens = sum(len(tokenizer(x, add_special_tokens=False)["input_ids"]) for x in batched)
    same = sum(a == b for a, b in zip(single, batched))
    print(f"one at a time: {single_s:.1f} s; batched: {batched_s:.1f} s; {new_tokens} generated tokens; "
          f"identical replies {same}/{len(prompts)}")
    summary = (f"eval generation batched vs one-at-a-time: {single_s / batched_s:.2f}x "
               f"({len(prompts)} frozen-test prompts, greedy, max {args.max_new_tokens} new tokens; "
               f"batched {new_tokens / batched_s:.0f} tok/s, loop {new_tokens / single_s:.0f} tok/s; "
               f"identical replies {same}/{len(prompts)}, {time.strftime('%Y-%m-%d')})")
    report(summary, f"python benchmarks/eval_throughput.py --prompts {args.prompts} --append-results",
           args.append_results)


if __name__ == "__main__":
    main()
