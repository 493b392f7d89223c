"""Small helpers the stage modules share: metadata for artifacts and upstream lineage."""


import importlib.metadata
from pathlib import Path

import dagster as dg

PACKAGES = ("dagster", "torch", "transformers", "peft", "trl", "datasets", "datasketch",
            "presidio-analyzer", "bitsandbytes")


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


def path_meta(path: Path) -> dg.MetadataValue:
    return dg.MetadataValue.path(str(path))
