"""`ftassets check [DIR]`: every governance and eval file and every `source.yaml` of a data folder,
read with the same loaders the assets use, without a Dagster run. Each problem names its file (and
key or line); one broken file never hides the others' problems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ftassets.lib.core.errors import GovernanceError


@dataclass
class Finding:
    file: str
    ok: bool
    message: str


def _run(findings: list[Finding], file: Path, check: Callable[[], str]) -> None:
    try:
        findings.append(Finding(str(file), True, check()))
    except Exception as exc:  # any loader's error is this file's problem, and the check goes on
        message = str(exc) if isinstance(exc, (GovernanceError, ValueError)) else f"{type(exc).__name__}: {exc}"
        findings.append(Finding(str(file), False, message.removeprefix(f"{file}: ")))


def check_folder(data_dir: Path) -> list[Finding]:
    from ftassets.defs.curation.settings import load_curation_settings
    from ftassets.defs.platform.sensors import RUN_CONFIG_FILE
    from ftassets.lib.core.contract import load_contract
    from ftassets.lib.curation import formats, frozen
    from ftassets.lib.curation.eval_files import load_gold_items, load_redteam_items
    from ftassets.lib.governance import license as gov
    from ftassets.lib.governance.owners import OWNERS_FILE, load_owners
    from ftassets.lib.training.sweep import SWEEP_FILE, load_plan

    data_dir = Path(data_dir)
    out: list[Finding] = []
    holder = {}

    def curation() -> str:
        holder["curation"] = settings = load_curation_settings(data_dir)
        return f"curation settings (max_tokens {settings.max_tokens}, split seed {settings.split.seed})"

    _run(out, data_dir / "governance/curation.yaml", curation)
    settings = holder.get("curation")
    if settings is None:
        from ftassets.defs.curation.settings import CurationSettings

        settings = CurationSettings(settings_file=str(data_dir / "governance/missing.yaml"))  # defaults

    def base_model() -> str:
        record = gov.load_base_model_record(data_dir / "governance/base_model.yaml")
        allowed, why = gov.license_decision(record, gov.load_license_policy(data_dir / settings.policy_file))
        if not allowed:
            raise GovernanceError(f"the license gate would block: {why}")
        return f"{record.model}: {why}"

    _run(out, data_dir / "governance/base_model.yaml", base_model)
    _run(out, data_dir / settings.policy_file,
         lambda: f"{len(gov.load_training_data_licenses(data_dir / settings.policy_file))} training-data licenses")

    def contract() -> str:
        loaded = load_contract(data_dir / "governance/eval_contract.yaml", data_dir)
        return f"version {loaded.version}, tasks {', '.join(sorted(loaded.tasks))}"

    _run(out, data_dir / "governance/eval_contract.yaml", contract)
    _run(out, data_dir / settings.gold_file, lambda: f"{len(load_gold_items(data_dir / settings.gold_file))} items")
    _run(out, data_dir / settings.redteam_file,
         lambda: f"{len(load_redteam_items(data_dir / settings.redteam_file))} prompts")
    lock = data_dir / settings.split.lock_file
    if lock.is_file():
        _run(out, lock, lambda: f"{len(frozen.load_lock(lock)['ids'])} frozen test members")
    if (data_dir / OWNERS_FILE).is_file():
        _run(out, data_dir / OWNERS_FILE, lambda: f"owners for {', '.join(load_owners(data_dir)) or 'no group'}")
    if (data_dir / SWEEP_FILE).is_file():
        _run(out, data_dir / SWEEP_FILE, lambda: f"{len(load_plan(data_dir).trials())} trials")
    if (data_dir / RUN_CONFIG_FILE).is_file():
        _run(out, data_dir / RUN_CONFIG_FILE, lambda: _check_run_config(data_dir / RUN_CONFIG_FILE))
    raw = data_dir / settings.raw_dir
    if not raw.is_dir():
        out.append(Finding(str(raw), False, "no raw/ folder of sources"))
    sources = formats.discover_sources(raw) if raw.is_dir() else []
    if raw.is_dir() and not sources:
        out.append(Finding(str(raw), False, "no sources yet: add a folder with a source.yaml and data files"))
    for source in sources:
        where = source.folder / "source.yaml"
        if source.problem:
            out.append(Finding(str(where), False, f"{source.problem[0]}: {source.problem[1]}".replace(f"{where}: ", "")))
        else:
            out.append(Finding(str(where), True, f"{source.kind}, license {source.license}, {len(source.files)} file(s)"))
    return out


def _check_run_config(path: Path) -> str:
    """A run config's training settings build (the same typed settings the assets take)."""
    from ftassets.lib.training.settings import DpoSettings, SftSettings

    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    ops = config.get("ops") or {}
    for op, settings in (("sft_adapter", SftSettings), ("dpo_adapter", DpoSettings)):
        if op in ops:
            try:
                settings(**(ops[op].get("config") or {}))
            except ValueError as exc:
                raise GovernanceError(f"ops.{op}.config.{exc}") from None
    return f"settings for {', '.join(sorted(ops)) or 'no asset'}"


def add_source(data_dir: Path, path: Path, name: str, license: str, kind: str, task: str, provenance: str,
               reviewed_by: str) -> dict:
    """Copy a data file (or a folder's data files) into `raw/<name>/`, write its `source.yaml`, and validate
    it as curation will (a dry run: nothing is curated). A license the policy refuses for training data
    is refused before anything is written, naming the policy's line. Returns the report."""
    import shutil
    import statistics

    from ftassets.defs.curation.settings import load_curation_settings
    from ftassets.lib.core.models import count_chat_tokens
    from ftassets.lib.curation import formats
    from ftassets.lib.curation.validation import validate_sources
    from ftassets.lib.governance.license import load_training_data_licenses

    data_dir, path = Path(data_dir), Path(path)
    settings = load_curation_settings(data_dir)
    policy = data_dir / settings.policy_file
    allowed = load_training_data_licenses(policy)
    if license.lower() not in allowed:
        line = next((n for n, text in enumerate(policy.read_text(encoding="utf-8").splitlines(), start=1)
                     if text.startswith("training_data")), 0)
        raise GovernanceError(f"license {license!r} is not allowed for training data by {policy}:{line} "
                              f"(training_data: {', '.join(sorted(allowed))}); nothing was added")
    if not formats.valid_source_name(name) or "/" in name or name.startswith("."):
        raise GovernanceError(f"--name {name!r}: a source name is one printable folder name, no '/', '...' or "
                              f"leading dot")
    folder = data_dir / settings.raw_dir / name
    if folder.exists():
        raise GovernanceError(f"{folder} exists: choose another --name (nothing was added)")
    files = [path] if path.is_file() else formats.data_files(path) if path.is_dir() else []
    if not files:
        raise GovernanceError(f"{path}: no .jsonl / .json (.gz) data file to add")
    folder.mkdir(parents=True)
    for file in files:
        shutil.copy2(file, folder / file.name)
    spec = {"license": license.lower(), "provenance": provenance, "kind": kind, "reviewed_by": reviewed_by,
            **({"task": task} if task else {})}
    (folder / "source.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    tokenizer, counted_with = _tokenizer(data_dir)
    source = formats.load_source(folder)
    sft, pref = validate_sources([source], lambda m: count_chat_tokens(tokenizer, m), settings.max_tokens, allowed)
    result = sft if kind == "sft" else pref
    kept = result.kept
    tokens = [count_chat_tokens(tokenizer, r["messages"] + ([{"role": "assistant", "content": r["chosen"]}]
                                                            if kind == "preference" else [])) for r in kept]
    detected = {}
    for file in files:
        for _, item, reason in formats.iter_raw_items(folder / file.name):
            if reason is None:
                fmt = source.format or formats.detect_format(item) or "unknown"
                detected[fmt] = detected.get(fmt, 0) + 1
    return {"folder": str(folder), "files": [f.name for f in files], "formats": detected, "kept": len(kept),
            "quarantined": len(result.quarantined), "reasons": result.reasons,
            "first_quarantined": [f"{q['origin']['file']}:{q['origin']['line']} {q['reason']}"
                                  + (f" ({q['detail']})" if q.get("detail") else "") for q in result.quarantined[:5]],
            "tokens": {"min": min(tokens), "median": int(statistics.median(tokens)), "max": max(tokens)}
            if tokens else None, "counted_with": counted_with, "max_tokens": settings.max_tokens}


def _tokenizer(data_dir: Path):
    """The tokenizer curation will count with: the base model snapshot if one was materialized, else the
    embedded base model's (read from its GGUF file, no download)."""
    from ftassets.lib.core.models import embedded_gguf_path, load_tokenizer

    snapshot = data_dir / "artifacts" / "base_model"
    if (snapshot / "tokenizer_config.json").is_file():
        return load_tokenizer(snapshot), str(snapshot)
    from transformers import AutoTokenizer

    gguf = embedded_gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name), "the embedded base model"
