"""The evaluation stage of the plain-Python core (no Dagster imports)."""
