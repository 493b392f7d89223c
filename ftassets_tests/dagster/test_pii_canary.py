"""Canary: PII planted everywhere outside message text never reaches the instance, the logs or an artifact.

A new source's folder name, its data file's name, its sidecar file's name, record ids (kept and quarantined),
`reviewed_by` in source.yaml and in the sidecar, a role name, and a second folder without a source.yaml
all carry names, e-mail addresses and a phone number. Curation runs with a Dagster instance on disk (event
log, run storage, compute logs); then every byte there, every artifact and everything printed is searched for
each planted value. The planted records still arrive, under their stable hashes, so nothing is lost."""

import json

import dagster as dg

from ftassets.defs.curation.cleaning import observe_sources
from ftassets.defs.curation.settings import load_curation_settings
from ftassets.defs.platform.resources import ArtifactStore
from ftassets.lib.core.catalog import Catalog
from ftassets.lib.curation.identifiers import PREFIX
from ftassets_tests.conftest import check_results, data_copy, materialize, materialized_keys

CURATION = ["base_model_record", "base_model", "validated_examples", "scrubbed_examples", "deduplicated_examples",
            "frozen_test_set", "gold_set", "redteam_set", "eval_contract", "data_splits", "preference_pairs"]
CANARIES = ["olga_petrenko", "Petrenko", "Kowalczyk", "bart.kowalczyk", "867-5309", "5558675309", "anna.schmidt",
            "jdoe.smith", "maria_garcia", "Halvorsen"]


def _plant(data) -> None:
    folder = data / "raw" / "olga_petrenko_exports"
    folder.mkdir()
    (folder / "source.yaml").write_text("license: cc0-1.0\nprovenance: written for the canary test\nkind: sft\n"
                                        "task: runbook_lookup\nreviewed_by: Bartholomew Kowalczyk "
                                        "<bart.kowalczyk@example.org>\n")
    turn = [{"role": "user", "content": "How do I rotate the ingress certificate on the edge cluster?"},
            {"role": "assistant", "content": "Run the certificate rotation job from the admin console, then "
                                             "restart the ingress pods one by one."}]
    rows = [{"id": "ticket-anna.schmidt@example.org", "messages": turn},
            {"id": "jdoe.smith@example.net", "messages": [turn[0], {"role": "assistant", "content": " "}]},
            {"id": "role-1", "messages": [{"role": "Ingrid Halvorsen", "content": "hi"}, turn[1]]}]
    (folder / "calls_555-867-5309.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "calls_555-867-5309.meta.jsonl").write_text(json.dumps(
        {"id": "ticket-anna.schmidt@example.org", "reviewed_by": "Ingrid Halvorsen"}) + "\n")
    dump = data / "raw" / "maria_garcia_dump"
    dump.mkdir()
    (dump / "export.jsonl").write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")


def _leaks(root, canaries) -> dict[str, list[str]]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            body = path.read_bytes().lower()
            hits = [c for c in canaries if c.lower().encode() in body or c.lower() in str(path).lower()]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def test_planted_pii_outside_message_text_reaches_no_artifact_log_or_instance(tmp_path, tiny_model_dir, capfd):
    data = data_copy(tmp_path, "raw", "governance", "eval")
    _plant(data)
    home, artifacts = tmp_path / "dagster_home", tmp_path / "artifacts"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        store = ArtifactStore(data_dir=str(data), artifacts_dir=str(artifacts))
        observe_sources(instance, store, load_curation_settings(data))
        result = materialize(data, artifacts, {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}},
                             selection=CURATION, instance=instance)
        partitions = instance.get_dynamic_partitions("raw_sources")
    assert set(CURATION) <= materialized_keys(result)
    assert all(check_results(result).values()), check_results(result)

    catalog = Catalog(artifacts)
    kept = {r["id"]: r for r in catalog.records("validated_examples", "sft")}
    planted = [r for r in kept.values() if r["source"].startswith(PREFIX)]
    assert len(planted) == 1 and planted[0]["id"].startswith(PREFIX)  # arrived, under its hash
    assert planted[0]["meta"]["reviewed_by"].startswith(PREFIX)
    quarantine = catalog.records("validated_examples", "quarantine")
    hashed = [q for q in quarantine if q["source"].startswith(PREFIX)]
    assert {q["reason"] for q in hashed} >= {"empty_assistant", "unknown_role", "missing_source_yaml"}
    assert any(q["id"] and q["id"].startswith(PREFIX) for q in hashed)
    assert sum(p.startswith(PREFIX) for p in partitions) == 2  # both planted folders, as hashes

    out, err = capfd.readouterr()
    printed = [c for c in CANARIES if c.lower() in (out + err).lower()]
    leaks = {**_leaks(home, CANARIES), **_leaks(artifacts, CANARIES)}
    assert not printed and not leaks, (printed, leaks)
