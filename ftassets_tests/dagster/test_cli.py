"""`ftassets run --select ... --config data/run_config.yaml`: the selection as people type it, and the run
config cut to the selected ops."""

import pytest
import yaml

from ftassets import cli
from ftassets.definitions import defs

from ftassets_tests.conftest import REPO


def test_run_config_is_cut_to_the_selected_assets():
    config = yaml.safe_load((REPO / "data/run_config.yaml").read_text())
    assert {"sft_adapter", "dpo_adapter"} <= set(config["ops"])
    _, curation = cli.parse_selection("*data_splits", defs)
    assert cli._config_for_selection(config, curation)["ops"] == {}  # no curation op configured: nothing left
    _, training = cli.parse_selection("sft_adapter", defs)
    assert cli._config_for_selection(config, training)["ops"] == {"sft_adapter": config["ops"]["sft_adapter"]}
    assert cli._config_for_selection(config, None) is config


@pytest.mark.parametrize("text, expected", [
    ("sft_adapter,dpo_adapter", {"sft_adapter", "dpo_adapter"}),
    ("sft_adapter, dpo_adapter", {"sft_adapter", "dpo_adapter"}),
    ("*frozen_test_set or *gold_set", {"base_model_record", "base_model", "validated_examples", "scrubbed_examples",
                                      "deduplicated_examples", "frozen_test_set", "gold_set"}),
    ("key:sft_adapter or key:merged_model", {"sft_adapter", "merged_model"}),
    ("release_decision+", {"release_decision", "serving_bundle"}),
])
def test_selections_as_people_type_them(text, expected):
    _, names = cli.parse_selection(text, defs)
    assert names == expected


def test_whole_loop_leaves_the_sweep_out_and_bad_selections_are_errors_not_tracebacks(capsys):
    _, names = cli.parse_selection("*", defs)
    assert "release_decision" in names and not names & {"sweep_plan", "sft_trial", "sft_sweep"}
    for text, why in [("sft_adaptr", "sft_adaptr"), ("a,,b", "an empty name in the list"),
                      ("sft_adapter +++ ???", "cannot read")]:
        with pytest.raises(cli.SelectionError, match=why):
            cli.parse_selection(text, defs)
    assert cli.main(["run", "--select", "sft_adaptr"]) == 2
    assert "--select 'sft_adaptr'" in capsys.readouterr().err


def test_run_goes_through_the_loop_job_so_the_ui_can_re_execute_it(tmp_path, monkeypatch, capsys):
    import dagster as dg

    from ftassets.definitions import build_definitions
    from ftassets_tests.conftest import data_copy

    data = data_copy(tmp_path, "governance", "eval")
    (data / "run_config.yaml").write_text(yaml.safe_dump({"ops": {"sft_adapter": {"config": {"max_steps": 7}}}}))
    (tmp_path / "home").mkdir()
    for name, value in (("DAGSTER_HOME", tmp_path / "home"), ("FTASSETS_DATA_DIR", data)):
        monkeypatch.setenv(name, str(value))
    job = build_definitions().resolve_job_def("finetune_loop")  # the launchpad's defaults: the folder's run config
    assert job.run_config == {"ops": {"sft_adapter": {"config": {"max_steps": 7}}}}
    assert cli.main(["run", "--select", "eval_contract"]) == 0
    assert "materialized 1 assets: eval_contract" in capsys.readouterr().out
    (run,) = dg.DagsterInstance.get().get_runs()
    assert run.job_name == "finetune_loop" and run.asset_selection == {dg.AssetKey("eval_contract")}
    assert (data / "artifacts" / "eval_contract").is_dir()
