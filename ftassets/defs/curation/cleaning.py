"""Curation, first part: raw sources -> validated -> PII-scrubbed -> deduplicated. Every dropped
record is kept with its reason, and a blocking check per stage proves the counts add up. (The
held-out sets follow in `heldout.py`, the decontaminated splits in `splits.py`.)"""


import html
import json
from collections import Counter

import dagster as dg

from ftassets.defs.curation.settings import CurationSettings, check_settings_folder
from ftassets.defs.platform.metadata import dataset_metadata, file_version, origins_in, partition_check
from ftassets.defs.platform.resources import ArtifactStore, PiiEngine
from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import sha256_bytes, sha256_file
from ftassets.lib.core.models import count_chat_tokens, load_tokenizer
from ftassets.lib.curation import dedup, formats, frozen
from ftassets.lib.curation.identifiers import safe_path
from ftassets.lib.curation.pii import chat_fields
from ftassets.lib.curation.reading import inside
from ftassets.lib.curation.validation import refit_after_scrub, validate_sources
from ftassets.lib.governance.license import load_training_data_licenses

GROUP = "curation"


RAW_SOURCES = dg.DynamicPartitionsDefinition(name="raw_sources")


@dg.observable_source_asset(
    partitions_def=RAW_SOURCES, group_name=GROUP,
    description="The source folders under raw/, one partition each, observed as a content hash of every file in "
                "the folder (data, sidecar, source.yaml): a changed file changes only its source's data version.")
def raw_sources(context, store: ArtifactStore, curation: CurationSettings) -> dg.DataVersionsByPartition:
    versions = formats.source_versions(store.data(curation.raw_dir))
    known = set(context.instance.get_dynamic_partitions(RAW_SOURCES.name))
    new = [name for name in versions if name not in known]
    if new:  # a new source folder becomes a new partition: nothing to register by hand
        context.instance.add_dynamic_partitions(RAW_SOURCES.name, new)
        context.log.info(f"new sources: {', '.join(new)}")
    return dg.DataVersionsByPartition({name: dg.DataVersion(version) for name, version in versions.items()})


def source_observation(name: str, version: str) -> dg.AssetObservation:
    """One source partition's observed data version, as the source sensor and `ftassets run` record it."""
    return dg.AssetObservation(asset_key="raw_sources", partition=name, tags={
        "dagster/data_version": version, "dagster/data_version_is_user_provided": "true"})


def observe_sources(instance: dg.DagsterInstance, store: ArtifactStore, curation: CurationSettings) -> dict[str, str]:
    """Record each source's content hash now, outside a run (what the UI's "Observe sources" does), through
    the instance's public runless-event API: the next run's lineage then names the source versions it read.
    Returns {source: data version}."""
    versions = formats.source_versions(store.data(curation.raw_dir))
    known = set(instance.get_dynamic_partitions(RAW_SOURCES.name))
    new = [name for name in versions if name not in known]
    if new:
        instance.add_dynamic_partitions(RAW_SOURCES.name, new)
    for name, version in versions.items():
        instance.report_runless_asset_event(source_observation(name, version))
    return versions


@dg.asset(group_name=GROUP, kinds={"json"}, deps=["base_model", raw_sources],
          description="Schema- and template-checked chat records; rejects quarantined with file, line and reason.")
def validated_examples(context: dg.AssetExecutionContext, store: ArtifactStore,
                       curation: CurationSettings) -> dg.MaterializeResult:
    check_settings_folder(curation, store.data_dir)
    sources = formats.discover_sources(store.data(curation.raw_dir))
    if not sources:
        raise GovernanceError(f"{store.data(curation.raw_dir)}: no sources (folders with source.yaml)")
    allowed = load_training_data_licenses(store.data(curation.policy_file))
    sft, pref = validate_sources(sources, token_counter(store), curation.max_tokens, allowed)
    with store.catalog.unit("validated_examples") as catalog:  # the three files switch together
        sft_path = catalog.write_records("validated_examples", "sft", sft.kept)
        catalog.write_records("validated_examples", "preference", pref.kept)
        quarantine = catalog.write_records("validated_examples", "quarantine", sft.quarantined + pref.quarantined)
    read = len(sft.kept) + len(pref.kept) + len(sft.quarantined) + len(pref.quarantined)
    read_files = [f for s in sources for f in s.files] + [s.folder / "source.yaml" for s in sources]
    inputs = {safe_path(path): version for path, version in  # no symlink out; no folder or file name with PII
              store.file_versions([f for f in read_files if f.is_file() and inside(store.data_dir, f)]).items()}
    context.log.info(f"validated {read} items: {len(sft.kept)} sft, {len(pref.kept)} preference kept")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(sft.kept) + len(pref.kept),
        **dataset_metadata(sft.kept, preview=False),  # not scrubbed yet: columns, never rows
        "read": read, "kept_sft": len(sft.kept), "kept_preference": len(pref.kept),
        "quarantined": len(sft.quarantined) + len(pref.quarantined),
        "quarantine_reasons": dg.MetadataValue.json({**Counter(sft.reasons) + Counter(pref.reasons)}),
        "sources": dg.MetadataValue.json({s.name: {"license": s.license, "kind": s.kind, "files": len(s.files),
                                                   "do_not_train": s.do_not_train} for s in sources}),
        "input_versions": dg.MetadataValue.json(inputs),
        "quarantine_path": dg.MetadataValue.path(str(quarantine)), "config": dg.MetadataValue.json(curation.model_dump()),
    }, data_version=dg.DataVersion(sha256_bytes(json.dumps(inputs, sort_keys=True).encode()
                                                + sha256_file(sft_path).encode())[:32]))


def token_counter(store: ArtifactStore):
    """Tokens of a message list as training counts them: the base model's chat template, its tokenizer."""
    tokenizer = load_tokenizer(store.artifact("base_model"))
    return lambda messages: count_chat_tokens(tokenizer, messages)


def scrub_summary(report) -> dict:
    return {"records_with_pii": report.records_with_pii,
            "entities_removed": dg.MetadataValue.json(dict(sorted(report.entities.items())))}


@dg.asset(group_name=GROUP, kinds={"json", "presidio"}, deps=["base_model", validated_examples],
          description="SFT records with PII replaced by typed placeholders (raw PII never leaves this step); a record "
                      "the placeholders push past max_tokens is set aside as too_long.")
def scrubbed_examples(context: dg.AssetExecutionContext, store: ArtifactStore, pii: PiiEngine,
                      curation: CurationSettings) -> dg.MaterializeResult:
    check_settings_folder(curation, store.data_dir)
    records = store.records("validated_examples", "sft")
    config = curation.scrub
    processes = config.processes(len(records))
    scrubbed, report = pii.scrubber(config).scrub_records(records, chat_fields, config.chunk_records, processes)
    scrubbed, too_long = refit_after_scrub(scrubbed, "sft", token_counter(store), curation.max_tokens)
    with store.catalog.unit("scrubbed_examples") as catalog:
        path = catalog.write_records("scrubbed_examples", "sft", scrubbed)
        catalog.write_records("scrubbed_examples", "too_long", too_long)
    samples = [r["messages"][1]["content"][:240] for r in scrubbed if r["pii_found"]][:3]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(scrubbed), **dataset_metadata(scrubbed),
        "records": len(scrubbed), **scrub_summary(report), "scrub_processes": processes,
        "too_long_after_scrub": len(too_long),  # placeholders made them longer than max_tokens
        # escaped: the UI renders Markdown as HTML, where a bare <PERSON> placeholder is an unknown tag and vanishes
        "scrubbed_samples": dg.MetadataValue.md("\n\n".join(f"> {html.escape(s)}" for s in samples) or "(none)"),
        "path": dg.MetadataValue.path(str(path)), "config": dg.MetadataValue.json(config.model_dump())},
        data_version=file_version(path))


def residual_result(hits: Counter) -> dg.AssetCheckResult:
    """Pass only when nothing is left; metadata carries counts per entity, never a value."""
    total = sum(hits.values())
    return dg.AssetCheckResult(passed=total == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"value": total, "threshold": 0, "by_type": dg.MetadataValue.json(dict(hits))})


@dg.asset_check(asset=scrubbed_examples, blocking=True,
                description="The scrubber's own recognizers, run again on the normalised text of every turn (user, "
                            "assistant and system alike), find no PII entity left (allow-list excepted).")
def no_residual_pii(store: ArtifactStore, pii: PiiEngine, curation: CurationSettings) -> dg.AssetCheckResult:
    texts = [m["content"] for record in store.records("scrubbed_examples", "sft") for m in record["messages"]]
    return residual_result(pii.scrubber(curation.scrub).residual(texts))


@dg.asset(group_name=GROUP, kinds={"json", "datasketch"}, deps=[scrubbed_examples],
          description="Exact and near duplicates removed (first in source order is kept); the cluster report names "
                      "every removed record, the record it duplicates and their similarity.")
def deduplicated_examples(store: ArtifactStore, curation: CurationSettings) -> dg.MaterializeResult:
    records = store.records("scrubbed_examples", "sft")
    config = curation.dedup
    lock = frozen.load_lock(store.data(curation.split.lock_file))  # frozen test members are never the ones dropped
    kept, dropped = dedup.deduplicate(records, config.near_duplicate_threshold, config.num_perm, config.shingle_size,
                                      protected=set(lock["ids"]) if lock else set())
    clusters = dedup.cluster_report(dropped)
    with store.catalog.unit("deduplicated_examples") as catalog:
        path = catalog.write_records("deduplicated_examples", "sft", kept)
        catalog.write_records("deduplicated_examples", "dropped", dropped)
        cluster_path = catalog.write_records("deduplicated_examples", "clusters", clusters)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(kept), **dataset_metadata(kept),
        "input": len(records), "kept": len(kept), "dropped": len(dropped),
        "dropped_reasons": dg.MetadataValue.json(dict(Counter(d["reason"] for d in dropped))),
        "clusters": len(clusters), "largest_cluster": clusters[0]["size"] if clusters else 0,
        "lowest_similarity_removed": min((d["similarity"] for d in dropped), default=None),
        "cluster_report": dg.MetadataValue.path(str(cluster_path)),
        "path": dg.MetadataValue.path(str(path)), "config": dg.MetadataValue.json(config.model_dump())},
        data_version=file_version(path))


# Conservation: every record that enters a stage leaves it exactly once, kept or with a reason.

@dg.asset_check(asset=validated_examples, blocking=True,
                description="Every raw line (or unreadable file) of every source is kept or quarantined, exactly once.")
def validated_examples_conserved(store: ArtifactStore, curation: CurationSettings) -> dg.AssetCheckResult:
    sources = formats.discover_sources(store.data(curation.raw_dir))
    expected = [origin for source in sources for origin in formats.raw_origins(source)]
    return partition_check(expected, {role: origins_in(store.records("validated_examples", role))
                                      for role in ("sft", "preference", "quarantine")})


@dg.asset_check(asset=scrubbed_examples, blocking=True,
                description="Scrubbing keeps every validated record, or sets it aside as too long after placeholders.")
def scrubbed_examples_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    ids = store.catalog.ids
    return partition_check(ids("validated_examples", "sft"), {"scrubbed": ids("scrubbed_examples", "sft"),
                                                              "too_long": ids("scrubbed_examples", "too_long")})


@dg.asset_check(asset=deduplicated_examples, blocking=True, description="input == kept + dropped duplicates.")
def deduplicated_examples_conserved(store: ArtifactStore) -> dg.AssetCheckResult:
    ids = store.catalog.ids
    return partition_check(ids("scrubbed_examples", "sft"), {"kept": ids("deduplicated_examples", "sft"),
                                                             "dropped": ids("deduplicated_examples", "dropped")})
