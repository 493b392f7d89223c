"""Hostile or broken input is bounded and located (issue 21, item 5): every read is capped before it
is parsed, every problem is a quarantine entry for that one file or line with its reason, the other
records and sources go on, and what was read always equals what was kept plus what was quarantined."""

import gzip
import json
import os
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftassets.lib.core.models import count_chat_tokens
from ftassets.lib.curation import formats, reading
from ftassets.lib.curation.validation import validate_sources

GOOD = {"prompt": "What port does the metrics agent use?", "response": "Port 9102."}
YAML = "license: cc-by-4.0\nprovenance: test fixture\nkind: sft\n"


def _line(item) -> bytes:
    return json.dumps(item).encode() + b"\n"


def _source(root, name, files, yaml=YAML):
    folder = root / "raw" / name
    folder.mkdir(parents=True)
    if yaml is not None:
        (folder / "source.yaml").write_bytes(yaml.encode() if isinstance(yaml, str) else yaml)
    for file_name, body in files.items():
        (folder / file_name).write_bytes(body)
    return folder


def _validate(tokenizer, root):
    sources = formats.discover_sources(root / "raw")
    sft, pref = validate_sources(sources, lambda m: count_chat_tokens(tokenizer, m), 1024, {"cc-by-4.0"})
    raw = sorted((o[0], o[1]) for s in sources for o in formats.raw_origins(s))
    seen = sorted((r["origin"]["file"], r["origin"]["line"]) for r in sft.kept + sft.quarantined + pref.kept
                  + pref.quarantined)
    assert raw == seen  # the count that validated_examples_conserved checks: nothing lost, nothing twice
    return sft


def _reasons(sft) -> dict[tuple[str, int], str]:
    return {(q["origin"]["file"].split("/", 1)[-1], q["origin"]["line"]): q["reason"] for q in sft.quarantined}


def test_compressed_bomb_is_read_within_bounded_memory(tmp_path):
    """200 MB of one newline-free line in a 200 KB gzip: rejected after reading 1 MiB of it at a time."""
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(_line(GOOD))
        for _ in range(200):
            fh.write(b"7" * (1 << 20))
        fh.write(b"\n" + _line(GOOD))
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        items = list(reading.iter_raw_items(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(line, reason) for line, _, reason in items] == [(1, None), (2, "line_too_large"), (3, None)]
    assert peak < 16 << 20, f"peak {peak >> 20} MiB while reading a 200 MB line"


def test_file_byte_limit_quarantines_the_unread_rest(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_bytes(_line(GOOD) * 1000)
    items = list(reading.iter_raw_items(path, max_file_bytes=100 * len(_line(GOOD)) + 10))
    assert [r for _, _, r in items[:100]] == [None] * 100
    assert items[100:] == [(101, None, "file_too_large")]


def test_json_file_is_capped_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "MAX_JSON_FILE_BYTES", 1 << 20)
    path = tmp_path / "big.json.gz"
    path.write_bytes(gzip.compress(b"[" + b"1," * (1 << 20) + b"1]"))
    assert list(reading.iter_raw_items(path)) == [(1, None, "json_file_too_large")]


@pytest.mark.parametrize("raw, reason", [
    (b"[" * 200_000 + b"]" * 200_000, "too_deeply_nested"),  # past the interpreter's recursion limit
    (json.dumps({"messages": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}).encode(),
     "too_deeply_nested"),
    (b'{"prompt": "a", "prompt": "b", "response": "c"}', "duplicate_key"),
    (b'{"prompt": "a", "response": "c", "score": NaN}', "non_finite_number"),
    (b'{"prompt": "a", "response": "c", "score": -Infinity}', "non_finite_number"),
    (b'{"prompt": "a", "response": "c", "score": 1e999}', "non_finite_number"),
    (b'{"prompt": "a", "response": "c", "n": ' + b"9" * 5000 + b"}", "invalid_json"),
    (b'{"prompt": "\xff"}', "invalid_utf8"),
])
def test_json_that_cannot_be_trusted_gets_its_own_reason(raw, reason):
    assert reading.parse_json(raw) == (None, reason)


def test_a_byte_order_mark_is_read_as_utf8(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(reading.BOM + _line(GOOD) + _line(GOOD))
    (tmp_path / "b.json").write_bytes(reading.BOM + json.dumps([GOOD]).encode())
    assert [r for _, _, r in reading.iter_raw_items(tmp_path / "a.jsonl")] == [None, None]
    assert list(reading.iter_raw_items(tmp_path / "b.json")) == [(1, GOOD, None)]


def test_hostile_source_yaml_and_names_quarantine_that_source_only(tiny_tokenizer, tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    _source(tmp_path, "good", {"d.jsonl": _line(GOOD)})
    _source(tmp_path, "aliases", {"d.jsonl": _line(GOOD)}, yaml=YAML + laughs)
    _source(tmp_path, "huge_yaml", {"d.jsonl": _line(GOOD)}, yaml=YAML + "# " + "x" * (100 << 10) + "\n")
    _source(tmp_path, "list_field", {"d.jsonl": _line(GOOD)}, yaml=YAML.replace("cc-by-4.0", "[cc-by-4.0, mit]"))
    _source(tmp_path, "latin1_yaml", {"d.jsonl": _line(GOOD)}, yaml=YAML.encode() + b"provenance: caf\xe9\n")
    _source(tmp_path, "dots...name", {"d.jsonl": _line(GOOD)})
    sft = _validate(tiny_tokenizer, tmp_path)
    assert [r["source"] for r in sft.kept] == ["good"]
    details = {q["source"]: (q["reason"], q["detail"]) for q in sft.quarantined}
    assert details["aliases"][0] == "invalid_source_yaml" and "aliases" in details["aliases"][1]
    assert "larger than 65536 bytes" in details["huge_yaml"][1]
    assert "license must be a single value" in details["list_field"][1]
    assert "not valid UTF-8" in details["latin1_yaml"][1]
    assert details["dots...name"][0] == "invalid_source_name"
    assert set(formats.source_versions(tmp_path / "raw")) == {"good", "aliases", "huge_yaml", "list_field",
                                                              "latin1_yaml"}  # partition keys Dagster accepts


def test_paths_outside_the_data_folder_are_not_followed(tiny_tokenizer, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(_line({**GOOD, "id": "outside-1"}))
    (outside / "source.yaml").write_text(YAML)
    folder = _source(tmp_path / "data", "mixed", {"d.jsonl": _line({**GOOD, "id": "inside-1"})})
    os.symlink(outside / "secret.jsonl", folder / "linked.jsonl")
    os.symlink(outside, tmp_path / "data" / "raw" / "linked_source")
    sft = _validate(tiny_tokenizer, tmp_path / "data")
    assert [r["id"] for r in sft.kept] == ["inside-1"]
    assert _reasons(sft) == {("mixed/linked.jsonl", 0): "outside_data_dir",
                             ("linked_source/secret.jsonl", 0): "outside_data_dir"}
    assert set(formats.source_versions(tmp_path / "data" / "raw")) == {"mixed"}


def test_records_and_sidecars_of_unexpected_shapes_are_quarantined(tiny_tokenizer, tmp_path):
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    _source(tmp_path, "shapes", {"d.jsonl": b"".join(_line(x) for x in [
        {**chat, "id": "ok-1"},
        {"messages": [{"role": ["user"], "content": "hi"}, {"role": "assistant", "content": "x"}]},
        {**chat, "id": {"nested": "id"}},
        {**chat, "id": "task-list", "task": ["a", "b"]},
        {"conversations": [{"from": {"x": 1}, "value": "hi"}]},
    ])})
    _source(tmp_path, "bad_sidecar", {"d.jsonl": _line(chat) * 2, "d.meta.jsonl": _line({"id": "x"}) + b"[1]\n"})
    sft = _validate(tiny_tokenizer, tmp_path)
    assert [r["id"] for r in sft.kept] == ["ok-1"]
    assert _reasons(sft) == {("shapes/d.jsonl", 2): "malformed_message", ("shapes/d.jsonl", 3): "malformed_record",
                             ("shapes/d.jsonl", 4): "malformed_record", ("shapes/d.jsonl", 5): "malformed_message",
                             ("bad_sidecar/d.jsonl", 0): "invalid_sidecar"}
    assert next(q["detail"] for q in sft.quarantined if q["reason"] == "invalid_sidecar") == \
        "d.meta.jsonl:2: not_an_object"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=20)
RECORD = st.fixed_dictionaries({}, optional={
    "id": JSON, "task": JSON, "prompt": JSON, "response": JSON, "instruction": JSON, "output": JSON,
    "messages": st.lists(st.fixed_dictionaries({}, optional={"role": JSON, "content": JSON}), max_size=3) | JSON,
    "conversations": st.lists(st.fixed_dictionaries({}, optional={"from": JSON, "value": JSON}), max_size=3),
    "chosen": JSON, "rejected": JSON})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=60) | RECORD.map(lambda r: json.dumps(r).encode()), max_size=8),
       kind=st.sampled_from(["sft", "preference"]))
def test_random_bytes_and_records_never_crash_and_always_add_up(tiny_tokenizer, tmp_path_factory, lines, kind):
    root = tmp_path_factory.mktemp("fuzz")
    body = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    _source(root, "fuzz", {"d.jsonl": body, "e.json.gz": gzip.compress(body)},
            yaml=YAML.replace("kind: sft", f"kind: {kind}"))
    _validate(tiny_tokenizer, root)
