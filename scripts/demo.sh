#!/usr/bin/env bash
# The main job on built-in data (no download): train a small FDM model on Moving MNIST for a few
# minutes, then generate videos four times longer than its training clips with two sampling schemes,
# and write mp4/gif files and pictures of the schemes. About 10 minutes on a 2-core CPU; the model is
# far from converged (digits emerge after about a thousand steps), so expect rough samples.
# Running it again resumes or reuses what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
export PATH="$root/.venv/bin:$PATH"

run=runs/demo
out=results/demo
T_train=40      # clip length in configs/moving_mnist_cpu.yaml
T_long=160      # generated videos: 4x the training clips
K=8             # frames per network call (max_frames in the preset)
n_obs=8         # frames taken from a test video
steps=1200      # training steps (about 6 minutes at 3 steps/s)

echo "== 1/3 training on Moving MNIST (configs/moving_mnist_cpu.yaml) -> $run"
if [ -d "$run/checkpoints" ]; then
  flexvid train --resume "$run" --max_steps "$steps"
else
  flexvid train --config configs/moving_mnist_cpu.yaml --run_dir "$run" --max_steps "$steps"
fi

for scheme in hierarchy-2 autoreg; do
  echo "== 2/3 sampling $T_long-frame videos with $scheme (DDIM, 50 steps, eta 1) -> $out/$scheme"
  flexvid sample "$run" --sampling_scheme "$scheme" --n_obs "$n_obs" --T "$T_long" \
    --max_frames "$K" --max_latent_frames $((K / 2)) --chunk_length "$T_train" \
    --sampler ddim --steps 50 --eta 1 --batch_size 2 --stop_index 2 --seed 0 --eval_dir "$out/$scheme"
  flexvid schemes show "$scheme" --T "$T_train" --n_obs "$n_obs" --max_frames "$K" \
    --max_latent_frames $((K / 2)) --out "$out/$scheme/scheme.png" > /dev/null
  echo "== 3/3 writing mp4/gif files"
  flexvid video "$out/$scheme"
done

cat <<EOF

Done.
  training run (checkpoints, metrics.jsonl, sample videos):  $run
  long videos (mp4/gif, observed frames outlined in red):     $out/hierarchy-2/videos, $out/autoreg/videos
  sampling scheme pictures:                                   $out/hierarchy-2/scheme.png, $out/autoreg/scheme.png
EOF
