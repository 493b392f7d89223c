"""A new user's journey through the CLI only, on public data from ../shared/data: `init` a folder,
`add-source` an instruction set and a preference set (the license gate speaks first), `check`, `run` on
the tiny model, read the release decision, change one source, run again, and `diff` the two decisions.
No Python of the project is touched; YAML edits are what the scaffold asks a user to make."""

import json
import re
from pathlib import Path

import pytest
import yaml

from ftassets import cli
from ftassets.lib.core.catalog import Catalog, file_name


def _say(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.e2e
def test_from_a_folder_of_public_data_to_a_release_decision_and_a_diff(tmp_path, tiny_model_dir, shared_data,
                                                                      monkeypatch, capsys):
    folder = tmp_path / "project"
    code, out, _ = _say(capsys, "init", folder)
    assert code == 0 and f"ftassets check {folder}" in out

    # an instruction set under a non-commercial license: refused until the policy allows it, naming the line
    alpaca = json.loads((shared_data / "sft/alpaca_en_demo.json").read_text(encoding="utf-8"))
    first = tmp_path / "incoming" / "alpaca.json"
    first.parent.mkdir()
    first.write_text(json.dumps(alpaca[:300]), encoding="utf-8")  # small: evaluation dominates
    code, _, err = _say(capsys, "add-source", first, "--name", "alpaca", "--license", "cc-by-nc-4.0",
                        "--data", folder)
    assert code == 2 and f"{folder}/governance/license_policy.yaml:8" in err
    policy = folder / "governance/license_policy.yaml"
    policy.write_text(policy.read_text().replace("odc-by, internal]", "odc-by, internal, cc-by-nc-4.0]"))
    code, out, _ = _say(capsys, "add-source", first, "--name", "alpaca", "--license", "cc-by-nc-4.0", "--task",
                        "answer", "--reviewed-by", "data team", "--data", folder)
    assert code == 0 and "formats detected: alpaca 300" in out and "counted with the embedded base model" in out
    kept, quarantined = (int(x) for x in re.search(r"dry run: (\d+) kept, (\d+) quarantined", out).groups())
    assert kept + quarantined == 300 and kept > 250
    code, out, _ = _say(capsys, "add-source", shared_data / "preference/dpo_en_demo.json", "--name", "pairs",
                        "--license", "apache-2.0", "--kind", "preference", "--task", "answer", "--data", folder)
    assert code == 0 and "formats detected: sharegpt_preference 300" in out

    code, out, _ = _say(capsys, "check", folder)
    assert code == 0 and re.search(rf"{re.escape(str(folder))}: all \d+ checks passed", out)

    # the tiny model stands in for the base model; the training budget is a user's run config file
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"ops": {
        "base_model": {"config": {"source": str(tiny_model_dir)}},
        "sft_adapter": {"config": {"max_steps": 4, "micro_batch_size": 4, "eval_steps": 2, "learning_rate": 1e-3}},
        "dpo_adapter": {"config": {"max_steps": 2, "micro_batch_size": 2, "eval_steps": 2}}}}))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FTASSETS_DATA_DIR", str(folder))
    monkeypatch.delenv("FTASSETS_ARTIFACTS_DIR", raising=False)
    monkeypatch.setenv("FTASSETS_MLFLOW_TRACKING_URI", "local")  # and a team that reads MLflow

    first_run = _decision(capsys, config)
    assert (folder / "governance/frozen_test_set.lock.json").is_file()  # the first run froze the test set
    _tracked_in_tensorboard_and_mlflow(folder / "artifacts", first_run)

    # the data team adds 100 more records of the instruction set: one source changes, nothing else
    (folder / "raw/alpaca/alpaca.json").write_text(json.dumps(alpaca[:400]), encoding="utf-8")
    second_run = _decision(capsys, config)
    assert second_run != first_run

    code, out, _ = _say(capsys, "diff", "--json")  # previous -> latest
    assert code == 0
    d = json.loads(out)
    assert set(d["sources"]) == {"alpaca"}  # the changed source, and only it
    alpaca_groups = {group: g for role, groups in d["examples"].items() for group, g in groups.items()
                     if group.startswith("alpaca")}
    assert sum(g["added"] for g in alpaca_groups.values()) > 0
    assert all(g["removed"] == 0 for g in alpaca_groups.values())  # appended records only
    assert not any(g["added"] or g["removed"] or g["changed"] for groups in d["examples"].values()
                   for group, g in groups.items() if group.startswith("pairs"))
    assert not any(key.startswith("contract.") for key in d["settings"])  # same contract
    code, out, _ = _say(capsys, "diff")
    assert code == 0 and re.search(r"alpaca: \S+ -> \S+", out) and "frozen test items (" in out

    # a reviewer grades two pairs of the blind packet with the config form (here: the same run config)
    grades = tmp_path / "grades.yaml"
    grades.write_text(yaml.safe_dump({"ops": {"human_review": {"config": {
        "grades": {"pair-001": "A", "pair-002": "tie"}, "reviewer": "qa-team"}}}}))
    code, out, _ = _say(capsys, "run", "--select", "human_review", "--config", grades)
    assert code == 0 and "materialized 1 assets: human_review" in out
    review = Catalog(folder / "artifacts").read_json("human_review", "review")
    assert review["status"] == "graded" and review["graded"] == 2 and review["ties"] == 1
    graded = [json.loads(line) for line in Path(review["file"]).read_text().splitlines()]
    assert [r["preferred"] for r in graded[:3]] == ["A", "tie", None] and graded[0]["reviewer"] == "qa-team"


def _decision(capsys, config) -> str:
    """`ftassets run --config`, asserting what it prints; returns the run id."""
    code, out, _ = _say(capsys, "run", "--config", config)
    head = re.search(r"run (\S+): (succeeded|FAILED); materialized \d+ assets: (.*)", out)
    decision = re.search(r"RELEASE DECISION: (RELEASE|REJECT)", out)
    assert head and decision and "step FAILED" not in out, out[-3000:]
    assert {"validated_examples", "sft_adapter", "dpo_adapter", "eval_report", "release_decision"} <= set(
        head.group(3).split(", "))
    if decision.group(1) == "REJECT":  # the blocking release gate fails the run, and only it
        assert code == 2 and head.group(2) == "FAILED"
        assert "check FAILED: release_decision:release_gate value " in out
    else:
        assert code == 0 and head.group(2) == "succeeded"
    assert re.search(r"\[(pass|FAIL)\] task_success_min: \S+ \[\S+, \S+\] \(at_least 0\.5, min\. detectable \S+\)", out)
    assert "release manifest:" in out and "model card:" in out
    return head.group(1)


def _tracked_in_tensorboard_and_mlflow(artifacts, run_id: str) -> None:
    """TensorBoard event files of both trainings, outside the adapters; MLflow runs of both trainings and
    of the release decision, each tagged with the Dagster run."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for asset in ("sft_adapter", "dpo_adapter"):
        (events,) = (artifacts / "tensorboard" / asset / run_id[:8]).glob("events.out.tfevents.*")
        scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
        assert {"train/train_loss", "eval/loss"} <= set(scalars), scalars  # 4 steps: no mid-run train/loss
        assert not list((artifacts / asset).rglob("events.out.tfevents.*"))  # never inside the adapter
    client = MlflowClient(tracking_uri=f"sqlite:///{artifacts / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ftassets").experiment_id],
                              filter_string=f"tags.`dagster/run_id` = '{run_id}'")
    by_asset = {r.data.tags["dagster/asset"]: r for r in runs}
    assert set(by_asset) == {"sft_adapter", "dpo_adapter", "release_decision"}
    sft = by_asset["sft_adapter"]
    assert "learning_rate" in sft.data.params and "final_train_loss" in sft.data.metrics
    history = client.get_metric_history(sft.info.run_id, "validation_loss")  # a curve, by step
    assert [m.step for m in history] == [2, 4]
    release = by_asset["release_decision"]
    assert release.data.tags["ftassets/decision"] in ("release", "reject")
    assert "rule/task_success_min" in release.data.metrics
    files = {file_name("release_decision", "manifest"), file_name("release_decision", "model_card")}
    assert files <= {a.path for a in client.list_artifacts(release.info.run_id)}
