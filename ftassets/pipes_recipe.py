"""The external side of a training launch: runs one recipe (SFT or DPO) in its own process inside a
Dagster Pipes session.

The asset (`ftassets.defs.training`) starts this module through a Pipes client
(`PipesSubprocessClient` here, a Kubernetes pod elsewhere) with the recipe name, its settings
(`SftSettings` / `DpoSettings`, dumped) and where it reads and writes (`RecipeIO`) as Pipes extras.
Every Trainer log line streams back to the Dagster run as it happens, and the run summary comes
back as the reported materialization. The recipe itself knows nothing of Dagster: the same module
runs under `python -m ftassets.lib.training.sft` or `accelerate launch`.

    python -m ftassets.pipes_recipe        # only meaningful when started by a Pipes client
"""

from __future__ import annotations

import json
import os

RECIPES = {"sft": "ftassets.lib.training.sft", "dpo": "ftassets.lib.training.dpo"}


def _scalars(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) and v is not None}


def run(recipe: str, settings: dict, io: dict, report) -> dict:
    """Rebuild the typed settings and paths the asset sent, and run the recipe."""
    import importlib

    from ftassets.lib.training.settings import SETTINGS, RecipeIO

    module = importlib.import_module(RECIPES[recipe])
    return module.main(SETTINGS[recipe].model_validate(settings), RecipeIO.model_validate(io), report=report)


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        recipe = pipes.get_extra("recipe")
        pipes.log.info(f"{recipe} recipe starting in pid {os.getpid()}")
        summary = run(recipe, pipes.get_extra("settings"), pipes.get_extra("io"),
                      report=lambda m: pipes.log.info(f"{recipe} {json.dumps(m)}"))
        pipes.report_asset_materialization(metadata={**_scalars(summary), "recipe_pid": os.getpid()})


if __name__ == "__main__":
    main()
