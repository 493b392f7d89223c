"""Deterministic, seeded splits that keep the frozen test set out of training.

Assignment is a pure function of (seed, record id): adding a record never moves another one
between splits, so a frozen test set stays frozen as the data grows. `split_hint` in a record's
metadata overrides the hash for curated placements.
"""

from __future__ import annotations

from ftassets.lib.core.files import sha256_bytes

SPLITS = ("train", "validation", "test")


def bucket(record_id: str, salt: str) -> float:
    return int(sha256_bytes(f"{salt}:{record_id}".encode())[:8], 16) / 0xFFFFFFFF


def assign_split(record_id: str, seed: int, test_fraction: float, validation_fraction: float,
                 hint: str | None = None) -> str:
    if hint in SPLITS:
        return hint
    position = bucket(record_id, str(seed))
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def split_records(records: list[dict], seed: int, test_fraction: float, validation_fraction: float):
    out = {name: [] for name in SPLITS}
    for record in records:
        name = assign_split(record["id"], seed, test_fraction, validation_fraction,
                            record.get("meta", {}).get("split_hint"))
        out[name].append(record)
    return out


def train_validation_split(records: list[dict], frozen_ids: set[str], seed: int,
                           validation_fraction: float) -> dict[str, list[dict]]:
    """Everything outside the frozen test set goes to train or validation by a seeded hash that does
    not depend on the test set (so a re-freeze never reshuffles training data). A record whose
    `split_hint` is "test" but that is not frozen is held back from training, not trained on.

    The validation hash is salted apart from the test hash: with the same hash, the lowest buckets
    that would go to validation are exactly the ones the freeze already took for the test set, and
    validation came out empty."""
    out = {"train": [], "validation": [], "test": [], "held_back": []}
    for record in records:
        hint = record.get("meta", {}).get("split_hint")
        if record["id"] in frozen_ids:
            out["test"].append(record)
        elif hint == "test":
            out["held_back"].append(record)
        elif hint in ("train", "validation"):
            out[hint].append(record)
        else:
            in_validation = bucket(record["id"], f"{seed}:validation") < validation_fraction
            out["validation" if in_validation else "train"].append(record)
    return out
