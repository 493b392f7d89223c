"""lib/ unit tests: the frozen test set is chosen once, reproduced from its lock, never rewritten
by re-curation, and re-frozen only deliberately with a reason."""

import pytest

from ftassets.lib.curation import frozen, splits


def _records(n, start=0, text="report"):
    return [{"id": f"r{i:04d}", "messages": [{"role": "user", "content": f"{text} {i}"}],
             "meta": {"task": "qa"}} for i in range(start, start + n)]


def test_new_data_never_enters_a_frozen_test_set(tmp_path):
    base = _records(200)
    test, lock = frozen.freeze(base, 7, 0.15, 0.1, "initial freeze", None)
    assert 10 < len(test) < 60 and lock["sha256"] == frozen.digest(test)
    grown = base + _records(300, start=200)           # a new source arrives
    assert frozen.reproduce(grown, lock, tmp_path / "lock.json") == test
    # The rule alone would now pick new items: the lock is what keeps the set frozen.
    assert len(splits.split_records(grown, 7, 0.15, 0.1)["test"]) > len(test)


def test_drift_and_missing_members_are_errors_not_rewrites(tmp_path):
    base = _records(200)
    test, lock = frozen.freeze(base, 7, 0.15, 0.1, "initial freeze", None)
    changed = [dict(r, messages=[{"role": "user", "content": "edited"}]) if r["id"] == test[0]["id"] else r
               for r in base]
    with pytest.raises(frozen.FrozenTestSetError, match="not its content"):
        frozen.reproduce(changed, lock, tmp_path / "lock.json")
    with pytest.raises(frozen.FrozenTestSetError, match=f"no longer in the curated data.*{test[0]['id']}"):
        frozen.reproduce([r for r in base if r["id"] != test[0]["id"]], lock, tmp_path / "lock.json")


def test_refreeze_needs_a_reason_and_keeps_history(tmp_path):
    test, lock = frozen.freeze(_records(200), 7, 0.15, 0.1, "initial freeze", None)
    with pytest.raises(frozen.FrozenTestSetError, match="reason"):
        frozen.freeze(_records(400), 7, 0.15, 0.1, "  ", lock)
    new_test, new_lock = frozen.freeze(_records(400), 7, 0.15, 0.1, "added the Q3 tickets", lock)
    assert [h["reason"] for h in new_lock["history"]] == ["initial freeze", "added the Q3 tickets"]
    assert new_lock["history"][-1]["previous_sha256"] == lock["sha256"] != new_lock["sha256"]
    path = frozen.write_lock(tmp_path / "lock.json", new_lock)
    assert frozen.load_lock(path) == new_lock
    path.write_text("{not json")
    with pytest.raises(frozen.FrozenTestSetError, match="lock.json:1: invalid JSON"):
        frozen.load_lock(path)


def test_relock_keeps_the_members_and_locks_their_new_content(tmp_path):
    base = _records(200)
    test, lock = frozen.freeze(base, 7, 0.15, 0.1, "initial freeze", None)
    rescrubbed = [dict(r, pii_found={"PERSON": 1}) for r in base] + _records(300, start=200)  # and a new source
    with pytest.raises(frozen.FrozenTestSetError, match="not its content"):
        frozen.reproduce(rescrubbed, lock, tmp_path / "lock.json")
    with pytest.raises(frozen.FrozenTestSetError, match="reason"):
        frozen.relock(rescrubbed, lock, " ")
    kept, new_lock = frozen.relock(rescrubbed, lock, "scrubber counts fixed")
    assert [r["id"] for r in kept] == lock["ids"] == new_lock["ids"]  # the new source did not get in
    assert all(r["pii_found"] == {"PERSON": 1} for r in kept) and new_lock["sha256"] == frozen.digest(kept)
    assert new_lock["history"][-1] == {**new_lock["history"][-1], "reason": "scrubber counts fixed",
                                       "previous_sha256": lock["sha256"], "same_members": True}
    assert frozen.reproduce(rescrubbed, new_lock, tmp_path / "lock.json") == kept
    with pytest.raises(frozen.FrozenTestSetError, match="cannot keep the frozen members"):
        frozen.relock([r for r in rescrubbed if r["id"] != test[0]["id"]], lock, "dropped one")


def test_train_validation_assignment_ignores_the_test_set():
    records = _records(300)
    records[5]["meta"]["split_hint"] = "test"
    a = splits.train_validation_split(records, {"r0001", "r0002"}, 7, 0.1)
    b = splits.train_validation_split(records, {"r0003"}, 7, 0.1)   # after a re-freeze
    assert [r["id"] for r in a["held_back"]] == ["r0005"]
    assert sum(len(v) for v in a.values()) == len(records)
    moved = {r["id"] for r in a["train"]} ^ {r["id"] for r in b["train"]}
    assert moved <= {"r0001", "r0002", "r0003"}


def test_validation_is_not_emptied_by_the_frozen_test_set():
    # The freeze takes the lowest seeded buckets; validation must be drawn independently of them,
    # or every would-be validation record is already frozen (this left validation empty once).
    records = _records(400)
    test = splits.split_records(records, 7, 0.15, 0.1)["test"]
    parts = splits.train_validation_split(records, {r["id"] for r in test}, 7, 0.1)
    rest = len(records) - len(test)
    assert 0.06 * rest <= len(parts["validation"]) <= 0.14 * rest
    assert len(parts["train"]) + len(parts["validation"]) == rest
