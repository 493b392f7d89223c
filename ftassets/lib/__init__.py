"""Plain-Python core of ftassets: no Dagster imports here, so every piece is testable alone."""
