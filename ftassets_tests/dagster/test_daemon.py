"""With the daemon running, editing one example in a source leads to exactly the re-materializations
the policy allows and no others: the source sensor re-validates, the curation automation carries the
change through curation once its checks pass, and training (manual by default) and evaluation do not
start. Real `dagster-daemon`, real runs in subprocesses, SQLite instance in a temp folder."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ftassets_tests.conftest import DATA, REPO, materialize
from ftassets_tests.run_watch import CURATION, materialized_since, runs_since, settled, wait

AFTER_EDIT = {"validated_examples", "scrubbed_examples", "deduplicated_examples", "frozen_test_set", "data_splits",
              "preference_pairs"}


def _wait(predicate, timeout: float, what: str, daemon, log):
    wait(predicate, timeout, what, daemon, log, fail=pytest.fail)


def far_from_now() -> str:
    """A daily cron time twelve hours away: the nightly re-curation must not fire during the test (it did
    once, at 02:00 UTC, and its run held the queue past the wait)."""
    hour = (time.gmtime().tm_hour + 12) % 24
    return f"0 {hour} * * *"


@pytest.mark.slow
def test_editing_one_example_recurates_exactly_downstream_and_never_trains(tmp_path, tiny_model_dir):
    data, work = tmp_path / "data", tmp_path / "work"
    shutil.copytree(DATA, data, ignore=shutil.ignore_patterns("artifacts", "dagster_home", "reviews"))
    home = work / "home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the project's instance config, storage under home/
    artifacts = tmp_path / "artifacts"
    cwd = os.getcwd()
    os.chdir(work)  # as for make ui (the instance's paths follow DAGSTER_HOME, not this folder)
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        done = materialize(data, artifacts, {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}},
                           selection=CURATION, instance=instance)
        assert done.success
        env = {**os.environ, "DAGSTER_HOME": str(home), "FTASSETS_DATA_DIR": str(data),
               "FTASSETS_ARTIFACTS_DIR": str(artifacts), "FTASSETS_SENSOR_INTERVAL_S": "5",
               "FTASSETS_AUTOMATION_INTERVAL_S": "5", "FTASSETS_TRAINING_POLICY": "manual",
               "FTASSETS_RECURATION_CRON": far_from_now()}
        log = work / "daemon.log"
        with open(log, "w") as out:
            daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run",
                                       "-w", str(REPO / "workspace.yaml")],
                                      cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            # first look: the sensor has no cursor yet and curates the current state once; same content, so
            # nothing downstream follows
            started = time.time()
            _wait(lambda: settled(instance, started), 300, "the first sensor run", daemon, log)
            first = runs_since(instance)[0]
            assert first.tags.get("ftassets/trigger") == "raw_sources_sensor" and first.status == dg.DagsterRunStatus.SUCCESS
            time.sleep(20)  # several automation ticks: nothing may start
            assert settled(instance, started) and len(runs_since(instance, started)) == 1
            mark = instance.fetch_materializations(dg.AssetKey("validated_examples"), limit=1).records[0].storage_id

            examples = data / "raw/support_chat/examples.jsonl"
            examples.write_bytes(examples.read_bytes().replace(b"platform support", b"platform helpdesk", 1))
            edited = time.time()
            _wait(lambda: materialized_since(instance, mark).count("preference_pairs") >= 1
                  and "data_splits" in materialized_since(instance, mark) and settled(instance, edited),
                  420, "curation after the edit", daemon, log)
            time.sleep(20)  # and then nothing more
            assert settled(instance, edited)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
        runs = runs_since(instance, edited)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.run_id, r.status) for r in runs]
        assert "changed: support_chat" in runs[-1].tags["ftassets/source_changes"]  # oldest first: the sensor's
        assert all(r.tags.get("dagster/max_retries") == "1" for r in runs)  # curation may retry
        assert materialized_since(instance, mark) == sorted(AFTER_EDIT)  # each exactly once, nothing else
    finally:
        os.chdir(cwd)
