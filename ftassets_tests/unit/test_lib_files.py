import os

import pytest

from ftassets.lib.core.files import atomic_directory, read_jsonl, sha256_tree, write_jsonl_atomic


def test_atomic_directory_keeps_previous_content_on_failure(tmp_path):
    target = tmp_path / "artifact"
    with atomic_directory(target) as d:
        (d / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_directory(target) as d:
        (d / "a.txt").write_text("half-written v2")
        raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]  # no staging left behind


def test_sha256_tree_tracks_content_not_mtime(tmp_path):
    (tmp_path / "x").write_text("one")
    first = sha256_tree(tmp_path)
    (tmp_path / "x").write_text("one")
    assert sha256_tree(tmp_path) == first
    (tmp_path / "x").write_text("two")
    assert sha256_tree(tmp_path) != first


def test_read_jsonl_names_file_and_line(tmp_path):
    path = write_jsonl_atomic(tmp_path / "a.jsonl", [{"a": 1}])
    path.write_text(path.read_text() + "{broken\n")
    with pytest.raises(ValueError, match=r"a.jsonl:2: invalid JSON"):
        read_jsonl(path)


def test_temporary_files_of_a_dead_writer_are_removed_and_never_published(tmp_path):
    """What a kill between write and rename leaves behind: removed at the next run, never in a manifest."""
    import subprocess

    from ftassets.lib.core.files import remove_stale_temp, temp_prefix, write_text_atomic
    from ftassets.lib.core.object_store import local_manifest

    dead = subprocess.Popen(["true"])
    dead.wait()
    artifact = tmp_path / "some_asset"
    write_text_atomic(artifact / "config.txt", "{}")
    mine = temp_prefix("weights.bin")
    theirs = mine.replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    other_host = ".x.ftmp-00000000-" + str(dead.pid) + "-y.tmp"
    for name in (mine + "a.tmp", theirs + "b.tmp", other_host):
        (artifact / name).write_bytes(b"half a file")
    (tmp_path / (theirs.replace("weights.bin", "other_asset") + "staging-c")).mkdir()
    assert local_manifest(artifact) == {"config.txt": local_manifest(artifact)["config.txt"]}
    removed = remove_stale_temp(tmp_path)
    assert sorted(p.name for p in removed) == sorted([theirs.replace("weights.bin", "other_asset")
                                                       + "staging-c", theirs + "b.tmp"])
    assert sorted(p.name for p in artifact.iterdir()) == sorted(["config.txt", mine + "a.tmp", other_host])


def test_an_assets_files_switch_as_one_unit(tmp_path):
    """Catalog.unit: the old split files stay whole until every new one is written; a failure midway
    publishes none of the new files and leaves no staging folder behind."""
    from ftassets.lib.core.catalog import Catalog

    catalog = Catalog(tmp_path)
    with catalog.unit("data_splits") as staged:
        for role in ("train", "validation", "contaminated", "held_back"):
            staged.write_records("data_splits", role, [{"id": f"old-{role}"}])
    with pytest.raises(RuntimeError):
        with catalog.unit("data_splits") as staged:
            written = staged.write_records("data_splits", "train", [{"id": "new-train"}])
            assert written == catalog.path("data_splits", "train")  # the final path, not the staging one
            assert catalog.ids("data_splits", "train") == ["old-train"]  # readers still see the old unit
            assert staged.ids("data_splits", "train") == ["new-train"]
            raise RuntimeError("killed before validation.jsonl was written")
    assert catalog.ids("data_splits", "train") == ["old-train"]
    assert catalog.ids("data_splits", "validation") == ["old-validation"]
    with catalog.unit("data_splits") as staged:
        staged.write_records("data_splits", "train", [{"id": "new-train"}])
        staged.write_records("data_splits", "validation", [{"id": "new-validation"}])
    assert catalog.ids("data_splits", "train") == ["new-train"]
    assert not catalog.path("data_splits", "contaminated").exists()  # no stale side file from the old unit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_splits"]
