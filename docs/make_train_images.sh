#!/bin/sh
# Regenerate the README's training pictures (needs matplotlib):  sh docs/make_train_images.sh
set -e
cd "$(dirname "$0")/.."
out=$(mktemp -d)
nplstm train forecast --plot --no-progress --out "$out/f"
nplstm train chars --plot --no-progress --sample 0 --out "$out/c"
nplstm train memory --plot --no-progress --out "$out/m"
cp "$out/f/forecast.png" docs/train_forecast.png
cp "$out/m/memory.png" docs/train_memory.png
cp "$out/f/saturation.png" docs/train_saturation_forecast.png
cp "$out/c/loss.png" docs/train_loss_chars.png
cp "$out/c/saturation.png" docs/train_saturation_chars.png
echo "wrote docs/train_*.png"
