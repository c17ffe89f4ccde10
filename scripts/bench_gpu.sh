#!/usr/bin/env bash
# Every GPU figure of issue 20 in one device call (an H200: well under 8 minutes).
#   bash scripts/bench_gpu.sh            # JSON under $OUT (default ./bench_out), table last
#   SMOKE=1 bash scripts/bench_gpu.sh    # tiny sizes on any backend: the script end to end
# Needs: jax (CUDA), flax, optax, numpy; the repo root on PYTHONPATH (set here).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/bench_out}"
mkdir -p "$OUT"
PEAK=989  # H200 bf16 dense TFLOP/s
if [ -n "${SMOKE:-}" ]; then
  MFU_ARGS=(--preset tiny --batch 2 --images 2 --steps 2)
  SEQS=(128 256)
  PARTS=(--smoke)
else
  MFU_ARGS=(--slice7b --layers 4 --steps 5)
  SEQS=(4096 16384)
  PARTS=()
fi
for seq in "${SEQS[@]}"; do
  batch=$(( seq >= 16384 ? 1 : 4 ))
  [ -n "${SMOKE:-}" ] && batch=2
  timeout 240 python scripts/bench_train.py "${MFU_ARGS[@]}" --seq "$seq" --batch "$batch" \
    --peak-tflops "$PEAK" --out "$OUT/mfu_$seq.json" > "$OUT/mfu_$seq.log" 2>&1 \
    || echo "bench_train seq=$seq failed: see $OUT/mfu_$seq.log"
done
timeout 300 python scripts/bench_gpu.py "${PARTS[@]}" --out "$OUT" > "$OUT/parts.log" 2>&1 \
  || echo "bench_gpu.py failed: see $OUT/parts.log"
python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print("\n== issue 20 figures ==")
for name in sorted(f for f in os.listdir(out) if f.startswith("mfu_") and f.endswith(".json")):
  r = json.load(open(os.path.join(out, name)))
  print(f"MFU {r['config']} L={r['text_layers']} B={r['batch']} T={r['seq']} "
        f"video tokens/row={r['video_tokens_per_row']}: {100 * r.get('mfu', 0):.1f}% "
        f"(step {r['step_s_median']:.3f} s, {r['tokens_per_s']:.0f} tok/s)")
p = os.path.join(out, "bench_gpu_parts.json")
if os.path.exists(p):
  r = json.load(open(p))
  for a in r.get("attention", []):
    cells = ", ".join(f"{k} {v:.2f}" for k, v in a.items() if k.endswith(("_ms", "_diff")))
    print(f"attention fwd+bwd B={a['batch']} T={a['seq']}: {cells}")
  if "init_s" in r:
    print(f"random init (compile included): {r['init_s']:.1f} s")
  if "rollout" in r:
    ro = r["rollout"]
    print(f"rollouts {ro['prompts']}x{ro['samples']} x {ro['new_tokens']} new tokens "
          f"(prompt {ro['prompt_tokens']}): {ro['tokens_per_s']:.0f} tokens/s")
PY
