"""Sharded over 8 host CPU devices (data=2, fsdp=2, tensor=2) equals one device: the forward,
and the sampler's tokens."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
  "script,says",
  [("sharded_forward_main.py", "max_abs_err="), ("sharded_sample_main.py", "tokens_equal=True")],
)
def test_sharded_equals_single_device(script, says):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  path = os.path.join(os.path.dirname(__file__), script)
  proc = subprocess.run(
    [sys.executable, path], env=env, capture_output=True, text=True, timeout=900
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert says in proc.stdout
