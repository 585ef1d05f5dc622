#!/usr/bin/env bash
# Train the embedded default model on one CUDA GPU with the `gpu` plan (training/train_default.py) in one
# call of under 10 minutes:
#
#   DECODER_MIN=3.2 DIT_MIN=4.2 scripts/train_default_gpu.sh
#
# the three decoder stages side by side (DECODER_MIN each), pre-encoding in 8 processes, then the DiT
# (DIT_MIN) with the vocoder's fine-tune beside it, the bundle and its curves. Work goes to $JOINTAV_TRAIN_DIR
# (default /tmp/jointav-train: outside the repository, since a machine lent by the call re-syncs the working
# tree, untracked files included).
# With $OUT set, the bundle (in 15 MB pieces: cat them back together), curves.json and the log tails are
# copied there. Every stage first runs two steps at toy size, so a mistake shows in seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${JOINTAV_TRAIN_DIR:-/tmp/jointav-train}
mkdir -p "$work"
# The repository root is the package `jointav`: make it importable under that name without installing it.
mkdir -p /tmp/jointav-src && ln -sfn "$root" /tmp/jointav-src/jointav
export PYTHONPATH=/tmp/jointav-src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
train() { python3 -m jointav.training.train_default --plan gpu --device cuda --workdir "$work" "$@"; }

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 - <<'EOF'
import tempfile
from pathlib import Path
from jointav.training import stages
d = Path(tempfile.mkdtemp())
stages.run_video_vae(d, 2, None, False, batch=2, crop=5, progress=False, device="cuda", workers=1)
stages.run_audio_vae(d, 2, None, False, batch=2, stats_clips=4, progress=False, device="cuda", workers=1)
stages.run_vocoder(d, 2, None, False, batch=2, length=2048, progress=False, device="cuda", workers=1)
stages.run_vocoder(d, 2, None, False, batch=2, length=2048, progress=False, device="cuda", on_vae_mels=True)
stages.run_encode(d, clips=9, device="cuda")
stages.run_dit(d, 2, None, False, batch=4, p_cameo=0.9, progress=False, device="cuda")
stages.run_bundle(d, d / "bundle.safetensors")
print("smoke: every stage ran on cuda")
EOF

for stage in video_vae audio_vae vocoder; do
    train --stage "$stage" --resume --minutes "${DECODER_MIN:-6}" >"$work/$stage.log" 2>&1 &
done
wait
for shard in 0 1 2 3 4 5 6 7; do
    train --stage encode --clips "${CLIPS:-8000}" --shard "$shard" --shards 8 >"$work/encode-$shard.log" 2>&1 &
done
wait
# The vocoder's fine-tune on the audio VAE's mels needs only the decoders: beside the DiT.
train --stage vocoder_finetune --resume --minutes "${DECODER_MIN:-3}" >"$work/vocoder_finetune.log" 2>&1 &
train --stage dit --resume --minutes "${DIT_MIN:-9.5}" >"$work/dit.log" 2>&1
wait
train --stage bundle --out "$work/jointav-default.safetensors"
train --stage export
if [[ -n ${OUT:-} ]]; then
    split -b 15M -d "$work/jointav-default.safetensors" "$OUT/bundle.part"
    cp "$work/curves.json" "$OUT/"
    for f in "$work"/*.log; do echo "== $f"; tr '\r' '\n' <"$f" | grep -v "it/s\]$" | tail -n 5; done >"$OUT/logs.txt"
fi
sha256sum "$work/jointav-default.safetensors"
