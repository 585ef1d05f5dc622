#!/usr/bin/env bash
# Fine-tune the shipped default model's DiT on one CUDA GPU in one call of under 10 minutes:
#
#   LAYERS=6 PROCS=6 DIT_MIN=6.5 CLIPS=12000 scripts/finetune_default_gpu.sh
#
# adopts default_model/jointav-default.safetensors, encodes CLIPS fresh training clips (with their cameo and
# subject references) in SHARDS processes on the CPU, then trains the DiT for DIT_MIN minutes in PROCS
# data-parallel processes on the GPU (a tiny model leaves a GPU idle from one process), grown to LAYERS blocks
# per tower (added blocks start as identities), with the long-form holds. The decoders stay the shipped ones.
# Work goes to $JOINTAV_TRAIN_DIR (default /tmp/jointav-finetune: outside the repository, which a lent machine
# re-syncs). With $OUT set, the DiT's EMA weights at the end (float32, in 15 MB pieces: cat them back
# together) and at each checkpoint before it (bfloat16, to compare), the latent statistics, curves and log
# tails are copied there; `--stage bundle` on a workdir holding them makes the bundle (TRAINING.md).
# Without STEPS the schedule is planned to end inside DIT_MIN; for a run over several calls on one warm
# machine, give STEPS (the whole schedule's steps: 0.85 s a step measured with 6 processes on an H200) and call
# again: the encoded set and the DiT's checkpoint are found and training goes on.
#
# A hold adapter instead (pipeline/adapters.py): ADAPTER=foley, animate, shots or extend trains its one tower
# alone at the bundle's own 4 blocks, with its holds (training/stages.ADAPTER_RUNS; HOLDS as --hold-shares
# instead), then writes the adapter (`--stage adapter`) into $OUT, or $work, under the file name the pipeline
# looks for:
#
#   ADAPTER=foley PROCS=6 DIT_MIN=6.5 CLIPS=12000 OUT=/some/dir scripts/finetune_default_gpu.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${JOINTAV_TRAIN_DIR:-/tmp/jointav-finetune}
shards=${SHARDS:-14}
mkdir -p "$work"
mkdir -p /tmp/jointav-src && ln -sfn "$root" /tmp/jointav-src/jointav
export PYTHONPATH=/tmp/jointav-src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
train() { python3 -m jointav.training.train_default --workdir "$work" "$@"; }
stamp() { echo "[$(date +%T)] $*"; }

device=${DEVICE:-cuda}  # (DEVICE=cpu runs the same steps here at toy size: CLIPS=48 SHARDS=2 PROCS=2 DIT_MIN=0.3)
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
stamp adopt
train --adopt "$root/default_model/jointav-default.safetensors" --stage export ${ADAPTER:+--adapter "$ADAPTER"} \
    >/dev/null  # (an unknown ADAPTER is refused here, before any work)
# (a second call on the same, still warm machine finds the set encoded and the DiT's checkpoint: it goes on)
if [ "$(ls "$work"/latents-*-of-"$shards".pt 2>/dev/null | wc -l)" != "$shards" ]; then
    stamp "encode ${CLIPS:-12000} clips in $shards processes"
    for shard in $(seq 0 $((shards - 1))); do
        (train --stage encode --clips "${CLIPS:-12000}" --shard "$shard" --shards "$shards" &&
         train --stage subject_refs --shard "$shard" --shards "$shards") >"$work/encode-$shard.log" 2>&1 &
    done
    wait
fi
ls "$work"/latents-*-of-"$shards".pt | wc -l | grep -qx "$shards" || { tail -n 20 "$work"/encode-*.log; exit 1; }
if [[ -n ${ADAPTER:-} ]]; then  # (an adapter adds to the bundle's own weights: no grown blocks)
    [ "${LAYERS:-4}" = 4 ] || { echo "ADAPTER=$ADAPTER: an adapter keeps the bundle's 4 blocks (LAYERS=${LAYERS})" >&2; exit 2; }
    LAYERS=4
    dit_extra=(--adapter "$ADAPTER" ${HOLDS:+--hold-shares "$HOLDS"})
else
    dit_extra=(--long-form-holds)
fi
stamp "dit: ${PROCS:-6} processes, ${LAYERS:-6} blocks per tower, ${DIT_MIN:-6.5} min${ADAPTER:+, for the $ADAPTER adapter}"
# Keep every checkpoint the run writes (every 3 min): the candidates to score against the shipped bundle.
( last=""; while sleep 10; do
    [ -f "$work/dit.ckpt" ] || continue
    now=$(stat -c %Y "$work/dit.ckpt"); [ "$now" = "$last" ] && continue
    last=$now; cp "$work/dit.ckpt" "$work/snap-$now.ckpt"
  done ) &
watcher=$!
# (a run that fails or hangs past its cap still leaves its last checkpoint to copy back)
timeout "$(python3 -c "print(int(60 * ${DIT_MIN:-6.5} + 90))")" python3 -m jointav.training.train_default \
    --workdir "$work" --stage dit --plan gpu --device "$device" --data-parallel "${PROCS:-6}" \
    --dit-layers "${LAYERS:-6}" --minutes "${DIT_MIN:-6.5}" --batch "${BATCH:-64}" --lr "${LR:-3e-4}" \
    ${STEPS:+--steps "$STEPS"} "${dit_extra[@]}" --resume >"$work/dit.log" 2>&1 || { echo "dit stopped early (rc $?)"; tail -n 30 "$work/dit.log"; }
kill "$watcher" || true
[ -f "$work/dit.ckpt" ] || exit 1
stamp "dit done"
tr '\r' '\n' <"$work/dit.log" | grep -v "it/s\]$" | tail -n 3 || true
tr '\r' '\n' <"$work/dit.log" | grep "it/s" | tail -n 1 || true
train --stage export >/dev/null
python3 - "$work" <<'EOF'
import sys
from pathlib import Path

import torch

work = Path(sys.argv[1])
end = torch.load(work / "dit.ckpt", weights_only=True, map_location="cpu")
keep = {k: end[k] for k in ("step", "planned", "seconds", "curve")}
torch.save({**keep, "ema": end["ema"], "model": end["ema"]}, work / "dit-end.ckpt")
print("end", end["step"], end["curve"][-1] if end["curve"] else None)
for snap in sorted(work.glob("snap-*.ckpt"))[:-1]:  # (the last one is the end)
    c = torch.load(snap, weights_only=True, map_location="cpu")
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in c["ema"].items()}
    torch.save({"step": c["step"], "seconds": c["seconds"], "ema": half}, work / f"dit-step{c['step']}-bf16.pt")
    print("checkpoint", c["step"], c["curve"][-1] if c["curve"] else None)
EOF
if [[ -n ${OUT:-} ]]; then
    split -b 15M -d "$work/dit-end.ckpt" "$OUT/dit-end.part"
    ls "$work"/dit-step*-bf16.pt >/dev/null 2>&1 && cp $(ls "$work"/dit-step*-bf16.pt | tail -n 2) "$OUT/"
    for f in "$work"/encode-0.log "$work"/dit.log; do echo "== $f"; tr '\r' '\n' <"$f" | tail -n 8; done >"$work/logs.txt"
    tar -C "$work" -czf "$OUT/info.tgz" curves.json dit-latent-stats.json logs.txt
fi
sha256sum "$work/dit-end.ckpt"
if [[ -n ${ADAPTER:-} ]]; then
    train --stage adapter --adapter "$ADAPTER" --out "${OUT:-$work}"  # (the file named as registered)
fi
stamp done
