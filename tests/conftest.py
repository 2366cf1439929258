"""Shared test fixtures: tiny data, the repo's paths."""

import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_DATA = pathlib.Path(
    os.environ.get('BASS_DATA_DIR', REPO.parent / 'shared' / 'data'))
