#!/usr/bin/env bash
# The main job: generate long videos from the two models shipped in pretrained/ (about 5 minutes on a
# 2-core CPU) and write pictures that compare sampling schemes against the ground truth.
#   - Moving MNIST: 64-frame videos (1.6x the 40-frame training clips) from 8 observed test frames;
#   - panorama: 48-frame videos from 16 observed frames, where the view comes back to places it showed
#     32 frames earlier, so a scheme that conditions on distant frames can get them right.
# Training from scratch instead: bash scripts/demo.sh --train (adds about two hours; resumable).
# Running it again reuses the videos already made.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
out=results/demo
sampler=(--sampler ddim --steps 20 --eta 1)   # see pretrained/README.md for the sampler comparison

mnist=pretrained/moving_mnist
panorama=pretrained/panorama
if [ "${1:-}" = "--train" ]; then
  for name in moving_mnist panorama; do
    run="runs/demo-$name"
    echo "== training $name from scratch (configs/${name}_cpu.yaml) -> $run"
    if [ -d "$run/checkpoints" ]; then flexvid train --resume "$run" --max_steps 3000
    else flexvid train --config "configs/${name}_cpu.yaml" --run_dir "$run" --max_steps 3000; fi
  done
  mnist=runs/demo-moving_mnist
  panorama=runs/demo-panorama
fi

echo "== 1/3 Moving MNIST: hierarchy-2 and autoreg, 64 frames from 8 observed -> $out/moving_mnist"
flexvid compare "$mnist" --schemes hierarchy-2,autoreg --T 64 --n_obs 8 --num_videos 2 --batch_size 2 \
  "${sampler[@]}" --out "$out/moving_mnist"
echo "== 2/3 panorama: hierarchy-2 and autoreg, 48 frames from 16 observed -> $out/panorama"
flexvid compare "$panorama" --schemes hierarchy-2,autoreg --T 48 --n_obs 16 --num_videos 2 --batch_size 2 \
  "${sampler[@]}" --out "$out/panorama"
echo "== 3/3 writing mp4/gif files"
for eval_dir in "$out"/moving_mnist/* "$out"/panorama/*; do
  if [ -f "$eval_dir/settings.json" ]; then flexvid video "$eval_dir" > /dev/null; fi
done

cat <<DONE

Done.
  ground truth above each scheme (observed frames outlined in red):  $out/moving_mnist/strips.png, $out/panorama/strips.png
  per-frame PSNR by scheme:                                          $out/moving_mnist/per_frame_psnr.png, $out/panorama/per_frame_psnr.png
  tables (PSNR/SSIM with 95% intervals, brightness, time):           $out/moving_mnist/comparison.md, $out/panorama/comparison.md
  videos (mp4/gif):                                                   $out/*/<scheme>/videos
DONE
