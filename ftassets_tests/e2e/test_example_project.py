"""The second example project (examples/shop_routing: classification and id extraction, not the
demo's triage) runs the whole graph from its own YAML and data with zero code changes: the same
assets, pointed at its folder, score its declared tasks and choose checkpoints on them."""

import json
import shutil

import pytest

from ftassets.lib.core.catalog import Catalog
from ftassets_tests.conftest import REPO, check_results, materialize, materialized_keys, tiny_run_config

EXAMPLE = REPO / "examples" / "shop_routing"


@pytest.mark.e2e
def test_example_project_runs_end_to_end_from_its_yaml(tmp_path, tiny_model_dir):
    data = tmp_path / "shop_routing"
    shutil.copytree(EXAMPLE, data, ignore=shutil.ignore_patterns("artifacts", "dagster_home"))
    lock_before = (data / "governance/frozen_test_set.lock.json").read_text()
    artifacts = tmp_path / "artifacts"
    result = materialize(data, artifacts, tiny_run_config(tiny_model_dir))
    assert {"eval_contract", "validated_examples", "data_splits", "preference_pairs", "sft_adapter", "dpo_adapter",
            "merged_model", "eval_report", "release_decision"} <= materialized_keys(result)
    checks = check_results(result)
    assert checks["frozen_test_set_locked"] and checks["no_test_leakage"] and checks["adapter_merged_parity"]
    assert (data / "governance/frozen_test_set.lock.json").read_text() == lock_before  # reproduced, not re-frozen

    meta = lambda key: result.asset_materializations_for_node(key)[0].metadata  # noqa: E731
    validated = meta("validated_examples")
    assert validated["quarantined"].value == 0 and validated["kept_sft"].value == 192
    assert validated["kept_preference"].value == 30
    sft = meta("sft_adapter")
    assert sft["selected_on"].value == "eval_task_success"  # the example's contract selects on its tasks
    assert [step for step, _ in sft["curves"].value["task_success_curve"]] == [2, 4]

    catalog = Catalog(artifacts)
    report = json.loads(catalog.path("eval_report", "report").read_text())
    test_tasks = {r["meta"]["task"] for r in catalog.records("frozen_test_set", "test")}
    assert test_tasks == {"route", "order_id"}
    for model in report["models"].values():
        tasks = model["test"]["per_task"]
        assert set(tasks) == {"route", "order_id"} and model["test"]["task_success_average"] == "tasks"
        matrix = tasks["route"]["classification"]["confusion"]
        assert sum(sum(row.values()) for row in matrix.values()) == tasks["route"]["n"]
        assert set(matrix) <= {"billing", "shipping", "returns", "account", "product"}
        assert {"exact_match", "regex", "success"} <= set(tasks["order_id"])
        expected = round((tasks["route"]["success"] + tasks["order_id"]["success"]) / 2, 4)
        assert model["test"]["task_success"] == pytest.approx(expected, abs=1e-4)  # tasks weigh the same
        assert model["test"]["schema_validity"] is None  # no json_schema task here, and no rule asks for one
    markdown = catalog.path("eval_report", "markdown").read_text()
    assert "route macro-F1" in markdown and "triage" not in markdown
    manifest = json.loads(catalog.path("release_decision", "manifest").read_text())
    assert manifest["decision"] == "reject"  # a random tiny model cannot beat its base
    assert {r["rule"] for r in manifest["rules"]} >= {"task_success_min", "gold_pass_rate_min"}
