"""PII scrubber quality on real ground-truth spans: recall, removal and precision per label, and the
chain's throughput, on two data sets side by side:

- synth_dataset_v2 (presidio-research, MIT): 1,500 synthetic texts, every PII type;
- WNUT17 (CC BY 4.0): real user-generated text (tweets, comments, forum posts), person and location
  names; `wnut17-dev` is the reported figure, `wnut17-train` the one settings may be tuned on.

The scrubber runs exactly as `scrubbed_examples` configures it (entities, threshold, allow-list and
allow patterns, normalisation, NER model), through the same `PiiScrubber.find` the scrub uses.
Definitions of recall / removed / precision: ftassets/lib/curation/pii_quality.py.

    python benchmarks/pii_recall.py [--data synth,wnut17-dev] [--limit N] [--no-name-lists] [--append-results]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from results import report

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "pii"
DATA = {"synth": SHARED / "synth_dataset_v2.json", "wnut17-dev": SHARED / "wnut17" / "emerging.dev.conll",
        "wnut17-train": SHARED / "wnut17" / "wnut17train.conll"}
TARGETS = {"synth": {"EMAIL_ADDRESS": 0.98, "PHONE_NUMBER": 0.98, "CREDIT_CARD": 0.98, "IP_ADDRESS": 0.98,
                     "IBAN_CODE": 0.98, "US_SSN": 0.98, "PERSON": 0.80},
           "wnut17-dev": {"person": 0.80}, "wnut17-train": {"person": 0.80}}
REMOVED_TARGETS = {"synth": {"STREET_ADDRESS": 0.90}}


def load(name: str, limit: int):
    sys.path.insert(0, str(ROOT))
    from ftassets.lib.curation import pii_quality

    path = DATA[name]
    items = pii_quality.read_synth(path) if name == "synth" else pii_quality.read_conll(path)
    labels = pii_quality.SYNTH_LABELS if name == "synth" else pii_quality.WNUT_LABELS
    return (items[:limit] if limit else items), labels


def table(name: str, rows: dict) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"\n{name}\n| label | spans | as entity | recall | removed (any type) | precision | target | met |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for label, row in rows.items():
        removed_target = REMOVED_TARGETS.get(name, {}).get(label)
        target, value = (removed_target, row["removed"]) if removed_target else (row["target"], row["recall"])
        met = "" if target is None else ("yes" if value >= target else "NO")
        shown = "-" if target is None else (f"{target:.2f}" + (" removed" if removed_target else ""))
        print(f"| {label} | {row['spans']} | {row['entity'] or '(not scrubbed)'} | {fmt(row['recall'])} | "
              f"{fmt(row['removed'])} | {fmt(row['precision'])} | {shown} | {met} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="synth,wnut17-dev", help=f"comma-separated, of {', '.join(DATA)}")
    parser.add_argument("--limit", type=int, default=0, help="first N texts of each set only (0: all)")
    parser.add_argument("--name-lists", action=argparse.BooleanOptionalAction, default=None,
                        help="with or without the name-list PERSON recognizer (default: as the scrub config)")
    parser.add_argument("--append-results", action="store_true", help="append the summary line to benchmarks/RESULTS.md")
    args = parser.parse_args()
    names = [n.strip() for n in args.data.split(",") if n.strip()]
    missing = [str(DATA[n]) for n in names if not DATA[n].is_file()]
    if missing:
        print(f"skipped: {', '.join(missing)} not found (the shared reference data is not beside this checkout)")
        return 0
    sys.path.insert(0, str(ROOT))
    from ftassets.defs.curation.settings import ScrubConfig
    from ftassets.defs.platform.resources import PiiEngine
    from ftassets.lib.curation.pii_quality import measure

    config = ScrubConfig() if args.name_lists is None else ScrubConfig(name_lists=args.name_lists)
    scrubber = PiiEngine().scrubber(config)
    scrubber.find(["warm up the model: Anna Smith, 1 Main Street"])
    parts = []
    for name in names:
        items, labels = load(name, args.limit)
        start = time.perf_counter()
        found = scrubber.find([item.text for item in items])
        seconds = time.perf_counter() - start
        rows = measure(items, found, labels, TARGETS.get(name))
        print(f"\n{name}: {len(items)} texts in {seconds:.1f} s ({len(items) / seconds:.0f} texts/s, "
              f"{sum(len(i.text) for i in items) / seconds / 1000:.1f} k chars/s) on "
              f"{platform.processor() or platform.machine()}, threshold {config.score_threshold}, "
              f"NER {PiiEngine().spacy_model}, name lists {config.name_lists}")
        table(name, rows)
        shown = [k for k in rows if rows[k]["target"] or k in REMOVED_TARGETS.get(name, {}) or k == "location"]
        parts.append(f"{name}: " + ", ".join(
            f"{k} recall {rows[k]['recall']:.2f} removed {rows[k]['removed']:.2f}"
            + (f" precision {rows[k]['precision']:.2f}" if rows[k]["precision"] is not None else "")
            for k in shown if rows[k]["recall"] is not None) + f" ({len(items)} texts, {len(items) / seconds:.0f}/s)")
    flag = "" if args.name_lists is None else (" --name-lists" if args.name_lists else " --no-name-lists")
    report("pii recall: " + "; ".join(parts), f"python benchmarks/pii_recall.py --data {','.join(names)}{flag} "
           "--append-results", args.append_results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
