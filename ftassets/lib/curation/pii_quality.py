"""How well the scrubber finds labelled PII: recall, removal and precision per label, on any set of
texts with gold spans. Used by `benchmarks/pii_recall.py` and the PII quality tests.

- recall (typed): a gold span counts as found when a detection of the mapped entity overlaps it;
- removed: a gold span counts when ANY detection overlaps it (what scrubbing needs: the text is
  gone, whatever the placeholder says);
- precision (typed): detections of an entity that overlap a gold span of that entity, over all its
  detections; a detection overlapping a gold span of another label is counted apart
  (`detections_on_other_labels`), not as a false positive of scrubbing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# presidio-research synth_dataset_v2 label -> the entity our scrubber emits (absent: not scrubbed).
SYNTH_LABELS = {"PERSON": "PERSON", "STREET_ADDRESS": "STREET_ADDRESS", "GPE": "LOCATION",
                "CREDIT_CARD": "CREDIT_CARD", "PHONE_NUMBER": "PHONE_NUMBER", "EMAIL_ADDRESS": "EMAIL_ADDRESS",
                "IBAN_CODE": "IBAN_CODE", "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS"}
# WNUT17 label -> entity. Groups, corporations, products and creative works are not personal data.
WNUT_LABELS = {"person": "PERSON", "location": "LOCATION"}


@dataclass(frozen=True)
class Labelled:
    """One text and its gold spans (start, end, label)."""

    text: str
    spans: tuple[tuple[int, int, str], ...]


def read_synth(path: Path) -> list[Labelled]:
    """presidio-research's synth_dataset_v2.json: `full_text` with `spans` of character offsets."""
    return [Labelled(item["full_text"], tuple((s["start_position"], s["end_position"], s["entity_type"])
                                              for s in item["spans"]))
            for item in json.loads(path.read_text(encoding="utf-8"))]


def read_conll(path: Path) -> list[Labelled]:
    """A CoNLL BIO file (one `token<TAB>tag` per line, a blank or whitespace-only line between texts):
    each text is its tokens joined by single spaces, spans mapped from the token offsets."""
    texts, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip():
            token, _, tag = line.rstrip("\n").rpartition("\t")
            tokens.append((token, tag.strip()))
        elif tokens:
            texts.append(_from_tokens(tokens))
            tokens = []
    return texts


def _from_tokens(tokens: list[tuple[str, str]]) -> Labelled:
    text, spans, open_span = "", [], None
    for token, tag in tokens:
        start = len(text) + (1 if text else 0)
        text = f"{text} {token}" if text else token
        if tag.startswith("I-") and open_span and open_span[2] == tag[2:]:
            open_span[1] = len(text)
            continue
        if open_span:
            spans.append(tuple(open_span))
        open_span = [start, len(text), tag[2:]] if tag[:2] in ("B-", "I-") else None
    if open_span:
        spans.append(tuple(open_span))
    return Labelled(text, tuple(spans))


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def measure(items: list[Labelled], detections: list[list[tuple[int, int, str]]], labels: dict[str, str],
            targets: dict[str, float] | None = None) -> dict[str, dict]:
    """Per gold label: spans, the entity it maps to, recall, removed, precision of that entity, its
    detections and those on other labels' spans; `detections[i]` are (start, end, entity) for item i."""
    found, removed, total = Counter(), Counter(), Counter()
    detected, true_pos, other = Counter(), Counter(), Counter()
    for item, hits in zip(items, detections, strict=True):
        for start, end, label in item.spans:
            total[label] += 1
            removed[label] += any(_overlaps((start, end), h) for h in hits)
            found[label] += any(_overlaps((start, end), h) and h[2] == labels.get(label) for h in hits)
        for start, end, entity in hits:
            detected[entity] += 1
            if any(_overlaps((start, end), s) and labels.get(s[2]) == entity for s in item.spans):
                true_pos[entity] += 1
            elif any(_overlaps((start, end), s) for s in item.spans):
                other[entity] += 1
    rows = {}
    for label in sorted(total, key=lambda k: -total[k]):
        entity = labels.get(label)
        rows[label] = {
            "spans": total[label], "entity": entity,
            "recall": round(found[label] / total[label], 4) if entity else None,
            "removed": round(removed[label] / total[label], 4),
            "precision": round(true_pos[entity] / detected[entity], 4) if entity and detected[entity] else None,
            "detections": detected[entity] if entity else None,
            "detections_on_other_labels": other[entity] if entity else None,
            # a detection overlapping any gold span removes personal data of some kind
            "precision_any_label": (round((true_pos[entity] + other[entity]) / detected[entity], 4)
                                    if entity and detected[entity] else None),
            "target": (targets or {}).get(label),
        }
    return rows
