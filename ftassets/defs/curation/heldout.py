"""Curation, held-out sets: the frozen test set (hash-locked), the gold set and the red-team prompts,
which no training example may copy (`splits.py` decontaminates against them)."""


from collections import Counter

import dagster as dg
from pydantic import Field

from ftassets.defs.curation.cleaning import GROUP, deduplicated_examples, scrub_summary
from ftassets.defs.curation.settings import CurationSettings
from ftassets.defs.platform.metadata import dataset_metadata, file_version
from ftassets.defs.platform.resources import ArtifactStore, PiiEngine
from ftassets.lib.core.files import sha256_file
from ftassets.lib.curation import frozen
from ftassets.lib.curation.eval_files import load_gold_items, load_redteam_items
from ftassets.lib.curation.pii import chat_fields


class FreezeConfig(dg.Config):
    """A deliberate re-freeze; the seed, fractions and lock file are the `curation` resource's `split`."""

    refreeze: bool = Field(False, description="Select a NEW test set by the seeded rule (an explicit, logged act)")
    refreeze_reason: str = Field("", description="Why the test set is re-frozen (required with refreeze; kept in the lock)")
    keep_members: bool = Field(False, description="With refreeze: keep the same member ids and lock their new content "
                                                  "(a curation change altered test items, not which records they are)")


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[deduplicated_examples],
          description="The held-out test set: chosen once by a seeded hash of record ids, then only reproduced from "
                      "its committed lock (new data never enters it; re-freezing needs a reason).")
def frozen_test_set(context: dg.AssetExecutionContext, config: FreezeConfig, store: ArtifactStore,
                    curation: CurationSettings) -> dg.MaterializeResult:
    records = store.records("deduplicated_examples", "sft")
    split = curation.split
    lock_path = store.data(split.lock_file)
    lock = frozen.load_lock(lock_path)
    if lock is None or config.refreeze:
        reason = config.refreeze_reason if lock is not None else (config.refreeze_reason or "initial freeze")
        if lock is not None and config.keep_members:
            test, lock = frozen.relock(records, lock, reason)
        else:
            test, lock = frozen.freeze(records, split.seed, split.test_fraction, split.validation_fraction,
                                       reason, lock)
        frozen.write_lock(lock_path, lock)
        context.log.warning(f"frozen test set (re)frozen: {len(test)} records, sha256 {lock['sha256']}, "
                            f"reason: {reason!r}; lock written to {lock_path}")
        action = "frozen"
    else:
        test = frozen.reproduce(records, lock, lock_path)
        action = "reproduced from lock"
    path = store.catalog.write_records("frozen_test_set", "test", test)
    digest = sha256_file(path)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(test), "records": len(test),
        **dataset_metadata(test, preview=False),  # the test set is scored, not browsed
        "sha256": digest, "action": action, "lock_file": dg.MetadataValue.path(str(lock_path)),
        "curated_records": len(records),
        "freeze_history": dg.MetadataValue.json(lock.get("history", [])),
        "per_task": dg.MetadataValue.json(dict(Counter(r["meta"]["task"] for r in test))),
        "path": dg.MetadataValue.path(str(path)), "config": dg.MetadataValue.json({**split.model_dump(), **config.model_dump()})},
        data_version=dg.DataVersion(digest[:32]))


@dg.asset_check(asset=frozen_test_set, blocking=True,
                description="The test file on disk still matches the sha256 in the committed lock.")
def frozen_test_set_locked(store: ArtifactStore, curation: CurationSettings) -> dg.AssetCheckResult:
    lock_path = store.data(curation.split.lock_file)
    lock = frozen.load_lock(lock_path)
    digest = sha256_file(store.path("frozen_test_set", "test"))
    expected = lock["sha256"] if lock else "(no lock)"
    return dg.AssetCheckResult(passed=digest == expected, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"value": digest, "threshold": expected, "lock_file": str(lock_path)})


@dg.asset(group_name=GROUP, kinds={"json", "presidio"},
          description="Gold prompts with per-item rules, comparable across every model version; validated, and "
                      "PII-scrubbed with the same settings as the training data.")
def gold_set(store: ArtifactStore, pii: PiiEngine, curation: CurationSettings) -> dg.MaterializeResult:
    items = load_gold_items(store.data(curation.gold_file))
    items, report = pii.scrubber(curation.scrub).scrub_records(items, chat_fields)
    path = store.catalog.write_records("gold_set", "gold", items)
    return dg.MaterializeResult(metadata={"dagster/row_count": len(items), "items": len(items),
                                          "sha256": sha256_file(path), **scrub_summary(report),
                                          "per_task": dg.MetadataValue.json(dict(Counter(i["task"] for i in items))),
                                          "config": dg.MetadataValue.json(curation.scrub.model_dump())},
                                data_version=file_version(path))


@dg.asset(group_name=GROUP, kinds={"json"},
          description="Prompts that must be refused, and benign look-alikes that must not be.")
def redteam_set(store: ArtifactStore, curation: CurationSettings) -> dg.MaterializeResult:
    items = load_redteam_items(store.data(curation.redteam_file))
    path = store.catalog.write_records("redteam_set", "redteam", items)
    return dg.MaterializeResult(metadata={"dagster/row_count": len(items), "items": len(items),
                                          "sha256": sha256_file(path),
                                          "per_expectation": dg.MetadataValue.json(dict(Counter(i["expect"] for i in items)))},
                                data_version=file_version(path))
