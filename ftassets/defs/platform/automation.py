"""The loop runs itself: code versions from source, automation conditions that wait for upstream
blocking checks, the source sensor and nightly re-curation, the review sensor, and incident records
for failed runs.

Policies, in the order data flows:
- curation follows a changed source (the `raw_sources_sensor` requests `validated_examples` with a
  run key made of the source hashes) and then propagates declaratively, stage by stage, only when an
  input's *data version* changed (content hashes: a nightly re-curation of unchanged data changes
  nothing downstream) and every blocking check upstream passed — Dagster's `eager()` alone does not
  wait for blocking checks of an earlier run (dagster issues #17251, #25112);
- training is expensive: `FTASSETS_TRAINING_POLICY` = `manual` (default: a person launches
  `sft_adapter`), `cron` (on `FTASSETS_TRAINING_CRON`, only when curated data or training code
  changed since the last adapter) or `eager`; DPO and the merge follow a new SFT adapter;
- evaluation, the release decision and the serving bundle follow a new model (or a changed contract
  or held-out set) automatically; the release gate blocks the bundle across runs as within one.
Runs of model assets are never retried automatically (they cost accelerator hours); curation runs
are retried once (`dagster/max_retries`, run retries enabled in dagster.yaml)."""

import json
import os
import time
from pathlib import Path

import dagster as dg
from dagster import AutomationCondition as AC

from ftassets.defs.curation.cleaning import RAW_SOURCES
from ftassets.defs.platform.resources import ArtifactStore
from ftassets.lib.core.code_version import code_version
from ftassets.lib.core.files import sha256_file, sha256_json, write_json_atomic
from ftassets.lib.curation import formats

TRAINING_POLICIES = ("manual", "cron", "eager")
CURATION = ["validated_examples", "scrubbed_examples", "deduplicated_examples", "frozen_test_set", "gold_set",
            "redteam_set", "data_splits", "preference_pairs"]
GOVERNANCE = ["base_model_record", "base_model", "eval_contract"]
MODEL_ASSETS = ["sft_adapter", "dpo_adapter", "merged_model", "eval_report", "blind_review_packet",
                "human_review", "release_decision", "serving_bundle"]
TRAINING_RECIPES = ("ftassets.pipes_recipe", "ftassets.lib.training.sft", "ftassets.lib.training.dpo")


# Conditions

def _deps(condition: AC, keys: list[str] | None) -> AC:
    deps = AC.any_deps_match(condition)
    return deps.allow(dg.AssetSelection.assets(*keys)) if keys is not None else deps


def _ready() -> AC:
    return (~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()
            & AC.all_deps_blocking_checks_passed())


def follow(changed: list[str] | None = None, in_tick: list[str] | None = None) -> AC:
    """Materialize when an input's data version changed (`changed`: which inputs count, None = all), when
    an input is requested in this same tick (`in_tick`: which; default: the same as `changed`; [] = none:
    then wait for it to finish and look at its data version), when the code version changed or the asset
    went missing; and only once nothing upstream is missing or running and every upstream blocking check
    passed."""
    in_tick = changed if in_tick is None else in_tick
    trigger = AC.newly_missing() | AC.code_version_changed() | _deps(AC.data_version_changed(), changed)
    if in_tick is None or in_tick:
        trigger = trigger | _deps(AC.will_be_requested(), in_tick)
    label = f"follow_when_checks_pass(changed={','.join(changed) if changed is not None else 'any'}; " \
            f"same_tick={','.join(in_tick) if in_tick is not None else 'any'})"
    return (trigger.since_last_handled() & _ready()).with_label(label)


def training_policy() -> tuple[str, str]:
    policy = os.environ.get("FTASSETS_TRAINING_POLICY", "manual").strip().lower()
    if policy not in TRAINING_POLICIES:
        raise ValueError(f"FTASSETS_TRAINING_POLICY must be one of {', '.join(TRAINING_POLICIES)}, got {policy!r}")
    return policy, os.environ.get("FTASSETS_TRAINING_CRON", "0 3 * * *")


def training_condition(policy: str, cron: str) -> AC | None:
    if policy == "manual":
        return None
    if policy == "eager":  # wait for curation to finish: retrain only if the curated data really changed
        return follow(in_tick=[])
    changed = (AC.any_deps_match(AC.data_version_changed()) | AC.code_version_changed()).since(
        AC.newly_requested() | AC.newly_updated())
    # the tick itself (not "since the tick"): a change between ticks waits for the next one
    return (AC.cron_tick_passed(cron) & (AC.missing() | changed) & _ready()).with_label(
        f"train_on_cron({cron})_if_data_or_code_changed")


def conditions(policy: str, cron: str) -> dict[str, AC | None]:
    """The automation condition of every asset (None: launched by a person, a sensor or the schedule)."""
    models = ["sft_adapter", "dpo_adapter", "merged_model"]
    out: dict[str, AC | None] = {key: None for key in GOVERNANCE}
    out.update({key: follow() for key in CURATION})
    out["validated_examples"] = None  # requested by raw_sources_sensor and the nightly schedule
    out.update({"gold_set": None, "redteam_set": None})  # governed files: the nightly schedule refreshes them
    out["sft_adapter"] = training_condition(policy, cron)
    # DPO follows a new SFT adapter in the same run; new preference data alone retrains it only under eager
    out["dpo_adapter"] = follow(None, ["sft_adapter"]) if policy == "eager" else follow(["sft_adapter"])
    out["merged_model"] = follow(["sft_adapter", "dpo_adapter"])
    # a re-curated held-out set re-evaluates only if its content changed (it is hash-locked): no same-tick trigger
    out["eval_report"] = follow(models + ["frozen_test_set", "gold_set", "redteam_set", "eval_contract"], models)
    out.update({key: follow() for key in ("blind_review_packet", "human_review", "release_decision", "serving_bundle")})
    return out


def _defining_module(assets_def: dg.AssetsDefinition) -> str:
    return assets_def.op.compute_fn.decorated_fn.__module__


def with_policies(stage_modules, policy: str | None = None, cron: str | None = None) -> list:
    """Every asset of the stage modules with its code version (hash of the module that defines it and
    of what that module imports) and its automation condition (training policy from the environment
    unless given)."""
    env_policy, env_cron = training_policy()
    policy, cron = policy or env_policy, cron or env_cron
    wanted = conditions(policy, cron)
    versions = {m.__name__: code_version(Path(m.__file__), TRAINING_RECIPES if m.__name__.endswith(".training") else ())
                for m in stage_modules}
    out = []
    for item in dg.load_assets_from_modules(stage_modules):
        if isinstance(item, dg.AssetsDefinition) and not item.is_observable:
            version = versions[_defining_module(item)]
            item = item.map_asset_specs(lambda spec, v=version: spec.replace_attributes(
                code_version=v, automation_condition=wanted.get(spec.key.to_user_string())))
        out.append(item)
    return out


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


def source_changes(previous: dict[str, str], current: dict[str, str]) -> dict[str, list[str]]:
    return {"new": sorted(set(current) - set(previous)), "removed": sorted(set(previous) - set(current)),
            "changed": sorted(k for k in set(current) & set(previous) if current[k] != previous[k])}


def _observation(name: str, version: str) -> dg.AssetObservation:
    return dg.AssetObservation(asset_key="raw_sources", partition=name, tags={
        "dagster/data_version": version, "dagster/data_version_is_user_provided": "true"})


@dg.sensor(target=dg.AssetSelection.assets("validated_examples"), minimum_interval_seconds=SENSOR_INTERVAL_S,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Watches the data root: a new source folder, a changed file or source.yaml records the new "
                       "source versions and requests curation; the run key is the hash of all source versions, so the "
                       "same state of the data is never curated twice. The cursor (the versions last seen) is kept "
                       "by Dagster across restarts.")
def raw_sources_sensor(context: dg.SensorEvaluationContext, store: ArtifactStore) -> dg.SensorResult | dg.SkipReason:
    raw = store.data("raw")
    current = formats.source_versions(raw)
    previous = json.loads(context.cursor) if context.cursor else {}
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
        asset_events=[_observation(name, current[name]) for name in touched],
        dynamic_partitions_requests=[RAW_SOURCES.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps(current, sort_keys=True))


def nightly_cron() -> str:
    return os.environ.get("FTASSETS_RECURATION_CRON", "0 2 * * *")


recuration_job = dg.define_asset_job(
    "recuration", selection=dg.AssetSelection.assets("raw_sources", *GOVERNANCE, *CURATION),
    tags=CURATION_TAGS, description="Observe every source and re-curate from the governed files.")

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
    key_file = store.artifact("blind_review_packet") / "key.json"
    if not key_file.is_file():
        return dg.SkipReason("no blind review packet yet")
    packet_id = json.loads(key_file.read_text())["packet_id"]
    graded = store.data("reviews") / f"{packet_id}.jsonl"
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
    write_json_atomic(store.artifact("incidents") / f"{record['run_id']}.json", record)
    context.log.warning(f"incident: run {record['run_id']} failed at {', '.join(failed) or 'run level'}: {record['error']}")


SENSORS = [raw_sources_sensor, review_sensor, incident_sensor, curation_automation, model_automation]
SCHEDULES = [nightly_recuration]
JOBS = [recuration_job]
