"""Writes the self-distillation replay source `data/raw/general_replay/` (committed; this script
documents how it was made).

Why: on the demo budget the tuned model lost general-probe items whose base margin was small (the
"forgetting" release gate rejected it). Replay mixes general, off-domain requests into SFT whose
replies are the *base model's own* greedy answers, so the loss on them pulls the adapter back
toward the base model's behaviour outside the support domain (self-distillation replay). The
replies are model output, not reviewed for factual accuracy: they teach "stay as you were", not facts.

The prompts (`scripts/replay_prompts.txt`) are written by this project and deliberately avoid the
facts the forgetting probe asks about; curation decontaminates them against the probe anyway.
A reply that hits the token limit is trimmed back to its last complete sentence (so the model
learns to stop where a sentence ends, not mid-word), and left out when less than half remains. Run:
`python scripts/make_replay_data.py [--base-model data/artifacts/base_model]`.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "raw" / "general_replay"
MAX_NEW_TOKENS = 128
SENTENCE_END = re.compile(r"[.!?](?=\s)|[.!?]$")


def main(argv=None) -> None:
    from ftassets.lib.core.files import write_jsonl_atomic, write_text_atomic
    from ftassets.lib.core.generation import generate
    from ftassets.lib.core.models import load_model, load_tokenizer, weights_files

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default=str(ROOT / "data" / "artifacts" / "base_model"))
    args = parser.parse_args(argv)
    base = Path(args.base_model)
    prompts = [p.strip() for p in (ROOT / "scripts" / "replay_prompts.txt").read_text().splitlines() if p.strip()]
    tokenizer, model = load_tokenizer(base), load_model(base)
    replies = generate(model, tokenizer, [[{"role": "user", "content": p}] for p in prompts],
                       max_new_tokens=MAX_NEW_TOKENS, batch_size=25)
    records, trimmed, dropped = [], 0, 0
    for n, (prompt, reply) in enumerate(zip(prompts, replies)):
        if len(tokenizer(reply, add_special_tokens=False).input_ids) >= MAX_NEW_TOKENS - 1:
            ends = [m.end() for m in SENTENCE_END.finditer(reply)]
            kept = reply[:ends[-1]].strip() if ends else ""
            trimmed += len(kept) >= len(reply) / 2
            reply = kept if len(kept) >= len(reply) / 2 else ""
        if not reply:
            dropped += 1
            continue
        records.append({"id": f"gr-{n:04d}", "messages": [{"role": "user", "content": prompt},
                                                          {"role": "assistant", "content": reply}]})
    weights = hashlib.sha256(b"".join(p.read_bytes() for p in weights_files(base))).hexdigest()
    write_jsonl_atomic(OUT / "replay.jsonl", records)
    write_text_atomic(OUT / "source.yaml", (
        "license: apache-2.0\n"
        "provenance: >-\n"
        "  self-distillation replay: general prompts written by the ftassets project (scripts/replay_prompts.txt),\n"
        f"  replies generated greedily (max {MAX_NEW_TOKENS} new tokens, cut replies trimmed to their last sentence) by the base model SmolLM2-135M-Instruct\n"
        f"  (Apache-2.0; weights sha256 {weights[:16]}...) with scripts/make_replay_data.py; replies are\n"
        "  unreviewed model output, kept to anchor the adapter to the base model's general behaviour\n"
        "format: openai_chat\n"
        "task: general_replay\n"
        "reviewed_by: ftassets-maintainers (prompts only)\n"
        "do_not_train: false\n"
        "kind: sft\n"))
    print(f"{len(records)} replay examples written to {OUT} ({trimmed} trimmed to their last sentence, "
          f"{dropped} left out)")


if __name__ == "__main__":
    main()
