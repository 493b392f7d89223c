"""The one Definitions object: the whole fine-tuning loop as an asset graph, with the automation
that keeps it current (code versions and conditions per asset, sensors, the nightly schedule)."""

import dagster as dg

from ftassets.defs import evaluation, governance, release, training
from ftassets.defs.curation import cleaning as curation
from ftassets.defs.curation import heldout
from ftassets.defs.platform import automation
from ftassets.defs.platform.resources import default_resources

STAGES = [governance, curation, heldout, training, evaluation, release]

defs = dg.Definitions(
    assets=automation.with_policies(STAGES),
    asset_checks=dg.load_asset_checks_from_modules(STAGES),
    jobs=automation.JOBS,
    sensors=automation.SENSORS,
    schedules=automation.SCHEDULES,
    resources=default_resources(),
)
