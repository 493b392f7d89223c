"""Integration: curation assets on a copy of the bundled data with new sources dropped in.

The real Alpaca demo set (CC BY-NC 4.0) is stopped by the license gate, every record counted; a
new permissively licensed ShareGPT source flows into training, minus the records that copy real
ARC-Easy questions (a forgetting benchmark in the contract); a folder without source.yaml is
quarantined, not skipped; a new source that sorts first and copies a frozen test item loses the copy,
never the test item; the frozen test set is reproduced from its committed lock, unchanged;
every conservation check passes (with scrubbing split across two processes); re-freezing without a reason fails and leaves the lock alone."""

import json
import random

from ftassets.lib.core.catalog import Catalog
from ftassets_tests.conftest import DATA, check_results, data_copy, materialize, materialized_keys

CURATION = ["base_model_record", "base_model", "validated_examples", "scrubbed_examples", "deduplicated_examples",
            "frozen_test_set", "gold_set", "redteam_set", "eval_contract", "data_splits", "preference_pairs"]


def _config(tiny_model_dir) -> dict:
    return {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}}


def test_new_source_reaches_training_and_the_frozen_test_set_stays_frozen(tmp_path, tiny_model_dir, shared_data):
    data = data_copy(tmp_path, "raw", "governance", "eval")
    alpaca = json.loads((shared_data / "sft/alpaca_en_demo.json").read_text())[:120]
    folder = data / "raw" / "alpaca_demo"
    folder.mkdir()
    (folder / "alpaca.json").write_text(json.dumps(alpaca))
    (folder / "source.yaml").write_text("license: cc-by-nc-4.0\nprovenance: LLaMA-Factory alpaca_en_demo (first 120)\n"
                                        "kind: sft\ntask: general_instructions\nreviewed_by: test\n")
    folder = data / "raw" / "runbook_chats"
    folder.mkdir()
    words = ("latency quota shard replica kernel cache ingress egress cert rotation backlog queue worker "
             "cron index vacuum snapshot restore failover canary rollout secret vault token audit").split()
    rng = random.Random(3)
    rows = [{"conversations": [{"from": "human", "value": "Which runbook covers " + " ".join(rng.sample(words, 6)) + "?"},
                               {"from": "gpt", "value": "See " + " ".join(rng.sample(words, 8)) + "."}]}
            for _ in range(100)]
    arc = [json.loads(line) for line in (shared_data / "benchmarks/arc_easy.jsonl").open()][:400]
    rows += [{"conversations": [{"from": "human", "value": item["query"].removeprefix("Question: ")},
                                {"from": "gpt", "value": item["choices"][item["gold"]]}]} for item in arc[100:103]]
    (folder / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    contract = data / "governance/eval_contract.yaml"
    contract.write_text(contract.read_text().replace(
        "    general_probe:", f"    arc_easy: {shared_data / 'benchmarks/arc_easy.jsonl'}\n    general_probe:"))
    (data / "raw" / "unlabelled_dump").mkdir()
    (data / "raw" / "unlabelled_dump" / "dump.jsonl").write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    (folder / "source.yaml").write_text("license: cc0-1.0\nprovenance: written for this test\nkind: sft\n"
                                        "task: runbook_lookup\nreviewed_by: test\n")
    lock_before = (data / "governance/frozen_test_set.lock.json").read_text()
    member = json.loads(lock_before)["ids"][0]  # a new source that sorts first copies a frozen test member
    copied = next(r for r in map(json.loads, (data / "raw/support_chat/examples.jsonl").open()) if r["id"] == member)
    (data / "raw" / "aaa_copies").mkdir()
    (data / "raw" / "aaa_copies" / "d.jsonl").write_text(json.dumps({**copied, "id": "copy-1"}) + "\n")
    (data / "raw" / "aaa_copies" / "source.yaml").write_text("license: cc0-1.0\nprovenance: test\nkind: sft\n")
    config = _config(tiny_model_dir)  # scrubbing in two processes, chunks of 256 records
    config["resources"] = {"curation": {"config": {"scrub": {"workers": 2, "chunk_records": 256}}}}
    result = materialize(data, tmp_path / "artifacts", config, selection=CURATION)
    assert set(CURATION) <= materialized_keys(result)
    checks = check_results(result)
    assert checks["frozen_test_set_locked"] and checks["no_test_leakage"] and checks["no_residual_pii"]
    assert all(checks[f"{asset}_conserved"] for asset in ("validated_examples", "scrubbed_examples",
                                                          "deduplicated_examples", "data_splits", "preference_pairs"))
    assert checks["no_preference_leakage"]

    meta = lambda key: result.asset_materializations_for_node(key)[0].metadata  # noqa: E731
    validated = meta("validated_examples")
    assert validated["read"].value == validated["kept_sft"].value + validated["kept_preference"].value + \
        validated["quarantined"].value
    assert validated["quarantine_reasons"].value["license_not_allowed"] == 120
    assert validated["quarantine_reasons"].value["missing_source_yaml"] == 1
    assert meta("scrubbed_examples")["scrub_processes"].value == 2
    samples = meta("scrubbed_examples")["scrubbed_samples"].value  # placeholders escaped, so the UI shows them
    assert "&lt;" in samples and "&gt;" in samples and "<" not in samples.replace("&lt;", "")
    raw_gold = (data / "eval/gold_set.jsonl").read_text()
    gold = (Catalog(tmp_path / "artifacts").path("gold_set", "gold")).read_text()
    assert "chloe.becker@initech.net" in raw_gold and "chloe.becker@" not in gold and "<EMAIL_ADDRESS>" in gold
    assert meta("gold_set")["records_with_pii"].value > 0
    dropped = Catalog(tmp_path / "artifacts").records("deduplicated_examples", "dropped")
    assert [(d["id"], d["duplicate_of"]) for d in dropped if d["id"] == "copy-1"] == [("copy-1", member)]
    frozen = meta("frozen_test_set")
    assert frozen["action"].value == "reproduced from lock"
    assert frozen["sha256"].value == json.loads(lock_before)["sha256"]
    assert (data / "governance/frozen_test_set.lock.json").read_text() == lock_before
    splits = meta("data_splits")
    assert splits["dagster/row_count"].value == splits["train"].value + splits["validation"].value  # the UI's rows
    assert meta("frozen_test_set")["dagster/row_count"].value == len(json.loads(lock_before)["ids"])
    assert splits["train_per_task"].value.get("runbook_lookup", 0) > 70
    assert "general_instructions" not in splits["train_per_task"].value
    assert splits["train"].value + splits["validation"].value + splits["test_excluded"].value + \
        splits["contaminated_dropped"].value + splits["held_back_test_hints"].value == meta("deduplicated_examples")["kept"].value
    contaminated = [json.loads(line) for line in (Catalog(tmp_path / "artifacts").path("data_splits", "contaminated")).open()]
    hits = sorted(c["duplicate_of"] for c in contaminated if c["duplicate_of"].startswith("benchmark:"))
    assert hits == ["benchmark:arc_easy:101", "benchmark:arc_easy:102", "benchmark:arc_easy:103"]
    test_ids = {json.loads(line)["id"] for line in (Catalog(tmp_path / "artifacts").path("frozen_test_set", "test")).open()}
    assert not any(i.startswith("runbook_chats") for i in test_ids)


def test_refreeze_without_reason_fails_and_keeps_the_lock(tmp_path, tiny_model_dir):
    data = data_copy(tmp_path, "raw", "governance", "eval")
    lock_before = (data / "governance/frozen_test_set.lock.json").read_text()
    config = _config(tiny_model_dir)
    config["ops"]["frozen_test_set"] = {"config": {"refreeze": True, "refreeze_reason": ""}}
    result = materialize(data, tmp_path / "artifacts", config, selection=CURATION[:6])
    assert not result.success and "frozen_test_set" not in materialized_keys(result)
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "needs a reason" in str(failure.event_specific_data.error)
    assert (data / "governance/frozen_test_set.lock.json").read_text() == lock_before


def test_each_source_is_observed_with_its_own_data_version(tmp_path):
    import dagster as dg
    from dagster._core.definitions.observe import observe  # the in-process twin of the UI's "Observe sources"

    from ftassets.defs.curation.cleaning import RAW_SOURCES, raw_sources
    from ftassets.defs.curation.settings import CurationSettings
    from ftassets.defs.platform.resources import ArtifactStore

    data = data_copy(tmp_path, "raw", "governance", "eval")
    instance = dg.DagsterInstance.ephemeral()
    resources = {"store": ArtifactStore(data_dir=str(data), artifacts_dir=str(tmp_path / "artifacts")),
                 "curation": CurationSettings()}

    def versions() -> dict[str, str]:
        result = observe([raw_sources], instance=instance, resources=resources)
        return {o.partition: o.tags["dagster/data_version"] for o in result.asset_observations_for_node("raw_sources")}

    first = versions()
    assert set(first) == {"general_replay", "support_chat", "support_preferences"}
    assert set(instance.get_dynamic_partitions(RAW_SOURCES.name)) == set(first)
    assert versions() == first  # nothing changed, nothing new
    with (data / "raw/support_preferences/pairs.jsonl").open("a") as fh:
        fh.write(json.dumps({"prompt": "Is the API up?", "chosen": "Yes.", "rejected": "Maybe."}) + "\n")
    (data / "raw/new_source").mkdir()
    (data / "raw/new_source/source.yaml").write_text("license: cc0-1.0\nprovenance: test\nkind: sft\n")
    second = versions()
    assert second["support_chat"] == first["support_chat"]
    assert second["support_preferences"] != first["support_preferences"]
    assert "new_source" in second and "new_source" in instance.get_dynamic_partitions(RAW_SOURCES.name)


def test_two_machines_share_artifacts_through_an_object_store(tmp_path, tiny_model_dir):
    """Machine A curates and publishes; machine B, with an empty artifacts folder, fetches what it
    needs, re-splits with another seed and publishes; A then fetches B's splits."""
    import dagster as dg

    from ftassets.definitions import defs
    from ftassets.defs.curation.settings import load_curation_settings
    from ftassets.defs.platform.resources import ArtifactStore, PiiEngine, experiment_tracking, training_launcher
    from ftassets.lib.core import object_store

    remote = f"file://{tmp_path}/bucket/ftassets"

    def run(machine: str, selection, run_config):
        store = ArtifactStore(data_dir=str(DATA), artifacts_dir=str(tmp_path / machine), remote_url=remote)
        result = dg.materialize(list(defs.assets) + list(defs.asset_checks), selection=selection,
                                resources={"store": store, "pii": PiiEngine(), "curation": load_curation_settings(DATA),
                                           "training_launcher": training_launcher(), "tracking": experiment_tracking()},
                                run_config=run_config, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        return store, result

    a, first = run("a", CURATION, _config(tiny_model_dir))
    assert first.success
    published = object_store.list_artifacts(remote)
    assert {"base_model", "data_splits", "deduplicated_examples", "frozen_test_set"} <= set(published)
    assert object_store.remote_manifest(f"{remote}/data_splits") == object_store.local_manifest(tmp_path / "a/data_splits")

    b, second = run("b", ["data_splits"], {"resources": {"curation": {"config": {"split": {"seed": 7}}}}})
    assert second.success  # its inputs came from the store: B never curated anything
    assert object_store.local_manifest(tmp_path / "b/deduplicated_examples") == \
        object_store.local_manifest(tmp_path / "a/deduplicated_examples")
    b_splits = object_store.local_manifest(tmp_path / "b/data_splits")
    assert b_splits != object_store.local_manifest(tmp_path / "a/data_splits")  # another seed, other splits
    assert object_store.remote_manifest(f"{remote}/data_splits") == b_splits
    assert a.sync_down() == ["data_splits"] and object_store.local_manifest(tmp_path / "a/data_splits") == b_splits
