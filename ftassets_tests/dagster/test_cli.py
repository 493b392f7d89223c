"""`ftassets run --select ... --config data/run_config.yaml`: the run config names ops of the whole graph."""

import yaml

from ftassets import cli
from ftassets.definitions import defs

from ftassets_tests.conftest import REPO


def test_run_config_is_cut_to_the_selected_assets():
    config = yaml.safe_load((REPO / "data/run_config.yaml").read_text())
    assert {"sft_adapter", "dpo_adapter"} <= set(config["ops"])
    curation = cli._config_for_selection(config, defs, "*data_splits")
    assert curation["ops"] == {}  # no curation op is configured in the demo file: nothing left over
    training = cli._config_for_selection(config, defs, "sft_adapter")
    assert training["ops"] == {"sft_adapter": config["ops"]["sft_adapter"]}
    assert cli._config_for_selection(config, defs, "*") is config
