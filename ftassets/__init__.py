"""ftassets: the LLM fine-tuning operating loop as a governed Dagster asset graph."""

__version__ = "0.1.0"
