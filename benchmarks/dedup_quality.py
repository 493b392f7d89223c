"""Near-duplicate detection quality: precision and recall of `deduplicated_examples`' rule on pairs
with known edits, built from real records.

Base records: the 999 Alpaca demo examples in ../shared/data/sft/ (as chat records; exact-duplicate
prompts removed first). For a sample of them a copy with one known edit is added; every other
record is a distinct negative. The dedup stage runs with its configured threshold, permutations and
shingle size; a dropped copy is a true positive, a dropped original-data record a false positive.

Edits ("meaning kept" ones should be caught; "rewrite" ones should not):
  whitespace, punctuation, case  -> normalization makes them exact duplicates
  typo (1 char per 60), word_drop (1 word in 20), suffix (a short sentence appended)  -> near
  rewrite (half the words of the answer replaced)  -> a different record, must be kept

    python benchmarks/dedup_quality.py [--append-results]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from results import report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sft" / "alpaca_en_demo.json"
NEAR_EDITS = ("whitespace", "punctuation", "case", "typo", "word_drop", "suffix")


def edit(text: str, kind: str, rng: random.Random) -> str:
    words = text.split(" ")
    if kind == "whitespace":
        return text.replace(" ", "  ", 3)
    if kind == "punctuation":
        return text.rstrip(".!?") + "!"
    if kind == "case":
        return text.upper() if len(text) < 40 else text[0].swapcase() + text[1:].lower()
    if kind == "typo":
        chars = list(text)
        for i in rng.sample(range(len(chars)), max(1, len(chars) // 60)):
            chars[i] = rng.choice("abcdefghijklmnopqrstuvwxyz")
        return "".join(chars)
    if kind == "word_drop":
        for _ in range(max(1, len(words) // 20)):
            if len(words) > 2:
                words.pop(rng.randrange(len(words)))
        return " ".join(words)
    if kind == "suffix":
        return text + " Thanks in advance."
    if kind == "rewrite":
        for i in rng.sample(range(len(words)), len(words) // 2):
            words[i] = rng.choice(["system", "value", "people", "result", "method", "change", "story", "water"])
        return " ".join(words)
    raise ValueError(kind)


def build(items, rng, per_edit: int):
    from ftassets.lib.curation.dedup import exact_key

    seen, records = set(), []
    for n, item in enumerate(items):
        prompt = item["instruction"] + (f"\n{item['input']}" if item.get("input") else "")
        if len(item["output"]) < 40 or exact_key(prompt) in seen:  # very short answers: edits change too much
            continue
        seen.add(exact_key(prompt))
        records.append({"id": f"a{n}", "messages": [{"role": "user", "content": prompt},
                                                     {"role": "assistant", "content": item["output"]}]})
    copies, truth = [], {}
    picks = rng.sample(range(len(records)), per_edit * (len(NEAR_EDITS) + 1))
    for k, kind in enumerate(NEAR_EDITS + ("rewrite",)):
        for j in picks[k * per_edit:(k + 1) * per_edit]:
            original = records[j]
            field = 1 if kind in ("rewrite", "suffix", "word_drop", "typo") else 0
            messages = json.loads(json.dumps(original["messages"]))
            messages[field]["content"] = edit(messages[field]["content"], kind, rng)
            copy_id = f"{original['id']}-{kind}"
            copies.append({"id": copy_id, "messages": messages})
            truth[copy_id] = kind
    return records + copies, truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-edit", type=int, default=40)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found (the shared reference data is not beside this checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    from ftassets.defs.curation.cleaning import DedupConfig
    from ftassets.lib.curation.dedup import deduplicate

    config = DedupConfig()
    records, truth = build(json.loads(DATA.read_text()), random.Random(0), args.per_edit)
    total = Counter(truth.values())
    should = {i for i, kind in truth.items() if kind != "rewrite"}
    thresholds = sorted({0.8, 0.85, config.near_duplicate_threshold})
    print(f"{len(records)} records ({len(truth)} edited copies); num_perm {config.num_perm}, shingle {config.shingle_size}; "
          f"configured threshold {config.near_duplicate_threshold}")
    print("| threshold | " + " | ".join(f"{k} ({total[k]})" for k in NEAR_EDITS + ("rewrite",))
          + " | precision | recall | records/s |")
    print("|---:|" + "---:|" * (len(NEAR_EDITS) + 4))
    results = {}
    for threshold in thresholds:
        start = time.perf_counter()
        _, dropped = deduplicate(records, threshold, config.num_perm, config.shingle_size)
        seconds = time.perf_counter() - start
        dropped_ids = {d["id"] for d in dropped}
        caught = Counter(truth[i] for i in dropped_ids if i in truth)
        true_pos = len(dropped_ids & should)
        precision = true_pos / len(dropped_ids) if dropped_ids else 1.0
        recall = true_pos / len(should)
        results[threshold] = (precision, recall)
        print(f"| {threshold} | " + " | ".join(str(caught[k]) for k in NEAR_EDITS + ("rewrite",))
              + f" | {precision:.3f} | {recall:.3f} | {len(records) / seconds:.0f} |")
    precision, recall = results[config.near_duplicate_threshold]
    summary = (f"near-dup detection: precision {precision:.2f}, recall {recall:.2f} at threshold "
               f"{config.near_duplicate_threshold} (" + ", ".join(f"{t}: {p:.2f}/{r:.2f}" for t, (p, r) in results.items())
               + f"; {len(should)} meaning-kept copies, {total['rewrite']} rewrites of alpaca_en_demo)")
    report(summary, "python benchmarks/dedup_quality.py --append-results", args.append_results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
