"""Small helpers the stage modules share: metadata for artifacts, upstream lineage, conservation checks."""


import importlib.metadata
from collections import Counter
from pathlib import Path

import dagster as dg

from ftassets.lib.core.catalog import Catalog
from ftassets.lib.core.files import sha256_bytes, sha256_file

PACKAGES = ("dagster", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "datasketch",
            "presidio-analyzer", "bitsandbytes", "lm-eval", "rouge-score", "alt-profanity-check", "scikit-learn")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def upstream_versions(context: dg.AssetExecutionContext, keys: list[str]) -> dict[str, str | None]:
    """Data version of each upstream asset's latest materialization (the paper trail's inputs)."""
    out = {}
    for key in keys:
        record = context.instance.get_latest_materialization_event(dg.AssetKey(key))
        mat = record.asset_materialization if record else None
        tags = (mat.tags or {}) if mat else {}
        out[key] = tags.get("dagster/data_version")
    return out


def file_version(path: Path) -> dg.DataVersion:
    """An artifact file's data version: its content hash."""
    return dg.DataVersion(sha256_file(path)[:32])


def write_splits(catalog: Catalog, asset: str, files: dict[str, list[dict]]) -> dg.DataVersion:
    """Write the split files as one unit (`Catalog.unit`); the data version hashes what training reads
    (train and validation), so a change in the side files (dropped, held back) does not make training stale."""
    with catalog.unit(asset) as staged:
        for role, rows in files.items():
            staged.write_records(asset, role, rows)
    digest = sha256_bytes((sha256_file(catalog.path(asset, "train"))
                           + sha256_file(catalog.path(asset, "validation"))).encode())
    return dg.DataVersion(digest[:32])


# Conservation: every record that enters a stage leaves it exactly once, kept or with a reason.

def partition_check(whole: list, parts: dict[str, list]) -> dg.AssetCheckResult:
    """Passes when `parts` split `whole` exactly: nothing lost, nothing counted twice, nothing new."""
    counts = Counter(whole)
    out = Counter(x for items in parts.values() for x in items)
    lost, extra = counts - out, out - counts
    return dg.AssetCheckResult(passed=not lost and not extra, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "in": len(whole), "out": sum(len(v) for v in parts.values()),
        "parts": dg.MetadataValue.json({k: len(v) for k, v in parts.items()}),
        "lost": dg.MetadataValue.json(sorted(map(str, lost))[:20]),
        "unexpected": dg.MetadataValue.json(sorted(map(str, extra))[:20])})


def origins_in(records: list[dict]) -> list[tuple[str, int]]:
    return [(r["origin"]["file"], r["origin"]["line"]) for r in records]
