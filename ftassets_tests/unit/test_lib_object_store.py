"""Artifacts on object storage: publish (manifest last), fetch (verified, swapped in whole)."""

import json

import pytest

from ftassets.lib.core import object_store as osx


def _artifact(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x00weights" * 100)
    (folder / "sub" / "config.json").write_text(json.dumps({"r": 16}))
    return folder


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_publish_then_fetch_is_an_exact_verified_copy(tmp_path, scheme):
    local = _artifact(tmp_path / "a")
    url = f"file://{tmp_path}/remote/sft_adapter" if scheme == "file" else f"memory://ftassets-{tmp_path.name}/sft_adapter"
    files = osx.publish(local, url)
    assert set(files) == {"model.safetensors", "sub/config.json"} and osx.remote_manifest(url) == files
    copy = tmp_path / "b" / "sft_adapter"
    assert osx.fetch(url, copy) is True
    assert osx.local_manifest(copy) == files
    assert osx.fetch(url, copy) is False  # already identical: nothing downloaded
    assert osx.list_artifacts(url.rsplit("/", 1)[0]) == ["sft_adapter"]

    (local / "sub" / "config.json").unlink()  # a file the new version no longer has is removed remotely
    (local / "model.safetensors").write_bytes(b"new")
    osx.publish(local, url)
    assert osx.fetch(url, copy) is True and osx.local_manifest(copy) == {"model.safetensors": osx.local_manifest(local)[
        "model.safetensors"]}
    assert not (copy / "sub" / "config.json").exists()


def test_a_corrupted_or_unfinished_upload_is_never_read(tmp_path):
    local = _artifact(tmp_path / "a")
    url = f"file://{tmp_path}/remote/merged_model"
    osx.publish(local, url)
    copy = tmp_path / "b" / "merged_model"
    osx.fetch(url, copy)
    before = osx.local_manifest(copy)
    (tmp_path / "remote/merged_model/model.safetensors").write_bytes(b"tampered")
    (local / "model.safetensors").write_bytes(b"local change")  # make the local copy differ so a fetch is needed
    (copy / "model.safetensors").write_bytes(b"stale")
    with pytest.raises(osx.ObjectStoreError, match=r"merged_model/model\.safetensors: sha256 .* does not match"):
        osx.fetch(url, copy)
    assert (copy / "model.safetensors").read_bytes() == b"stale"  # the local folder is left as it was
    assert osx.local_manifest(copy)["sub/config.json"] == before["sub/config.json"]
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".")]  # no staging left behind

    (tmp_path / "remote/half").mkdir()
    (tmp_path / "remote/half/model.safetensors").write_bytes(b"x")  # files without a manifest
    with pytest.raises(osx.ObjectStoreError, match="no _ftassets_manifest.json"):
        osx.fetch(f"file://{tmp_path}/remote/half", tmp_path / "c")
    assert osx.list_artifacts(f"file://{tmp_path}/remote") == ["merged_model"]


@pytest.mark.parametrize("key", ["../escaped.txt", "/tmp/absolute.txt", "sub/../../up.txt", "C:/win.txt",
                                 "a\\..\\b.txt", "./x", ""])
def test_manifest_keys_outside_the_artifact_folder_write_and_delete_nothing(tmp_path, key):
    """A tampered (or hostile) manifest cannot make a fetch write, or a publish delete, outside the folder."""
    local = _artifact(tmp_path / "a")
    url = f"file://{tmp_path}/remote/store/sft_adapter"
    files = osx.publish(local, url)
    manifest = tmp_path / "remote/store/sft_adapter" / osx.MANIFEST
    manifest.write_text(json.dumps({"files": {**files, key: files["model.safetensors"]}}))
    (tmp_path / "remote/store/up.txt").write_text("a file beside the artifact")
    with pytest.raises(osx.ObjectStoreError, match="outside the artifact folder"):
        osx.fetch(url, tmp_path / "b" / "sft_adapter")
    with pytest.raises(osx.ObjectStoreError, match="outside the artifact folder"):
        osx.publish(local, url)
    assert not (tmp_path / "b").exists() and (tmp_path / "remote/store/up.txt").exists()
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "b" / "escaped.txt").exists()
