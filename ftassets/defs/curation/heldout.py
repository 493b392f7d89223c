"""Curation, second half: the frozen test set, gold and red-team sets, then train/validation splits and
preference pairs decontaminated against everything held out (including the eval contract's forgetting
benchmarks). Blocking checks prove nothing leaks and every record is accounted for."""


import json
from collections import Counter

import dagster as dg
from pydantic import Field

from ftassets.defs.curation.cleaning import (
    GROUP,
    DedupConfig,
    ScrubConfig,
    deduplicated_examples,
    scrub_summary,
    validated_examples,
)
from ftassets.defs.platform.metadata import file_version, ids_in, partition_check, write_splits
from ftassets.defs.platform.resources import ArtifactStore, PiiEngine
from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import read_jsonl, sha256_file, write_jsonl_atomic
from ftassets.lib.curation import dedup, frozen, splits
from ftassets.lib.curation.pii import chat_fields, preference_fields


class SplitConfig(dg.Config):
    seed: int = Field(20261122, description="Seed of the hash-based split assignment")
    test_fraction: float = Field(0.15, description="Share of records in the frozen test set")
    validation_fraction: float = Field(0.1, description="Share of records in validation")
    lock_file: str = Field("governance/frozen_test_set.lock.json",
                           description="Committed lock: the frozen member ids, their sha256 and the freeze history")


class FreezeConfig(SplitConfig):
    refreeze: bool = Field(False, description="Select a NEW test set by the seeded rule (an explicit, logged act)")
    refreeze_reason: str = Field("", description="Why the test set is re-frozen (required with refreeze; kept in the lock)")
    keep_members: bool = Field(False, description="With refreeze: keep the same member ids and lock their new content "
                                                  "(a curation change altered test items, not which records they are)")


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[deduplicated_examples],
          description="The held-out test set: chosen once by a seeded hash of record ids, then only reproduced from "
                      "its committed lock (new data never enters it; re-freezing needs a reason).")
def frozen_test_set(context: dg.AssetExecutionContext, config: FreezeConfig, store: ArtifactStore) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("deduplicated_examples") / "sft.jsonl")
    lock_path = store.data(config.lock_file)
    lock = frozen.load_lock(lock_path)
    if lock is None or config.refreeze:
        reason = config.refreeze_reason if lock is not None else (config.refreeze_reason or "initial freeze")
        if lock is not None and config.keep_members:
            test, lock = frozen.relock(records, lock, reason)
        else:
            test, lock = frozen.freeze(records, config.seed, config.test_fraction, config.validation_fraction,
                                       reason, lock)
        frozen.write_lock(lock_path, lock)
        context.log.warning(f"frozen test set (re)frozen: {len(test)} records, sha256 {lock['sha256']}, "
                            f"reason: {reason!r}; lock written to {lock_path}")
        action = "frozen"
    else:
        test = frozen.reproduce(records, lock, lock_path)
        action = "reproduced from lock"
    path = write_jsonl_atomic(store.artifact("frozen_test_set") / "test.jsonl", test)
    digest = sha256_file(path)
    return dg.MaterializeResult(metadata={
        "records": len(test), "sha256": digest, "action": action, "lock_file": dg.MetadataValue.path(str(lock_path)),
        "curated_records": len(records),
        "freeze_history": dg.MetadataValue.json(lock.get("history", [])),
        "per_task": dg.MetadataValue.json(dict(Counter(r["meta"]["task"] for r in test))),
        "path": dg.MetadataValue.path(str(path))}, data_version=dg.DataVersion(digest[:32]))


@dg.asset_check(asset=frozen_test_set, blocking=True,
                description="The test file on disk still matches the sha256 in the committed lock.")
def frozen_test_set_locked(store: ArtifactStore) -> dg.AssetCheckResult:
    lock_path = store.data(SplitConfig().lock_file)
    lock = frozen.load_lock(lock_path)
    digest = sha256_file(store.artifact("frozen_test_set") / "test.jsonl")
    expected = lock["sha256"] if lock else "(no lock)"
    return dg.AssetCheckResult(passed=digest == expected, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"value": digest, "threshold": expected, "lock_file": str(lock_path)})


class EvalSetConfig(dg.Config):
    gold_file: str = Field("eval/gold_set.jsonl", description="Gold prompts with expected-behaviour rules")
    redteam_file: str = Field("eval/redteam_prompts.jsonl", description="Red-team and benign prompts")


GOLD_RULES = {"must_contain", "must_not_contain", "schema", "refuse"}


def _load_eval_items(path, required) -> list[dict]:
    items = read_jsonl(path)
    for n, item in enumerate(items, start=1):
        missing = [k for k in required if k not in item]
        if missing:
            raise GovernanceError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
        if [m.get("role") for m in item["messages"]] not in (["user"], ["system", "user"]):
            raise GovernanceError(f"{path}:{n}: messages must be [system?, user]")
    return items


@dg.asset(group_name=GROUP, kinds={"json", "presidio"},
          description="Gold prompts with per-item rules, comparable across every model version; validated, and "
                      "PII-scrubbed with the same settings as the training data.")
def gold_set(config: EvalSetConfig, store: ArtifactStore, pii: PiiEngine) -> dg.MaterializeResult:
    items = _load_eval_items(store.data(config.gold_file), ("id", "task", "messages", "rules"))
    for n, item in enumerate(items, start=1):
        unknown = set(item["rules"]) - GOLD_RULES
        if unknown or not item["rules"]:
            raise GovernanceError(f"{store.data(config.gold_file)}:{n}: rules must use {sorted(GOLD_RULES)}")
    scrub = ScrubConfig()
    scrubber = pii.scrubber(scrub.entities, scrub.score_threshold, scrub.operator, scrub.allow_list,
                            scrub.name_lists)
    items, report = scrubber.scrub_records(items, chat_fields)
    path = write_jsonl_atomic(store.artifact("gold_set") / "gold.jsonl", items)
    return dg.MaterializeResult(metadata={"items": len(items), "sha256": sha256_file(path), **scrub_summary(report),
                                          "per_task": dg.MetadataValue.json(dict(Counter(i["task"] for i in items)))},
                                data_version=file_version(path))


@dg.asset(group_name=GROUP, kinds={"json"},
          description="Prompts that must be refused, and benign look-alikes that must not be.")
def redteam_set(config: EvalSetConfig, store: ArtifactStore) -> dg.MaterializeResult:
    items = _load_eval_items(store.data(config.redteam_file), ("id", "category", "messages", "expect"))
    bad = [i["id"] for i in items if i["expect"] not in ("refuse", "comply")]
    if bad:
        raise GovernanceError(f"{store.data(config.redteam_file)}: expect must be refuse or comply (ids {bad})")
    path = write_jsonl_atomic(store.artifact("redteam_set") / "redteam.jsonl", items)
    return dg.MaterializeResult(metadata={"items": len(items), "sha256": sha256_file(path),
                                          "per_expectation": dg.MetadataValue.json(dict(Counter(i["expect"] for i in items)))},
                                data_version=file_version(path))


# What training data must never copy: (label, artifact file), plus the forgetting benchmarks the eval
# contract names. Used by decontamination and by its blocking check.
HELD_OUT = (("test", "frozen_test_set/test.jsonl"), ("gold", "gold_set/gold.jsonl"),
            ("redteam", "redteam_set/redteam.jsonl"))


def _held_out_texts(store: ArtifactStore) -> list[tuple[str, str]]:
    out = [(f"{label}:{item['id']}", dedup.prompt_text(item))
           for label, name in HELD_OUT for item in read_jsonl(store.artifact(name))]
    contract = json.loads((store.artifact("eval_contract") / "contract.json").read_text())
    for name, spec in contract.get("benchmark_files", {}).items():
        out += [(f"benchmark:{name}:{n}", item["query"]) for n, item in enumerate(read_jsonl(spec["path"]), start=1)]
    return out


def _prompt_texts(store: ArtifactStore, validated_file: str):
    """texts_of for decontamination: a record's scrubbed prompt and its prompt before scrubbing."""
    original = {r["id"]: dedup.prompt_text(r) for r in read_jsonl(store.artifact("validated_examples") / validated_file)}
    return lambda record: [dedup.prompt_text(record), original.get(record["id"], "")]


def _held_out_index(store: ArtifactStore) -> dedup.ContaminationIndex:
    return dedup.ContaminationIndex(_held_out_texts(store))


@dg.asset(group_name=GROUP, kinds={"json"},
          deps=[deduplicated_examples, frozen_test_set, gold_set, redteam_set, "eval_contract"],
          description="Train/validation splits, decontaminated against the frozen test set, gold set, red-team prompts "
                      "and the contract's forgetting benchmarks.")
def data_splits(config: SplitConfig, store: ArtifactStore) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("deduplicated_examples") / "sft.jsonl")
    test_ids = {r["id"] for r in read_jsonl(store.artifact("frozen_test_set") / "test.jsonl")}
    parts = splits.train_validation_split(records, test_ids, config.seed, config.validation_fraction)
    index, texts_of = _held_out_index(store), _prompt_texts(store, "sft.jsonl")
    out = store.artifact("data_splits")
    train, dropped_train = dedup.decontaminate(parts["train"], index, texts_of)
    validation, dropped_val = dedup.decontaminate(parts["validation"], index, texts_of)
    version = write_splits(out, {"train": train, "validation": validation,
                                 "contaminated": dropped_train + dropped_val, "held_back": parts["held_back"]})
    return dg.MaterializeResult(metadata={
        "train": len(train), "validation": len(validation), "test_excluded": len(parts["test"]),
        "held_back_test_hints": len(parts["held_back"]),
        "contaminated_dropped": len(dropped_train) + len(dropped_val), "seed": config.seed,
        "train_per_task": dg.MetadataValue.json(dict(Counter(r["meta"]["task"] for r in train))),
        "path": dg.MetadataValue.path(str(out))}, data_version=version)


def _leakage(store: ArtifactStore, folder: str, validated_file: str) -> dg.AssetCheckResult:
    """Re-scan train/validation on disk against every held-out prompt: exact or near (the index
    threshold), scrubbed and original text alike."""
    index, texts_of = _held_out_index(store), _prompt_texts(store, validated_file)
    records = [r for name in ("train.jsonl", "validation.jsonl") for r in read_jsonl(store.artifact(folder) / name)]
    _, leaks = dedup.decontaminate(records, index, texts_of)
    return dg.AssetCheckResult(passed=not leaks, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": len(leaks), "threshold": 0, "near_duplicate_threshold": index.threshold,
        "leaks": dg.MetadataValue.json([[r["id"], r["duplicate_of"]] for r in leaks[:20]])})


@dg.asset_check(asset=data_splits, blocking=True,
                description="No training or validation prompt is a copy or near copy of a test, gold, red-team or "
                            "benchmark prompt.")
def no_test_leakage(store: ArtifactStore) -> dg.AssetCheckResult:
    return _leakage(store, "data_splits", "sft.jsonl")


class PreferenceConfig(ScrubConfig, DedupConfig):
    """The SFT chain's scrub and dedup settings, and the same split rule."""

    seed: int = Field(SplitConfig().seed, description="Seed of the hash-based train/validation assignment")
    validation_fraction: float = Field(SplitConfig().validation_fraction, description="Share of pairs in validation")


@dg.asset(group_name=GROUP, kinds={"json", "presidio"},
          deps=[validated_examples, frozen_test_set, gold_set, redteam_set, "eval_contract"],
          description="Preference pairs (prompt/chosen/rejected): PII-scrubbed, deduplicated, decontaminated, and "
                      "split into train/validation by the same seeded hash rule as the SFT data.")
def preference_pairs(config: PreferenceConfig, store: ArtifactStore, pii: PiiEngine) -> dg.MaterializeResult:
    pairs = read_jsonl(store.artifact("validated_examples") / "preference.jsonl")
    scrubber = pii.scrubber(config.entities, config.score_threshold, config.operator, config.allow_list,
                            config.name_lists)
    scrubbed, report = scrubber.scrub_records(pairs, preference_fields, config.chunk_records,
                                              config.processes(len(pairs)))
    unique, duplicates = dedup.deduplicate(scrubbed, config.near_duplicate_threshold, config.num_perm,
                                           config.shingle_size, text_of=dedup.pair_text)
    kept, contaminated = dedup.decontaminate(unique, _held_out_index(store), _prompt_texts(store, "preference.jsonl"))
    parts = splits.train_validation_split(kept, set(), config.seed, config.validation_fraction)
    out = store.artifact("preference_pairs")
    version = write_splits(out, {"train": parts["train"], "validation": parts["validation"],
                                 "dropped": duplicates + contaminated, "held_back": parts["held_back"]})
    return dg.MaterializeResult(metadata={
        "input": len(pairs), "train": len(parts["train"]), "validation": len(parts["validation"]),
        "held_back_test_hints": len(parts["held_back"]),
        "dropped_reasons": dg.MetadataValue.json(dict(Counter(d["reason"] for d in duplicates + contaminated))),
        **scrub_summary(report), "path": dg.MetadataValue.path(str(out))}, data_version=version)


@dg.asset_check(asset=preference_pairs, blocking=True,
                description="No preference prompt is a copy or near copy of a test, gold, red-team or benchmark prompt.")
def no_preference_leakage(store: ArtifactStore) -> dg.AssetCheckResult:
    return _leakage(store, "preference_pairs", "preference.jsonl")


@dg.asset_check(asset=data_splits, blocking=True,
                description="Curated records == train + validation + frozen test + held back + contaminated.")
def data_splits_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    curated = ids_in(store.artifact("deduplicated_examples") / "sft.jsonl")
    frozen_ids = set(ids_in(store.artifact("frozen_test_set") / "test.jsonl"))
    out = store.artifact("data_splits")
    parts = {name: ids_in(out / f"{name}.jsonl") for name in ("train", "validation", "held_back", "contaminated")}
    return partition_check(curated, {**parts, "test": [i for i in curated if i in frozen_ids]})


@dg.asset_check(asset=preference_pairs, blocking=True,
                description="Validated pairs == train + validation + held back + dropped (duplicates, contaminated).")
def preference_pairs_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    out = store.artifact("preference_pairs")
    return partition_check(ids_in(store.artifact("validated_examples") / "preference.jsonl"),
                           {name: ids_in(out / f"{name}.jsonl") for name in ("train", "validation", "held_back", "dropped")})
