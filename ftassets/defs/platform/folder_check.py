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
