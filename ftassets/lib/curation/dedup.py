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

from ftassets.lib.core.files import sha256_bytes

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


def pair_text(pair: dict) -> str:
    """A preference pair is a duplicate only when prompt AND both replies match: several pairs per
    prompt are normal preference data."""
    return f"{prompt_text(pair)}\nchosen: {pair['chosen']}\nrejected: {pair['rejected']}"


def deduplicate(records: list[dict], threshold: float = 0.9, num_perm: int = 128, ngram: int = 5,
                text_of=conversation_text, protected: frozenset[str] | set[str] = frozenset()):
    """Return (kept, dropped), both in source order. Keep rule: the first record of a cluster in source
    order stays, except that a `protected` record (a frozen test member) is always the one kept, so new
    data can never evict it, whatever its folder's name sorts as. Each dropped record carries `reason`,
    `duplicate_of` (the kept record it is closest to) and the estimated Jaccard `similarity` (1.0 for
    exact duplicates)."""
    kept, dropped = [], []
    seen: dict[str, str] = {}
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = {}
    order = sorted(range(len(records)), key=lambda i: records[i]["id"] not in protected)  # stable
    for index in order:
        record = records[index]
        text = text_of(record)
        key = exact_key(text)
        if key in seen:
            dropped.append((index, {**record, "reason": "exact_duplicate", "duplicate_of": seen[key],
                                    "similarity": 1.0}))
            continue
        mh = minhash(text, num_perm, ngram)
        candidates = sorted((-hashes[c].jaccard(mh), c) for c in lsh.query(mh))
        if candidates and -candidates[0][0] >= threshold:
            similarity, nearest = -candidates[0][0], candidates[0][1]
            dropped.append((index, {**record, "reason": "near_duplicate", "duplicate_of": nearest,
                                    "similarity": round(similarity, 4)}))
            continue
        seen[key] = record["id"]
        lsh.insert(record["id"], mh)
        hashes[record["id"]] = mh
        kept.append((index, record))
    return [r for _, r in sorted(kept, key=lambda x: x[0])], [r for _, r in sorted(dropped, key=lambda x: x[0])]


def cluster_report(dropped: list[dict]) -> list[dict]:
    """One entry per duplicate cluster: the kept id, its size, and every removed id with reason and
    similarity; largest clusters first."""
    clusters: dict[str, list[dict]] = {}
    for d in dropped:
        clusters.setdefault(d["duplicate_of"], []).append(
            {"id": d["id"], "reason": d["reason"], "similarity": d["similarity"]})
    report = [{"kept_id": kept, "size": len(removed) + 1, "removed": removed} for kept, removed in clusters.items()]
    return sorted(report, key=lambda c: (-c["size"], c["kept_id"]))


class ContaminationIndex:
    """Held-out prompts (test set, gold set, benchmarks) that training data must not copy.

    Prompts built from one instruction template share most of their characters: a triage prompt is
    a 230-character instruction line plus a 60-character incident, so two different incidents score
    a Jaccard of ~0.8 on the whole text. Lines that recur in `boilerplate_min_items` or more
    held-out prompts are the template, not the item, and are left out of the near-copy comparison
    (exact copies are still caught on the whole text). A prompt that is nothing but template lines
    is compared whole."""

    def __init__(self, items: list[tuple[str, str]] = (), threshold: float = 0.8, num_perm: int = 128,
                 boilerplate_min_items: int = 3):
        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.hashes: dict[str, MinHash] = {}
        self.exact: dict[str, str] = {}
        counts: dict[str, int] = {}
        for _, text in items:
            for line in {normalize(x) for x in text.splitlines() if normalize(x)}:
                counts[line] = counts.get(line, 0) + 1
        self.boilerplate = {line for line, n in counts.items() if n >= boilerplate_min_items}
        for key, text in items:
            self.add(key, text)

    def content(self, text: str) -> str:
        """The text without its template lines (or the whole text when nothing else is left)."""
        lines = [x for x in text.splitlines() if (norm := normalize(x)) and norm not in self.boilerplate]
        return "\n".join(lines) if lines else text

    def add(self, key: str, text: str) -> None:
        if key in self.hashes:
            return
        mh = minhash(self.content(text), self.num_perm)
        self.lsh.insert(key, mh)
        self.hashes[key] = mh
        self.exact.setdefault(exact_key(text), key)

    def match(self, text: str) -> str | None:
        hit = self.exact.get(exact_key(text))
        if hit:
            return hit
        mh = minhash(self.content(text), self.num_perm)
        hits = [k for k in self.lsh.query(mh) if self.hashes[k].jaccard(mh) >= self.threshold]
        return sorted(hits)[0] if hits else None


def decontaminate(records: list[dict], index: ContaminationIndex, texts_of=lambda r: [prompt_text(r)]):
    """Drop records any of whose texts (e.g. the scrubbed prompt and the original one: scrubbing can
    turn "Earth" into "<LOCATION>" and hide a benchmark copy) matches a held-out item."""
    kept, dropped = [], []
    for record in records:
        hit = next((h for text in texts_of(record) if text and (h := index.match(text))), None)
        if hit:
            dropped.append({**record, "reason": "contaminated", "duplicate_of": hit})
        else:
            kept.append(record)
    return kept, dropped
