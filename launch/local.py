"""Starts N processes of one command on this machine, wired up as a multi-host job.

Each process gets O3JAX_COORDINATOR=127.0.0.1:<free port>, O3JAX_NUM_PROCESSES=N and its
O3JAX_PROCESS_ID, which `o3jax.distributed.initialize_from_env` turns into
`jax.distributed.initialize`. For trying multi-process runs on one CPU machine (each
process has one CPU device; collectives go over the loopback with gloo) and for tests.

  python launch/local.py -n 2 -- o3jax sft --config configs/x.py --data D --workdir W

The processes share stdout and stderr. When one fails the others are stopped (they would
otherwise wait in a collective forever) and its exit status is returned.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(command: list[str], processes: int, port: int | None = None) -> int:
  port = port or free_port()
  procs = []
  for index in range(processes):
    env = dict(
      os.environ,
      O3JAX_COORDINATOR=f"127.0.0.1:{port}",
      O3JAX_NUM_PROCESSES=str(processes),
      O3JAX_PROCESS_ID=str(index),
    )
    procs.append(subprocess.Popen(command, env=env))
  try:
    while True:
      codes = [p.poll() for p in procs]
      failed = [c for c in codes if c not in (None, 0)]
      if failed:
        for p in procs:
          if p.poll() is None:
            p.terminate()
        for p in procs:
          p.wait()
        return failed[0]
      if all(c == 0 for c in codes):
        return 0
      time.sleep(0.1)
  except KeyboardInterrupt:
    for p in procs:
      p.terminate()
    raise


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("-n", "--processes", type=int, default=2)
  parser.add_argument(
    "--port", type=int, default=None, help="coordinator port (default: a free one)"
  )
  parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("no command given")
  if args.processes < 1:
    parser.error("--processes must be >= 1")
  return launch(command, args.processes, args.port)


if __name__ == "__main__":
  sys.exit(main())
