"""What the UI's catalog shows beside each asset: owners (governance/owners.yaml, per group) and tags a
reviewer filters on: the stage, whether the data may hold raw PII, and how it relates to training."""

import dagster as dg

from ftassets.lib.governance.owners import load_owners

# raw: read as written (PII not yet scrubbed); scrubbed: after the Presidio scrub; none: no record text
PII = {"raw_sources": "raw", "validated_examples": "raw", "scrubbed_examples": "scrubbed",
       "deduplicated_examples": "scrubbed", "frozen_test_set": "scrubbed", "gold_set": "scrubbed",
       "redteam_set": "scrubbed", "data_splits": "scrubbed", "preference_pairs": "scrubbed",
       "blind_review_packet": "scrubbed"}
# trains: what training reads; held-out: what it must never see (decontaminated against); trained: the models
TRAINING = {"data_splits": "trains", "preference_pairs": "trains", "frozen_test_set": "held-out",
            "gold_set": "held-out", "redteam_set": "held-out", "sft_adapter": "trained", "dpo_adapter": "trained",
            "merged_model": "trained", "sft_trial": "trained"}


def tags_for(key: str, group: str, training_policy: str) -> dict[str, str]:
    tags = {"ftassets/stage": group, "ftassets/pii": PII.get(key, "none")}
    if key in TRAINING:
        tags["ftassets/training"] = TRAINING[key]
    if key == "sft_adapter":
        tags["ftassets/training_policy"] = training_policy  # manual, cron or eager (FTASSETS_TRAINING_POLICY)
    return tags


def with_labels(assets: list, data_dir, training_policy: str) -> list:
    """The assets with owners (by group, from the data folder's owners file) and tags merged in."""
    owners = load_owners(data_dir)
    out = []
    for item in assets:
        if isinstance(item, dg.AssetsDefinition) and not item.is_observable:
            item = item.map_asset_specs(lambda spec: spec.merge_attributes(
                tags=tags_for(spec.key.to_user_string(), spec.group_name or "default", training_policy),
                owners=list(owners.get(spec.group_name, ()))))
        out.append(item)
    return out
