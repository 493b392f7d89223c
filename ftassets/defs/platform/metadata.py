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


# What a reviewer reads of a dataset in the UI: its columns, and a few rows (scrubbed datasets only).

PREVIEW_ROWS = 5
PREVIEW_CHARS = 120
_COLUMNS = {"sft": (("id", "string", "record id (a hash where the written id held PII)"),
                    ("source", "string", "raw source folder"), ("task", "string", "declared task"),
                    ("turns", "int", "messages in the conversation"),
                    ("prompt", "string", "last user turn, cut to 120 characters"),
                    ("reply", "string", "assistant reply, cut to 120 characters")),
            "preference": (("id", "string", "record id"), ("source", "string", "raw source folder"),
                           ("task", "string", "declared task"), ("prompt", "string", "last user turn, cut"),
                           ("chosen", "string", "preferred reply, cut"), ("rejected", "string", "rejected reply, cut"))}


def _cut(text, limit: int = PREVIEW_CHARS, mark: str = "…") -> str:
    """One line of at most `limit` characters, ending in `mark` where it was cut."""
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit - len(mark)] + mark


def _last(messages: list[dict], role: str) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == role), "")


def _row(record: dict, kind: str) -> dict:
    head = {"id": str(record.get("id")), "source": str(record.get("source") or ""),
            "task": str((record.get("meta") or {}).get("task") or "")}
    messages = record.get("messages") or []
    if kind == "preference":
        return {**head, "prompt": _cut(_last(messages, "user")), "chosen": _cut(record.get("chosen")),
                "rejected": _cut(record.get("rejected"))}
    return {**head, "turns": len(messages), "prompt": _cut(_last(messages, "user")),
            "reply": _cut(_last(messages, "assistant"))}


def dataset_metadata(records: list[dict], kind: str = "sft", preview: bool = True) -> dict:
    """`dagster/column_schema` and a small table preview (the first rows): the UI's dataset view. Only for
    scrubbed datasets: a preview of raw records would show raw PII."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type, description) for name, type, description
                                     in _COLUMNS[kind]])
    out = {"dagster/column_schema": schema}
    if preview:
        out["preview"] = dg.MetadataValue.table(
            records=[dg.TableRecord(_row(r, kind)) for r in records[:PREVIEW_ROWS]], schema=schema)
    return out


REVIEW_CHARS = 300
_REVIEW_COLUMNS = (("pair_id", "the pair to grade"), ("task", "declared task"), ("prompt", "the user's message"),
                   ("reply_a", "reply A, cut to 300 characters"), ("reply_b", "reply B, cut to 300 characters"))


def review_table(rows: list[dict]) -> dg.TableMetadataValue:
    """The blind review packet as the UI's table (model names stay hidden: only A and B)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "string", d) for name, d in _REVIEW_COLUMNS])
    return dg.MetadataValue.table(records=[dg.TableRecord({name: _cut(r.get(name), REVIEW_CHARS, mark="")
                                                           for name, _ in _REVIEW_COLUMNS}) for r in rows],
                                  schema=schema)
