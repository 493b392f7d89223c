"""User-style metric functions for the `python` metric kind's tests (imported by name, as a team's
package would be)."""

import time


def sleepy(prediction: str, reference: str) -> bool:
    """Sleeps as many seconds as the prediction says: a metric that takes too long."""
    time.sleep(float(prediction))
    return True


def text_result(prediction: str, reference: str):
    return "yes"


SCRIPT = {"calls": 0, "per_eval": 1, "curve": []}


def scripted(prediction: str, reference: str) -> bool:
    """Passes or fails every reply of the n-th evaluation as `SCRIPT["curve"][n]` says (a test sets
    it): a task metric whose curve over checkpoints is known in advance."""
    evaluation = SCRIPT["calls"] // SCRIPT["per_eval"]
    SCRIPT["calls"] += 1
    curve = SCRIPT["curve"]
    return bool(curve[min(evaluation, len(curve) - 1)])


def swallowing(prediction: str, reference: str) -> bool:
    """Sleeps like `sleepy` but catches every Exception around it, as careless user code does."""
    try:
        time.sleep(float(prediction))
    except Exception:  # noqa: BLE001 - the point of this function
        pass
    return True
