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
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    port = free_port()
    log = open(home / "webserver.log", "w")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
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
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def test_ui_serves_the_whole_graph_with_groups_checks_and_lineage(webserver):
    from ftassets.definitions import defs

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
