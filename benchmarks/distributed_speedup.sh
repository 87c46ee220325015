#!/usr/bin/env bash
# Speed-up of distributed training (issue 16, item 6): the same short `train` run on 1 process
# (plain, torch's default threads), on 1 process under torchrun (1 thread) and on N processes
# under torchrun (1 thread each), ROUNDS times interleaved. Prints one line per run: the wall
# time, the epochs' time (training_seconds: data loading and start-up excluded), the CPU time of
# all processes (user + system) and the load average before it started.
# usage: benchmarks/distributed_speedup.sh mcgsm|ride [N] [ROUNDS]   (run from the repository root;
# SKIP_PLAIN=1 leaves out the plain runs)
set -euo pipefail
model=${1:-mcgsm}; processes=${2:-2}; rounds=${3:-2}
data=${DATA:-../shared/data/bsds500/train}
work=$(mktemp -d)
case $model in
  mcgsm) arguments=(mcgsm --epochs 3 --patience 10 --samples-per-image 8000) ;;
  ride) arguments=(ride --hidden 16 --patch-sizes 8,12 --epochs 1 --patches-per-image 16 --lbfgs-steps 5) ;;
esac
run() {  # name, launcher...
  local name=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -f "%e %U %S" -o "$work/$name.time" "$@" -m ridecodec.train "${arguments[@]}" --data "$data" \
    --out "$work/$name.pt" --log-file "$work/$name.jsonl" --force >/dev/null 2>&1
  python - "$work/$name.jsonl" "$work/$name.time" "$name" "$load" <<'PY'
import json, sys
log, times, name, load = sys.argv[1:]
done = [json.loads(line) for line in open(log) if '"done"' in line][-1]
wall, user, system = map(float, open(times).read().split()[-3:])
print(f"{name:12s} wall {wall:6.1f} s  epochs {done['training_seconds']:6.1f} s  cpu {user + system:6.1f} s  "
      f"validation {done['validation_bits_per_pixel']:.5f} bpp  load before {load}")
PY
}
for round in $(seq "$rounds"); do
  [ "${SKIP_PLAIN:-0}" = 1 ] || run plain python
  OMP_NUM_THREADS=1 run torchrun-1 python -m torch.distributed.run --standalone --nproc-per-node 1
  OMP_NUM_THREADS=1 run "torchrun-$processes" python -m torch.distributed.run --standalone --nproc-per-node "$processes"
done
rm -rf "$work"
