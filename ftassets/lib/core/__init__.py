"""The core stage of the plain-Python core (no Dagster imports)."""
