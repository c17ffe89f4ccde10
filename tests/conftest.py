"""Shared fixtures: one small synthetic grounded-video dataset per test session.

A persistent compilation cache, shared with the subprocesses the tests start (they
inherit the environment), spares recompiling the same tiny-model programs in each.
"""

import os
import tempfile

os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "o3jax_test_jax_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
  from o3jax.data.synth import synthesize

  out = tmp_path_factory.mktemp("synthetic")
  synthesize(str(out), videos=4, seed=0, progress=False)
  return str(out)
