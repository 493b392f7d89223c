"""The one Definitions object: the whole fine-tuning loop as an asset graph."""

import dagster as dg

from ftassets.defs import curation, evaluation, governance, heldout, release, training
from ftassets.defs.resources import default_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([governance, curation, heldout, training, evaluation, release]),
    asset_checks=dg.load_asset_checks_from_modules([governance, curation, heldout, training, evaluation, release]),
    resources=default_resources(),
)
