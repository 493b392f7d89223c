"""Bad input never crashes curation and is never dropped silently: each case is a located quarantine
entry, and the good records beside it still pass."""

import gzip
import json

from ftassets.lib.core.models import count_chat_tokens
from ftassets.lib.curation import formats
from ftassets.lib.curation.validation import validate_sources

GOOD = {"prompt": "What port does the metrics agent use?", "response": "Port 9102."}
YAML = "license: cc-by-4.0\nprovenance: test fixture\nkind: sft\n"


def _source(root, name, files, yaml=YAML):
    folder = root / "raw" / name
    folder.mkdir(parents=True)
    if yaml is not None:
        (folder / "source.yaml").write_text(yaml)
    for file_name, body in files.items():
        (folder / file_name).write_bytes(body)
    return folder


def _validate(tokenizer, root):
    sources = formats.discover_sources(root / "raw")
    return validate_sources(sources, lambda m: count_chat_tokens(tokenizer, m), 1024, {"cc-by-4.0"})


def _line(item) -> bytes:
    return json.dumps(item).encode() + b"\n"


def test_huge_line_empty_files_and_truncated_gzip_are_located_and_the_rest_survives(tiny_tokenizer, tmp_path):
    huge = b'{"prompt": "' + b"x" * (50 * 1024 * 1024) + b'", "response": "y"}\n'
    gz = gzip.compress(_line({**GOOD, "id": "gz-1"}) + _line({**GOOD, "id": "gz-2"}) * 400)
    _source(tmp_path, "mixed", {
        "a.jsonl": _line({**GOOD, "id": "a-1"}) + b"\n" + huge + _line({**GOOD, "id": "a-3"}),
        "empty.jsonl": b"", "blank.json": b"  \n", "list.json": b"[]",
        "cut.jsonl.gz": gz[: len(gz) // 2],
    })
    sft, _ = _validate(tiny_tokenizer, tmp_path)
    where = {(q["origin"]["file"].split("/")[-1], q["reason"]): q for q in sft.quarantined}
    assert where[("a.jsonl", "line_too_large")]["origin"]["line"] == 3
    assert "not parsed" in where[("a.jsonl", "line_too_large")]["detail"]
    assert {k for k in where if k[1] == "empty_file"} == {("empty.jsonl", "empty_file"), ("blank.json", "empty_file"),
                                                         ("list.json", "empty_file")}
    assert ("cut.jsonl.gz", "unreadable_file") in where
    kept = [r["id"] for r in sft.kept]
    assert {"a-1", "a-3", "gz-1"} <= set(kept)  # the lines around the bad one, and before the gzip cut
    assert sft.reasons["line_too_large"] == 1 and sft.reasons["empty_file"] == 3


def test_missing_or_invalid_source_yaml_quarantines_the_files_not_the_run(tiny_tokenizer, tmp_path):
    _source(tmp_path, "good", {"d.jsonl": _line(GOOD)})
    _source(tmp_path, "no_yaml", {"d.jsonl": _line(GOOD) * 3, "e.json": json.dumps([GOOD]).encode()}, yaml=None)
    _source(tmp_path, "bad_kind", {"d.jsonl": _line(GOOD)}, yaml=YAML.replace("kind: sft", "kind: chat"))
    _source(tmp_path, "bad_format", {"d.jsonl": _line(GOOD)}, yaml=YAML + "format: csv\n")
    (tmp_path / "raw" / "notes").mkdir()  # a folder with no data files and no source.yaml is not a source
    sft, _ = _validate(tiny_tokenizer, tmp_path)
    assert len(sft.kept) == 1 and sft.kept[0]["source"] == "good"
    by_source = {}
    for q in sft.quarantined:
        by_source.setdefault(q["source"], []).append(q)
    assert sorted((q["origin"]["file"], q["reason"]) for q in by_source["no_yaml"]) == [
        ("raw/no_yaml/d.jsonl", "missing_source_yaml"), ("raw/no_yaml/e.json", "missing_source_yaml")]
    assert by_source["bad_kind"][0]["reason"] == "invalid_source_yaml"
    assert "kind must be 'sft' or 'preference'" in by_source["bad_kind"][0]["detail"]
    assert "format 'csv' is not a sft format" in by_source["bad_format"][0]["detail"]
    assert "notes" not in by_source


def test_declared_format_that_does_not_match_the_records(tiny_tokenizer, tmp_path):
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    _source(tmp_path, "declared_alpaca", {"d.jsonl": _line(chat) + _line({"instruction": "hi", "output": "hello"})},
            yaml=YAML + "format: alpaca\n")
    _source(tmp_path, "undetectable", {"d.jsonl": _line({"text": "just text"}) + _line(["a", "list"])})
    sft, _ = _validate(tiny_tokenizer, tmp_path)
    assert [r["origin"]["line"] for r in sft.kept] == [2]
    reasons = {(q["source"], q["origin"]["line"]): q["reason"] for q in sft.quarantined}
    assert reasons == {("declared_alpaca", 1): "malformed_record", ("undetectable", 1): "unknown_format",
                       ("undetectable", 2): "not_an_object"}
    detail = next(q["detail"] for q in sft.quarantined if q["source"] == "declared_alpaca")
    assert "alpaca" in detail
