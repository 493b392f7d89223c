"""Shared fixtures: the network guard, offline settings, the tiny model, and data locations."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SHARED_DATA = REPO.parent / "shared" / "data"


class NetworkBlocked(RuntimeError):
    """A test tried to open a connection to a non-loopback address."""


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)) and not isinstance(address, tuple):
        return True  # AF_UNIX path
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: refuse


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise NetworkBlocked(f"test suite blocks non-loopback connection to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise NetworkBlocked(f"test suite blocks non-loopback connection to {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


TIERS = ("unit", "dagster", "e2e", "real_model")


def pytest_collection_modifyitems(items):
    """Each test carries its tier's marker, from the folder it lives in (`-m unit`, `-m dagster`, ...)."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random-init Llama with the embedded base model's tokenizer (seconds, not minutes)."""
    from ftassets_tests.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from ftassets.lib.core.models import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA} (present on developer machines and CI)")
    return SHARED_DATA


def tiny_run_config(tiny_model_dir) -> dict:
    """Run config for the whole graph on the tiny model with a few training steps."""
    return {"ops": {
        "base_model": {"config": {"source": str(tiny_model_dir)}},
        "sft_adapter": {"config": {"max_steps": 4, "micro_batch_size": 4, "eval_steps": 2, "learning_rate": 1e-3}},
        "dpo_adapter": {"config": {"max_steps": 2, "micro_batch_size": 2, "eval_steps": 2}},
    }}


def materialize(data_dir, artifacts_dir, run_config=None, selection="*", instance=None, partition_key=None):
    """Materialize into a temporary instance; `*` is the whole loop as `ftassets run` has it (the sweep apart)."""
    import dagster as dg

    from ftassets.definitions import defs
    from ftassets.defs.sweep import main_loop
    from ftassets.defs.curation.settings import load_curation_settings
    from ftassets.defs.platform.resources import ArtifactStore, PiiEngine, experiment_tracking, training_launcher

    resources = {"store": ArtifactStore(data_dir=str(data_dir), artifacts_dir=str(artifacts_dir)),
                 "pii": PiiEngine(), "curation": load_curation_settings(data_dir),
                 "training_launcher": training_launcher(), "tracking": experiment_tracking()}
    served = os.environ.get("FTASSETS_DATA_DIR")
    os.environ["FTASSETS_DATA_DIR"] = str(data_dir)  # as a code location serving this folder (curation settings)
    try:
        return dg.materialize(list(defs.assets) + list(defs.asset_checks), resources=resources,
                              run_config=run_config or {}, selection=main_loop() if selection == "*" else selection,
                              partition_key=partition_key, raise_on_error=False,
                              instance=instance or dg.DagsterInstance.ephemeral())
    finally:
        if served is None:
            os.environ.pop("FTASSETS_DATA_DIR", None)
        else:
            os.environ["FTASSETS_DATA_DIR"] = served


def materialized_keys(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def free_port() -> int:
    """A free TCP port on loopback (for servers a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_copy(tmp_path, *parts: str) -> Path:
    """A writable copy of the named folders of the bundled data (raw, governance, eval) under tmp_path/data."""
    import shutil

    data = tmp_path / "data"
    for part in parts:
        shutil.copytree(DATA / part, data / part)
    return data
