"""Watching a Dagster instance while a real `dagster-daemon` works: which runs it launched, whether
they finished, what they materialized. Shared by the daemon test and the incremental benchmark."""

from __future__ import annotations

import time

import dagster as dg

FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
CURATION = ["base_model_record", "base_model", "eval_contract", "validated_examples", "scrubbed_examples",
            "deduplicated_examples", "frozen_test_set", "gold_set", "redteam_set", "data_splits", "preference_pairs"]
WATCHED = CURATION + ["sft_adapter", "dpo_adapter", "merged_model", "eval_report", "release_decision", "serving_bundle"]


def runs_since(instance, after: float = 0.0) -> list:
    """Runs created at or after `after` (epoch seconds), newest first."""
    return [r.dagster_run for r in instance.get_run_records() if r.create_timestamp.timestamp() >= after]


def settled(instance, after: float) -> bool:
    """At least one run since `after`, and every one of them finished."""
    runs = runs_since(instance, after)
    return bool(runs) and all(r.status in FINISHED for r in runs)


def materialized_since(instance, storage_id: int, keys=WATCHED) -> list[str]:
    """Asset keys materialized after event `storage_id`, once per materialization, sorted."""
    out = []
    for key in keys:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), after_storage_id=storage_id), limit=100).records
        out += [key] * len(records)
    return sorted(out)


def wait(predicate, timeout: float, what: str, daemon, log, fail) -> None:
    """Poll `predicate` until true; `fail(message)` (pytest.fail, SystemExit) when the daemon process
    exits or `timeout` seconds pass, with the tail of its log."""
    deadline = time.time() + timeout
    while not predicate():
        if daemon.poll() is not None:
            fail(f"{what}: dagster-daemon exited ({daemon.returncode}); log tail:\n{log.read_text()[-3000:]}")
        if time.time() > deadline:
            fail(f"{what}: timed out after {timeout:.0f} s; daemon log tail:\n{log.read_text()[-3000:]}")
        time.sleep(1)
