"""Incremental work: change one example of N in a source and measure what re-materializes, and its
wall time against a full curation run, under the real `dagster-daemon` (sensors and automation as
deployed, default manual training policy). Also: with nothing changed, the automation ticks launch
nothing. Uses the real base model's tokenizer (data/artifacts/base_model, made by `make run`) and a
copy of the bundled data in a temp folder; SQLite instance there too.

    .venv/bin/python benchmarks/incremental.py [--append-results]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.results import report  # noqa: E402
from ftassets.lib.core.catalog import Catalog
from ftassets_tests.run_watch import CURATION, WATCHED, materialized_since, runs_since, settled  # noqa: E402
from ftassets_tests.run_watch import wait as watch_wait  # noqa: E402

TICK_S = 5


def wait(predicate, timeout: float, what: str, daemon, log: Path) -> None:
    watch_wait(predicate, timeout, what, daemon, log, fail=lambda message: sys.exit(message))


def run_seconds(instance, runs) -> float:
    stats = [instance.get_run_stats(r.run_id) for r in runs]
    return sum(s.end_time - s.start_time for s in stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default=str(REPO / "data/artifacts/base_model"))
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    if not (Path(args.base_model) / "config.json").is_file():
        raise SystemExit(f"{args.base_model}: no base model snapshot (run `make run` first, or pass --base-model)")
    import dagster as dg

    from ftassets.definitions import defs
    from ftassets.defs.platform.resources import default_resources

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, artifacts, home = tmp / "data", tmp / "artifacts", tmp / "home"
        shutil.copytree(REPO / "data", data, ignore=shutil.ignore_patterns("artifacts", "dagster_home", "reviews"))
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        os.environ.update(FTASSETS_DATA_DIR=str(data), FTASSETS_ARTIFACTS_DIR=str(artifacts))
        os.chdir(tmp)  # dagster.yaml's storage paths are relative to the working directory
        instance = dg.DagsterInstance.from_config(str(home))
        resources = default_resources()
        config = {"ops": {"base_model": {"config": {"source": args.base_model}}}}
        started = time.perf_counter()
        full = dg.materialize(list(defs.assets) + list(defs.asset_checks or []), instance=instance, resources=resources,
                              run_config=config, selection=CURATION, raise_on_error=True)
        full_wall = time.perf_counter() - started
        full_run = run_seconds(instance, [instance.get_run_by_id(full.run_id)])
        records = len(Catalog(artifacts).records("validated_examples", "sft"))

        env = {**os.environ, "DAGSTER_HOME": str(home), "FTASSETS_SENSOR_INTERVAL_S": str(TICK_S),
               "FTASSETS_AUTOMATION_INTERVAL_S": str(TICK_S), "FTASSETS_TRAINING_POLICY": "manual"}
        log = tmp / "daemon.log"
        with open(log, "w") as out:
            daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
                                       str(REPO / "workspace.yaml")], cwd=tmp, env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
        try:
            first = time.time()  # the sensor has no cursor yet: it curates the current state once
            wait(lambda: settled(instance, first), 600, "the first sensor run", daemon, log)
            quiet = time.time()
            time.sleep(6 * TICK_S)  # unchanged data: the ticks in this window must launch nothing
            idle_runs = len(runs_since(instance, quiet))
            mark = instance.fetch_materializations(dg.AssetKey("validated_examples"), limit=1).records[0].storage_id

            examples = data / "raw/support_chat/examples.jsonl"
            examples.write_bytes(examples.read_bytes().replace(b"platform support", b"platform helpdesk", 1))
            edited = time.time()
            wait(lambda: "preference_pairs" in materialized_since(instance, mark) and settled(instance, edited),
                 900, "curation after the edit", daemon, log)
            time.sleep(4 * TICK_S)  # let any follow-up tick show itself
            wait(lambda: settled(instance, edited), 900, "follow-up runs", daemon, log)
            reacted = time.time() - edited
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
        runs = runs_since(instance, edited)
        incremental = run_seconds(instance, runs)
        again = materialized_since(instance, mark)
        failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
    print(f"full curation run ({len(CURATION)} assets, {records} records): {full_run:.1f} s run time "
          f"({full_wall:.1f} s with process start-up)")
    print(f"unchanged data: {idle_runs} runs launched in {6 * TICK_S} s of {TICK_S}-second ticks")
    print(f"one example edited: {len(runs)} runs, {incremental:.1f} s run time, {reacted:.0f} s from the edit to the "
          f"last run's end (tick interval {TICK_S} s); re-materialized: {', '.join(again)}; failed runs: {failed or 0}")
    not_again = [k for k in WATCHED if k not in again]
    summary = (f"incremental (1 of {records} examples edited, daemon, manual training policy): re-materialized "
               f"{len(again)} assets ({', '.join(sorted(set(again)))}) in {len(runs)} runs, {incremental:.1f} s run "
               f"time = {incremental / full_run:.2f}x a full curation run ({full_run:.1f} s); not re-run: "
               f"{len(not_again)} ({', '.join(not_again)}); unchanged data: {idle_runs} runs in {6 * TICK_S // TICK_S} "
               f"ticks; {time.strftime('%Y-%m-%d')}")
    report(summary, "python benchmarks/incremental.py --append-results", args.append_results)


if __name__ == "__main__":
    main()
