"""The frozen test set: chosen once by a seeded rule, then only ever reproduced from its lock.

The lock (`data/governance/frozen_test_set.lock.json`, committed) names the member ids and the
sha256 of the test file. Re-curation reproduces exactly those ids: a new source never adds test
items, and a changed or missing member is an error, not a silent rewrite. Choosing a new test set
is an explicit re-freeze with a reason, appended to the lock's history.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from ftassets.lib.core.files import dumps_jsonl, write_text_atomic
from ftassets.lib.curation.splits import split_records


class FrozenTestSetError(RuntimeError):
    pass


def render(records: list[dict]) -> bytes:
    """The test file's exact bytes (as `write_jsonl_atomic` writes them), so its sha256 is stable."""
    return dumps_jsonl(records).encode("utf-8")


def digest(records: list[dict]) -> str:
    return hashlib.sha256(render(records)).hexdigest()


def load_lock(path: Path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FrozenTestSetError(f"{path}:{exc.lineno}: invalid JSON in the frozen test set lock ({exc.msg})") from exc
    missing = [k for k in ("sha256", "ids", "rule") if k not in lock]
    if missing:
        raise FrozenTestSetError(f"{path}: lock lacks {', '.join(missing)}")
    return lock


def reproduce(records: list[dict], lock: dict, lock_path: Path) -> list[dict]:
    """The locked members, in lock order, from freshly curated records; refuses any drift."""
    by_id = {r["id"]: r for r in records}
    missing = [i for i in lock["ids"] if i not in by_id]
    if missing:
        raise FrozenTestSetError(
            f"{len(missing)} frozen test set member(s) are no longer in the curated data "
            f"(first: {', '.join(missing[:5])}); the test set was not rewritten. If this is intended, "
            f"re-freeze with a reason (frozen_test_set config refreeze: true, refreeze_reason: '...').")
    test = [by_id[i] for i in lock["ids"]]
    got = digest(test)
    if got != lock["sha256"]:
        raise FrozenTestSetError(
            f"the curated data reproduces the frozen test set ids but not its content: sha256 {got} != locked "
            f"{lock['sha256']} ({lock_path}). A curation change (e.g. the scrubber) altered test items; the test "
            f"set was not rewritten. Review the change, then re-freeze with a reason.")
    return test


def freeze(records: list[dict], seed: int, test_fraction: float, validation_fraction: float, reason: str,
           previous: dict | None) -> tuple[list[dict], dict]:
    """Select a new test set by the seeded rule and build its lock (history kept)."""
    if not reason.strip():
        raise FrozenTestSetError("freezing the test set needs a reason (refreeze_reason)")
    test = split_records(records, seed, test_fraction, validation_fraction)["test"]
    if not test:
        raise FrozenTestSetError(f"the seeded rule selected no test items from {len(records)} records")
    lock = {"sha256": digest(test), "ids": [r["id"] for r in test], "history": _history(previous, reason, test),
            "rule": {"seed": seed, "test_fraction": test_fraction, "validation_fraction": validation_fraction,
                     "method": "sha256(seed:id) bucket; split_hint overrides"}}
    return test, lock


def relock(records: list[dict], previous: dict, reason: str) -> tuple[list[dict], dict]:
    """Keep the locked members and lock their new content: for a curation change that alters test
    items (a scrubber fix) but must not change which records are test items. Every member must
    still be there; the history says why and what the content was before."""
    if not reason.strip():
        raise FrozenTestSetError("re-locking the test set needs a reason (refreeze_reason)")
    by_id = {r["id"]: r for r in records}
    missing = [i for i in previous["ids"] if i not in by_id]
    if missing:
        raise FrozenTestSetError(f"cannot keep the frozen members: {len(missing)} are no longer in the curated data "
                                 f"(first: {', '.join(missing[:5])}); re-freeze with a new selection instead")
    test = [by_id[i] for i in previous["ids"]]
    return test, {**previous, "sha256": digest(test), "history": _history(previous, reason, test, same_members=True)}


def _history(previous: dict | None, reason: str, test: list[dict], **extra) -> list[dict]:
    """The previous lock's history plus one entry for this (re)freeze."""
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": reason.strip(),
             "previous_sha256": (previous or {}).get("sha256"), "records": len(test), **extra}
    return [*(previous or {}).get("history", []), entry]


def write_lock(path: Path, lock: dict) -> Path:
    return write_text_atomic(Path(path), json.dumps(lock, indent=1) + "\n")
