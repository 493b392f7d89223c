"""User-style metric functions for the `python` metric kind's tests (imported by name, as a team's
package would be)."""

import time


def sleepy(prediction: str, reference: str) -> bool:
    """Sleeps as many seconds as the prediction says: a metric that takes too long."""
    time.sleep(float(prediction))
    return True


def text_result(prediction: str, reference: str):
    return "yes"
