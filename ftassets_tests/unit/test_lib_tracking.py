"""MLflow tracking of a run, against a local SQLite store: parameters flattened, curves by step, figures,
artifacts, tags; off when no URI is set; credentials never shown."""

from ftassets.lib.core import tracking


def test_a_run_lands_in_a_local_mlflow_store_with_curves_params_tags_and_files(tmp_path):
    from mlflow.tracking import MlflowClient

    assert tracking.resolve_uri("", tmp_path) is None and tracking.resolve_uri("  ", tmp_path) is None
    uri = tracking.resolve_uri("local", tmp_path)
    assert uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    card = tmp_path / "card.md"
    card.write_text("# model card\n")
    params = {"lora": {"r": 16, "alpha": 32}, "learning_rate": 1e-3, **{f"p{n}": n for n in range(120)}}
    run_id = tracking.log_run(uri, "exp", tracking.TrackedRun(
        name="sft_adapter abcd1234", params=params, figures={"final_train_loss": 1.5, "skipped": None, "rule/drop_max[probe]": 0.5},
        curves={"train_loss": [[1, 3.0], [2, 2.5], [3, 2.0]]}, artifacts=[card, tmp_path / "missing.json"],
        tags={"dagster/run_id": "abcd1234-0000"}), tmp_path / "mlflow" / "artifacts")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "sft_adapter abcd1234"
    assert run.data.params["lora.r"] == "16" and len(run.data.params) == 123  # more than one batch of 100
    assert run.data.metrics["final_train_loss"] == 1.5 and "skipped" not in run.data.metrics
    assert run.data.metrics["rule/drop_max_probe_"] == 0.5  # a name MLflow would refuse is made safe
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")] == [(1, 3.0), (2, 2.5),
                                                                                           (3, 2.0)]
    assert run.data.tags["dagster/run_id"] == "abcd1234-0000"
    assert [a.path for a in client.list_artifacts(run_id)] == ["card.md"]
    second = tracking.log_run(uri, "exp", tracking.TrackedRun(name="again"))  # the experiment is reused
    assert client.get_run(second).info.experiment_id == run.info.experiment_id


def test_credentials_in_a_tracking_uri_are_never_shown():
    assert tracking.redact_userinfo("https://user:s3cret@mlflow.example.com:5000/x") == "https://mlflow.example.com:5000/x"
    assert tracking.redact_userinfo("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
