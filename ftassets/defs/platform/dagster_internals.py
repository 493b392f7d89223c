"""The one place ftassets reads a Dagster internal, because no public API gives it.

A stage's code version is the hash of the module that defines its assets (and what that module
imports). Dagster exposes no public way to ask an `AssetsDefinition` which module defined its
function (`load_assets_from_modules` also returns assets a module merely imports), so this reads
the decorated function behind the op. If a Dagster upgrade moves it, only this module changes."""

import dagster as dg


def defining_module(assets_def: dg.AssetsDefinition) -> str:
    """Name of the module whose decorated function computes `assets_def`."""
    return assets_def.op.compute_fn.decorated_fn.__module__
