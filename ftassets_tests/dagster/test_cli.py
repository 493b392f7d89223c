"""`ftassets run --select ... --config data/run_config.yaml`: the selection as people type it, and the run
config cut to the selected ops."""

import re

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
    ("serving_bundle+", {"serving_bundle", "gguf_export"}),
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


def test_check_names_every_broken_file_without_a_run(tmp_path, capsys):
    import json

    from ftassets_tests.conftest import data_copy

    data = data_copy(tmp_path, "raw", "governance", "eval")
    assert cli.main(["check", str(data)]) == 0
    assert "all " in capsys.readouterr().out
    contract = data / "governance/eval_contract.yaml"
    contract.write_text(contract.read_text() + "tresholds: {}\n")
    gold = data / "eval/gold_set.jsonl"
    first = json.loads(gold.read_text().splitlines()[0])
    gold.write_text(gold.read_text() + json.dumps({k: v for k, v in first.items() if k != "rules"}) + "\n")
    record = data / "governance/base_model.yaml"
    record.write_text(record.read_text().replace("apache-2.0", "cc-by-nc-4.0"))
    (data / "raw/support_chat/source.yaml").write_text("license: cc-by-4.0\nprovenance: x\nkind: sft\nowner: me\n")
    (data / "run_config.yaml").write_text("ops: {sft_adapter: {config: {lora_r: 0}}}\n")
    (data / "governance/owners.yaml").write_text("default: [team:ml]\ntraining: [Jane]\n")
    assert cli.main(["check", str(data)]) == 1
    out = capsys.readouterr().out
    failed = {line.split(": ", 1)[0].removeprefix("FAIL ").removeprefix(str(data) + "/"): line.split(": ", 1)[1]
              for line in out.splitlines() if line.startswith("FAIL")}
    assert set(failed) == {"governance/eval_contract.yaml", "eval/gold_set.jsonl", "governance/base_model.yaml",
                           "raw/support_chat/source.yaml", "run_config.yaml", "governance/owners.yaml"}
    assert failed["governance/owners.yaml"] == "training: Jane: an owner is an e-mail address or team:<name>"
    assert "unknown key(s) tresholds" in failed["governance/eval_contract.yaml"]
    assert f":{len(gold.read_text().splitlines())}: missing field(s) rules" in failed["eval/gold_set.jsonl"]
    assert "the license gate would block: license 'cc-by-nc-4.0' is not allowed" in failed["governance/base_model.yaml"]
    assert "unknown field(s): owner" in failed["raw/support_chat/source.yaml"]
    assert failed["run_config.yaml"] == "ops.sft_adapter.config.lora_r=0: must be an integer >= 1"
    assert "ok   " + str(data / "eval/redteam_prompts.jsonl") in out  # the others still checked
    assert f"{data}: 6 problem(s) in " in out


def test_init_scaffolds_a_folder_that_check_accepts_once_it_has_a_source(tmp_path, capsys):
    import json

    folder = tmp_path / "project"
    assert cli.main(["init", str(folder)]) == 0
    assert (folder / "governance/eval_contract.yaml").is_file() and (folder / "raw/README.md").is_file()
    assert cli.main(["init", str(folder)]) == 2  # never over an existing folder
    capsys.readouterr()
    assert cli.main(["check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("FAIL")] == [
        f"FAIL {folder / 'raw'}: no sources yet: add a folder with a source.yaml and data files"]
    source = folder / "raw" / "faq"
    source.mkdir()
    (source / "source.yaml").write_text("license: cc-by-4.0\nprovenance: written for this test\nkind: sft\n"
                                        "task: answer\nreviewed_by: test\n")
    (source / "faq.jsonl").write_text(json.dumps({"prompt": "Opening hours?", "response": "9 to 5."}) + "\n")
    assert cli.main(["check", str(folder)]) == 0
    assert "all 9 checks passed" in capsys.readouterr().out


def test_add_source_refuses_a_license_the_policy_refuses_and_reports_a_dry_run(tmp_path, tiny_model_dir,
                                                                               shared_data, capsys):
    import shutil

    folder = tmp_path / "project"
    assert cli.main(["init", str(folder)]) == 0
    shutil.copytree(tiny_model_dir, folder / "artifacts" / "base_model")  # tokens counted with the base model
    capsys.readouterr()
    alpaca = shared_data / "sft/alpaca_en_demo.json"
    assert cli.main(["add-source", str(alpaca), "--name", "alpaca", "--license", "CC-BY-NC-4.0",
                     "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"license 'CC-BY-NC-4.0' is not allowed for training data by {folder}/governance/license_policy.yaml:8" in err
    assert not (folder / "raw" / "alpaca").exists()
    pairs = shared_data / "preference/dpo_en_demo.json"
    assert cli.main(["add-source", str(pairs), "--name", "pairs", "--license", "apache-2.0", "--kind", "preference",
                     "--task", "answer", "--reviewed-by", "test", "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "formats detected: sharegpt_preference 300" in out
    kept, quarantined = (int(x) for x in re.search(r"dry run: (\d+) kept, (\d+) quarantined", out).groups())
    assert kept + quarantined == 300 and kept > 0
    assert yaml.safe_load((folder / "raw/pairs/source.yaml").read_text()) == {
        "license": "apache-2.0", "provenance": "added from dpo_en_demo.json", "kind": "preference",
        "reviewed_by": "test", "task": "answer"}
    assert f"counted with {folder / 'artifacts' / 'base_model'}" in out
    assert cli.main(["add-source", str(pairs), "--name", "pairs", "--license", "mit", "--data", str(folder)]) == 2
    assert cli.main(["check", str(folder)]) == 0
