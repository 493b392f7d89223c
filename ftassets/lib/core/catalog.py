"""The artifact catalog: every file an asset writes, named once, with typed readers and writers.

Assets, checks, the CLI, recipes, benchmarks and tests reach an artifact's files through here (by
asset and role: `catalog.records("data_splits", "train")`), so renaming a file is one edit and a
test can assert that no other module spells one."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ftassets.lib.core.contract import EvalContract
from ftassets.lib.core.files import (atomic_directory, read_jsonl, write_json_atomic, write_jsonl_atomic,
                                     write_text_atomic)

# What trl / peft / transformers write into an adapter folder, and what a training recipe adds.
ADAPTER = {"adapter_config": "adapter_config.json", "adapter_weights": "adapter_model.safetensors",
           "summary": "training_summary.json"}
MANIFEST, MODEL_CARD = "release_manifest.json", "README.md"
REPORT, REPORT_MARKDOWN = "eval_report.json", "eval_report.md"

# asset -> {role: file name inside the asset's folder}
FILES: dict[str, dict[str, str]] = {
    "base_model_record": {"record": "record.json"},
    "base_model": {"snapshot": "ftassets_snapshot.json", "source": "ftassets_source.json"},  # + transformers' files
    "eval_contract": {"contract": "contract.json"},
    "validated_examples": {"sft": "sft.jsonl", "preference": "preference.jsonl", "quarantine": "quarantine.jsonl"},
    "scrubbed_examples": {"sft": "sft.jsonl", "too_long": "too_long.jsonl"},
    "deduplicated_examples": {"sft": "sft.jsonl", "dropped": "dropped.jsonl", "clusters": "clusters.jsonl"},
    "frozen_test_set": {"test": "test.jsonl"},
    "gold_set": {"gold": "gold.jsonl"},
    "redteam_set": {"redteam": "redteam.jsonl"},
    "data_splits": {"train": "train.jsonl", "validation": "validation.jsonl", "contaminated": "contaminated.jsonl",
                    "held_back": "held_back.jsonl"},
    "preference_pairs": {"train": "train.jsonl", "validation": "validation.jsonl", "dropped": "dropped.jsonl",
                         "held_back": "held_back.jsonl"},
    "sft_adapter": dict(ADAPTER),
    "dpo_adapter": {**ADAPTER, "stack": "adapter_stack.json"},
    "sweep_plan": {"plan": "plan.json"},
    "sft_trial": {**ADAPTER, "trial": "trial.json"},  # one folder per partition (grid point): partition()
    "sft_sweep": {"sweep": "sweep.json", "run_config": "chosen_run_config.yaml"},
    "merged_model": {"stack": "adapter_stack.json", "weights": "model.safetensors"},
    "eval_report": {"report": REPORT, "markdown": REPORT_MARKDOWN},
    "blind_review_packet": {"packet": "packet.jsonl", "key": "key.json"},
    "human_review": {"review": "review.json"},
    "judge_calibration": {"calibration": "calibration.json"},
    "release_decision": {"manifest": MANIFEST, "model_card": MODEL_CARD, "audit": "lineage_audit.json",
                         "audit_markdown": "lineage_audit.md"},
    "gguf_export": {"f16": "model-f16.gguf", "q8_0": "model-q8_0.gguf", "modelfile": "Modelfile",
                    "summary": "export.json"},
    # the bundle holds copies of the release's paper trail under the same names
    "serving_bundle": {"model": "model", "model_weights": "model/model.safetensors", "adapters_dir": "adapters",
                       "adapters": "adapters.json", "serving": "serving.json",
                       "decoding_policy": "decoding_policy.yaml", "manifest": MANIFEST, "model_card": MODEL_CARD,
                       "report": REPORT, "report_markdown": REPORT_MARKDOWN, "files": "bundle_files.json"},
}
# Folders that are not assets: run failure records, and training checkpoints (outside the staging folder,
# so a killed run can resume).
INCIDENTS, CHECKPOINTS = "incidents", ".checkpoints"
RELEASE_HISTORY = "release_history"  # one evidence file per release decision (lib/release/history.py)
RELEASES = "releases"  # every released serving bundle, kept by merged weights (lib/release/versions.py)
GENERATION_CACHE = ".generation_cache"  # replies per (model, prompts, decoding) (lib/evaluation/replies_cache.py)
CHECKPOINT_FINGERPRINT = "fingerprint.json"


def file_name(asset: str, role: str) -> str:
    """The file name (relative to the asset's folder) of one of an asset's files; a KeyError names both."""
    try:
        return FILES[asset][role]
    except KeyError:
        raise KeyError(f"the artifact catalog has no file {role!r} for asset {asset!r}") from None


class Catalog:
    """The artifact files under one artifacts folder."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def folder(self, asset: str) -> Path:
        return self.root / asset

    def path(self, asset: str, role: str) -> Path:
        return self.folder(asset) / file_name(asset, role)

    def partition(self, asset: str, folder: str) -> Path:
        """The folder of one partition of a partitioned asset (a sweep trial)."""
        return self.folder(asset) / folder

    def checkpoints(self, asset: str) -> Path:
        return self.root / CHECKPOINTS / asset

    def tensorboard(self, asset: str, run: str) -> Path:
        """One folder per training run: `tensorboard --logdir <artifacts>/tensorboard` compares them all."""
        return self.root / "tensorboard" / asset / run

    def release_history(self) -> Path:
        return self.root / RELEASE_HISTORY

    def releases(self) -> Path:
        return self.root / RELEASES

    def generation_cache(self) -> Path:
        return self.root / GENERATION_CACHE

    def incident(self, run_id: str) -> Path:
        return self.root / INCIDENTS / f"{run_id}.json"

    def records(self, asset: str, role: str) -> list[dict]:
        return read_jsonl(self.path(asset, role))

    def ids(self, asset: str, role: str) -> list[str]:
        return [r["id"] for r in self.records(asset, role)]

    def read_json(self, asset: str, role: str):
        return json.loads(self.path(asset, role).read_text(encoding="utf-8"))

    def write_records(self, asset: str, role: str, rows: Iterable[dict]) -> Path:
        return write_jsonl_atomic(self.path(asset, role), rows)

    def write_json(self, asset: str, role: str, data) -> Path:
        return write_json_atomic(self.path(asset, role), data)

    def write_text(self, asset: str, role: str, text: str) -> Path:
        return write_text_atomic(self.path(asset, role), text)

    @contextmanager
    def unit(self, asset: str) -> Iterator["Catalog"]:
        """Write all of an asset's files as one unit: the yielded catalog writes (and reads) that asset's
        files in a staging folder, which replaces the asset's folder in one rename when the block ends.
        A reader never sees new and old files side by side, and a run that dies midway publishes
        nothing. The writers return the files' final paths (they exist once the block has ended)."""
        with atomic_directory(self.folder(asset)) as staging:
            yield _Staged(self.root, asset, staging)

    def contract(self) -> EvalContract:
        """The eval contract as `eval_contract` wrote it (typed, defaults filled in)."""
        return EvalContract.model_validate_json(self.path("eval_contract", "contract").read_text(encoding="utf-8"))


class _Staged(Catalog):
    """A catalog whose one asset lives in a staging folder until `Catalog.unit` publishes it."""

    def __init__(self, root: Path, asset: str, staging: Path):
        super().__init__(root)
        self._asset, self._staging = asset, staging

    def folder(self, asset: str) -> Path:
        return self._staging if asset == self._asset else super().folder(asset)

    def _final(self, written: Path) -> Path:
        if not written.is_relative_to(self._staging):  # another asset's file: written in place
            return written
        return Catalog(self.root).folder(self._asset) / written.relative_to(self._staging)

    def write_records(self, asset: str, role: str, rows: Iterable[dict]) -> Path:
        return self._final(super().write_records(asset, role, rows))

    def write_json(self, asset: str, role: str, data) -> Path:
        return self._final(super().write_json(asset, role, data))

    def write_text(self, asset: str, role: str, text: str) -> Path:
        return self._final(super().write_text(asset, role, text))
