"""Curation, training splits: train/validation and the preference pairs, decontaminated against
everything held out (frozen test, gold and red-team sets, and the eval contract's forgetting
benchmarks). Blocking checks prove nothing leaks and every record is accounted for."""


from collections import Counter

import dagster as dg

from ftassets.defs.curation.cleaning import (GROUP, deduplicated_examples, residual_result, scrub_summary,
                                             token_counter, validated_examples)
from ftassets.defs.curation.heldout import frozen_test_set, gold_set, redteam_set
from ftassets.defs.curation.settings import CurationSettings
from ftassets.defs.platform.metadata import dataset_metadata, partition_check, write_splits
from ftassets.defs.platform.resources import ArtifactStore, PiiEngine
from ftassets.lib.core.files import read_jsonl
from ftassets.lib.curation import dedup, splits
from ftassets.lib.curation.pii import preference_fields, text_fields_of
from ftassets.lib.curation.validation import refit_after_scrub

# What training data must never copy: (label, asset, file role), plus the forgetting benchmarks the eval
# contract names. Used by decontamination and by its blocking check.
HELD_OUT = (("test", "frozen_test_set", "test"), ("gold", "gold_set", "gold"), ("redteam", "redteam_set", "redteam"))


def _held_out_texts(store: ArtifactStore) -> list[tuple[str, str]]:
    out = [(f"{label}:{item['id']}", dedup.prompt_text(item))
           for label, asset, role in HELD_OUT for item in store.records(asset, role)]
    for name, path in store.contract().benchmark_paths().items():
        out += [(f"benchmark:{name}:{n}", item["query"]) for n, item in enumerate(read_jsonl(path), start=1)]
    return out


def _prompt_texts(store: ArtifactStore, validated_role: str):
    """texts_of for decontamination: a record's scrubbed prompt and its prompt before scrubbing."""
    original = {r["id"]: dedup.prompt_text(r) for r in store.records("validated_examples", validated_role)}
    return lambda record: [dedup.prompt_text(record), original.get(record["id"], "")]


def _held_out_index(store: ArtifactStore) -> dedup.ContaminationIndex:
    return dedup.ContaminationIndex(_held_out_texts(store))


@dg.asset(group_name=GROUP, kinds={"json"},
          deps=[deduplicated_examples, frozen_test_set, gold_set, redteam_set, "eval_contract"],
          description="Train/validation splits, decontaminated against the frozen test set, gold set, red-team prompts "
                      "and the contract's forgetting benchmarks.")
def data_splits(store: ArtifactStore, curation: CurationSettings) -> dg.MaterializeResult:
    records = store.records("deduplicated_examples", "sft")
    test_ids = set(store.catalog.ids("frozen_test_set", "test"))
    split = curation.split
    parts = splits.train_validation_split(records, test_ids, split.seed, split.validation_fraction)
    index, texts_of = _held_out_index(store), _prompt_texts(store, "sft")
    train, dropped_train = dedup.decontaminate(parts["train"], index, texts_of)
    validation, dropped_val = dedup.decontaminate(parts["validation"], index, texts_of)
    version = write_splits(store.catalog, "data_splits", {
        "train": train, "validation": validation, "contaminated": dropped_train + dropped_val,
        "held_back": parts["held_back"]})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(train) + len(validation), **dataset_metadata(train),
        "train": len(train), "validation": len(validation), "test_excluded": len(parts["test"]),
        "held_back_test_hints": len(parts["held_back"]),
        "contaminated_dropped": len(dropped_train) + len(dropped_val), "seed": split.seed,
        "train_per_task": dg.MetadataValue.json(dict(Counter(r["meta"]["task"] for r in train))),
        "path": dg.MetadataValue.path(str(store.artifact("data_splits"))),
        "config": dg.MetadataValue.json(split.model_dump())}, data_version=version)


def _leakage(store: ArtifactStore, asset: str, validated_role: str) -> dg.AssetCheckResult:
    """Re-scan train/validation on disk against every held-out prompt: exact or near (the index
    threshold), scrubbed and original text alike."""
    index, texts_of = _held_out_index(store), _prompt_texts(store, validated_role)
    records = store.records(asset, "train") + store.records(asset, "validation")
    _, leaks = dedup.decontaminate(records, index, texts_of)
    return dg.AssetCheckResult(passed=not leaks, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": len(leaks), "threshold": 0, "near_duplicate_threshold": index.threshold,
        "leaks": dg.MetadataValue.json([[r["id"], r["duplicate_of"]] for r in leaks[:20]])})


@dg.asset_check(asset=data_splits, blocking=True,
                description="No training or validation prompt is a copy or near copy of a test, gold, red-team or "
                            "benchmark prompt.")
def no_test_leakage(store: ArtifactStore) -> dg.AssetCheckResult:
    return _leakage(store, "data_splits", "sft")


@dg.asset(group_name=GROUP, kinds={"json", "presidio"},
          deps=["base_model", validated_examples, frozen_test_set, gold_set, redteam_set, "eval_contract"],
          description="Preference pairs (prompt/chosen/rejected): PII-scrubbed, deduplicated, decontaminated, and "
                      "split into train/validation by the same seeded hash rule as the SFT data.")
def preference_pairs(store: ArtifactStore, pii: PiiEngine, curation: CurationSettings) -> dg.MaterializeResult:
    pairs = store.records("validated_examples", "preference")
    scrub, near, split = curation.scrub, curation.dedup, curation.split
    scrubbed, report = pii.scrubber(scrub).scrub_records(pairs, preference_fields, scrub.chunk_records,
                                                         scrub.processes(len(pairs)))
    scrubbed, too_long = refit_after_scrub(scrubbed, "preference", token_counter(store), curation.max_tokens)
    unique, duplicates = dedup.deduplicate(scrubbed, near.near_duplicate_threshold, near.num_perm,
                                           near.shingle_size, text_of=dedup.pair_text)
    kept, contaminated = dedup.decontaminate(unique, _held_out_index(store), _prompt_texts(store, "preference"))
    parts = splits.train_validation_split(kept, set(), split.seed, split.validation_fraction)
    version = write_splits(store.catalog, "preference_pairs", {
        "train": parts["train"], "validation": parts["validation"], "dropped": too_long + duplicates + contaminated,
        "held_back": parts["held_back"]})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(parts["train"]) + len(parts["validation"]),
        **dataset_metadata(parts["train"], "preference"),
        "input": len(pairs), "train": len(parts["train"]), "validation": len(parts["validation"]),
        "held_back_test_hints": len(parts["held_back"]),
        "dropped_reasons": dg.MetadataValue.json(dict(Counter(d["reason"] for d in too_long + duplicates + contaminated))),
        **scrub_summary(report), "path": dg.MetadataValue.path(str(store.artifact("preference_pairs"))),
        "config": dg.MetadataValue.json(curation.model_dump())}, data_version=version)


@dg.asset_check(asset=preference_pairs, blocking=True,
                description="No preference prompt is a copy or near copy of a test, gold, red-team or benchmark prompt.")
def no_preference_leakage(store: ArtifactStore) -> dg.AssetCheckResult:
    return _leakage(store, "preference_pairs", "preference")


@dg.asset_check(asset=data_splits, blocking=True,
                description="Curated records == train + validation + frozen test + held back + contaminated.")
def data_splits_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    ids = store.catalog.ids
    curated = ids("deduplicated_examples", "sft")
    frozen_ids = set(ids("frozen_test_set", "test"))
    parts = {role: ids("data_splits", role) for role in ("train", "validation", "held_back", "contaminated")}
    return partition_check(curated, {**parts, "test": [i for i in curated if i in frozen_ids]})


@dg.asset_check(asset=preference_pairs, blocking=True,
                description="Validated pairs == train + validation + held back + dropped (duplicates, contaminated).")
def preference_pairs_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    ids = store.catalog.ids
    return partition_check(ids("validated_examples", "preference"),
                           {role: ids("preference_pairs", role) for role in ("train", "validation", "held_back", "dropped")})


@dg.asset_check(asset=preference_pairs, blocking=True,
                description="The scrubber's own recognizers, run again on every prompt turn, chosen and rejected reply "
                            "of every pair written (dropped ones too), find no PII entity left (allow-list excepted).")
def no_residual_pii_in_pairs(store: ArtifactStore, pii: PiiEngine, curation: CurationSettings) -> dg.AssetCheckResult:
    texts = [text for role in ("train", "validation", "held_back", "dropped")
             for pair in store.records("preference_pairs", role) for text in text_fields_of(pair, preference_fields)]
    return residual_result(pii.scrubber(curation.scrub).residual(texts))
