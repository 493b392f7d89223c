"""Exact and near-duplicate removal, and decontamination against held-out text.

Exact duplicates: sha256 of the normalized conversation. Near duplicates: MinHash over character
5-grams with an LSH index (datasketch); the first record of a cluster is kept and every dropped
record names the record it duplicates. Decontamination uses the same machinery to drop training
records that are near copies of test, gold or benchmark prompts.
"""

from __future__ import annotations

import re
import unicodedata

from datasketch import MinHash, MinHashLSH

from ftassets.lib.files import sha256_bytes

_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s<>]")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def conversation_text(record: dict) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in record["messages"] if m["role"] != "system")


def prompt_text(record: dict) -> str:
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")


def exact_key(text: str) -> str:
    return sha256_bytes(normalize(text).encode())


def minhash(text: str, num_perm: int = 128, ngram: int = 5) -> MinHash:
    norm = normalize(text)
    grams = {norm[i:i + ngram] for i in range(max(1, len(norm) - ngram + 1))}
    mh = MinHash(num_perm=num_perm, seed=1)
    mh.update_batch([g.encode() for g in grams])
    return mh


def deduplicate(records: list[dict], threshold: float = 0.9, num_perm: int = 128):
    """Return (kept, dropped); each dropped record carries `reason` and `duplicate_of`."""
    kept, dropped = [], []
    seen: dict[str, str] = {}
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = {}
    for record in records:
        text = conversation_text(record)
        key = exact_key(text)
        if key in seen:
            dropped.append({**record, "reason": "exact_duplicate", "duplicate_of": seen[key]})
            continue
        mh = minhash(text, num_perm)
        candidates = [c for c in lsh.query(mh) if hashes[c].jaccard(mh) >= threshold]
        if candidates:
            dropped.append({**record, "reason": "near_duplicate", "duplicate_of": sorted(candidates)[0]})
            continue
        seen[key] = record["id"]
        lsh.insert(record["id"], mh)
        hashes[record["id"]] = mh
        kept.append(record)
    return kept, dropped


class ContaminationIndex:
    """Held-out prompts (test set, gold set, benchmarks) that training data must not copy."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.hashes: dict[str, MinHash] = {}
        self.exact: dict[str, str] = {}

    def add(self, key: str, text: str) -> None:
        if key in self.hashes:
            return
        mh = minhash(text, self.num_perm)
        self.lsh.insert(key, mh)
        self.hashes[key] = mh
        self.exact.setdefault(exact_key(text), key)

    def match(self, text: str) -> str | None:
        hit = self.exact.get(exact_key(text))
        if hit:
            return hit
        mh = minhash(text, self.num_perm)
        hits = [k for k in self.lsh.query(mh) if self.hashes[k].jaccard(mh) >= self.threshold]
        return sorted(hits)[0] if hits else None


def decontaminate(records: list[dict], index: ContaminationIndex):
    kept, dropped = [], []
    for record in records:
        hit = index.match(prompt_text(record))
        if hit:
            dropped.append({**record, "reason": "contaminated", "duplicate_of": hit})
        else:
            kept.append(record)
    return kept, dropped
