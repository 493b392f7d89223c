"""The main job's wall time broken down by step, read from the Dagster event log of the latest run
in this instance (`make run` leaves it in data/dagster_home), plus the training platform overhead:
the sft_adapter / dpo_adapter step time against the recipe's own training wall time.

    make run && .venv/bin/python benchmarks/main_job.py [--append-results]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results import report  # noqa: E402


def step_times(instance, run_id: str) -> dict[str, float]:
    stats = instance.get_run_step_stats(run_id)
    return {s.step_key: s.end_time - s.start_time for s in stats if s.start_time and s.end_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_HOME", str(Path(__file__).resolve().parents[1]))
    import dagster as dg

    instance = dg.DagsterInstance.get()
    record = instance.get_run_records(limit=1)[0]
    run = record.dagster_run
    stats = instance.get_run_stats(run.run_id)
    total = stats.end_time - stats.start_time
    steps = step_times(instance, run.run_id)
    print(f"run {run.run_id} {run.status.value}: {total:.0f} s from run start to end")
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"  {key:60s} {seconds:8.1f} s  {100 * seconds / total:5.1f}%")
    overhead = []
    for asset in ("sft_adapter", "dpo_adapter"):
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        wall = event.asset_materialization.metadata.get("wall_time_s") if event else None
        if wall is not None and asset in steps:
            outside = steps[asset] - wall.value
            overhead.append(f"{asset} step {steps[asset]:.0f} s, training loop {wall.value:.0f} s "
                            f"(start-up, model load, data prep, save: {outside:.0f} s)")
    top = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:5])
    status = run.status.value + (": a blocking check failed (the release gate rejects)" if run.status.value == "FAILURE" else "")
    summary = (f"make run (main job): {total / 60:.1f} min run time ({status}); largest steps: {top}; "
               + "; ".join(overhead))
    report(summary, "make run && python benchmarks/main_job.py --append-results", args.append_results)


if __name__ == "__main__":
    main()
