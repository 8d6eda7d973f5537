#!/usr/bin/env bash
# Hashing throughput of `nnguard sign` against the Python `model_signing sign key` on the
# same ~500 MB model directory, in the same run (page cache warm for both).
#
#   bench/model-signing.sh PATH/TO/nnguard [RUNS]
#
# Needs python3 and PyPI access for a throw-away virtual environment with
# model-signing 1.1.1 (or set MODEL_SIGNING_VENV to an existing one).
set -euo pipefail

NNGUARD="${1:?usage: bench/model-signing.sh PATH/TO/nnguard [RUNS]}"
RUNS="${2:-3}"
FILES="${FILES:-5}"
FILE_MB="${FILE_MB:-100}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -n "${MODEL_SIGNING_VENV:-}" ]]; then
  venv="$MODEL_SIGNING_VENV"
else
  venv="$work/venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "model-signing==1.1.1" pyopenssl
fi

model="$work/model"
mkdir -p "$model"
for i in $(seq 1 "$FILES"); do
  head -c "$((FILE_MB * 1000 * 1000))" /dev/urandom > "$model/model-0000$i-of-0000$FILES.safetensors"
done
printf '{"architectures": ["Bench"]}\n' > "$model/config.json"
bytes=$(du -sb "$model" | cut -f1)
"$NNGUARD" keygen --private-key "$work/key.pem" --public-key "$work/key.pub.pem" >/dev/null
cat "$model"/* > /dev/null   # warm the page cache

seconds() { # seconds COMMAND... -> wall-clock seconds of one run
  local start end
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
best() { sort -g | head -1; }

declare -A times
for run in $(seq 1 "$RUNS"); do
  times[nnguard]+="$(seconds "$NNGUARD" sign "$model" --key "$work/key.pem" --signature "$work/nn.sig")"$'\n'
  times[nnguard_1t]+="$(seconds "$NNGUARD" sign "$model" --key "$work/key.pem" --signature "$work/nn1.sig" --threads 1)"$'\n'
  times[python_cli]+="$(seconds "$venv/bin/model_signing" sign key "$model" --private_key "$work/key.pem" --signature "$work/py.sig")"$'\n'
  times[python_api]+="$("$venv/bin/python" -c '
import sys, time, model_signing
t = time.perf_counter(); model_signing.hashing.hash(sys.argv[1]); print(time.perf_counter() - t)' "$model")"$'\n'
  times[sha256sum]+="$(seconds sha256sum "$model"/*)"$'\n'
done
"$NNGUARD" verify "$model" --key "$work/key.pub.pem" --signature "$work/py.sig" >/dev/null
"$venv/bin/model_signing" verify key "$model" --public_key "$work/key.pub.pem" --signature "$work/nn.sig" >/dev/null

mb=$(echo "$bytes / 1000000" | bc -l)
printf 'model: %d files, %.0f MB; %s runs each, best wall time; %s CPUs (%s)\n' \
  "$((FILES + 1))" "$mb" "$RUNS" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for name in nnguard nnguard_1t python_cli python_api sha256sum; do
  t=$(printf '%s' "${times[$name]}" | best)
  printf '%-11s %7.2f s  %7.0f MB/s\n' "$name" "$t" "$(echo "$mb / $t" | bc -l)"
done
