#!/bin/sh
# Regenerate the README images from the code (needs matplotlib):  sh docs/make_images.sh
set -e
cd "$(dirname "$0")/.."
nplstm card --cell lstm -o docs/card_lstm.png --dpi 110
nplstm card --cell gru -o docs/card_gru.png --dpi 110
nplstm trace --cell lstm --input-size 2 --hidden-size 6 --length 30 --steps 0 \
    --plot docs/gates_lstm.png > /dev/null
echo "wrote docs/card_lstm.png docs/card_gru.png docs/gates_lstm.png"
