"""Reading the paper trail back from the Dagster instance: each upstream asset's latest
materialization (data version, code version, run, time, metadata) and its latest check results.
The release manifest is built from these, so it states what Dagster recorded, not what we assume."""

import dagster as dg


def latest_materialization(instance: dg.DagsterInstance, key: str) -> dict | None:
    record = instance.get_latest_materialization_event(dg.AssetKey(key))
    if record is None or record.asset_materialization is None:
        return None
    mat = record.asset_materialization
    tags = mat.tags or {}
    return {"data_version": tags.get("dagster/data_version"), "code_version": tags.get("dagster/code_version"),
            "run_id": record.run_id, "materialized_at": record.timestamp,
            "metadata": {k: v.value for k, v in (mat.metadata or {}).items()}}


def lineage(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, dict | None]:
    """{asset: {data_version, code_version, run_id, materialized_at}} (metadata left out)."""
    out = {}
    for key in keys:
        record = latest_materialization(instance, key)
        out[key] = {k: v for k, v in record.items() if k != "metadata"} if record else None
    return out


def check_results(instance: dg.DagsterInstance, all_check_keys, keys: list[str]) -> list[dict]:
    """Latest evaluation of every check (of `all_check_keys`) defined on `keys`: passed, severity, run id."""
    wanted = {dg.AssetKey(k) for k in keys}
    check_keys = sorted((ck for ck in all_check_keys if ck.asset_key in wanted),
                        key=lambda ck: ck.to_user_string())
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    out = []
    for ck in check_keys:
        record = records.get(ck)
        evaluation = None
        if record is not None and record.event is not None and record.event.dagster_event is not None:
            evaluation = record.event.dagster_event.event_specific_data
        out.append({"check": ck.name, "asset": ck.asset_key.to_user_string(),
                    "status": record.status.value if record else "never_run",
                    "passed": getattr(evaluation, "passed", None),
                    "severity": getattr(getattr(evaluation, "severity", None), "value", None),
                    "run_id": record.run_id if record else None})
    return out


def run_config(instance: dg.DagsterInstance, run_id: str | None) -> dict | None:
    run = instance.get_run_by_id(run_id) if run_id else None
    return dict(run.run_config) if run is not None else None
