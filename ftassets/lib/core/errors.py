"""Errors every stage raises: a bad input file or setting, with where it is and why."""


class GovernanceError(ValueError):
    """A governance file is missing, malformed, or fails its policy."""
