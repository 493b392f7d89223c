"""The loop runs itself, part one: every asset's code version (from source) and automation condition
(conditions wait for upstream blocking checks); the sensors that act on them are in `sensors.py`.

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

import os
from pathlib import Path

import dagster as dg
from dagster import AutomationCondition as AC

from ftassets.defs.platform.dagster_internals import defining_module
from ftassets.lib.core.code_version import code_version

TRAINING_POLICIES = ("manual", "cron", "eager")
CURATION = ["validated_examples", "scrubbed_examples", "deduplicated_examples", "frozen_test_set", "gold_set",
            "redteam_set", "data_splits", "preference_pairs"]
GOVERNANCE = ["base_model_record", "base_model", "eval_contract"]
MODEL_ASSETS = ["sft_adapter", "dpo_adapter", "merged_model", "eval_report", "blind_review_packet",
                "human_review", "judge_calibration", "release_decision", "serving_bundle", "gguf_export"]
# what retrains automatically: new data or base weights; a contract edit (its selection metric included)
# marks the adapters stale in the UI but retrains only when a person launches it (thresholds change often)
TRAINING_INPUTS = ["base_model", "data_splits"]
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
        return follow(TRAINING_INPUTS, in_tick=[])
    changed = (_deps(AC.data_version_changed(), TRAINING_INPUTS) | AC.code_version_changed()).since(
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
    out["dpo_adapter"] = (follow(["base_model", "sft_adapter", "preference_pairs"], ["sft_adapter"])
                          if policy == "eager" else follow(["sft_adapter"]))
    out["merged_model"] = follow(["sft_adapter", "dpo_adapter"])
    # a re-curated held-out set re-evaluates only if its content changed (it is hash-locked): no same-tick trigger
    out["eval_report"] = follow(models + ["frozen_test_set", "gold_set", "redteam_set", "eval_contract"], models)
    out.update({key: follow() for key in ("blind_review_packet", "human_review", "release_decision", "serving_bundle",
                                          "gguf_export")})
    # it reads the frozen test set's references only: a re-curation of that set is no same-tick trigger
    out["judge_calibration"] = follow(None, ["human_review", "eval_contract"])
    return out


def with_policies(stage_modules, policy: str | None = None, cron: str | None = None) -> list:
    """Every asset of the stage modules with its code version (hash of the module that defines it and
    of what that module imports) and its automation condition (training policy from the environment
    unless given)."""
    env_policy, env_cron = training_policy()
    policy, cron = policy or env_policy, cron or env_cron
    wanted = conditions(policy, cron)
    versions = {m.__name__: code_version(Path(m.__file__), TRAINING_RECIPES if m.__name__.endswith((".training", ".sweep")) else ())
                for m in stage_modules}
    out = []
    for item in dg.load_assets_from_modules(stage_modules):
        if isinstance(item, dg.AssetsDefinition) and not item.is_observable:
            version = versions[defining_module(item)]
            item = item.map_asset_specs(lambda spec, v=version: spec.replace_attributes(
                code_version=v, automation_condition=wanted.get(spec.key.to_user_string())))
        out.append(item)
    return out
