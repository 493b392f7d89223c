"""Curation assets: raw sources to the train/validation splits and the held-out sets."""
