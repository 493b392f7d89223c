"""lib/release/versions.py: a released bundle is kept by its merged weights, read-only, and used only while
every file is the one recorded when it was bundled."""

import json
import os

import pytest

from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import sha256_bytes
from ftassets.lib.release import versions
from ftassets.lib.release.serving import bundle_files


def _bundle(folder, weights: bytes):
    (folder / "model").mkdir(parents=True)
    (folder / file_name("serving_bundle", "model_weights")).write_bytes(weights)
    (folder / file_name("serving_bundle", "decoding_policy")).write_text("default: {max_new_tokens: 8}\n")
    (folder / file_name("serving_bundle", "files")).write_text(json.dumps(bundle_files(folder)))
    return folder


def test_a_bundle_is_kept_by_its_weights_read_only_and_once(tmp_path):
    store = tmp_path / "releases"
    kept = versions.keep(_bundle(tmp_path / "a", b"weights a"), store)
    assert kept == store / sha256_bytes(b"weights a")[:16]
    weights = kept / file_name("serving_bundle", "model_weights")
    assert weights.read_bytes() == b"weights a" and not os.stat(weights).st_mode & 0o222
    assert versions.keep(tmp_path / "a", store) == kept  # the same bundle again: left as it is
    assert versions.find(store, sha256_bytes(b"weights a")) == (kept, None)
    # the newest bundle replaced in place does not reach the kept one (copies, not links)
    (tmp_path / "a" / file_name("serving_bundle", "model_weights")).write_bytes(b"edited")
    assert versions.verify(kept) is None


def test_a_changed_extra_or_missing_file_makes_the_kept_bundle_unusable(tmp_path):
    store = tmp_path / "releases"
    kept = versions.keep(_bundle(tmp_path / "a", b"weights a"), store)
    digest = sha256_bytes(b"weights a")
    (kept / "notes.txt").write_text("added later")
    assert "not in the record: notes.txt" in versions.find(store, digest)[1]
    (kept / "notes.txt").unlink()
    (kept / file_name("serving_bundle", "decoding_policy")).unlink()
    assert "changed or missing: decoding_policy.yaml" in versions.find(store, digest)[1]
    assert "no kept bundle" in versions.find(store, sha256_bytes(b"other"))[1]
    assert "recorded no merged weights" in versions.find(store, None)[1]


def test_a_bundle_whose_files_do_not_match_its_record_is_not_kept(tmp_path):
    bundle = _bundle(tmp_path / "a", b"weights a")
    (bundle / file_name("serving_bundle", "model_weights")).write_bytes(b"changed after bundling")
    with pytest.raises(ValueError, match="does not verify: changed or missing: model/model.safetensors"):
        versions.keep(bundle, tmp_path / "releases")
    assert list((tmp_path / "releases").iterdir()) == []  # nothing half-kept
