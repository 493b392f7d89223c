"""Who answers for each stage: `governance/owners.yaml` (optional) names owners per asset group, shown
as the asset owners in the Dagster UI. Dagster accepts an e-mail address or `team:<name>`."""

from __future__ import annotations

import re
from pathlib import Path

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import load_yaml

OWNERS_FILE = "governance/owners.yaml"
GROUPS = ("governance", "curation", "training", "sweep", "evaluation", "release")
# the shapes Dagster's AssetSpec accepts for an owner (its is_valid_email, or a team: prefix)
OWNER = re.compile(r"team:\S+|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}")


def load_owners(data_dir: Path) -> dict[str, tuple[str, ...]]:
    """{group: owners} for every group (`default` fills the ones not named); {} when the file is absent."""
    path = Path(data_dir) / OWNERS_FILE
    if not path.is_file():
        return {}
    data = load_yaml(path)  # a mapping, or a located error
    unknown = sorted(set(data) - {"default", *GROUPS})
    if unknown:
        raise GovernanceError(f"{path}: unknown key(s) {', '.join(map(str, unknown))} (use default or one of "
                              f"{', '.join(GROUPS)})")
    out = {}
    for key, owners in data.items():
        owners = [owners] if isinstance(owners, str) else owners
        if not isinstance(owners, list) or not owners:
            raise GovernanceError(f"{path}: {key}: expected a list of owners")
        bad = [str(o) for o in owners if not isinstance(o, str) or not OWNER.fullmatch(o)]
        if bad:
            raise GovernanceError(f"{path}: {key}: {', '.join(bad)}: an owner is an e-mail address or team:<name>")
        out[key] = tuple(owners)
    default = out.pop("default", ())
    return {group: out.get(group, default) for group in GROUPS if out.get(group, default)}
