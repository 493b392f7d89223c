"""Dagster platform pieces: resources, automation, lineage queries, metadata helpers."""
