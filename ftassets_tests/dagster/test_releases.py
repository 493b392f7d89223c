"""Releases as versions: every released bundle is kept, `ftassets releases` lists the decisions, `rollback`
makes an earlier release current again (the champion follows, and the event log says who, why, when), and
`chat` talks to a kept release with its own template and decoding policy."""

import json
import shutil
import threading
import time

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
from ftassets_tests.conftest import DATA, free_port

POLICY = "default: {max_new_tokens: 12, temperature: 0.0}\nplatform_qa: {max_new_tokens: 6, temperature: 0.0}\n"


def _bundle(folder, model_dir, name: str, scale: float):
    """A serving bundle as serving_bundle writes one (model, decoding policy, manifest, file record). The
    random tiny model only repeats the prompt's last token ("\n": an empty reply); its attention output
    and MLP weights scaled up, it says something, and each scale something else."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, folder / file_name("serving_bundle", "model"))
    weights = folder / file_name("serving_bundle", "model_weights")
    tensors = load_file(weights)
    save_file({k: v * scale if ("mlp" in k or "o_proj" in k) else v for k, v in tensors.items()}, weights,
              metadata={"format": "pt"})
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
    for name, scale in (("rel-a", 10.0), ("rel-c", 12.0)):
        kept = versions.keep(_bundle(tmp_path / name, tiny_model_dir, name, scale), store.catalog.releases())
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
    assert expected and expected_next and expected != expected_next  # replies worth comparing

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


def test_serve_answers_the_openai_client_for_each_served_release_and_refuses_others_by_name(released):
    import openai
    import uvicorn

    from ftassets.cli_releases import served_releases
    from ftassets.lib.release.server import build_app

    instance, store, weights = released
    served, refused = served_releases(instance, store, ["rel-a"])
    assert sorted(served) == ["current", "rel-a", "rel-c"] and served["current"] is served["rel-c"]
    assert "rejected by the release gate" in refused["rel-b"]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(served, refused), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-used", max_retries=0)
        assert sorted(m.id for m in client.models.list()) == ["current", "rel-a", "rel-c"]
        ask = [{"role": "user", "content": "How do I reset my VPN token?"}]
        answered = {}
        for name in ("rel-a", "rel-c"):
            model_dir = versions.version_dir(store.catalog.releases(), weights[name]) / "model"
            model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
            expected = generate_by_task(model, tokenizer, [{"task": "platform_qa", "prompt": ask}],
                                        {"default": {"max_new_tokens": 6, "temperature": 0.0}})[0]
            done = client.chat.completions.create(model=name, messages=ask, extra_body={"task": "platform_qa"})
            assert expected and done.model == name and done.choices[0].message.content == expected, name
            assert 0 < done.usage.completion_tokens <= 6 and done.usage.prompt_tokens > 5  # its policy: 6 tokens
            answered[name] = expected
            capped = client.chat.completions.create(model=name, messages=ask, max_tokens=2)
            assert (capped.usage.completion_tokens, capped.choices[0].finish_reason) == (2, "length")
        assert answered["rel-a"] != answered["rel-c"]  # the `model` field picks the release
        replies = {n: client.chat.completions.create(model=n, messages=ask).choices[0].message.content
                   for n in ("current", "rel-c")}
        assert replies["current"] == replies["rel-c"] and len(replies["current"]) > len(answered["rel-c"])
        with pytest.raises(openai.NotFoundError, match="rel-b.*rejected by the release gate"):
            client.chat.completions.create(model="rel-b", messages=ask)
        with pytest.raises(openai.NotFoundError, match="no release of that name"):
            client.chat.completions.create(model="gpt-4o", messages=ask)
        with pytest.raises(openai.BadRequestError, match="not in rel-a's decoding policy"):
            client.chat.completions.create(model="rel-a", messages=ask, extra_body={"task": "no_such_task"})
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_serve_refuses_a_non_loopback_host_and_an_unservable_release(released, capsys):
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    assert "loopback only" in capsys.readouterr().err
    assert cli.main(["serve", "rel-b"]) == 2
    assert "was rejected" in capsys.readouterr().err


def _adapter_bundle(folder, base_dir, seed: int):
    """A bundle whose merged weights are the base plus one random LoRA adapter, kept with that adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftassets.lib.core.models import weights_sha256

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    adapters = folder / file_name("serving_bundle", "adapters_dir")
    peft.save_pretrained(str(adapters / "sft_adapter"))
    merged = peft.merge_and_unload()
    merged.save_pretrained(str(folder / file_name("serving_bundle", "model")), safe_serialization=True)
    load_tokenizer(base_dir).save_pretrained(str(folder / file_name("serving_bundle", "model")))
    (folder / file_name("serving_bundle", "adapters")).write_text(json.dumps({
        "stack": [f"{file_name('serving_bundle', 'adapters_dir')}/sft_adapter"], "merge_all_but_last": True,
        "base_model": {"weights_sha256": weights_sha256(base_dir), "model": "tiny"}}))
    (folder / file_name("serving_bundle", "decoding_policy")).write_text(POLICY)
    (folder / file_name("serving_bundle", "manifest")).write_text(json.dumps({"release_name": folder.name}))
    (folder / file_name("serving_bundle", "files")).write_text(json.dumps(bundle_files(folder)))
    return folder


def test_serve_adapters_puts_every_release_s_stack_on_one_base_and_answers_as_its_merged_model(
        tmp_path, tiny_model_dir, monkeypatch):
    from ftassets.cli_releases import served_releases

    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    store = ArtifactStore(data_dir=str(DATA), artifacts_dir=str(artifacts))
    base = _bundle(tmp_path / "talking", tiny_model_dir, "base", 10.0) / file_name("serving_bundle", "model")
    shutil.copytree(base, store.artifact("base_model"))  # the base says something: replies worth comparing
    instance = dg.DagsterInstance.get()
    merged = {}
    for name, seed in (("rel-x", 1), ("rel-y", 2)):
        kept = versions.keep(_adapter_bundle(tmp_path / name, store.artifact("base_model"), seed), store.catalog.releases())
        _decide(instance, name, "release", sha256_file(kept / file_name("serving_bundle", "model_weights")), 0.6)
        merged[name] = kept / file_name("serving_bundle", "model")
    served, _ = served_releases(instance, store, ["rel-x"], adapters=True)
    assert served["rel-x"].shared is served["rel-y"].shared is not None  # one base in memory for both
    assert served["current"] is served["rel-y"]
    ask = [{"role": "user", "content": "How do I reset my VPN token?"}]
    replies = {}
    for name in ("rel-x", "rel-y", "rel-x"):  # switching back and forth activates the right stack
        reply, usage, _ = served[name].answer(ask, "platform_qa", None, None)
        expected = generate_by_task(load_model(merged[name]), load_tokenizer(merged[name]),
                                    [{"task": "platform_qa", "prompt": ask}],
                                    {"default": {"max_new_tokens": 6, "temperature": 0.0}})[0]
        assert reply == expected and usage["completion_tokens"] > 0, (name, reply, expected)
        replies[name] = reply
    assert replies["rel-x"] != replies["rel-y"]

    other = store.artifact("base_model") / file_name("serving_bundle", "model_weights").split("/")[-1]
    other.chmod(0o644)
    other.write_bytes(other.read_bytes()[:-4] + b"\0\0\0\0")  # another base than the adapters were trained on
    with pytest.raises(LookupError, match="its adapters were trained on base weights"):
        served_releases(instance, store, [], adapters=True)
