"""Training assets in Dagster: a bad setting fails the run, naming the field, before any process starts."""

from ftassets_tests.conftest import DATA, materialize, materialized_keys


def test_bad_sft_setting_fails_the_step_before_launch(tmp_path):
    result = materialize(DATA, tmp_path / "artifacts", {"ops": {"sft_adapter": {"config": {"lora_r": 0}}}},
                         selection="sft_adapter")
    assert not result.success and "sft_adapter" not in materialized_keys(result)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "lora_r=0: must be an integer >= 1" in str(failure.step_failure_data.error)
    assert not (tmp_path / "artifacts" / "sft_adapter").exists()
    assert not (tmp_path / "artifacts" / ".checkpoints").exists()
