"""End to end: the whole asset graph on the tiny model, with every gate doing its job."""

import json
import os

import pytest

from ftassets_tests.conftest import DATA, check_results, materialize, materialized_keys, tiny_run_config

ALL_BUT_BUNDLE = {"base_model_record", "base_model", "eval_contract", "validated_examples", "scrubbed_examples",
                  "deduplicated_examples", "frozen_test_set", "gold_set", "redteam_set", "data_splits",
                  "preference_pairs", "sft_adapter", "dpo_adapter", "merged_model", "eval_report",
                  "release_decision"}


@pytest.mark.e2e
def test_whole_graph_on_tiny_model(tmp_path, tiny_model_dir):
    artifacts = tmp_path / "artifacts"
    result = materialize(DATA, artifacts, tiny_run_config(tiny_model_dir))
    assert ALL_BUT_BUNDLE <= materialized_keys(result)
    checks = check_results(result)
    assert checks["license_allows_use"] and checks["no_residual_pii"] and checks["no_test_leakage"]
    assert checks["frozen_test_set_locked"]  # the committed lock matches what curation produces
    assert checks["adapter_merged_parity"]

    meta = lambda key: result.asset_materializations_for_node(key)[0].metadata  # noqa: E731
    validated = meta("validated_examples")
    assert validated["read"].value == validated["kept_sft"].value + validated["kept_preference"].value + validated["quarantined"].value
    assert validated["quarantined"].value == 9
    dedup = meta("deduplicated_examples")
    assert dedup["input"].value == dedup["kept"].value + dedup["dropped"].value
    assert dedup["dropped_reasons"].value.get("exact_duplicate", 0) >= 12
    assert meta("scrubbed_examples")["records_with_pii"].value > 50
    splits = meta("data_splits")
    assert splits["train"].value + splits["validation"].value + splits["test_excluded"].value + \
        splits["contaminated_dropped"].value + splits["held_back_test_hints"].value == dedup["kept"].value
    assert splits["validation"].value > 0
    sft = meta("sft_adapter")
    assert sft["global_steps"].value == 4 and sft["trainable_parameters"].value > 0
    assert sft["recipe_pid"].value != os.getpid()  # trained in its own process, reported back through Pipes
    assert sft["loss_curves"].value.startswith("![loss curves](data:image/png;base64,")
    assert [step for step, _ in sft["curves"].value["validation_loss_curve"]] == [2, 4]
    assert not (artifacts / ".checkpoints/sft_adapter").exists()  # a finished run leaves no checkpoints
    assert (artifacts / "sft_adapter/adapter_model.safetensors").is_file()
    assert (artifacts / "merged_model/model.safetensors").is_file()

    # A random tiny model cannot beat its own base on task success: the release gate must say no,
    # and the serving bundle must not be built.
    manifest = json.loads((artifacts / "release_decision/release_manifest.json").read_text())
    assert manifest["decision"] == "reject"
    assert any(r["rule"] == "tuned_beats_base_on_task_success" and not r["passed"] for r in manifest["rules"])
    assert checks["release_gate"] is False
    assert "serving_bundle" not in materialized_keys(result)
    assert not (artifacts / "serving_bundle").exists()
    report = json.loads((artifacts / "eval_report/eval_report.json").read_text())
    assert set(report["models"]) == {"base_model", "merged_model"}
    assert report["test_items"] == meta("frozen_test_set")["records"].value
    assert manifest["asset_versions"]["sft_adapter"] is not None
