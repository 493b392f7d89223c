"""Reading the paper trail back from the Dagster instance. Every materialization records, in its
tags, the exact upstream materializations it read (`dagster/input_event_pointer/<asset>`: their
storage ids); following those pointers gives the chain that really stands behind an artifact, not
whatever happens to be latest now. The release manifest, the `lineage_audit` report and the
`ftassets audit` command are all built from this walk, so they state what Dagster recorded."""

import time

import dagster as dg

POINTER = "dagster/input_event_pointer/"
SOURCES_ASSET = "raw_sources"       # observable source: one partition (and data version) per source folder
SOURCE_FILES_ASSET = "validated_examples"  # records each source's files, content hashes and license
RELEASE_ASSET = "release_decision"


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def materialization(instance: dg.DagsterInstance, key: str, storage_id: int | None = None):
    """One materialization record of `key`: the one with `storage_id`, else the latest (None if none)."""
    flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), storage_ids=[storage_id] if storage_id else None)
    records = instance.fetch_materializations(flt, limit=1).records
    return records[0] if records else None


def _describe(record) -> dict:
    mat = record.asset_materialization
    tags = mat.tags or {}
    return {"data_version": tags.get("dagster/data_version"), "code_version": tags.get("dagster/code_version"),
            "run_id": record.run_id, "storage_id": record.storage_id, "materialized_at": record.timestamp,
            "metadata": {k: v.value for k, v in (mat.metadata or {}).items()}}


def _parents(record) -> dict[str, int | None]:
    tags = record.asset_materialization.tags or {}
    return {k[len(POINTER):]: (int(v) if v.isdigit() else None) for k, v in tags.items() if k.startswith(POINTER)}


class _RunCache:
    """Run configs and check evaluations, fetched once per run however many assets it materialized."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self._configs, self._checks = instance, {}, {}

    def op_config(self, run_id: str, key: str) -> dict | None:
        if run_id not in self._configs:
            run = self.instance.get_run_by_id(run_id)
            self._configs[run_id] = dict(run.run_config or {}) if run is not None else {}
        return ((self._configs[run_id].get("ops") or {}).get(key) or {}).get("config")

    def checks(self, run_id: str) -> list:
        if run_id not in self._checks:
            records = self.instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=10_000).records
            self._checks[run_id] = [r.event_log_entry.dagster_event.event_specific_data for r in records]
        return self._checks[run_id]


def _effective_config(metadata: dict, supplied: dict | None) -> dict | None:
    """The config the asset ran with, as it recorded it in its metadata (every default resolved);
    what the run supplied, for a materialization made before assets recorded it."""
    recorded = metadata.get("config")
    return recorded if isinstance(recorded, dict) else supplied


def _check_rows(evaluations: list, key: str, storage_id: int) -> list[dict]:
    rows = []
    for ev in evaluations:
        target = ev.target_materialization_data
        if ev.asset_key.to_user_string() != key or (target is not None and target.storage_id != storage_id):
            continue
        meta = ev.metadata or {}
        rows.append({"check": ev.check_name, "passed": ev.passed, "severity": ev.severity.value,
                     "blocking": bool(ev.blocking),
                     "value": getattr(meta.get("value"), "value", None),
                     "threshold": getattr(meta.get("threshold"), "value", None)})
    return sorted(rows, key=lambda r: r["check"])


def _source_versions(instance: dg.DagsterInstance, before_storage_id: int) -> dict[str, str]:
    """Each source partition's data version as last observed before a given event."""
    records = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(SOURCES_ASSET),
                                                                before_storage_id=before_storage_id),
                                          limit=1000).records
    out = {}
    for r in records:  # newest first
        obs = r.asset_observation
        out.setdefault(obs.partition, (obs.tags or {}).get("dagster/data_version"))
    return out


def _sources(instance: dg.DagsterInstance, entry: dict) -> dict:
    """Per source: license, kind, do_not_train, observed data version and every file with its hash."""
    meta = entry["metadata"]
    files = meta.get("input_versions") or {}
    observed = _source_versions(instance, entry["storage_id"])
    out = {}
    for name, spec in (meta.get("sources") or {}).items():
        out[name] = {**spec, "data_version": observed.get(name), "reached_training": not spec.get("do_not_train"),
                     "files": {f: h for f, h in sorted(files.items()) if name in f.replace("\\", "/").split("/")}}
    return out


def upstream_chain(instance: dg.DagsterInstance, roots: dict[str, int | None]) -> dict:
    """Walk the input event pointers from `roots` ({asset: storage id, None = latest}) to the sources.

    Returns {"assets": {asset: entry}, "sources": {...}, "missing": [...]}. Each entry holds the data and
    code version, materializing run id and time, effective config, the checks evaluated on that very
    materialization, its direct parents and which assets of the chain read it (`read_by`). One asset can
    stand in the chain at two materializations (a release decided under a new contract on an eval report
    made under the old one): the entry is the newest, the others are listed in its `also_read`. Assets
    never materialized are listed as missing."""
    runs = _RunCache(instance)
    found: dict[tuple[str, int], dict] = {}
    missing: set[str] = set()
    stack = [(key, sid, None) for key, sid in roots.items()]
    while stack:
        key, storage_id, child = stack.pop()
        if key == SOURCES_ASSET:
            continue
        record = materialization(instance, key, storage_id)
        if record is None:
            missing.add(key)
            continue
        seen = found.get((key, record.storage_id))
        if seen is not None:
            seen["read_by"] = sorted(set(seen["read_by"]) | ({child} if child else set()))
            continue
        entry = _describe(record)
        parents = _parents(record)
        entry.update({"asset": key, "materialized_at_iso": _iso(entry["materialized_at"]),
                      "config": _effective_config(entry["metadata"], runs.op_config(record.run_id, key)),
                      "checks": _check_rows(runs.checks(record.run_id), key, record.storage_id),
                      "parents": sorted(parents), "read_by": [child] if child else []})
        if key == SOURCE_FILES_ASSET:
            entry["sources"] = _sources(instance, entry)
        entry["metadata"] = {k: v for k, v in entry["metadata"].items() if k in ("input_versions", "sources")
                             or isinstance(v, (int, float, str, bool))}
        found[(key, record.storage_id)] = entry
        stack.extend((p, sid, key) for p, sid in parents.items())
    assets: dict[str, dict] = {}
    for (key, _), entry in sorted(found.items(), key=lambda kv: -kv[0][1]):  # newest first
        if key in assets:
            assets[key].setdefault("also_read", []).append(
                {f: entry[f] for f in ("storage_id", "data_version", "run_id", "materialized_at_iso", "read_by")})
        else:
            assets[key] = entry
    sources: dict[str, dict] = {}
    for (key, _), entry in sorted(found.items(), key=lambda kv: kv[0][1]):  # oldest first: newest wins
        sources.update(entry.pop("sources", {}) if key == SOURCE_FILES_ASSET else {})
    return {"assets": dict(sorted(assets.items())), "sources": sources, "missing": sorted(missing - set(assets))}


def audit_report(instance: dg.DagsterInstance, roots: dict[str, int | None], label: str | None = None) -> dict:
    """{"target": what was audited, "chain": upstream_chain(...)}; a release target also names its decision."""
    chain = upstream_chain(instance, roots)
    target = {"label": label or ", ".join(roots), "roots": {k: e["storage_id"] for k, e in chain["assets"].items()
                                                            if k in roots}}
    if len(roots) == 1 and next(iter(roots)) in chain["assets"]:
        key = next(iter(roots))
        head = chain["assets"][key]
        target.update({"asset": key, "run_id": head["run_id"], "data_version": head["data_version"],
                       "materialized_at": head["materialized_at_iso"]})
        if key == RELEASE_ASSET:
            target.update({k: head["metadata"].get(k) for k in ("release_name", "decision")})
    return {"target": target, "chain": chain}


def trail(chain: dict) -> dict[str, dict]:
    """{asset: {data_version, code_version, run_id, materialized_at}}: the manifest's lineage section."""
    return {k: {f: e[f] for f in ("data_version", "code_version", "run_id", "storage_id", "materialized_at")}
            for k, e in chain["assets"].items()}


def chain_checks(chain: dict) -> list[dict]:
    return [{"asset": k, "run_id": e["run_id"], **c} for k, e in chain["assets"].items() for c in e["checks"]]


def releases(instance: dg.DagsterInstance, limit: int = 1000) -> list:
    """Every release_decision materialization, newest first."""
    return list(instance.fetch_materializations(dg.AssetKey(RELEASE_ASSET), limit=limit).records)


def rollbacks(instance: dg.DagsterInstance, limit: int = 1000) -> list:
    """Every rollback (an observation of release_decision that names the release made current), newest first."""
    records = instance.fetch_observations(dg.AssetKey(RELEASE_ASSET), limit=limit).records
    return [r for r in records if "rollback_to_storage_id" in (r.asset_observation.metadata or {})]


def current_release(instance: dg.DagsterInstance) -> dict | None:
    """The release a candidate is held against and `serve` offers by default: the newest `release` decision,
    unless a rollback came after it, then the release that rollback made current (with who, why, when)."""
    last = next((r for r in releases(instance) if release_summary(r)["decision"] == "release"), None)
    back = next(iter(rollbacks(instance, limit=1)), None)
    if back is None or (last is not None and last.storage_id > back.storage_id):
        return release_summary(last) if last is not None else None
    meta = {k: v.value for k, v in back.asset_observation.metadata.items()}
    target = materialization(instance, RELEASE_ASSET, int(meta["rollback_to_storage_id"]))
    return {**release_summary(target), "rolled_back": {
        "at": _iso(back.timestamp), "by": meta.get("by"), "reason": meta.get("reason"),
        "from": meta.get("rollback_from")}}


def bundle_checks(instance: dg.DagsterInstance, limit: int = 100) -> dict[str, dict[str, bool]]:
    """{merged weights sha256: {check: passed}}: the check results of the newest serving_bundle
    materialization that bundled those weights (weights never bundled, or unchecked, are absent or {})."""
    runs, out = _RunCache(instance), {}
    for record in instance.fetch_materializations(dg.AssetKey("serving_bundle"), limit=limit).records:
        weights = _meta(record).get("weights_sha256")
        if weights and weights not in out:  # newest first: an older bundle of the same weights is passed over
            rows = _check_rows(runs.checks(record.run_id), "serving_bundle", record.storage_id)
            out[weights] = {r["check"]: r["passed"] for r in rows}
    return out


def _meta(record) -> dict:
    return {k: v.value for k, v in (record.asset_materialization.metadata or {}).items()}


def record_rollback(instance: dg.DagsterInstance, target: dict, reason: str, by: str, previous: dict | None) -> None:
    """Make the release decision `target` (a release_summary) current again; the observation is the audit
    record (Dagster UI: release_decision's events)."""
    instance.report_runless_asset_event(dg.AssetObservation(asset_key=RELEASE_ASSET, metadata={
        "rollback_to": target["release_name"], "rollback_to_storage_id": target["storage_id"],
        "rollback_to_run_id": target["run_id"], "reason": reason, "by": by,
        "rollback_from": (previous or {}).get("release_name") or "none"}))


def release_summary(record) -> dict:
    meta = {k: v.value for k, v in (record.asset_materialization.metadata or {}).items()}
    return {"release_name": meta.get("release_name"), "decision": meta.get("decision"), "run_id": record.run_id,
            "merged_weights_sha256": meta.get("merged_weights_sha256"),
            "contract_version": meta.get("contract_version"), "headline": meta.get("headline"),
            "storage_id": record.storage_id, "materialized_at": _iso(record.timestamp),
            "data_version": (record.asset_materialization.tags or {}).get("dagster/data_version")}


def find_target(instance: dg.DagsterInstance, target: str) -> tuple[str, int] | None:
    """An asset key (its latest materialization), a release name, or a run id (prefix of 8+ characters)
    naming a release_decision materialization -> (asset, storage id)."""
    if "@" in target:  # asset@storage_id, as the audit prints it
        key, _, sid = target.partition("@")
        record = materialization(instance, key, int(sid)) if sid.isdigit() else None
        return (key, record.storage_id) if record else None
    record = materialization(instance, target)
    if record is not None:
        return target, record.storage_id
    for record in releases(instance):
        summary = release_summary(record)
        if summary["release_name"] == target or (len(target) >= 8 and record.run_id.startswith(target)):
            return RELEASE_ASSET, record.storage_id
    return None


def releases_using_source(instance: dg.DagsterInstance, source: str, version: str | None = None) -> list[dict]:
    """Releases (every release_decision, with its decision) whose exact lineage read `source` (optionally at
    a given data version or file hash prefix), newest first."""
    out = []
    for record in releases(instance):
        spec = upstream_chain(instance, {RELEASE_ASSET: record.storage_id})["sources"].get(source)
        if spec is None:
            continue
        if version and not (str(spec.get("data_version") or "").startswith(version)
                            or any(h.startswith(version) for h in spec["files"].values())):
            continue
        out.append({**release_summary(record), "source": source, "source_data_version": spec.get("data_version"),
                    "license": spec.get("license"), "reached_training": spec["reached_training"],
                    "files": spec["files"]})
    return out


def run_config(instance: dg.DagsterInstance, run_id: str | None) -> dict | None:
    run = instance.get_run_by_id(run_id) if run_id else None
    return dict(run.run_config) if run is not None else None
