"""The external side of a training launch: runs one recipe (SFT or DPO) in its own process inside a
Dagster Pipes session.

The asset (`ftassets.defs.training`) starts this module through a Pipes client
(`PipesSubprocessClient` here, a Kubernetes pod elsewhere) with the recipe name and its config as
Pipes extras. Every Trainer log line streams back to the Dagster run as it happens, and the run
summary comes back as the reported materialization. The recipe itself knows nothing of Dagster:
the same module runs under `python -m ftassets.lib.training.sft` or `accelerate launch`.

    python -m ftassets.pipes_recipe        # only meaningful when started by a Pipes client
"""

from __future__ import annotations

import json
import os

RECIPES = {"sft": ("ftassets.lib.training.sft", "SftRecipeConfig"),
           "dpo": ("ftassets.lib.training.dpo", "DpoRecipeConfig")}


def _scalars(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) and v is not None}


def run(recipe: str, config: dict, report) -> dict:
    import importlib

    module_name, config_class = RECIPES[recipe]
    module = importlib.import_module(module_name)
    return module.main(getattr(module, config_class)(**config), report=report)


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        recipe, config = pipes.get_extra("recipe"), pipes.get_extra("config")
        pipes.log.info(f"{recipe} recipe starting in pid {os.getpid()}")
        summary = run(recipe, config, report=lambda m: pipes.log.info(f"{recipe} {json.dumps(m)}"))
        pipes.report_asset_materialization(metadata={**_scalars(summary), "recipe_pid": os.getpid()})


if __name__ == "__main__":
    main()
