"""Dagster definitions, one module per stage of the loop."""
