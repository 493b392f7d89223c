"""Curation settings shared through one resource (`curation`): the curation assets, their checks,
the gold set and the source sensor all read the same scrub, dedup and split settings and the same
paths, so a check can never judge an asset by other settings than the ones it ran with."""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

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
        ["support@nimbus.example", "security@nimbus.example", "JSON", "OAuth", "eu-west", "eu-west-1", "Nimbus"],
        description="Strings never treated as PII: the team's public addresses, and domain terms the NER model "
                    "mislabels as names (docs/figures.md)")
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
