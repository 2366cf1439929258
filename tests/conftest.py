"""Shared test fixtures: tiny data, the repo's paths."""

import atexit
import os
import pathlib
import shutil
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_DATA = pathlib.Path(
    os.environ.get('BASS_DATA_DIR', REPO.parent / 'shared' / 'data'))

# One fresh JAX compilation cache for the whole session (subprocesses
# inherit it): runs of the same tiny configs compile once, and no test
# reads or fills the user's ~/.cache/bass_jax (config.compilation_cache
# 'auto' keeps a folder JAX was given).
_CACHE = tempfile.mkdtemp(prefix='bass_jax_test_xla_cache_')
os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
