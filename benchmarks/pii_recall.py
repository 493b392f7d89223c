"""PII scrubber quality on real ground-truth spans: recall and precision per entity type.

Data: ../shared/data/pii/synth_dataset_v2.json (presidio-research, MIT): 1,500 texts whose spans
are labelled by type. The scrubber runs exactly as `scrubbed_examples` configures it (entities,
score threshold, allow-list, NER model).

- recall (typed): a labelled span counts as found when a detection of the mapped type overlaps it.
- removed: a labelled span counts when ANY detection overlaps it (what scrubbing needs: the text is
  gone, whatever the placeholder says).
- precision (typed): detections of a type that overlap a labelled span of that type, over all
  detections of that type. A detection that overlaps a labelled span of another PII type is
  counted separately ("other_pii"), not as a false positive of scrubbing.

    python benchmarks/pii_recall.py [--limit N] [--no-name-lists] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path

from results import report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pii" / "synth_dataset_v2.json"
# Dataset label -> the Presidio entity our scrubber emits for it (None: not one of our entities).
LABELS = {"PERSON": "PERSON", "STREET_ADDRESS": "STREET_ADDRESS", "GPE": "LOCATION", "CREDIT_CARD": "CREDIT_CARD",
          "PHONE_NUMBER": "PHONE_NUMBER", "EMAIL_ADDRESS": "EMAIL_ADDRESS", "IBAN_CODE": "IBAN_CODE",
          "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS"}
TARGETS = {"EMAIL_ADDRESS": 0.95, "PHONE_NUMBER": 0.95, "CREDIT_CARD": 0.95, "IP_ADDRESS": 0.95,
           "IBAN_CODE": 0.95, "US_SSN": 0.95, "PERSON": 0.80}


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def measure(items, scrubber) -> dict:
    found, removed, total = Counter(), Counter(), Counter()
    detected, true_pos, other_pii = Counter(), Counter(), Counter()
    for item in items:
        text = item["full_text"]
        results = scrubber.analyzer.analyze(text=text, language="en", entities=scrubber.entities,
                                            score_threshold=scrubber.score_threshold,
                                            allow_list=scrubber.allow_list or None)
        spans = [(s["start_position"], s["end_position"], s["entity_type"]) for s in item["spans"]]
        hits = [(r.start, r.end, r.entity_type) for r in results]
        for start, end, label in spans:
            total[label] += 1
            removed[label] += any(_overlaps((start, end), h) for h in hits)
            found[label] += any(_overlaps((start, end), h) and h[2] == LABELS.get(label) for h in hits)
        for start, end, kind in hits:
            detected[kind] += 1
            if any(_overlaps((start, end), s) and LABELS.get(s[2]) == kind for s in spans):
                true_pos[kind] += 1
            elif any(_overlaps((start, end), s) for s in spans):
                other_pii[kind] += 1
    per_label = {}
    for label in sorted(total, key=lambda k: -total[k]):
        kind = LABELS.get(label)
        per_label[label] = {
            "spans": total[label], "entity": kind,
            "recall": round(found[label] / total[label], 4) if kind else None,
            "removed": round(removed[label] / total[label], 4),
            "precision": round(true_pos[kind] / detected[kind], 4) if kind and detected[kind] else None,
            "detections": detected[kind] if kind else None,
            "detections_on_other_pii": other_pii[kind] if kind else None,
            "target": TARGETS.get(label),
        }
    return per_label


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="first N texts only (0: all)")
    parser.add_argument("--name-lists", action=argparse.BooleanOptionalAction, default=None,
                        help="with or without the name-list PERSON recognizer (default: as the scrub config, "
                             "name_lists: true)")
    parser.add_argument("--append-results", action="store_true", help="append the summary line to benchmarks/RESULTS.md")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found (the shared reference data is not beside this checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    from ftassets.defs.curation.cleaning import ScrubConfig
    from ftassets.defs.platform.resources import PiiEngine

    items = json.loads(DATA.read_text())
    items = items[: args.limit] if args.limit else items
    config = ScrubConfig() if args.name_lists is None else ScrubConfig(name_lists=args.name_lists)
    scrubber = PiiEngine().scrubber(config)
    start = time.perf_counter()
    per_label = measure(items, scrubber)
    seconds = time.perf_counter() - start
    print(f"{len(items)} texts in {seconds:.1f} s ({len(items) / seconds:.0f} texts/s) on {platform.processor() or platform.machine()}, "
          f"score_threshold {config.score_threshold}, NER {PiiEngine().spacy_model}")
    print("| label | spans | as entity | recall | removed (any type) | precision | target | met |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for label, row in per_label.items():
        met = "" if row["target"] is None else ("yes" if row["recall"] >= row["target"] else "NO")
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {label} | {row['spans']} | {row['entity'] or '(not scrubbed)'} | {fmt(row['recall'])} | "
              f"{fmt(row['removed'])} | {fmt(row['precision'])} | {fmt(row['target'])} | {met} |")
    person = per_label.get("PERSON", {})
    summary = "pii recall: " + ", ".join(f"{k} {v['recall']:.2f}" for k, v in per_label.items() if v["target"]) + \
        f"; PERSON precision {person.get('precision') or 0:.2f}" + \
        f" (synth_dataset_v2, {len(items)} texts, threshold {config.score_threshold}, name lists {config.name_lists})"
    flag = "" if args.name_lists is None else (" --name-lists" if args.name_lists else " --no-name-lists")
    report(summary, f"python benchmarks/pii_recall.py{flag} --append-results", args.append_results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
