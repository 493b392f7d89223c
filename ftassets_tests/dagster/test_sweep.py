"""The settings sweep as Dagster partitions on the tiny model: every grid point trains as one
`sft_trial` partition, the choice is the best validation score, and nothing in it can read the
frozen test set, the gold set or the forgetting benchmarks (they are moved away before it runs)."""

import json
import shutil

import dagster as dg
import pytest
import yaml

from ftassets.defs.platform.resources import ArtifactStore
from ftassets.defs.release import sweep_section
from ftassets.lib.core.catalog import Catalog, file_name
from ftassets.lib.training.sweep import folder_name
from ftassets_tests.conftest import data_copy, materialize, tiny_run_config

SWEEP = {"base": {"max_steps": 4, "micro_batch_size": 4, "eval_steps": 2, "lora_r": 4},
         "grid": {"learning_rate": [0.0005, 0.01]}}
KEYS = ["learning_rate=0.0005", "learning_rate=0.01"]


@pytest.mark.slow  # two training processes
def test_sweep_trains_each_grid_point_as_a_partition_and_chooses_on_validation_only(tmp_path, tiny_model_dir,
                                                                                   monkeypatch, capsys):
    from ftassets.cli import main

    data = data_copy(tmp_path, "raw", "governance", "eval")
    for source in ("general_replay", "support_preferences"):  # the frozen members are all in support_chat:
        shutil.rmtree(data / "raw" / source)                    # less to scrub, the same splits to choose on
    (data / "governance" / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    artifacts = tmp_path / "artifacts"
    for name, value in (("DAGSTER_HOME", tmp_path / "home"), ("FTASSETS_DATA_DIR", data),
                        ("FTASSETS_ARTIFACTS_DIR", artifacts)):  # as `ftassets sweep` finds its instance and folders
        monkeypatch.setenv(name, str(value))
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.get()
    inputs = dg.AssetSelection.assets("data_splits").upstream() | dg.AssetSelection.assets("eval_contract")
    result = materialize(data, artifacts, {"ops": {"base_model": tiny_run_config(tiny_model_dir)["ops"]["base_model"]}},
                         selection=inputs, instance=instance)
    assert result.success
    hidden = tmp_path / "hidden"  # what selection must never read: gone, so any read would fail the run
    hidden.mkdir()
    for asset in ("frozen_test_set", "gold_set", "redteam_set"):
        shutil.move(artifacts / asset, hidden / asset)
    shutil.move(data / "eval", hidden / "eval")

    assert main(["sweep"]) == 0
    out = capsys.readouterr().out
    assert sorted(instance.get_dynamic_partitions("sft_trial")) == KEYS
    assert [line for line in out.splitlines() if line.startswith("trial ")] == [f"trial {k}: training" for k in KEYS]
    runs = instance.get_run_records(dg.RunsFilter(tags={"ftassets/entrypoint": "cli-sweep"}))
    assert sorted(r.dagster_run.tags.get("dagster/partition") for r in runs
                  if r.dagster_run.tags.get("dagster/partition")) == KEYS  # one run per trial partition
    assert main(["sweep"]) == 0  # everything up to date: chooses again, trains nothing
    assert "training" not in capsys.readouterr().out

    catalog = Catalog(artifacts)
    records = {k: json.loads((catalog.partition("sft_trial", folder_name(k)) / file_name("sft_trial", "trial")).read_text()) for k in KEYS}
    for record in records.values():  # each trial was scored on the contract's metric, at a kept checkpoint
        assert record["score"]["metric"] == "task_success" and record["score"]["step"] in (2, 4)
        assert record["fingerprint"]["settings"]["max_steps"] == 4
        assert set(record["fingerprint"]["inputs"]) == {"base_model", "train_file", "validation_file", "contract_file"}
    expected = min(KEYS, key=lambda k: (-records[k]["score"]["value"], records[k]["score"]["validation_loss"]))
    sweep = catalog.read_json("sft_sweep", "sweep")
    assert f"chosen on validation: {expected} " in out
    assert sweep["chosen"] == expected and [row["key"] for row in sweep["grid"]] == KEYS
    assert [row["score"] for row in sweep["grid"]] == [records[k]["score"]["value"] for k in KEYS]
    chosen_config = yaml.safe_load(catalog.path("sft_sweep", "run_config").read_text())["ops"]["sft_adapter"]["config"]
    assert chosen_config["learning_rate"] == float(expected.split("=")[1]) and chosen_config["lora_r"] == 4
    assert not any((artifacts / a).exists() for a in ("frozen_test_set", "gold_set", "redteam_set"))

    store = ArtifactStore(data_dir=str(data), artifacts_dir=str(artifacts))
    section = sweep_section(store, {**sweep["chosen_settings"], "output_dir": "x"})  # the release manifest's
    assert section["sft_adapter_uses_choice"] and all(section["inputs_unchanged_since_sweep"].values())
    assert not sweep_section(store, {**sweep["chosen_settings"], "learning_rate": 0.3})["sft_adapter_uses_choice"]

    # new validation data: every trial is stale, and the sweep refuses to choose among old results
    validation = catalog.path("data_splits", "validation")
    validation.write_text(validation.read_text() + validation.read_text().splitlines()[0] + "\n")
    assert sweep_section(store, sweep["chosen_settings"])["inputs_unchanged_since_sweep"] == {
        "base_model": True, "train_file": True, "validation_file": False, "contract_file": True}
    result = materialize(data, artifacts, selection="sft_sweep", instance=instance)
    assert not result.success
    error = str(next(e for e in result.all_events if e.is_step_failure).step_failure_data.error)
    assert "trained on other inputs or settings (re-run): learning_rate=0.0005, learning_rate=0.01" in error

    # a new grid: the plan retires the partitions no longer in it, and a retired trial cannot run
    (data / "governance" / "sweep.yaml").write_text(yaml.safe_dump({**SWEEP, "grid": {"learning_rate": [0.002]}}))
    assert materialize(data, artifacts, selection="sweep_plan", instance=instance).success
    assert instance.get_dynamic_partitions("sft_trial") == ["learning_rate=0.002"]


def test_the_loop_leaves_the_sweep_out():
    from ftassets.definitions import defs
    from ftassets.defs.sweep import main_loop

    loop = {k.to_user_string() for k in main_loop().resolve(defs.resolve_asset_graph())}
    assert {"sft_adapter", "release_decision"} <= loop and not loop & {"sweep_plan", "sft_trial", "sft_sweep"}
