import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports vision_core: runs saved from the app (checkpoints/runs/) stay out of the tests, which see
# the shipped models only; tests that save runs write here or into their own tmp_path.
os.environ["VISION_EXPLORER_RUNS_DIR"] = tempfile.mkdtemp(prefix="vision-explorer-test-runs-")

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["browser_fixtures"]  # browser and page, for the browser tests


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
