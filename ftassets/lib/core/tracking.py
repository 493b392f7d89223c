"""Experiment tracking where teams already look: a training run or a release decision as an MLflow run
(parameters, metric curves by step, single figures, files as artifacts, tags that link back to the
Dagster run). Off unless a tracking URI is set; `local` is a SQLite store beside the artifacts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

PARAM_CHARS = 6000  # MLflow refuses longer parameter values
UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")  # what MLflow refuses in a metric or parameter name
LOCAL = "local"


@dataclass(frozen=True)
class TrackedRun:
    """What one MLflow run records."""
    name: str
    params: dict = field(default_factory=dict)  # nested dicts are flattened to dotted keys
    figures: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list] = field(default_factory=dict)  # metric -> [[step, value], ...]
    artifacts: list[Path] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def resolve_uri(setting: str, artifacts_dir: Path) -> str | None:
    """None (tracking off) for an empty setting; `local`: SQLite under <artifacts>/mlflow; else as given."""
    setting = (setting or "").strip()
    if not setting:
        return None
    if setting == LOCAL:
        folder = local_store(artifacts_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"
    return setting


def local_store(artifacts_dir: Path) -> Path:
    """The `local` store's folder: its SQLite file and, under `artifacts/`, the runs' files."""
    return Path(artifacts_dir) / "mlflow"


def redact_userinfo(uri: str) -> str:
    """A URI without its user:password@ part (tracking URIs may carry credentials; metadata never does)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username or parts.password:
        return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    return uri


def flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: str(value)[:PARAM_CHARS]}


def log_run(uri: str, experiment: str, run: TrackedRun, artifact_root: Path | None = None) -> str:
    """Record `run` in experiment `experiment` (created on first use; with a local store its artifacts go to
    `artifact_root`). Returns the MLflow run id."""
    import time

    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=str(artifact_root) if artifact_root else None)
    created = client.create_run(experiment_id, run_name=run.name, tags=dict(run.tags))
    run_id = created.info.run_id
    now = int(time.time() * 1000)
    name = lambda text: UNSAFE.sub("_", text)  # noqa: E731  ("forgetting_drop_max[general_probe]")
    metrics = [Metric(name(key), float(value), now, 0) for key, value in run.figures.items() if value is not None]
    metrics += [Metric(name(key), float(value), now, int(step)) for key, points in run.curves.items()
                for step, value in points if value is not None]
    params = [Param(name(key), value) for key, value in flatten(run.params).items()]
    for start in range(0, len(params), 100):  # MLflow's batch limits: 100 parameters, 1,000 metrics
        client.log_batch(run_id, params=params[start:start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    for path in run.artifacts:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id
