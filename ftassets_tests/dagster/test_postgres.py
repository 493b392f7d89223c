"""The production instance: a real PostgreSQL server started on loopback for this test (Debian's
`postgresql` binaries; `make test` installs them where apt is usable), selected the way a user selects
it (FTASSETS_INSTANCE=postgres + FTASSETS_PG_* env vars -> deploy/postgres/dagster.yaml); a full
curation materialization and the lineage audit run against it."""

import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from ftassets import cli
from ftassets.defs.platform import lineage
from ftassets_tests.conftest import DATA, REPO, check_results, free_port, materialize, materialized_keys

CURATION = ["base_model_record", "base_model", "eval_contract", "validated_examples", "scrubbed_examples",
            "deduplicated_examples", "frozen_test_set", "gold_set", "redteam_set", "data_splits", "preference_pairs"]


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return os.path.dirname(found[-1])
    pg_ctl = shutil.which("pg_ctl")
    return os.path.dirname(os.path.realpath(pg_ctl)) if pg_ctl else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth for a local test user), removed after.
    Its folder is outside pytest's (root-only) tmp tree: the server runs as the postgres user."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package `postgresql`; make test installs it as root)")
    root = Path(tempfile.mkdtemp(prefix="ftassets-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres system user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    run(f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "ftassets", "--no-sync", "-E", "UTF8")
    run(f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "server.log"), "-o",
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} -c fsync=off", "start")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="ftassets", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE ftassets_test")
        conn.close()
        yield {"FTASSETS_PG_HOST": "127.0.0.1", "FTASSETS_PG_PORT": str(port), "FTASSETS_PG_DB": "ftassets_test",
               "FTASSETS_PG_USER": "ftassets", "FTASSETS_PG_PASSWORD": ""}
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True,
                       timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow  # starts its own PostgreSQL server
def test_curation_and_audit_on_postgres(postgres, tmp_path, tiny_model_dir, monkeypatch, capsys):
    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("FTASSETS_INSTANCE", "postgres")
    monkeypatch.chdir(tmp_path)  # the instance's local folders (compute logs) are relative to the working dir
    assert cli.instance_home() == str(REPO / "deploy" / "postgres")
    instance = cli._instance()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"

    observed = cli.observe_sources(instance)
    assert set(observed) == {"general_replay", "support_chat", "support_preferences"}
    run_config = {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}}
    result = materialize(DATA, tmp_path / "artifacts", run_config, selection=CURATION, instance=instance)
    assert result.success and set(CURATION) <= materialized_keys(result)
    assert all(check_results(result).values())

    import psycopg2  # the events are really in the database, not in a local file

    conn = psycopg2.connect(host="127.0.0.1", port=int(postgres["FTASSETS_PG_PORT"]), user="ftassets",
                            dbname="ftassets_test")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                    (result.run_id,))
        assert cur.fetchone()[0] == len(materialized_keys(result))
    conn.close()

    assert cli.main(["audit", "data_splits", "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)
    chain = audit["chain"]
    assert audit["target"]["run_id"] == result.run_id
    assert set(CURATION) - {"preference_pairs"} <= set(chain["assets"])  # data_splits does not read preferences
    assert {c["check"] for c in chain["assets"]["scrubbed_examples"]["checks"]} == {
        "no_residual_pii", "scrubbed_examples_conserved"}
    assert chain["sources"]["support_chat"]["data_version"] == observed["support_chat"]
    assert lineage.releases_using_source(instance, "support_chat") == []  # curated, never released


def test_kubernetes_instance_config_is_valid_for_dagster_k8s(monkeypatch):
    """The cluster variant is config only here (no cluster): its run launcher section must satisfy
    dagster-k8s's own schema, and its storage must be the tested PostgreSQL section."""
    import yaml
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    for var, value in {"FTASSETS_K8S_NAMESPACE": "ml", "FTASSETS_K8S_IMAGE": "registry.example/ftassets:1"}.items():
        monkeypatch.setenv(var, value)
    k8s = yaml.safe_load((REPO / "deploy/k8s/dagster.yaml").read_text())
    local = yaml.safe_load((REPO / "deploy/postgres/dagster.yaml").read_text())
    assert k8s["storage"] == local["storage"]
    launcher = k8s["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert result.value["job_namespace"] == "ml" and result.value["job_image"] == "registry.example/ftassets:1"
    # the password comes from a Secret: an env_vars entry would copy its value into every run pod's spec
    assert result.value["env_secrets"] == ["ftassets-postgres"]
    assert not [v for v in result.value["env_vars"] if any(w in v.upper() for w in ("PASSWORD", "SECRET", "TOKEN"))]
    assert "FTASSETS_PG_PASSWORD" not in result.value["env_vars"]
