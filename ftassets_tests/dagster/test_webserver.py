"""The Dagster UI serves this project on loopback: start `dagster-webserver` the way `make ui` loads
the project (workspace.yaml), ask its GraphQL API for the asset graph, and compare every asset,
group, check and dependency with the Definitions."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from ftassets_tests.conftest import REPO, free_port

QUERY = """{ assetNodes { assetKey { path } groupName dependencyKeys { path } isObservable
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


def _post(url: str, query: str) -> dict:
    request = urllib.request.Request(url, data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, DAGSTER_HOME, data folder): the webserver on a copy of the bundled data with an owners file."""
    import shutil

    home = tmp_path_factory.mktemp("dagster_home")
    data = tmp_path_factory.mktemp("served") / "data"
    for part in ("raw", "governance", "eval"):
        shutil.copytree(REPO / "data" / part, data / part)
    (data / "governance/owners.yaml").write_text("default: [team:ml-platform]\ncuration: [data-team@example.com]\n")
    port = free_port()
    log = open(home / "webserver.log", "w")
    env = {**os.environ, "DAGSTER_HOME": str(home), "FTASSETS_DATA_DIR": str(data),
           "FTASSETS_ARTIFACTS_DIR": str(data / "artifacts")}
    proc = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
                             "-w", str(REPO / "workspace.yaml")], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"webserver exited with {proc.returncode}: {(home / 'webserver.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("webserver did not answer within 240 s")
                time.sleep(2)
        yield url, home, data
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def test_ui_serves_the_whole_graph_with_groups_checks_and_lineage(served):
    from ftassets.definitions import defs

    webserver = served[0]
    deadline = time.time() + 180
    while True:  # the code location loads in its own process after the server starts
        nodes = (_post(f"{webserver}/graphql", QUERY).get("data") or {}).get("assetNodes") or []
        if nodes or time.time() > deadline:
            break
        time.sleep(3)
    served = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    graph = defs.resolve_asset_graph()
    expected = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}
    assert set(served) == set(expected)
    for key, node in expected.items():
        got = served[key]
        assert got["groupName"] == node.group_name, key
        assert {"/".join(d["path"]) for d in got["dependencyKeys"]} == {p.to_user_string() for p in node.parent_keys}, key
        checks = {c["name"]: c["blocking"] for c in (got["assetChecksOrError"] or {}).get("checks", [])}
        assert checks == {ck.name: graph.get_check_spec(ck).blocking
                          for ck in node.check_keys}, key
    assert {n["groupName"] for n in nodes} == {"governance", "curation", "training", "sweep", "evaluation", "release"}
    assert served["raw_sources"]["isObservable"]
    assert served["release_decision"]["assetChecksOrError"]["checks"] == [{"name": "release_gate", "blocking": True}]


META = """{ assetNodes(assetKeys: [%s]) { assetKey { path } kinds tags { key value }
  owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
  assetMaterializations(limit: 1) { metadataEntries { label __typename
    ... on TableMetadataEntry { table { records schema { columns { name type } } } } } } } }"""


def test_ui_shows_datasets_as_typed_tables_with_owners_tags_and_kinds(served, tiny_model_dir, monkeypatch):
    """What a reviewer reads in the catalog, asked of the running UI after a curation run: row counts,
    column schemas and a table preview on scrubbed datasets (none on raw ones), owners per group from
    governance/owners.yaml, the PII and training tags, and kinds that name the libraries."""
    import dagster as dg

    from ftassets_tests.conftest import materialize

    url, home, data = served
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    result = materialize(data, data / "artifacts", {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}},
                         selection="*data_splits", instance=dg.DagsterInstance.get())
    assert result.success
    keys = ["data_splits", "validated_examples", "sft_adapter", "base_model", "eval_report"]
    nodes = {n["assetKey"]["path"][0]: n for n in _post(f"{url}/graphql", META % ", ".join(
        f'{{path: ["{k}"]}}' for k in keys))["data"]["assetNodes"]}
    entries = {k: {e["label"]: e for m in n["assetMaterializations"] for e in m["metadataEntries"]}
               for k, n in nodes.items()}
    splits = entries["data_splits"]
    assert splits["dagster/row_count"]["__typename"] == "IntMetadataEntry"
    assert splits["dagster/column_schema"]["__typename"] == "TableSchemaMetadataEntry"
    preview = splits["preview"]
    assert preview["__typename"] == "TableMetadataEntry"
    assert [c["name"] for c in preview["table"]["schema"]["columns"]] == ["id", "source", "task", "turns", "prompt",
                                                                         "reply"]
    rows = [json.loads(r) for r in preview["table"]["records"]]
    assert 0 < len(rows) <= 5 and all(len(r["prompt"]) <= 120 for r in rows)
    assert "dagster/column_schema" in entries["validated_examples"]
    assert "preview" not in entries["validated_examples"]  # raw records: columns, never rows
    assert nodes["validated_examples"]["owners"] == [{"email": "data-team@example.com"}]
    assert nodes["sft_adapter"]["owners"] == [{"team": "ml-platform"}]
    tags = {k: {t["key"]: t["value"] for t in n["tags"]} for k, n in nodes.items()}
    assert tags["validated_examples"]["ftassets/pii"] == "raw" and tags["data_splits"]["ftassets/pii"] == "scrubbed"
    assert tags["data_splits"]["ftassets/training"] == "trains"
    assert tags["sft_adapter"]["ftassets/training_policy"] == "manual"
    assert "trl" in nodes["sft_adapter"]["kinds"] and "huggingface" in nodes["base_model"]["kinds"]
    assert "lm-eval" in nodes["eval_report"]["kinds"]
