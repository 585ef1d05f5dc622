#!/usr/bin/env bash
# Train the embedded default model on one CUDA GPU with the `gpu` plan (training/train_default.py), in two
# calls that each stay under 10 minutes, so it fits machines lent by the call:
#
#   scripts/train_default_gpu.sh start    # smoke test, decoders (3 in parallel), pre-encoding, then the DiT
#                                         # and the video decoder's fine-tuning start in the background
#   scripts/train_default_gpu.sh finish   # waits for them, writes the bundle and the curves
#
# Everything goes to $JOINTAV_TRAIN_DIR (default /tmp/jointav-train); `finish` also copies the bundle (in pieces of
# 15 MB: cat them back together) and curves.json to $OUT when that is set. On one H100 the decoders take 6 min
# each (side by side), encoding ~1 min, the DiT 9.5 min.
set -euo pipefail
phase=${1:?usage: scripts/train_default_gpu.sh start|finish}
root=$(cd "$(dirname "$0")/.." && pwd)
# Outside the repository: a machine lent by the call re-syncs the working tree at each call, untracked files too.
work=${JOINTAV_TRAIN_DIR:-/tmp/jointav-train}
mkdir -p "$work"
# The repository root is the package `jointav`: make it importable under that name without installing it.
mkdir -p /tmp/jointav-src && ln -sfn "$root" /tmp/jointav-src/jointav
export PYTHONPATH=/tmp/jointav-src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
train() { python3 -m jointav.training.train_default --plan gpu --device cuda --workdir "$work" "$@"; }

case $phase in
all)
    # Every stage in one call with shorter caps (DECODER_MIN for the decoders, DIT_MIN for the DiT, which runs
    # beside the video decoder's fine-tuning).
    for stage in video_vae audio_vae vocoder; do
        train --stage "$stage" --resume --minutes "${DECODER_MIN:-3.3}" >"$work/$stage.log" 2>&1 &
    done
    wait
    for shard in 0 1 2 3 4 5 6 7; do
        train --stage encode --clips "${CLIPS:-8000}" --shard "$shard" --shards 8 >"$work/encode-$shard.log" 2>&1 &
    done
    wait
    train --stage video_decoder --resume --minutes "${DIT_MIN:-4.3}" >"$work/video_decoder.log" 2>&1 &
    train --stage dit --resume --minutes "${DIT_MIN:-4.3}" >"$work/dit.log" 2>&1
    wait
    train --stage bundle --out "$work/jointav-default.safetensors"
    train --stage export
    if [[ -n ${OUT:-} ]]; then
        split -b 15M -d "$work/jointav-default.safetensors" "$OUT/bundle.part"
        cp "$work/curves.json" "$OUT/"
        for f in "$work"/*.log; do echo "== $f"; tr '\r' '\n' <"$f" | grep -v "it/s\]$" | tail -n 5; done >"$OUT/logs.txt"
        sha256sum "$work/jointav-default.safetensors"
    fi
    ;;
start)
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    # Every stage for two steps at toy size on the GPU first: a mistake shows in seconds, not after the decoders.
    python3 - <<'EOF'
import tempfile
from pathlib import Path
from jointav.training import stages
d = Path(tempfile.mkdtemp())
stages.run_video_vae(d, 2, None, False, batch=2, crop=5, progress=False, device="cuda", workers=1)
stages.run_video_vae(d, 2, None, False, batch=2, crop=5, progress=False, decoder_only=True, device="cuda")
stages.run_audio_vae(d, 2, None, False, batch=2, stats_clips=4, progress=False, device="cuda", workers=1)
stages.run_vocoder(d, 2, None, False, batch=2, length=2048, progress=False, device="cuda", workers=1)
stages.run_encode(d, clips=9, device="cuda")
stages.run_dit(d, 2, None, False, batch=4, p_cameo=0.9, progress=False, device="cuda")
stages.run_bundle(d, d / "bundle.safetensors")
print("smoke: every stage ran on cuda")
EOF
    for stage in video_vae audio_vae vocoder; do
        train --stage "$stage" --resume >"$work/$stage.log" 2>&1 &
    done
    wait
    tail -n 2 "$work"/video_vae.log "$work"/audio_vae.log "$work"/vocoder.log
    for shard in 0 1 2 3 4 5 6 7; do
        train --stage encode --shard "$shard" --shards 8 >"$work/encode-$shard.log" 2>&1 &
    done
    wait
    ls -la "$work"
    # The DiT and the decoder fine-tuning outlive this call (a new session each); `finish` waits for them.
    setsid nohup bash -c "$(declare -f train); work='$work'; train --stage dit --resume" >"$work/dit.log" 2>&1 &
    setsid nohup bash -c "$(declare -f train); work='$work'; train --stage video_decoder --resume" \
        >"$work/video_decoder.log" 2>&1 &
    sleep 20
    tail -c 400 "$work/dit.log"
    ;;
finish)
    while pgrep -f "train_default.*--stage (dit|video_decoder)" >/dev/null; do sleep 5; done
    tail -n 3 "$work/dit.log" "$work/video_decoder.log"
    train --stage bundle --out "$work/jointav-default.safetensors"
    train --stage export
    if [[ -n ${OUT:-} ]]; then
        split -b 15M -d "$work/jointav-default.safetensors" "$OUT/bundle.part"
        cp "$work/curves.json" "$OUT/"
        sha256sum "$work/jointav-default.safetensors"
    fi
    ;;
*)
    echo "unknown phase $phase: expected start or finish" >&2
    exit 2
    ;;
esac
