"""Curation, first half: raw sources -> validated -> PII-scrubbed -> deduplicated. Every dropped
record is kept with its reason, and a blocking check per stage proves the counts add up.
(The held-out sets, decontamination and splits follow in `heldout.py`.)"""


import json
import os
import re
from collections import Counter
from pathlib import Path

import dagster as dg
from pydantic import Field

from ftassets.defs.platform.metadata import file_version, ids_in, origins_in, partition_check
from ftassets.defs.platform.resources import ArtifactStore, PiiEngine
from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import read_jsonl, sha256_bytes, sha256_file, write_jsonl_atomic
from ftassets.lib.core.models import count_chat_tokens, load_tokenizer
from ftassets.lib.curation import dedup, formats
from ftassets.lib.curation.pii import DEFAULT_ENTITIES, chat_fields
from ftassets.lib.curation.validation import validate_sources
from ftassets.lib.governance.license import load_training_data_licenses

GROUP = "curation"


RAW_SOURCES = dg.DynamicPartitionsDefinition(name="raw_sources")


@dg.observable_source_asset(
    partitions_def=RAW_SOURCES, group_name=GROUP,
    description="The source folders under raw/, one partition each, observed as a content hash of every file in "
                "the folder (data, sidecar, source.yaml): a changed file changes only its source's data version.")
def raw_sources(context, store: ArtifactStore) -> dg.DataVersionsByPartition:
    versions = formats.source_versions(store.data(ValidationConfig().raw_dir))
    known = set(context.instance.get_dynamic_partitions(RAW_SOURCES.name))
    new = [name for name in versions if name not in known]
    if new:  # a new source folder becomes a new partition: nothing to register by hand
        context.instance.add_dynamic_partitions(RAW_SOURCES.name, new)
        context.log.info(f"new sources: {', '.join(new)}")
    return dg.DataVersionsByPartition({name: dg.DataVersion(version) for name, version in versions.items()})


class ValidationConfig(dg.Config):
    raw_dir: str = Field("raw", description="Folder of sources (one subfolder each), relative to the data dir")
    policy_file: str = Field("governance/license_policy.yaml", description="Holds the allowed training-data licenses")
    max_tokens: int = Field(1024, description="Longest rendered conversation allowed, in base-model tokens")


@dg.asset(group_name=GROUP, kinds={"json"}, deps=["base_model", raw_sources],
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
    inputs = store.file_versions([f for s in sources for f in s.files]
                                 + [s.folder / "source.yaml" for s in sources if (s.folder / "source.yaml").is_file()])
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
    name_lists: bool = Field(True, description="Also find PERSON from Faker's multi-locale name lists (ftassets/lib/curation/names.py): "
                                               "recall 0.82 vs 0.64, precision 0.65 vs 0.70 on synth_dataset_v2; false: "
                                               "the NER model alone (fictional characters in stories are names too)")
    workers: int = Field(0, ge=0, description="Processes that scrub chunks in parallel, each loading its own NLP "
                                              "model (~600 MB); 0: one per CPU core this process may use (CPU "
                                              "affinity and a cgroup CPU quota count), at most 8. Data of one "
                                              "chunk is scrubbed in this process")
    chunk_records: int = Field(4096, ge=1, description="Records per scrub chunk (a unit of parallel work; each "
                                                       "distinct text in a chunk is analyzed once)")

    def processes(self, records: int) -> int:
        """How many processes scrub `records` records."""
        chunks = -(-records // self.chunk_records)
        return max(1, min(self.workers or min(usable_cores(), AUTO_WORKERS_MAX), chunks))


AUTO_WORKERS_MAX = 8


def usable_cores() -> int:
    """CPU cores this process may use: its affinity where the OS has one (Linux), and a cgroup v2 CPU
    quota (a container's `cpu.max`) where one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def scrub_summary(report) -> dict:
    return {"records_with_pii": report.records_with_pii,
            "entities_removed": dg.MetadataValue.json(dict(sorted(report.entities.items())))}


@dg.asset(group_name=GROUP, kinds={"json", "presidio"}, deps=[validated_examples],
          description="SFT records with PII replaced by typed placeholders (raw PII never leaves this step).")
def scrubbed_examples(context: dg.AssetExecutionContext, config: ScrubConfig, store: ArtifactStore,
                      pii: PiiEngine) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("validated_examples") / "sft.jsonl")
    scrubber = pii.scrubber(config.entities, config.score_threshold, config.operator, config.allow_list,
                            config.name_lists)
    processes = config.processes(len(records))
    scrubbed, report = scrubber.scrub_records(records, chat_fields, config.chunk_records, processes)
    path = write_jsonl_atomic(store.artifact("scrubbed_examples") / "sft.jsonl", scrubbed)
    samples = [r["messages"][1]["content"][:240] for r in scrubbed if r["pii_found"]][:3]
    return dg.MaterializeResult(metadata={
        "records": len(scrubbed), **scrub_summary(report), "scrub_processes": processes,
        "scrubbed_samples": dg.MetadataValue.md("\n\n".join(f"> {s}" for s in samples) or "(none)"),
        "path": dg.MetadataValue.path(str(path))}, data_version=file_version(path))


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
    # 0.9 on character 5-grams (measured, benchmarks/dedup_quality.py and the sample data): catches every
    # whitespace/punctuation/case re-export (normalized to exact) and the sample's near duplicates (0.90-0.98:
    # one report with another opener or time), with precision 1.0; recall on lightly edited Alpaca copies is
    # 0.77 (0.97 at 0.8), but 0.8 would also drop 56 sample triage reports about a different service written
    # from one template. 128 permutations estimate Jaccard within about +-0.09 (1/sqrt(128)).
    near_duplicate_threshold: float = Field(0.9, description="MinHash Jaccard at or above which records are near duplicates")
    num_perm: int = Field(128, description="MinHash permutations")
    shingle_size: int = Field(5, description="Character n-gram length of the MinHash shingles")


@dg.asset(group_name=GROUP, kinds={"json", "datasketch"}, deps=[scrubbed_examples],
          description="Exact and near duplicates removed (first in source order is kept); the cluster report names "
                      "every removed record, the record it duplicates and their similarity.")
def deduplicated_examples(config: DedupConfig, store: ArtifactStore) -> dg.MaterializeResult:
    records = read_jsonl(store.artifact("scrubbed_examples") / "sft.jsonl")
    kept, dropped = dedup.deduplicate(records, config.near_duplicate_threshold, config.num_perm, config.shingle_size)
    clusters = dedup.cluster_report(dropped)
    out = store.artifact("deduplicated_examples")
    path = write_jsonl_atomic(out / "sft.jsonl", kept)
    write_jsonl_atomic(out / "dropped.jsonl", dropped)
    write_jsonl_atomic(out / "clusters.jsonl", clusters)
    return dg.MaterializeResult(metadata={
        "input": len(records), "kept": len(kept), "dropped": len(dropped),
        "dropped_reasons": dg.MetadataValue.json(dict(Counter(d["reason"] for d in dropped))),
        "clusters": len(clusters), "largest_cluster": clusters[0]["size"] if clusters else 0,
        "lowest_similarity_removed": min((d["similarity"] for d in dropped), default=None),
        "cluster_report": dg.MetadataValue.path(str(out / "clusters.jsonl")),
        "path": dg.MetadataValue.path(str(path))}, data_version=file_version(path))


# Conservation: every record that enters a stage leaves it exactly once, kept or with a reason.

@dg.asset_check(asset=validated_examples, blocking=True,
                description="Every raw line (or unreadable file) of every source is kept or quarantined, exactly once.")
def validated_examples_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    sources = formats.discover_sources(store.data(ValidationConfig().raw_dir))
    expected = [origin for source in sources for origin in formats.raw_origins(source)]
    out = store.artifact("validated_examples")
    return partition_check(expected, {name: origins_in(out / f"{name}.jsonl") for name in ("sft", "preference", "quarantine")})


@dg.asset_check(asset=scrubbed_examples, blocking=True, description="Scrubbing keeps every validated record.")
def scrubbed_examples_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    return partition_check(ids_in(store.artifact("validated_examples") / "sft.jsonl"),
                           {"scrubbed": ids_in(store.artifact("scrubbed_examples") / "sft.jsonl")})


@dg.asset_check(asset=deduplicated_examples, blocking=True, description="input == kept + dropped duplicates.")
def deduplicated_examples_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    out = store.artifact("deduplicated_examples")
    return partition_check(ids_in(store.artifact("scrubbed_examples") / "sft.jsonl"),
                           {"kept": ids_in(out / "sft.jsonl"), "dropped": ids_in(out / "dropped.jsonl")})
