"""Sensors, the schedule and jobs: the source sensor and nightly re-curation, the two automation
sensors that evaluate the conditions (`conditions.py`), the review sensor, and incident records for
failed runs."""

import json
import os
import time
from pathlib import Path

import dagster as dg

from ftassets.defs.curation.cleaning import RAW_SOURCES, source_observation
from ftassets.defs.curation.settings import CurationSettings
from ftassets.defs.platform.conditions import CURATION, GOVERNANCE, MODEL_ASSETS
from ftassets.defs.platform.resources import ArtifactStore
from ftassets.defs.platform.runs import dead_runs_sensor
from ftassets.defs.sweep import main_loop
from ftassets.lib.core.files import sha256_file, sha256_json, write_json_atomic
from ftassets.lib.curation import formats

# Sensors and the schedule (how often they look: seconds, from the environment)

SENSOR_INTERVAL_S = int(os.environ.get("FTASSETS_SENSOR_INTERVAL_S", "60"))
AUTOMATION_INTERVAL_S = int(os.environ.get("FTASSETS_AUTOMATION_INTERVAL_S", "30"))

CURATION_TAGS = {"dagster/max_retries": "1", "ftassets/trigger": "automation"}
MODEL_TAGS = {"dagster/max_retries": "0", "ftassets/trigger": "automation"}

curation_automation = dg.AutomationConditionSensorDefinition(
    "curation_automation", target=dg.AssetSelection.assets(*CURATION, *GOVERNANCE), run_tags=CURATION_TAGS,
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=AUTOMATION_INTERVAL_S,
    description="Carries changed curated data downstream through curation, stage by stage, once checks pass.")
model_automation = dg.AutomationConditionSensorDefinition(
    "model_automation", target=dg.AssetSelection.assets(*MODEL_ASSETS), run_tags=MODEL_TAGS,
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=AUTOMATION_INTERVAL_S,
    description="Training per FTASSETS_TRAINING_POLICY; evaluation and release follow a new model. Never retried.")


def last_curated(instance: dg.DagsterInstance) -> dict[str, str]:
    """The source versions the last curation read: each source's latest observation before the latest
    `validated_examples` materialization. A sensor with no cursor yet (a first `make ui` after `make run`)
    starts from here, so data already curated is not curated again."""
    curated = instance.fetch_materializations(dg.AssetKey("validated_examples"), limit=1).records
    if not curated:
        return {}
    observed = instance.fetch_observations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("raw_sources"), before_storage_id=curated[0].storage_id), limit=10_000).records
    latest: dict[str, str] = {}
    for r in observed:  # newest first
        obs = r.asset_observation
        if obs.partition and obs.tags and "dagster/data_version" in obs.tags:
            latest.setdefault(obs.partition, obs.tags["dagster/data_version"])
    return latest


def source_changes(previous: dict[str, str], current: dict[str, str]) -> dict[str, list[str]]:
    return {"new": sorted(set(current) - set(previous)), "removed": sorted(set(previous) - set(current)),
            "changed": sorted(k for k in set(current) & set(previous) if current[k] != previous[k])}


@dg.sensor(target=dg.AssetSelection.assets("validated_examples"), minimum_interval_seconds=SENSOR_INTERVAL_S,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the data root: a new source folder, a changed file or source.yaml records the new "
                       "source versions and requests curation; the run key is the hash of all source versions, so the "
                       "same state of the data is never curated twice. The cursor (the versions last seen) is kept "
                       "by Dagster across restarts.")
def raw_sources_sensor(context: dg.SensorEvaluationContext, store: ArtifactStore,
                       curation: CurationSettings) -> dg.SensorResult | dg.SkipReason:
    raw = store.data(curation.raw_dir)
    current = formats.source_versions(raw)
    previous = json.loads(context.cursor) if context.cursor else last_curated(context.instance)
    changes = source_changes(previous, current)
    if not any(changes.values()):
        return dg.SkipReason(f"no source changed ({len(current)} sources under {raw})")
    if context.instance.get_latest_materialization_event(dg.AssetKey("base_model")) is None:
        # validation counts tokens with the base model's tokenizer: wait for it (cursor kept, so the
        # change is picked up as soon as base_model exists) instead of launching a run that must fail
        return dg.SkipReason("base_model is not materialized yet: materialize the governance group (or make run)")
    known = set(context.instance.get_dynamic_partitions(RAW_SOURCES.name))
    new_partitions = [name for name in current if name not in known]
    touched = changes["new"] + changes["changed"]
    summary = ", ".join(f"{kind}: {' '.join(names)}" for kind, names in changes.items() if names)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"sources-{sha256_json(current)[:24]}", tags={
            **CURATION_TAGS, "ftassets/trigger": "raw_sources_sensor", "ftassets/source_changes": summary[:200]})],
        asset_events=[source_observation(name, current[name]) for name in touched],
        dynamic_partitions_requests=[RAW_SOURCES.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps(current, sort_keys=True))


def nightly_cron() -> str:
    return os.environ.get("FTASSETS_RECURATION_CRON", "0 2 * * *")


recuration_job = dg.define_asset_job(
    "recuration", selection=dg.AssetSelection.assets("raw_sources", *GOVERNANCE, *CURATION),
    tags=CURATION_TAGS, description="Observe every source and re-curate from the governed files.")

LOOP_JOB = "finetune_loop"
RUN_CONFIG_FILE = "run_config.yaml"  # in the data folder: the budget `make run` trains with


def loop_run_config() -> dict:
    """The data folder's run config (`<data dir>/run_config.yaml`, e.g. the demo's training budget): the
    launchpad defaults of the loop job, so a re-execution from the UI runs what `make run` ran."""
    import yaml

    from ftassets.defs.platform.resources import default_data_dir

    path = Path(default_data_dir()) / RUN_CONFIG_FILE
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def loop_job():
    """The whole loop as a named job (built when the definitions load: it carries that data folder's run config)."""
    return dg.define_asset_job(
        LOOP_JOB, selection=main_loop(), config=loop_run_config(),
        description="The whole loop, as `make run` / `ftassets run` runs it (the settings sweep apart), with the "
                    "data folder's run_config.yaml as its launchpad defaults: re-executable from the UI.")

nightly_recuration = dg.ScheduleDefinition(
    name="nightly_recuration", job=recuration_job, cron_schedule=nightly_cron(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-curates nightly (FTASSETS_RECURATION_CRON). Content-hash data versions mean an unchanged source "
                "changes nothing downstream, so no training or evaluation follows.")


@dg.sensor(target=dg.AssetSelection.assets("human_review"), minimum_interval_seconds=SENSOR_INTERVAL_S,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="A graded blind-review file for the current packet (reviews/<packet_id>.jsonl) requests "
                       "human_review; each distinct file content runs once.")
def review_sensor(context: dg.SensorEvaluationContext, store: ArtifactStore) -> dg.RunRequest | dg.SkipReason:
    if not store.path("blind_review_packet", "key").is_file():
        return dg.SkipReason("no blind review packet yet")
    packet_id = store.read_json("blind_review_packet", "key")["packet_id"]
    graded = store.graded_review(packet_id)
    if not graded.is_file():
        return dg.SkipReason(f"waiting for {graded}")
    digest = sha256_file(graded)
    return dg.RunRequest(run_key=f"review-{packet_id}-{digest[:16]}", tags={**MODEL_TAGS, "ftassets/trigger": "review"})


def incident_record(run, error: str | None, failed_steps: list[str]) -> dict:
    """What an operator needs first: which run, which steps, which assets, why (one line, no data)."""
    first_line = (error or "").strip().splitlines()[0][:300] if error else None
    return {"run_id": run.run_id, "job": run.job_name, "failed_steps": failed_steps,
            "assets": sorted(k.to_user_string() for k in (run.asset_selection or [])),
            "trigger": (run.tags or {}).get("ftassets/trigger", "manual"),
            "retries_allowed": (run.tags or {}).get("dagster/max_retries", "0"), "error": first_line,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, monitor_all_code_locations=False,
                       description="Writes an incident record for every failed run (incidents/<run id>.json in the "
                                   "artifact store) and logs it; model runs are not retried automatically.")
def incident_sensor(context: dg.RunFailureSensorContext, store: ArtifactStore) -> None:
    failed = [e.step_key for e in context.get_step_failure_events() if e.step_key]
    record = incident_record(context.dagster_run, context.failure_event.message, failed)
    write_json_atomic(store.catalog.incident(record["run_id"]), record)
    context.log.warning(f"incident: run {record['run_id']} failed at {', '.join(failed) or 'run level'}: {record['error']}")


SENSORS = [raw_sources_sensor, review_sensor, incident_sensor, dead_runs_sensor, curation_automation, model_automation]
SCHEDULES = [nightly_recuration]
JOBS = [recuration_job]
