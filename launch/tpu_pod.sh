#!/usr/bin/env bash
# Runs one `o3jax` command on every host of a Cloud TPU pod slice, all at once.
#
#   launch/tpu_pod.sh TPU_NAME ZONE sft --config configs/x.py --data /mnt/data --workdir /mnt/runs/sft
#
# Each worker runs `O3JAX_DISTRIBUTED=1 python -m o3jax.cli ...` from the same checkout;
# jax.distributed.initialize() then reads the coordinator, process count and index from
# the TPU metadata. Every worker needs the checkout at the same path with its environment,
# and --data / --workdir on a filesystem all workers mount (see launch/README.md).
#
# Environment:
#   O3JAX_DIR      the checkout on the workers, absolute or relative to the home directory
#                  (default: this checkout's absolute path)
#   O3JAX_PYTHON   their python, absolute or relative to O3JAX_DIR (default: .venv/bin/python)
#   GCLOUD_FLAGS   extra flags for `gcloud compute tpus tpu-vm ssh` (e.g. --project p --internal-ip)
#   DRY_RUN=1      print the gcloud command instead of running it
set -euo pipefail

if [[ $# -lt 3 ]]; then
  sed -n '2,4p' "$0" >&2
  exit 2
fi
tpu=$1
zone=$2
shift 2
dir=${O3JAX_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
python=${O3JAX_PYTHON:-.venv/bin/python}
remote="cd $(printf %q "$dir") && O3JAX_DISTRIBUTED=1 exec $(printf %q "$python") -m o3jax.cli $(printf '%q ' "$@")"
# shellcheck disable=SC2206  # GCLOUD_FLAGS is split into words on purpose
command=(gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all ${GCLOUD_FLAGS:-}
         --command "$remote")
if [[ ${DRY_RUN:-0} == 1 ]]; then
  printf '%q ' "${command[@]}"
  echo
  exit 0
fi
exec "${command[@]}"
