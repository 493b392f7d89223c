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
