"""The whole tree is formatted by one formatter (ruff format, settings in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_tree_is_formatted():
  ruff = shutil.which("ruff")
  cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
  proc = subprocess.run(
    cmd + ["format", "--check", "--diff", str(ROOT)], capture_output=True, text=True, cwd=ROOT
  )
  assert proc.returncode == 0, "run `ruff format .`:\n" + proc.stdout[-4000:] + proc.stderr[-2000:]
