"""Shared by the benchmark scripts: print the one-line summary and, on request, append it to
benchmarks/RESULTS.md with the command that produced it (newest last)."""

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def report(summary: str, command: str, append: bool) -> None:
    print(summary)
    if append:
        with open(RESULTS, "a") as fh:
            fh.write(f"{summary}  \n`{command}`\n")
