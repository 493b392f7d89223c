"""Curation settings shared through one resource (`curation`): the curation assets, their checks,
the gold set and the source sensor all read the same scrub, dedup and split settings and the same
paths, so a check can never judge an asset by other settings than the ones it ran with."""

import os
import re
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ftassets.lib.curation.pii import DEFAULT_ENTITIES

AUTO_WORKERS_MAX = 8


def usable_cores() -> int:
    """CPU cores this process may use: its affinity where the OS has one (Linux), and a cgroup v2 CPU
    quota (a container's `cpu.max`) where one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


class ScrubConfig(dg.Config):
    entities: list[str] = Field(list(DEFAULT_ENTITIES), description="Presidio entity types to remove")
    score_threshold: float = Field(0.35, description="Minimum Presidio score for a finding")
    operator: str = Field("replace", description="replace (typed placeholders), mask or hash")
    allow_list: list[str] = Field(
        [], description="Strings never treated as PII: the team's public addresses, and domain terms the NER model "
                        "mislabels as names (the demo's: data/governance/curation.yaml; docs/figures.md)")
    allow_patterns: list[str] = Field(
        [], description="Regular expressions of identifiers that are not personal data (order or ticket numbers): "
                        "a finding inside a match stays as written")
    @field_validator("allow_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression ({exc})") from None
        return value

    name_lists: bool = Field(True, description="Also find PERSON from Faker's multi-locale name lists "
                                               "(lib/curation/names.py; recall and precision in docs/figures.md); "
                                               "false: the NER model alone")
    workers: int = Field(0, ge=0, description="Processes that scrub chunks in parallel, each loading its own NLP "
                                              "model (~600 MB); 0: one per CPU core this process may use (CPU "
                                              "affinity and a cgroup CPU quota count), at most 8. Data of one "
                                              "chunk is scrubbed in this process")
    chunk_records: int = Field(4096, ge=1, description="Records per scrub chunk (a unit of parallel work; each "
                                                       "distinct text in a chunk is analyzed once)")

    def processes(self, records: int) -> int:
        """How many processes scrub `records` records."""
        chunks = -(-records // self.chunk_records)
        return max(1, min(self.workers or min(usable_cores(), AUTO_WORKERS_MAX), chunks))


class DedupConfig(dg.Config):
    # 0.9 on character 5-grams: precision 1.0 on the sample data's re-exports and near copies, while 0.8 would
    # also drop distinct reports written from one template (measured: docs/figures.md)
    near_duplicate_threshold: float = Field(0.9, description="MinHash Jaccard at or above which records are near duplicates")
    num_perm: int = Field(128, description="MinHash permutations (128 estimate Jaccard within about +-0.09)")
    shingle_size: int = Field(5, description="Character n-gram length of the MinHash shingles")


class SplitConfig(dg.Config):
    seed: int = Field(20261122, description="Seed of the hash-based split assignment")
    test_fraction: float = Field(0.15, description="Share of records in the frozen test set")
    validation_fraction: float = Field(0.1, description="Share of records in validation")
    lock_file: str = Field("governance/frozen_test_set.lock.json",
                           description="Committed lock: the frozen member ids, their sha256 and the freeze history")


class CurationSettings(dg.ConfigurableResource):
    """Where curation reads its inputs (relative to the data dir) and how it scrubs, deduplicates and splits."""

    raw_dir: str = Field("raw", description="Folder of sources (one subfolder each)")
    policy_file: str = Field("governance/license_policy.yaml", description="Holds the allowed training-data licenses")
    max_tokens: int = Field(1024, description="Longest rendered conversation allowed, in base-model tokens")
    gold_file: str = Field("eval/gold_set.jsonl", description="Gold prompts with expected-behaviour rules")
    redteam_file: str = Field("eval/redteam_prompts.jsonl", description="Red-team and benign prompts")
    scrub: ScrubConfig = Field(default_factory=ScrubConfig, description="PII scrubbing (training data and gold set)")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Exact and near-duplicate removal")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Frozen test set and train/validation split")
    settings_file: str = Field("", description="The data folder's settings file (default: governance/curation.yaml "
                                               "of FTASSETS_DATA_DIR, else of the bundled data/); its values lie "
                                               "under these, field by field")

    @model_validator(mode="before")
    @classmethod
    def _file_underneath(cls, data):
        """The data folder's settings, with what was given (code or run config) merged over them field by
        field: Dagster builds the resource from a run config alone and hands `scrub: {workers: 2}` as the
        whole `scrub`, which would otherwise drop the folder's allow-list."""
        if not isinstance(data, dict):
            return data
        path = Path(data.get("settings_file") or data_folder() / SETTINGS_FILE)
        if not path.is_file():
            return data
        from ftassets.lib.core.files import load_yaml

        values = load_yaml(path) or {}
        _known_keys(cls, values, str(path))
        return _deep_merge(values, data)


SETTINGS_FILE = "governance/curation.yaml"


def check_settings_folder(curation: "CurationSettings", data_dir: str | Path) -> None:
    """Curation reads data from `data_dir`: its settings must be that folder's file, not another
    folder's (a run config that sets the store's data_dir but not FTASSETS_DATA_DIR would mix them)."""
    from ftassets.lib.core.errors import GovernanceError

    used = Path(curation.settings_file or data_folder() / SETTINGS_FILE).resolve()
    wanted = (Path(data_dir) / SETTINGS_FILE).resolve()
    if used != wanted and (used.is_file() or wanted.is_file()):
        raise GovernanceError(f"curation settings come from {used}, but the data is read from {data_dir}: set "
                              f"FTASSETS_DATA_DIR={data_dir} for the code location (its settings are {wanted})")


def data_folder() -> Path:
    """The data folder the code location serves (as the `store` resource's default)."""
    return Path(os.environ.get("FTASSETS_DATA_DIR", Path(__file__).resolve().parents[3] / "data"))


def load_curation_settings(data_dir: str | Path) -> CurationSettings:
    """The data folder's curation settings (`governance/curation.yaml`, any field of CurationSettings;
    defaults where absent), so a project states its own PII allow-list or split seed in YAML and the
    sensors and schedules curate with it too. A run config's `resources: {curation: ...}` still
    overrides a field for one run. A bad key or value is an error naming the file and the field."""
    from ftassets.lib.core.errors import GovernanceError

    path = Path(data_dir) / SETTINGS_FILE  # named even when absent: then the defaults, not another folder's file
    try:
        return CurationSettings(settings_file=str(path.resolve()))
    except ValidationError as exc:
        first = exc.errors()[0]
        field, message = ".".join(str(x) for x in first["loc"]), first["msg"].removeprefix("Value error, ")
        raise GovernanceError(f"{path}: {field}: {message}" if field else message) from None


def _known_keys(model, values: dict, where: str, prefix: str = "") -> None:
    """A misspelt key in the settings file is an error, not a setting silently left at its default."""
    for key, value in values.items():
        info = model.model_fields.get(key)
        if info is None:
            raise ValueError(f"{where}: {prefix}{key}: no such setting (known: {', '.join(model.model_fields)})")
        if isinstance(value, dict) and isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            _known_keys(info.annotation, value, where, f"{prefix}{key}.")


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
