"""Integration: the license gate blocks everything downstream of a disallowed base model."""


from ftassets_tests.conftest import check_results, data_copy, materialize, materialized_keys


def test_allowed_license_lets_base_model_through(tmp_path, tiny_model_dir):
    data = data_copy(tmp_path, "governance")
    result = materialize(data, tmp_path / "artifacts", {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}},
                         selection=["base_model_record", "base_model"])
    assert result.success
    assert materialized_keys(result) == {"base_model_record", "base_model"}
    assert check_results(result) == {"license_allows_use": True}
    meta = result.asset_materializations_for_node("base_model")[0].metadata
    # the tiny model: 49152 x 64 tied embeddings + 2 layers x (attention 12,288 + MLP 24,576 + norms 128) + norm 64
    assert meta["parameters"].value == 49152 * 64 + 2 * (12_288 + 24_576 + 128) + 64 == 3_219_776
    assert meta["architecture"].value == "LlamaForCausalLM"
    assert len(meta["weights_sha256"].value) == 64


def test_non_commercial_license_for_commercial_use_stops_everything_downstream(tmp_path, tiny_model_dir):
    data = data_copy(tmp_path, "governance")
    record = data / "governance/base_model.yaml"
    record.write_text(record.read_text().replace("license: apache-2.0", "license: cc-by-nc-4.0"))
    result = materialize(data, tmp_path / "artifacts", {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}},
                         selection="base_model_record*")
    assert not result.success
    assert check_results(result) == {"license_allows_use": False}
    assert materialized_keys(result) == {"base_model_record"}  # base_model and all below never ran
    assert not (tmp_path / "artifacts/base_model").exists()
    # The gate also holds when base_model is run on its own in a later run.
    alone = materialize(data, tmp_path / "artifacts", {"ops": {"base_model": {"config": {"source": str(tiny_model_dir)}}}},
                        selection="base_model")
    assert not alone.success and materialized_keys(alone) == set()
