"""Platform overhead: the SFT recipe run directly (`python -m ftassets.lib.training.sft`, the way a user
runs it by hand) against the same recipe materialized as the `sft_adapter` asset (Dagster run,
Pipes subprocess, settings checks, metadata, loss-curve plot, atomic write), side by side in one run,
alternating A/B/A/B so drift on a shared machine hits both. Same base model, same train/validation
files, same settings. Needs `make run` artifacts (base model snapshot and data splits); the Dagster
side writes into a scratch artifacts folder, never into data/artifacts.

    .venv/bin/python benchmarks/platform_overhead.py --steps 20 --rounds 2 [--append-results]
"""

from __future__ import annotations

import argparse
import os
import platform
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

SETTINGS = {"lora_top_layers": 10, "micro_batch_size": 4, "learning_rate": 0.002, "warmup_ratio": 0.05,
            "resume": False}


def direct(artifacts: Path, out: Path, steps: int) -> float:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items() if not isinstance(v, bool)]
    cmd = [sys.executable, "-m", "ftassets.lib.training.sft", "--base-model", str(artifacts / "base_model"),
           "--train-file", str(Catalog(artifacts).path("data_splits", "train")),
           "--validation-file", str(Catalog(artifacts).path("data_splits", "validation")), "--output-dir", str(out),
           "--max-steps", str(steps), "--eval-steps", str(steps), "--no-resume", *flags]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return time.perf_counter() - started


def through_dagster(scratch: Path, steps: int) -> float:
    import dagster as dg

    from ftassets.definitions import defs
    from ftassets.defs.curation.settings import load_curation_settings
    from ftassets.defs.platform.resources import ArtifactStore, PiiEngine, experiment_tracking, training_launcher

    shutil.rmtree(scratch / "sft_adapter", ignore_errors=True)
    config = {"ops": {"sft_adapter": {"config": {**SETTINGS, "max_steps": steps, "eval_steps": steps}}}}
    resources = {"store": ArtifactStore(data_dir=str(REPO / "data"), artifacts_dir=str(scratch)),
                 "pii": PiiEngine(), "curation": load_curation_settings(REPO / "data"),
                 "training_launcher": training_launcher(), "tracking": experiment_tracking()}
    started = time.perf_counter()
    result = dg.materialize(list(defs.assets) + list(defs.asset_checks), resources=resources, run_config=config,
                            selection="sft_adapter", instance=dg.DagsterInstance.ephemeral(), raise_on_error=True)
    wall = time.perf_counter() - started
    assert result.success
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    artifacts = REPO / "data/artifacts"
    if not (artifacts / "base_model").is_dir() or not (Catalog(artifacts).path("data_splits", "train")).is_file():
        sys.exit("run `make run` first: this benchmark trains on its base model snapshot and data splits")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "artifacts"
        for name in ("base_model", "data_splits"):
            shutil.copytree(artifacts / name, scratch / name)
        times = {"direct": [], "dagster": []}
        for _ in range(args.rounds):
            times["direct"].append(direct(artifacts, Path(tmp) / "direct", args.steps))
            times["dagster"].append(through_dagster(scratch, args.steps))
            print({k: [round(x, 1) for x in v] for k, v in times.items()}, flush=True)
    d, g = sum(times["direct"]) / args.rounds, sum(times["dagster"]) / args.rounds
    overhead = (g - d) / d
    summary = (f"platform overhead (Dagster + Pipes vs recipe run directly): {overhead:+.1%} of wall time "
               f"(direct {d:.1f} s, as the sft_adapter asset {g:.1f} s; SFT {args.steps} steps, real base, "
               f"{args.rounds} alternating rounds; {platform.machine()}, {os.cpu_count()} CPUs)")
    report(summary, f".venv/bin/python benchmarks/platform_overhead.py --steps {args.steps} --rounds {args.rounds}",
           args.append_results)


if __name__ == "__main__":
    main()
