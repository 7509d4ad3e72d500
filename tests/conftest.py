"""Shared pytest fixtures. Run the suite: python -m pytest -q tests/"""

import os
from pathlib import Path

import pytest

# Hermetic: nothing in the suite may reach a hub or send analytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REAL_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``../shared/data/real`` relative to the repo root; skips the test when that folder is absent."""
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real data folder {REAL_DATA_DIR} is absent (public recordings, not in the repo)")
    return REAL_DATA_DIR
