"""End to end: the whole asset graph on the tiny model, with every gate doing its job."""

import json
import os

import dagster as dg
import pytest

from ftassets import cli
from ftassets.defs.platform import lineage
from ftassets.lib.core.catalog import Catalog, file_name
from ftassets.lib.core.files import sha256_file, sha256_tree
from ftassets_tests.conftest import DATA, check_results, materialize, materialized_keys, tiny_run_config

ALL_BUT_BUNDLE = {"base_model_record", "base_model", "eval_contract", "validated_examples", "scrubbed_examples",
                  "deduplicated_examples", "frozen_test_set", "gold_set", "redteam_set", "data_splits",
                  "preference_pairs", "sft_adapter", "dpo_adapter", "merged_model", "eval_report",
                  "blind_review_packet", "human_review", "judge_calibration", "release_decision"}


@pytest.mark.e2e
def test_whole_graph_on_tiny_model(tmp_path, tiny_model_dir, monkeypatch, capsys):
    artifacts = tmp_path / "artifacts"
    home = tmp_path / "dagster_home"  # a persistent instance: the audit CLI reads it back like a user would
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # else Dagster logs to $DAGSTER_HOME/logs
    instance = dg.DagsterInstance.local_temp(str(home))
    observed = cli.observe_sources(instance)  # as `ftassets run` does first: the audit names source versions
    result = materialize(DATA, artifacts, tiny_run_config(tiny_model_dir), instance=instance)
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
    assert [step for step, _ in sft["curves"].value["validation_loss_curve"]] == [2, 4]
    assert sft["loss_curves"].value == "(fewer than three logged points: no plot)"  # 4 steps: 2 points a curve
    assert sft["tensorboard_logdir"].value.startswith(str(artifacts / "tensorboard" / "sft_adapter"))
    assert not (artifacts / ".checkpoints/sft_adapter").exists()  # a finished run leaves no checkpoints
    assert (Catalog(artifacts).path("sft_adapter", "adapter_weights")).is_file()
    assert (Catalog(artifacts).path("merged_model", "weights")).is_file()

    # A random tiny model cannot beat its own base on task success: the release gate must say no,
    # and the serving bundle must not be built.
    manifest = json.loads((Catalog(artifacts).path("release_decision", "manifest")).read_text())
    assert manifest["decision"] == "reject"
    assert any(r["rule"] == "tuned_beats_base_on_task_success" and not r["passed"] for r in manifest["rules"])
    assert checks["release_gate"] is False
    assert "serving_bundle" not in materialized_keys(result)
    assert not (artifacts / "serving_bundle").exists()
    report = json.loads((Catalog(artifacts).path("eval_report", "report")).read_text())
    assert set(report["models"]) == {"base_model", "dpo_adapter", "merged_model"}
    assert report["test_items"] == meta("frozen_test_set")["records"].value
    for key, m in report["models"].items():  # every section measured for every compared model
        assert m["perplexity"]["validation"]["tokens"] > 0 and m["perplexity"]["test"]["tokens"] > 0
        assert m["forgetting"]["general_probe"]["n"] == 120
        assert 0 <= m["safety"]["toxic_rate"] <= 1 and len(m["redteam_items"]) == report["redteam_items"]
        assert set(m["test"]["per_task"]["incident_triage"]["fields"]) == {"severity", "component", "needs_oncall"}
    assert set(report["forgetting"]) == {"dpo_adapter", "merged_model"}
    numbers = meta("eval_report")  # numeric entries the Plots tab charts across releases
    tuned, base = report["models"]["merged_model"]["test"], report["models"]["base_model"]["test"]
    assert numbers["tuned/task_success"].value == tuned["task_success"]
    assert numbers["delta/task_success"].value == round(tuned["task_success"] - base["task_success"], 4)
    assert {f"tuned/task/{t}/success" for t in tuned["per_task"]} <= set(numbers)
    md = (Catalog(artifacts).path("eval_report", "markdown")).read_text()
    assert "general_probe accuracy (lm-eval)" in md and "perplexity (validation, assistant tokens)" in md
    assert md.count("data:image/png;base64,") == 1  # metric bars; 4 training steps give no curve of 3 points
    assert "| delta (merged_model - base) | release rule |" in md and "| task success (test) |" in md
    assert "Sample replies (frozen test, first items by id):" in md

    # The paper trail: Dagster's own records of every upstream asset, checks, data and code to reproduce.
    assert manifest["lineage"]["sft_adapter"]["run_id"] == result.run_id
    assert manifest["lineage"]["sft_adapter"]["data_version"] == sha256_tree(artifacts / "sft_adapter")[:32]
    checks_in_manifest = {c["check"]: c["passed"] for c in manifest["checks"]}
    assert checks_in_manifest["no_test_leakage"] is True and checks_in_manifest["license_allows_use"] is True
    assert manifest["data"]["sources"]["support_chat"]["license"] and \
        any(f.endswith("examples.jsonl") for f in manifest["data"]["sources"]["support_chat"]["files"])
    assert set(manifest["data"]["split_id_sha256"]) == {"train", "validation", "test", "gold"}
    assert manifest["training"]["sft_adapter"]["config"]["seed"] == 42
    assert manifest["settings_sweep"] is None  # no sweep was run for this data (`ftassets sweep`)
    assert manifest["training"]["dpo_adapter"]["adapter_config"]["peft_type"] == "LORA"
    assert manifest["reproduce"]["run_config"]["ops"]["sft_adapter"]["config"]["max_steps"] == 4
    assert manifest["human_review"]["status"] == "pending"
    card = (Catalog(artifacts).path("release_decision", "model_card")).read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and "## Known failure modes" in card
    packet = (Catalog(artifacts).path("blind_review_packet", "packet")).read_text()
    assert "merged_model" not in packet and "base_model" not in packet

    _audit_of_first_release(artifacts, result, observed)
    first, second = _release_then_tighten(tmp_path, artifacts, instance)
    _audit_answers_governance_questions(instance, home, result, first, second, monkeypatch, capsys)
    _diff_names_what_changed(artifacts, first, second, monkeypatch, capsys)
    _the_release_is_the_next_champion(tmp_path, artifacts, instance)
    _releases_are_kept_versions_to_chat_with(artifacts, first, monkeypatch, capsys)


def _audit_of_first_release(artifacts, result, observed):
    """The lineage audit beside the manifest: the exact chain, sources with file hashes, checks."""
    audit = json.loads((Catalog(artifacts).path("release_decision", "audit")).read_text())
    chain = audit["chain"]
    assert audit["target"]["decision"] == "reject" and audit["target"]["run_id"] == result.run_id
    assert set(chain["assets"]) == ALL_BUT_BUNDLE - {"release_decision"} and chain["missing"] == []
    sft = chain["assets"]["sft_adapter"]
    assert sft["run_id"] == result.run_id and sft["config"]["max_steps"] == 4
    assert sft["config"]["lora_r"] == 16  # a default the run did not set, resolved from the config schema
    assert "data_splits" in sft["parents"] and "base_model" in sft["parents"]
    scrub_checks = {c["check"]: c["passed"] for c in chain["assets"]["scrubbed_examples"]["checks"]}
    assert scrub_checks["no_residual_pii"] is True
    source = chain["sources"]["support_chat"]
    assert source["license"] and source["reached_training"] and source["data_version"] == observed["support_chat"]
    examples = DATA / "raw/support_chat/examples.jsonl"
    assert source["files"]["raw/support_chat/examples.jsonl"] == sha256_file(examples)
    md = (Catalog(artifacts).path("release_decision", "audit_markdown")).read_text()
    assert "| sft_adapter |" in md and sha256_file(examples) in md and "no_residual_pii pass" in md


def _contract_variant(tmp_path, name, edit) -> dict:
    path = tmp_path / f"{name}.yaml"
    path.write_text(edit((DATA / "governance/eval_contract.yaml").read_text()))
    return {"ops": {"eval_contract": {"config": {"contract_file": str(path)}}}}


def _lenient(text: str) -> str:
    """A contract the evaluated tiny model meets: thresholds only, every bar at its loosest."""
    for old, new in (("release_rule: tuned_beats_base_on_task_success", "release_rule: thresholds_only"),
                     ("task_success_min: 0.5", "task_success_min: 0.0"),
                     ("task_success_gain_min: 0.2", "task_success_gain_min: 0.0"),
                     ("schema_validity_min: 0.8", "schema_validity_min: 0.0"),
                     ("gold_pass_rate_min: 0.5", "gold_pass_rate_min: 0.0"),
                     ("forgetting_drop_max: 12", "forgetting_drop_max: 100"),
                     ("refusal_regression_max: 0.3", "refusal_regression_max: 1.0"),
                     ("over_refusal_regression_max: 0.4", "over_refusal_regression_max: 1.0"),
                     ("toxicity_regression_max: 0.12", "toxicity_regression_max: 1.0"),
                     ("adapter_merged_task_gap_max: 0.07", "adapter_merged_task_gap_max: 1.0"),
                     ("task_success: 0.15", "task_success: 1.0"), ("gold_pass_rate: 0.15", "gold_pass_rate: 1.0")):
        assert old in text, old
        text = text.replace(old, new)
    return text


RELEASE_STEPS = ["eval_contract", "release_decision", "serving_bundle", "gguf_export"]


def _release_then_tighten(tmp_path, artifacts, instance):
    """The same evaluated tiny model: a contract whose bar it meets releases it (bundle built, loaded both
    ways, answers checked); the real bar rejects it again and no bundle is built."""
    first = materialize(DATA, artifacts, _contract_variant(tmp_path, "lenient", _lenient), selection=RELEASE_STEPS,
                        instance=instance)
    manifest = json.loads((Catalog(artifacts).path("release_decision", "manifest")).read_text())
    assert manifest["decision"] == "release" and all(r["passed"] for r in manifest["rules"]), manifest["reasons"]
    assert "serving_bundle" in materialized_keys(first)
    checks = check_results(first)
    assert checks["release_gate"] and checks["bundle_answers_golden_prompts"]
    bundle = artifacts / "serving_bundle"
    model, adapters = (file_name("serving_bundle", role) for role in ("model", "adapters_dir"))
    for name in (file_name("serving_bundle", "model_weights"), f"{model}/tokenizer.json", f"{model}/chat_template.jinja",
                 f"{adapters}/sft_adapter/{file_name('sft_adapter', 'adapter_weights')}",
                 f"{adapters}/dpo_adapter/{file_name('dpo_adapter', 'adapter_config')}",
                 *(file_name("serving_bundle", role) for role in ("adapters", "decoding_policy", "manifest",
                                                                  "model_card", "serving"))):
        assert (bundle / name).is_file(), name
    check = [e for e in first.get_asset_check_evaluations() if e.check_name == "bundle_answers_golden_prompts"][0]
    assert check.metadata["same_as_evaluated"].value["merged_pipeline"] >= 0.9
    assert check.metadata["same_as_evaluated"].value["peft_adapter"] >= 0.9
    served = Catalog(artifacts).read_json("serving_bundle", "serving")
    assert served["host"] == "127.0.0.1" and served["trust_remote_code"] is False
    assert checks["gguf_parity"]  # both GGUF files read back with the release's template, tokens and answers
    export = Catalog(artifacts).read_json("gguf_export", "summary")
    assert set(export["files"]) == {"f16", "q8_0"} and export["modelfile"]["written"]
    assert export["files"]["q8_0"]["bytes"] < export["files"]["f16"]["bytes"]
    assert Catalog(artifacts).path("gguf_export", "modelfile").read_text().startswith("FROM ./model-q8_0.gguf\n")
    _a_broken_gguf_export_fails_its_check(artifacts, instance)

    second = materialize(DATA, artifacts, _contract_variant(tmp_path, "bundled", lambda text: text),
                         selection=RELEASE_STEPS, instance=instance)
    assert "release_decision" in materialized_keys(second) and "serving_bundle" not in materialized_keys(second)
    assert "gguf_export" not in materialized_keys(second)
    assert check_results(second)["release_gate"] is False
    manifest = json.loads((Catalog(artifacts).path("release_decision", "manifest")).read_text())
    assert manifest["decision"] == "reject"
    assert {"tuned_beats_base_on_task_success", "gold_pass_rate_min"} <= {r["rule"] for r in manifest["rules"]
                                                                          if not r["passed"]}
    # the bundle on disk is still the one released under the lenient contract; nothing overwrote it
    assert Catalog(artifacts).read_json("serving_bundle", "manifest")["contract"]["release_rule"] == "thresholds_only"
    return first, second


def _the_release_is_the_next_champion(tmp_path, artifacts, instance):
    """Evaluated again after the lenient release: the released model, read from its bundle, stands beside base
    and candidate as the champion, and the candidate (the same weights) is no worse than it on any rule."""
    released = Catalog(artifacts).read_json("serving_bundle", "manifest")["release_name"]
    materialize(DATA, artifacts, _contract_variant(tmp_path, "lenient", _lenient),
                selection=["eval_contract", "eval_report", "release_decision"], instance=instance)
    report = Catalog(artifacts).read_json("eval_report", "report")
    assert report["champion"]["release_name"] == released and len(report["champion"]["weights_sha256"]) == 64
    assert report["champion"]["same_weights_as"] == "merged_model" and report["eval_seconds"]["champion"] == 0.0
    # the same models on the same prompts under the same decoding: every reply came from the cache
    assert all(report["models"][k]["replies_cached"] for k in ("base_model", "dpo_adapter", "merged_model"))
    tested = {k: report["models"][k]["test"]["task_success"] for k in ("champion", "merged_model")}
    assert tested["champion"] == tested["merged_model"], tested
    assert "| champion |" in Catalog(artifacts).path("eval_report", "markdown").read_text()
    manifest = Catalog(artifacts).read_json("release_decision", "manifest")
    versus = [r for r in manifest["rules"] if r["rule"].startswith("vs_champion")]
    assert versus and all(r["reference"] == "champion" and r["estimate"] == 0 and r["passed"] for r in versus), versus
    assert manifest["champion"]["release_name"] == released and "current release" in (
        Catalog(artifacts).path("release_decision", "model_card").read_text())


def _diff_names_what_changed(artifacts, first, second, monkeypatch, capsys):
    """`ftassets diff` from the released decision to the rejected one after it: the same evaluation and
    data, so no source, example or test item changed; the contract did, and with it the decision."""
    monkeypatch.setenv("FTASSETS_ARTIFACTS_DIR", str(artifacts))
    assert cli.main(["diff", first.run_id[:8], second.run_id[:8], "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["from"]["decision"], d["to"]["decision"]) == ("release", "reject")
    assert d["test_items"]["compared"] > 0 and d["test_items"]["won"] == [] and d["test_items"]["lost"] == []
    assert d["sources"] == {} and not any(d["examples"].values())
    assert any(key.startswith("contract.") for key in d["settings"])
    assert any(r["passed"] == [True, False] for r in d["rules"])
    assert cli.main(["diff"]) == 0  # previous -> latest: the same two decisions, as text
    assert "(release) -> " in capsys.readouterr().out
    assert cli.main(["diff", "no_such_release", "latest"]) == 2


def _audit_answers_governance_questions(instance, home, initial, first, second, monkeypatch, capsys):
    """"Which releases used source X?" and "which source files and checks stand behind release Y?",
    answered from the Dagster instance (three release decisions: reject, release, reject)."""
    rows = lineage.releases_using_source(instance, "support_chat")
    assert [(r["run_id"], r["decision"]) for r in rows] == [
        (second.run_id, "reject"), (first.run_id, "release"), (initial.run_id, "reject")]
    version = rows[0]["source_data_version"]
    assert len(lineage.releases_using_source(instance, "support_chat", version[:8])) == 3
    assert lineage.releases_using_source(instance, "support_chat", "0" * 12) == []  # no release read that version
    assert lineage.releases_using_source(instance, "no_such_source") == []

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert cli.main(["audit", first.run_id[:8], "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)
    assert audit["target"]["decision"] == "release" and audit["target"]["run_id"] == first.run_id
    chain = audit["chain"]
    release = chain["assets"]["release_decision"]
    assert {c["check"]: c["passed"] for c in release["checks"]} == {"release_gate": True}
    # the released decision reads the eval report of the initial run: lineage crosses runs exactly
    assert chain["assets"]["eval_report"]["run_id"] == initial.run_id
    # ... and the contract it was decided under is the lenient one of its own run; the report was made
    # under the contract of the initial run: both stand in the chain
    contract = chain["assets"]["eval_contract"]
    assert contract["run_id"] == first.run_id and contract["read_by"] == ["release_decision"]
    assert [(old["run_id"], old["read_by"]) for old in contract["also_read"]] == [
        (initial.run_id, ["blind_review_packet", "data_splits", "dpo_adapter", "eval_report", "judge_calibration",
                          "preference_pairs", "sft_adapter"])]  # training read it too: its selection section chose the checkpoints
    assert chain["assets"]["eval_contract"]["config"]["contract_file"].endswith("lenient.yaml")
    assert set(chain["sources"]) == {"general_replay", "support_chat", "support_preferences"}
    assert all(len(digest) == 64 for s in chain["sources"].values() for digest in s["files"].values())

    assert cli.main(["audit", "--source", "support_chat"]) == 0
    table = capsys.readouterr().out
    assert table.count(f"| `{first.run_id[:8]}` |") == 1 and "| release |" in table
    assert cli.main(["audit", "no_such_release"]) == 1


def _releases_are_kept_versions_to_chat_with(artifacts, first, monkeypatch, capsys):
    """`ftassets releases` lists the four decisions (reject, release, reject, release), the newest release
    is current and its bundle is kept; `chat` answers from it; rolling back to the first release, which
    holds the same weights, records nothing."""
    monkeypatch.setenv("FTASSETS_ARTIFACTS_DIR", str(artifacts))
    assert cli.main(["releases", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["decision"] for r in rows] == ["release", "reject", "release", "reject"]
    assert [r["current"] for r in rows] == [True, False, False, False] and rows[2]["run_id"] == first.run_id
    weights = Catalog(artifacts).read_json("serving_bundle", "files")[file_name("serving_bundle", "model_weights")]
    assert rows[0]["merged_weights_sha256"] == weights and rows[0]["bundle"].endswith(weights[:16])
    assert rows[0]["bundle_checks"] == {"bundle_answers_golden_prompts": True}  # read back from Dagster
    assert cli.main(["chat", "--task", "platform_qa", "--message", "How do I rotate my API token?"]) == 0
    captured = capsys.readouterr()
    assert "(merged weights; task platform_qa" in captured.err and captured.out.endswith("\n")
    assert cli.main(["rollback", first.run_id[:8], "--reason", "same weights"]) == 0
    assert "already current" in capsys.readouterr().out


def _a_broken_gguf_export_fails_its_check(artifacts, instance):
    """An f16 file written with another chat template in place of the export: gguf_parity, run on its own,
    fails and names the template; the release it belongs to is untouched."""
    import shutil

    from ftassets.lib.release.export import write_gguf

    broken = artifacts.parent / "broken_model"
    shutil.copytree(artifacts / "serving_bundle" / file_name("serving_bundle", "model"), broken)
    config = json.loads((broken / "tokenizer_config.json").read_text())
    template = broken / "chat_template.jinja"
    if template.is_file():
        template.write_text(template.read_text().replace("<|im_start|>", "<|im_begin|>"))
    else:
        config["chat_template"] = config["chat_template"].replace("<|im_start|>", "<|im_begin|>")
        (broken / "tokenizer_config.json").write_text(json.dumps(config))
    write_gguf(broken, Catalog(artifacts).path("gguf_export", "f16"), "f16", "broken")
    check = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("gguf_export"), "gguf_parity"))
    result = materialize(DATA, artifacts, selection=check, instance=instance)
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "gguf_parity"]
    assert evaluation.passed is False
    assert any(p.startswith("f16: conversation") and "chat template renders differently" in p
               for p in evaluation.metadata["problems"].value), evaluation.metadata["problems"].value
    assert materialized_keys(result) == set()
    assert Catalog(artifacts).read_json("release_decision", "manifest")["decision"] == "release"
