"""The forward sharded over 8 host CPU devices (data=2, fsdp=2, tensor=2) matches one device."""

import os
import subprocess
import sys


def test_sharded_forward_matches_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  script = os.path.join(os.path.dirname(__file__), "sharded_forward_main.py")
  proc = subprocess.run(
    [sys.executable, script], env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "max_abs_err=" in proc.stdout
