"""The Dagster instance a command opens does not depend on the working directory, and serves one data
folder only (issue 21, item 6)."""

import os
import shutil

import dagster as dg

from ftassets.defs.platform.resources import INSTANCE_CLAIM
from ftassets_tests.conftest import REPO, data_copy, materialize, materialized_keys


def test_instance_storage_follows_dagster_home_not_the_working_directory(tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.chdir(elsewhere)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        instance.add_dynamic_partitions("raw_sources", ["support_chat"])  # writes to its storage
        assert instance.get_runs() == [] and instance.root_directory.startswith(str(home))
    finally:
        instance.dispose()
    assert (home / "history").is_dir() and os.listdir(elsewhere) == []
    again = dg.DagsterInstance.from_config(str(home))  # from another folder: the same instance
    monkeypatch.chdir(tmp_path)
    try:
        assert again.get_dynamic_partitions("raw_sources") == ["support_chat"]
    finally:
        again.dispose()


def test_an_instance_refuses_a_second_data_folder(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    first, second = data_copy(tmp_path / "a", "governance", "eval"), data_copy(tmp_path / "b", "governance", "eval")
    result = materialize(first, tmp_path / "a" / "artifacts", selection="eval_contract", instance=instance)
    assert result.success and materialized_keys(result) == {"eval_contract"}
    result = materialize(second, tmp_path / "b" / "artifacts", selection="eval_contract", instance=instance)
    assert not result.success and not materialized_keys(result)
    error = str(next(e for e in result.all_events if e.is_failure).event_specific_data.error)
    assert f"serves the data folder {first.resolve()}, and this run reads {second.resolve()}" in error
    assert (tmp_path / "b" / "artifacts").exists() is False
    assert instance.run_storage.get_cursor_values({INSTANCE_CLAIM}) == {INSTANCE_CLAIM: str(first.resolve())}
    assert materialize(first, tmp_path / "a" / "artifacts", selection="eval_contract", instance=instance).success


def test_claim_re_points_an_instance_on_purpose(tmp_path, monkeypatch, capsys):
    from ftassets import cli

    first, second = data_copy(tmp_path / "a", "governance", "eval"), data_copy(tmp_path / "b", "governance", "eval")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FTASSETS_DATA_DIR", str(first))
    assert cli.main(["run", "--select", "eval_contract"]) == 0
    monkeypatch.setenv("FTASSETS_DATA_DIR", str(second))
    capsys.readouterr()
    assert cli.main(["run", "--select", "eval_contract"]) == 2  # refused before anything is observed or run
    assert f"serves the data folder {first.resolve()}, and this run reads {second.resolve()}" in capsys.readouterr().err
    assert cli.main(["claim"]) == 0
    assert f"now serves {second.resolve()} (was {first.resolve()})" in capsys.readouterr().out
    assert cli.main(["run", "--select", "eval_contract"]) == 0


KILLED_RUN = """
import pathlib, sys, time
import dagster as dg
from ftassets.defs.platform.runs import process_tags

@dg.asset
def slow_asset():
    pathlib.Path(sys.argv[2]).write_text("started")
    time.sleep(600)

dg.materialize([slow_asset], instance=dg.DagsterInstance.from_config(sys.argv[1]), tags=process_tags())
"""


def test_a_run_whose_process_was_killed_is_marked_failed_and_stops_holding_its_assets(tmp_path):
    """kill -9 in the middle of a run (as the OOM killer would): the sensor marks it failed; live runs stay."""
    import signal
    import subprocess
    import sys
    import time

    from ftassets.defs.platform.runs import dead_runs_sensor, fail_dead_runs, process_tags

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "run.py").write_text(KILLED_RUN)
    started = tmp_path / "started"
    child = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(home), str(started)])
    deadline = time.time() + 120
    while not started.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert started.exists(), "the run never started"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        (killed,) = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED  # what Dagster alone would show forever
        alive = instance.add_run(killed.with_status(dg.DagsterRunStatus.STARTED)._replace(
            run_id="0" * 8 + killed.run_id[8:], tags={**killed.tags, **process_tags()}))  # this live process
        context = dg.build_sensor_context(instance=instance)
        assert f"marked failed: {killed.run_id}" in dead_runs_sensor(context).skip_message
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
        assert fail_dead_runs(instance) == []  # once only
    finally:
        instance.dispose()
