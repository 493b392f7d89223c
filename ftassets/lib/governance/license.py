"""Base-model license record and the license policy it is checked against.

The record (`data/governance/base_model.yaml`) is the paper trail for "why may we fine-tune and
ship this model"; the policy says which licenses each intended use allows. Unknown licenses are
never allowed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import load_yaml

RECORD_FIELDS = ("model", "revision", "license", "intended_use", "redistribution",
                 "context_need", "task_fit", "known_risks")


@dataclass(frozen=True)
class BaseModelRecord:
    model: str
    revision: str
    license: str
    intended_use: str
    redistribution: str
    context_need: str
    task_fit: str
    known_risks: tuple[str, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "known_risks": list(self.known_risks)}


def load_base_model_record(path: Path) -> BaseModelRecord:
    data = load_yaml(path)
    missing = [f for f in RECORD_FIELDS if data.get(f) in (None, "", [])]
    if missing:
        raise GovernanceError(f"{path}: missing required field(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(RECORD_FIELDS))
    if unknown:
        raise GovernanceError(f"{path}: unknown field(s): {', '.join(unknown)}")
    risks = data["known_risks"]
    if isinstance(risks, str):
        risks = [risks]
    return BaseModelRecord(
        **{f: str(data[f]).strip() for f in RECORD_FIELDS if f != "known_risks"},
        known_risks=tuple(str(r) for r in risks),
    )


def load_license_policy(path: Path) -> dict[str, set[str]]:
    data = load_yaml(path)
    allowed = data.get("allowed")
    if not isinstance(allowed, dict) or not allowed:
        raise GovernanceError(f"{path}: expected `allowed: {{<intended_use>: [<license>, ...]}}`")
    return {str(use).lower(): {str(lic).lower() for lic in lics or []} for use, lics in allowed.items()}


def license_decision(record: BaseModelRecord, policy: dict[str, set[str]]) -> tuple[bool, str]:
    """(allowed, reason) for the record's license under the policy."""
    use, lic = record.intended_use.lower(), record.license.lower()
    if use not in policy:
        return False, f"intended_use '{record.intended_use}' has no entry in the license policy"
    if lic not in policy[use]:
        return False, (f"license '{record.license}' is not allowed for intended_use "
                       f"'{record.intended_use}' (allowed: {', '.join(sorted(policy[use]))})")
    return True, f"license '{record.license}' is allowed for intended_use '{record.intended_use}'"


def load_training_data_licenses(path: Path) -> set[str]:
    data = load_yaml(path)
    licenses = data.get("training_data")
    if not isinstance(licenses, list) or not licenses:
        raise GovernanceError(f"{path}: expected `training_data: [<license>, ...]`")
    return {str(x).lower() for x in licenses}
