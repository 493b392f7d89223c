"""Releases as versions: every released bundle is kept, `ftassets releases` lists the decisions, `rollback`
makes an earlier release current again (the champion follows, and the event log says who, why, when), and
`chat` talks to a kept release with its own template and decoding policy."""

import json
import shutil

import dagster as dg
import pytest

from ftassets import cli
from ftassets.defs.evaluation import champion
from ftassets.defs.platform import lineage
from ftassets.defs.platform.resources import ArtifactStore
from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import sha256_file
from ftassets.lib.core.generation import generate_by_task
from ftassets.lib.core.models import load_model, load_tokenizer
from ftassets.lib.release import versions
from ftassets.lib.release.serving import bundle_files
from ftassets_tests.conftest import DATA

POLICY = "default: {max_new_tokens: 12, temperature: 0.0}\nplatform_qa: {max_new_tokens: 6, temperature: 0.0}\n"


def _bundle(folder, model_dir, name: str, nudge: float = 0.0):
    """A serving bundle as serving_bundle writes one (model, decoding policy, manifest, file record)."""
    import torch
    from safetensors.torch import load_file, save_file

    model = folder / file_name("serving_bundle", "model")
    shutil.copytree(model_dir, model)
    if nudge:  # another model: one weight matrix moved
        weights = folder / file_name("serving_bundle", "model_weights")
        tensors = load_file(weights)
        key = next(k for k in tensors if k.endswith("o_proj.weight"))
        tensors[key] = tensors[key] + nudge * torch.ones_like(tensors[key])
        save_file(tensors, weights, metadata={"format": "pt"})
    (folder / file_name("serving_bundle", "decoding_policy")).write_text(POLICY)
    (folder / file_name("serving_bundle", "manifest")).write_text(json.dumps({"release_name": name}))
    (folder / file_name("serving_bundle", "files")).write_text(json.dumps(bundle_files(folder)))
    return folder


def _decide(instance, name: str, decision: str, weights: str, task_success: float) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("release_decision", metadata={
        "decision": decision, "release_name": name, "merged_weights_sha256": weights, "contract_version": 3,
        "headline": dg.MetadataValue.json({"task_success": task_success, "gold_pass_rate": 0.5})}))


@pytest.fixture
def released(tmp_path, tiny_model_dir, monkeypatch):
    """An on-disk instance with three decisions: rel-a released, rel-b rejected, rel-c released (newest)."""
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("FTASSETS_DATA_DIR", str(DATA))
    monkeypatch.setenv("FTASSETS_ARTIFACTS_DIR", str(artifacts))
    store = ArtifactStore(data_dir=str(DATA), artifacts_dir=str(artifacts))
    weights = {}
    for name, nudge in (("rel-a", 0.0), ("rel-c", 0.05)):
        kept = versions.keep(_bundle(tmp_path / name, tiny_model_dir, name, nudge), store.catalog.releases())
        weights[name] = sha256_file(kept / file_name("serving_bundle", "model_weights"))
    assert weights["rel-a"] != weights["rel-c"]
    instance = dg.DagsterInstance.get()
    _decide(instance, "rel-a", "release", weights["rel-a"], 0.61)
    _decide(instance, "rel-b", "reject", weights["rel-c"], 0.40)
    _decide(instance, "rel-c", "release", weights["rel-c"], 0.66)
    return instance, store, weights


def test_releases_lists_every_decision_and_the_newest_release_is_current(released, capsys):
    instance, store, weights = released
    assert cli.main(["releases", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["release_name"], r["decision"], r["current"]) for r in rows] == [
        ("rel-c", "release", True), ("rel-b", "reject", False), ("rel-a", "release", False)]
    assert all(r["bundle"] and r["contract_version"] == 3 for r in rows)
    assert rows[0]["headline"]["task_success"] == 0.66
    assert cli.main(["releases"]) == 0
    table = capsys.readouterr().out
    assert "| current | rel-c | release |" in table and "| 0.610 |" in table
    path, info = champion(store, instance)
    assert info["release_name"] == "rel-c" and info["weights_sha256"] == weights["rel-c"]


def test_rollback_makes_an_earlier_release_current_and_records_who_why_when(released, capsys):
    instance, store, weights = released
    assert cli.main(["rollback", "rel-b", "--reason", "x"]) == 2  # rejected: never servable
    assert "was rejected" in capsys.readouterr().err
    assert cli.main(["rollback", "no-such-release", "--reason", "x"]) == 2
    assert "known: rel-a, rel-b, rel-c" in capsys.readouterr().err
    assert cli.main(["rollback", "rel-c", "--reason", "x"]) == 0  # already current: nothing recorded
    assert lineage.rollbacks(instance) == []

    assert cli.main(["rollback", "rel-a", "--reason", "rel-c refuses valid VPN questions", "--by", "dana"]) == 0
    assert "current release: rel-a" in capsys.readouterr().out
    current = lineage.current_release(instance)
    assert current["release_name"] == "rel-a" and current["rolled_back"]["by"] == "dana"
    assert current["rolled_back"]["reason"] == "rel-c refuses valid VPN questions"
    assert current["rolled_back"]["from"] == "rel-c" and current["rolled_back"]["at"]
    path, info = champion(store, instance)  # the next candidate is held against the rolled-back release
    assert info["release_name"] == "rel-a" and info["weights_sha256"] == weights["rel-a"]
    assert info["rolled_back"]["by"] == "dana"
    assert path == versions.version_dir(store.catalog.releases(), weights["rel-a"]) / "model"
    assert cli.main(["releases", "--json"]) == 0
    assert [r["release_name"] for r in json.loads(capsys.readouterr().out) if r["current"]] == ["rel-a"]

    _decide(instance, "rel-d", "release", weights["rel-c"], 0.7)  # a newer release supersedes the rollback
    assert lineage.current_release(instance)["release_name"] == "rel-d"

    kept = versions.version_dir(store.catalog.releases(), weights["rel-a"])
    policy_file = kept / file_name("serving_bundle", "decoding_policy")
    policy_file.chmod(0o644)  # kept files are read-only
    policy_file.write_text("default: {max_new_tokens: 999}\n")
    assert cli.main(["rollback", "rel-a", "--reason", "again"]) == 2  # a changed bundle is never made current
    assert "changed or missing: decoding_policy.yaml" in capsys.readouterr().err


def test_chat_answers_as_the_release_does_with_its_decoding_policy(released, capsys):
    instance, store, weights = released
    kept = versions.version_dir(store.catalog.releases(), weights["rel-a"])
    model_dir = kept / file_name("serving_bundle", "model")
    policy = {"default": {"max_new_tokens": 12, "temperature": 0.0},
              "platform_qa": {"max_new_tokens": 6, "temperature": 0.0}}
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    first = [{"role": "user", "content": "How do I reset my VPN token?"}]
    expected = generate_by_task(model, tokenizer, [{"task": "platform_qa", "prompt": first}], policy)[0]
    second = first + [{"role": "assistant", "content": expected}, {"role": "user", "content": "And then?"}]
    expected_next = generate_by_task(model, tokenizer, [{"task": "platform_qa", "prompt": second}], policy)[0]

    assert cli.main(["chat", "rel-a", "--task", "platform_qa", "--message", "How do I reset my VPN token?",
                     "--message", "And then?"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{expected}\n{expected_next}\n"  # the second turn saw the first
    assert "rel-a (merged weights; task platform_qa" in captured.err
    assert len(tokenizer(expected)["input_ids"]) <= 6 + 1

    hi = [{"role": "user", "content": "hi"}]
    assert cli.main(["chat", str(kept), "--message", "hi"]) == 0  # a bundle folder, the default policy
    assert capsys.readouterr().out == generate_by_task(model, tokenizer, [{"task": "default", "prompt": hi}], policy)[0] + "\n"
    assert cli.main(["chat", "--task", "no_such_task", "--message", "hi"]) == 2
    assert "not in the release's decoding policy" in capsys.readouterr().err
    assert cli.main(["chat", "rel-b", "--message", "hi"]) == 2
    assert "was rejected" in capsys.readouterr().err
