"""`evaluate` metric modules shipped with psgvlm, loaded by local path (never from the hub)."""

from pathlib import Path

SLEEP_STAGING_PATH = Path(__file__).resolve().parent / "sleep_staging"


def load_sleep_staging():
    """The ``sleep_staging`` evaluate module, loaded from this folder."""
    import evaluate

    return evaluate.load(str(SLEEP_STAGING_PATH))
