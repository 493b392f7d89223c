"""The one Definitions object: the whole fine-tuning loop as an asset graph, with the automation
that keeps it current (code versions and conditions per asset, sensors, the nightly schedule)."""

import dagster as dg

from ftassets.defs import evaluation, export, governance, release, sweep, training
from ftassets.defs.curation import cleaning, heldout, splits
from ftassets.defs.platform import conditions, labels, sensors
from ftassets.defs.platform.resources import default_data_dir, default_resources

STAGES = [governance, cleaning, heldout, splits, training, sweep, evaluation, release, export]


def build_definitions() -> dg.Definitions:
    """The Definitions as the environment says now (data folder, training policy, resources)."""
    return dg.Definitions(
        assets=labels.with_labels(conditions.with_policies(STAGES), default_data_dir(), conditions.training_policy()[0]),
        asset_checks=dg.load_asset_checks_from_modules(STAGES),
        jobs=[*sensors.JOBS, sensors.loop_job()],
        sensors=sensors.SENSORS,
        schedules=sensors.SCHEDULES,
        resources=default_resources(),
    )


defs = build_definitions()
