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
    assert INSTANCE_CLAIM in os.listdir(instance.root_directory)
    assert materialize(first, tmp_path / "a" / "artifacts", selection="eval_contract", instance=instance).success
