"""Curation: raw sources -> validated -> PII-scrubbed -> deduplicated -> frozen test set, gold set,
decontaminated train/validation splits, and scrubbed preference pairs. Every dropped record is kept
with its reason, and the counts add up."""


import json
import re
from collections import Counter

import dagster as dg
from pydantic import Field

from ftassets.defs.resources import ArtifactStore, PiiEngine
from ftassets.lib import dedup, formats, frozen, splits
from ftassets.lib.files import read_jsonl, sha256_bytes, sha256_file, write_jsonl_atomic
from ftassets.lib.governance import GovernanceError, load_training_data_licenses
from ftassets.lib.models import count_chat_tokens, load_tokenizer
from ftassets.lib.pii import DEFAULT_ENTITIES, chat_fields, preference_fields
from ftassets.lib.validation import validate_sources

GROUP = "curation"


def _version(path) -> dg.DataVersion:
    return dg.DataVersion(sha256_file(path)[:32])


class ValidationConfig(dg.Config):
    raw_dir: str = Field("raw", description="Folder of sources (one subfolder each), relative to the data dir")
    policy_file: str = Field("governance/license_policy.yaml", description="Holds the allowed training-data licenses")
    max_tokens: int = Field(1024, description="Longest rendered conversation allowed, in base-model tokens")


@dg.asset(group_name=GROUP, kinds={"json"}, deps=["base_model"],
          description="Schema- and template-checked chat records; rejects quarantined with file, line and reason.")
def validated_examples(context: dg.AssetExecutionContext, config: ValidationConfig,
                       store: ArtifactStore) -> dg.MaterializeResult:
    sources = formats.discover_sources(store.data(config.raw_dir))
    if not sources:
        raise GovernanceError(f"{store.data(config.raw_dir)}: no sources (folders with source.yaml)")
    tokenizer = load_tokenizer(store.artifact("base_model"))
    allowed = load_training_data_licenses(store.data(config.policy_file))
    sft, pref = validate_sources(sources, lambda m: count_chat_tokens(tokenizer, m), config.max_tokens, allowed)
    out = store.artifact("validated_examples")
    write_jsonl_atomic(out / "sft.jsonl", sft.kept)
    write_jsonl_atomic(out / "preference.jsonl", pref.kept)
    write_jsonl_atomic(out / "quarantine.jsonl", sft.quarantined + pref.quarantined)
    read = len(sft.kept) + len(pref.kept) + len(sft.quarantined) + len(pref.quarantined)
    inputs = store.file_versions([f for s in sources for f in s.files] + [s.folder / "source.yaml" for s in sources])
    context.log.info(f"validated {read} items: {len(sft.kept)} sft, {len(pref.kept)} preference kept")
    return dg.MaterializeResult(metadata={
        "read": read, "kept_sft": len(sft.kept), "kept_preference": len(pref.kept),
        "quarantined": len(sft.quarantined) + len(pref.quarantined),
        "quarantine_reasons": dg.MetadataValue.json({**Counter(sft.reasons) + Counter(pref.reasons)}),
        "sources": dg.MetadataValue.json({s.name: {"license": s.license, "kind": s.kind, "files": len(s.files),
                                                   "do_not_train": s.do_not_train} for s in sources}),
        "input_versions": dg.MetadataValue.json(inputs),
        "quarantine_path": dg.MetadataValue.path(str(out / "quarantine.jsonl")),
    }, data_version=dg.DataVersion(sha256_bytes(json.dumps(inputs, sort_keys=True).encode()
                                                + sha256_file(out / "sft.jsonl").encode())[:32]))


class ScrubConfig(dg.Config):
    entities: list[str] = Field(list(DEFAULT_ENTITIES), description="Presidio entity types to remove")
    score_threshold: float = Field(0.35, description="Minimum Presidio score for a finding")
    operator: str = Field("replace", description="replace (typed placeholders), mask or hash")
    allow_list: list[str] = Field(
        ["support@nimbus.example", "security@nimbus.example", "JSON", "OAuth", "eu-west", "eu-west-1", "Nimbus"],
        description="Strings never treated as PII: the team's public addresses, and domain terms the NER model "
                    "mislabels (spaCy tags 'JSON' as a PERSON in 261 sample records)")


def _scrub_summary(report) -> dict:
    return {"records_with_pii": report.records_with_pii,
            "entities_removed": dg.MetadataValue.json(dict(sorted(report.entities.items())))}


@dg.asset(group_name=GROUP, kinds={"json", "presidio"}, deps=[validated_examples],
          description="SFT records with PII replaced by typed placeholders (raw PII never leaves this step).")
def scrubbed_examples(context: dg.AssetExecutionContext, config: ScrubConfig, store: ArtifactStore,
                      pii: PiiEngine) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("validated_examples") / "sft.jsonl")
    scrubber = pii.scrubber(config.entities, config.score_threshold, config.operator, config.allow_list)
    scrubbed, report = scrubber.scrub_records(records, chat_fields)
    path = write_jsonl_atomic(store.artifact("scrubbed_examples") / "sft.jsonl", scrubbed)
    samples = [r["messages"][1]["content"][:240] for r in scrubbed if r["pii_found"]][:3]
    return dg.MaterializeResult(metadata={
        "records": len(scrubbed), **_scrub_summary(report),
        "scrubbed_samples": dg.MetadataValue.md("\n\n".join(f"> {s}" for s in samples) or "(none)"),
        "path": dg.MetadataValue.path(str(path))}, data_version=_version(path))


RESIDUAL = {"EMAIL_ADDRESS": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
            "CREDIT_CARD": re.compile(r"\b(?:\d[ -]?){13,16}\b")}


@dg.asset_check(asset=scrubbed_examples, blocking=True,
                description="No e-mail address or card number survives scrubbing (allow-list excepted).")
def no_residual_pii(store: ArtifactStore) -> dg.AssetCheckResult:
    allow = set(ScrubConfig().allow_list)
    hits = Counter()
    for record in read_jsonl(store.artifact("scrubbed_examples") / "sft.jsonl"):
        for message in record["messages"]:
            for kind, pattern in RESIDUAL.items():
                hits[kind] += sum(1 for m in pattern.findall(message["content"]) if m not in allow)
    total = sum(hits.values())
    return dg.AssetCheckResult(passed=total == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"value": total, "threshold": 0, "by_type": dg.MetadataValue.json(dict(hits))})


class DedupConfig(dg.Config):
    near_duplicate_threshold: float = Field(0.9, description="MinHash Jaccard at or above which records are near duplicates")
    num_perm: int = Field(128, description="MinHash permutations")


@dg.asset(group_name=GROUP, kinds={"json", "datasketch"}, deps=[scrubbed_examples],
          description="Exact and near duplicates removed; each drop names the record it duplicates.")
def deduplicated_examples(config: DedupConfig, store: ArtifactStore) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("scrubbed_examples") / "sft.jsonl")
    kept, dropped = dedup.deduplicate(records, config.near_duplicate_threshold, config.num_perm)
    out = store.artifact("deduplicated_examples")
    path = write_jsonl_atomic(out / "sft.jsonl", kept)
    write_jsonl_atomic(out / "dropped.jsonl", dropped)
    return dg.MaterializeResult(metadata={
        "input": len(records), "kept": len(kept), "dropped": len(dropped),
        "dropped_reasons": dg.MetadataValue.json(dict(Counter(d["reason"] for d in dropped))),
        "path": dg.MetadataValue.path(str(path))}, data_version=_version(path))


class SplitConfig(dg.Config):
    seed: int = Field(20261122, description="Seed of the hash-based split assignment")
    test_fraction: float = Field(0.15, description="Share of records in the frozen test set")
    validation_fraction: float = Field(0.1, description="Share of records in validation")
    lock_file: str = Field("governance/frozen_test_set.lock.json",
                           description="Committed lock: the frozen member ids, their sha256 and the freeze history")


class FreezeConfig(SplitConfig):
    refreeze: bool = Field(False, description="Select a NEW test set by the seeded rule (an explicit, logged act)")
    refreeze_reason: str = Field("", description="Why the test set is re-frozen (required with refreeze; kept in the lock)")


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[deduplicated_examples],
          description="The held-out test set: chosen once by a seeded hash of record ids, then only reproduced from "
                      "its committed lock (new data never enters it; re-freezing needs a reason).")
def frozen_test_set(context: dg.AssetExecutionContext, config: FreezeConfig, store: ArtifactStore) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("deduplicated_examples") / "sft.jsonl")
    lock_path = store.data(config.lock_file)
    lock = frozen.load_lock(lock_path)
    if lock is None or config.refreeze:
        reason = config.refreeze_reason if lock is not None else (config.refreeze_reason or "initial freeze")
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


@dg.asset(group_name=GROUP, kinds={"json"},
          description="Gold prompts with per-item rules, comparable across every model version.")
def gold_set(config: EvalSetConfig, store: ArtifactStore) -> dg.MaterializeResult:
    items = _load_eval_items(store.data(config.gold_file), ("id", "task", "messages", "rules"))
    for n, item in enumerate(items, start=1):
        unknown = set(item["rules"]) - GOLD_RULES
        if unknown or not item["rules"]:
            raise GovernanceError(f"{store.data(config.gold_file)}:{n}: rules must use {sorted(GOLD_RULES)}")
    path = write_jsonl_atomic(store.artifact("gold_set") / "gold.jsonl", items)
    return dg.MaterializeResult(metadata={"items": len(items), "sha256": sha256_file(path),
                                          "per_task": dg.MetadataValue.json(dict(Counter(i["task"] for i in items)))},
                                data_version=_version(path))


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
                                data_version=_version(path))


# What training data must never copy: (label, artifact file). Used by decontamination and its check.
HELD_OUT = (("test", "frozen_test_set/test.jsonl"), ("gold", "gold_set/gold.jsonl"),
            ("redteam", "redteam_set/redteam.jsonl"))


def _held_out_index(store: ArtifactStore) -> dedup.ContaminationIndex:
    index = dedup.ContaminationIndex()
    for label, name in HELD_OUT:
        for item in read_jsonl(store.artifact(name)):
            index.add(f"{label}:{item['id']}", dedup.prompt_text(item))
    return index


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[deduplicated_examples, frozen_test_set, gold_set, redteam_set],
          description="Train/validation splits, decontaminated against the frozen test set, gold set and red-team prompts.")
def data_splits(config: SplitConfig, store: ArtifactStore) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("deduplicated_examples") / "sft.jsonl")
    test_ids = {r["id"] for r in read_jsonl(store.artifact("frozen_test_set") / "test.jsonl")}
    parts = splits.train_validation_split(records, test_ids, config.seed, config.validation_fraction)
    index = _held_out_index(store)
    out = store.artifact("data_splits")
    train, dropped_train = dedup.decontaminate(parts["train"], index)
    validation, dropped_val = dedup.decontaminate(parts["validation"], index)
    write_jsonl_atomic(out / "train.jsonl", train)
    write_jsonl_atomic(out / "validation.jsonl", validation)
    write_jsonl_atomic(out / "contaminated.jsonl", dropped_train + dropped_val)
    write_jsonl_atomic(out / "held_back.jsonl", parts["held_back"])
    digest = sha256_bytes((sha256_file(out / "train.jsonl") + sha256_file(out / "validation.jsonl")).encode())
    return dg.MaterializeResult(metadata={
        "train": len(train), "validation": len(validation), "test_excluded": len(parts["test"]),
        "held_back_test_hints": len(parts["held_back"]),
        "contaminated_dropped": len(dropped_train) + len(dropped_val), "seed": config.seed,
        "train_per_task": dg.MetadataValue.json(dict(Counter(r["meta"]["task"] for r in train))),
        "path": dg.MetadataValue.path(str(out))}, data_version=dg.DataVersion(digest[:32]))


@dg.asset_check(asset=data_splits, blocking=True,
                description="No training or validation prompt is a copy of a test, gold or red-team prompt.")
def no_test_leakage(store: ArtifactStore) -> dg.AssetCheckResult:
    held = {dedup.exact_key(dedup.prompt_text(r)) for _, name in HELD_OUT for r in read_jsonl(store.artifact(name))}
    leaks = sum(dedup.exact_key(dedup.prompt_text(r)) in held
                for name in ("train.jsonl", "validation.jsonl")
                for r in read_jsonl(store.artifact("data_splits") / name))
    return dg.AssetCheckResult(passed=leaks == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"value": leaks, "threshold": 0})


@dg.asset(group_name=GROUP, kinds={"json", "presidio"}, deps=[validated_examples, frozen_test_set, gold_set, redteam_set],
          description="Preference pairs (prompt/chosen/rejected), PII-scrubbed and decontaminated.")
def preference_pairs(config: ScrubConfig, store: ArtifactStore, pii: PiiEngine) -> dg.MaterializeResult:
    pairs = read_jsonl(store.artifact("validated_examples") / "preference.jsonl")
    scrubber = pii.scrubber(config.entities, config.score_threshold, config.operator, config.allow_list)
    scrubbed, report = scrubber.scrub_records(pairs, preference_fields)
    index = _held_out_index(store)
    kept, dropped = [], []
    for pair in scrubbed:
        hit = index.match(dedup.prompt_text(pair))
        (dropped if hit else kept).append({**pair, **({"reason": "contaminated", "duplicate_of": hit} if hit else {})})
    out = store.artifact("preference_pairs")
    path = write_jsonl_atomic(out / "pairs.jsonl", kept)
    write_jsonl_atomic(out / "contaminated.jsonl", dropped)
    return dg.MaterializeResult(metadata={"pairs": len(kept), "contaminated_dropped": len(dropped),
                                          **_scrub_summary(report), "path": dg.MetadataValue.path(str(path))},
                                data_version=_version(path))
