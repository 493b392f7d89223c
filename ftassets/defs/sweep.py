"""The settings sweep: SFT settings chosen on the validation split only, as Dagster partitions.

    sweep_plan    reads governance/sweep.yaml and registers one `sft_trial` partition per grid point
    sft_trial     one partition = one SFT run of one grid point (the same recipe, through Pipes), its best
                  checkpoint kept on the contract's selection metric on the validation split
    sft_sweep     the trial with the best validation score, the whole grid, and the chosen settings as a
                  run config for `sft_adapter`

Launch it with `ftassets sweep`, or in the UI: materialize `sweep_plan`, backfill the `sft_trial`
partitions, materialize `sft_sweep`. It is never part of the main loop's runs (`ftassets run`): a
sweep is a deliberate, costly choice. None of these assets reads the frozen test set, the gold set or
the forgetting benchmarks."""

import json

import dagster as dg
import yaml

from ftassets.defs.platform.metadata import package_versions
from ftassets.defs.platform.resources import ArtifactStore, TrainingLauncher
from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import atomic_directory, write_json_atomic
from ftassets.lib.training.checkpoints import input_hashes, run_fingerprint
from ftassets.lib.training.settings import RecipeIO, SftSettings
from ftassets.lib.training.sweep import SweepPlan, Trial, choose, load_plan, run_config, trial_score

GROUP = "sweep"
POOL = "heavy_compute"
TRIALS = dg.DynamicPartitionsDefinition(name="sft_trial")


def _plan(store: ArtifactStore) -> list[Trial]:
    return [Trial.model_validate(t) for t in store.read_json("sweep_plan", "plan")["trials"]]


def _trial_io(store: ArtifactStore, trial: Trial, output_dir: str) -> RecipeIO:
    """A trial reads the train and validation splits, the contract and the base weights, nothing else."""
    inputs = trial_inputs(store)
    return RecipeIO(**inputs, output_dir=output_dir, checkpoint_dir=str(store.checkpoints("sft_trial") / trial.folder),
                    tensorboard_dir=str(store.catalog.tensorboard("sft_trial", trial.folder)),
                    task_eval_file=inputs["validation_file"], gold_file=None, sweep_trial=True)


def trial_inputs(store: ArtifactStore) -> dict[str, str]:
    """What every trial reads (`_trial_io`): the base weights, the train and validation splits, the contract."""
    return {"base_model": str(store.artifact("base_model")), "train_file": str(store.path("data_splits", "train")),
            "validation_file": str(store.path("data_splits", "validation")),
            "contract_file": str(store.path("eval_contract", "contract"))}


def _fingerprints(store: ArtifactStore, trials: list[Trial]) -> dict[str, dict]:
    """What each trial's result depends on: its settings, and the content of the inputs all trials share
    (hashed once: the base weights alone are hundreds of MB)."""
    inputs = trial_inputs(store)
    hashes = input_hashes(inputs)
    return {t.key: run_fingerprint(SftSettings(**t.settings), inputs, hashes) for t in trials}


def _record(store: ArtifactStore, trial: Trial) -> dict | None:
    """A trained trial's record (its score and fingerprint), or None if it never finished."""
    path = store.catalog.partition("sft_trial", trial.folder) / file_name("sft_trial", "trial")
    return json.loads(path.read_text()) if path.is_file() else None


@dg.asset(group_name=GROUP, kinds={"yaml"}, deps=["eval_contract"],
          description="The declared settings sweep (governance/sweep.yaml): base SFT settings and the grid; registers "
                      "one sft_trial partition per grid point (and retires partitions no longer in the grid).")
def sweep_plan(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    plan: SweepPlan = load_plan(store.data_dir)
    trials = plan.trials()
    keys = [t.key for t in trials]
    registered = set(context.instance.get_dynamic_partitions(TRIALS.name))
    context.instance.add_dynamic_partitions(TRIALS.name, [k for k in keys if k not in registered])
    for retired in sorted(registered - set(keys)):
        context.instance.delete_dynamic_partition(TRIALS.name, retired)
    metric = store.contract().selection.metric
    store.catalog.write_json("sweep_plan", "plan", {**plan.model_dump(mode="json"), "metric": metric,
                                                    "trials": [t.model_dump(mode="json") for t in trials]})
    return dg.MaterializeResult(metadata={
        "trials": len(trials), "metric": metric, "grid": dg.MetadataValue.json(plan.grid),
        "base": dg.MetadataValue.json(plan.base), "partitions": dg.MetadataValue.json(keys)})


@dg.asset(group_name=GROUP, kinds={"pytorch", "peft", "trl"}, partitions_def=TRIALS, pool=POOL,
          deps=["sweep_plan", "base_model", "data_splits", "eval_contract"],
          description="One grid point of the sweep: the SFT recipe with the trial's settings, its checkpoint kept on "
                      "the contract's selection metric on the validation split; the score it reached there.")
def sft_trial(context: dg.AssetExecutionContext, store: ArtifactStore,
              training_launcher: TrainingLauncher) -> dg.MaterializeResult:
    trial = next((t for t in _plan(store) if t.key == context.partition_key), None)
    if trial is None:
        raise dg.Failure(description=f"sft_trial {context.partition_key!r} is not in the current sweep plan: "
                                     f"materialize sweep_plan again (governance/sweep.yaml changed?)")
    target = store.catalog.partition("sft_trial", trial.folder)
    with atomic_directory(target) as staging:
        reported = training_launcher.launch(context, "sft", SftSettings(**trial.settings),
                                            _trial_io(store, trial, str(staging)))
        summary = json.loads((staging / file_name("sft_trial", "summary")).read_text())
        record = {"key": trial.key, "values": trial.values, "score": trial_score(summary),
                  "fingerprint": _fingerprints(store, [trial])[trial.key], "wall_time_s": summary["wall_time_s"],
                  "global_steps": summary["global_steps"], "stop_reason": summary["stop_reason"]}
        write_json_atomic(staging / file_name("sft_trial", "trial"), record)
    score = record["score"]
    return dg.MaterializeResult(metadata={
        **{k: v for k, v in reported.items() if k in ("global_steps", "wall_time_s", "final_train_loss")},
        "metric": score["metric"], "validation_score": score["value"], "best_step": score["step"],
        "values": dg.MetadataValue.json(trial.values), "settings": dg.MetadataValue.json(trial.settings),
        "path": dg.MetadataValue.path(str(target)), "package_versions": dg.MetadataValue.json(package_versions())})


@dg.asset(group_name=GROUP, kinds={"json"}, deps=["sweep_plan", sft_trial],
          description="The sweep's choice: the trial with the best validation score (the contract's selection "
                      "metric), the whole grid, and the chosen settings as a run config for sft_adapter.")
def sft_sweep(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    trials = _plan(store)
    result = choose(trials, {t.key: _record(store, t) for t in trials}, _fingerprints(store, trials))
    with store.catalog.unit("sft_sweep") as catalog:  # the result and the run config it chose switch together
        catalog.write_json("sft_sweep", "sweep", result)
        catalog.write_text("sft_sweep", "run_config", yaml.safe_dump(run_config(result), sort_keys=False))
    columns = [*trials[0].values, "score", "best_step", "validation_loss"]
    table = "\n".join([f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)] +
                      [f"| {' | '.join(str(row[c]) for c in columns)} |" for row in result["grid"]])
    context.log.info(f"sweep chose {result['chosen']} ({result['metric']} {result['chosen_score']} at step "
                     f"{result['chosen_step']}) of {result['trials']} trials")
    return dg.MaterializeResult(metadata={
        "chosen": result["chosen"], "metric": result["metric"], "chosen_score": result["chosen_score"],
        "chosen_step": result["chosen_step"], "grid": dg.MetadataValue.md(table),
        "chosen_settings": dg.MetadataValue.json(result["chosen_settings"]),
        "run_config_path": dg.MetadataValue.path(str(store.path("sft_sweep", "run_config")))})


def main_loop() -> dg.AssetSelection:
    """Every asset but the sweep's: what `ftassets run` materializes by default."""
    return dg.AssetSelection.all() - dg.AssetSelection.groups(GROUP)


def trials_to_run(store: ArtifactStore, rerun: bool = False) -> list[Trial]:
    """The current plan's trials with no result for their current settings and inputs (all with `rerun`)."""
    trials = _plan(store)
    current = _fingerprints(store, trials)
    return [t for t in trials if rerun or (_record(store, t) or {}).get("fingerprint") != current[t.key]]
