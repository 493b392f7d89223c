"""Ids, folder and file names and reviewers that hold PII become stable hashes; ordinary ones stay."""

import pytest

from ftassets.lib.curation.identifiers import PREFIX, safe, safe_path


@pytest.mark.parametrize("value", ["sc-0010", "support_chat", "general_replay", "copy-1", "alpaca_demo",
                                   "data-team", "test", "grant_access", "rec-2024-01", "2f1c9a"])
def test_ordinary_identifiers_are_kept(value):
    assert safe(value) == value


@pytest.mark.parametrize("value", ["ticket-anna.schmidt@example.org", "maria_garcia_dump", "olga_petrenko_exports",
                                   "Bartholomew Kowalczyk", "calls_555-867-5309", "192.168.10.4",
                                   "DE89370400440532013000", "customer-4111111111111111", "alice-0001"])
def test_identifiers_holding_pii_become_stable_hashes(value):
    hashed = safe(value)
    assert hashed.startswith(PREFIX) and hashed == safe(value) and value not in hashed
    assert safe(hashed) == hashed  # a hash is never hashed again


def test_paths_keep_their_structure_and_suffixes():
    assert safe_path("raw/support_chat/examples.jsonl") == "raw/support_chat/examples.jsonl"
    path = safe_path("raw/maria_garcia_dump/calls_555-867-5309.meta.jsonl")
    assert path.startswith("raw/" + PREFIX) and path.endswith(".meta.jsonl") and "garcia" not in path
    assert "5309" not in path
