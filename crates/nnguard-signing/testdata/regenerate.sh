#!/usr/bin/env bash
# Regenerates the model-signing fixtures in this directory with the Python reference
# implementation (PyPI package `model-signing`) and OpenSSL.
#
#   ./regenerate.sh            # keep the committed test-only key pair, re-sign the model
#   ./regenerate.sh --new-keys # also make a new test-only key pair and "other" key
#
# Needs: python3 (3.10+), openssl. The Python package is installed into a throw-away
# virtual environment. Signatures are randomised ECDSA, so every run changes the *.sig files.
set -euo pipefail

MODEL_SIGNING_VERSION="${MODEL_SIGNING_VERSION:-1.1.1}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "model-signing==${MODEL_SIGNING_VERSION}" pyopenssl
ms="$venv/bin/model_signing"

if [[ "${1:-}" == "--new-keys" || ! -f keys/test-only-private-key.pem ]]; then
  mkdir -p keys
  openssl ecparam -name prime256v1 -genkey -noout \
    | openssl pkcs8 -topk8 -nocrypt -out keys/test-only-private-key.pem
  openssl ec -in keys/test-only-private-key.pem -pubout -out keys/test-only-public-key.pem 2>/dev/null
  other="$(mktemp)"
  openssl ecparam -name prime256v1 -genkey -noout -out "$other"
  openssl ec -in "$other" -pubout -out keys/other-public-key.pem 2>/dev/null
  rm -f "$other"
fi

# The tiny model: deterministic content, a nested directory, an empty file.
rm -rf model
mkdir -p model/tokenizer
printf '{"architecture": "mlp", "hidden": [16, 8], "classes": 10}\n' > model/config.json
python3 - <<'PY'
import hashlib
out = bytearray()
counter = 0
while len(out) < 5000:
    out += hashlib.sha256(b"nnguard fixture weights %d" % counter).digest()
    counter += 1
open("model/weights.bin", "wb").write(bytes(out[:5000]))
PY
printf 'hello\nworld\n' > model/tokenizer/vocab.txt
: > model/tokenizer/empty.txt

mkdir -p python-signed
# Directory model, `files` serialization (the CLI default).
"$ms" sign key model --private_key keys/test-only-private-key.pem --signature python-signed/model.sig
# A single file as the model.
"$ms" sign key model/weights.bin --private_key keys/test-only-private-key.pem \
  --signature python-signed/weights.bin.sig
# `shards` serialization (only reachable through the Python API).
"$venv/bin/python" - <<'PY'
import model_signing
hashing = model_signing.hashing.Config().use_shard_serialization(shard_size=1024)
(model_signing.signing.Config()
    .use_elliptic_key_signer(private_key="keys/test-only-private-key.pem")
    .set_hashing_config(hashing)
    .sign("model", "python-signed/model-shards-1024.sig"))
PY

# Check each with the Python verifier before committing.
"$ms" verify key model --public_key keys/test-only-public-key.pem --signature python-signed/model.sig
"$ms" verify key model/weights.bin --public_key keys/test-only-public-key.pem \
  --signature python-signed/weights.bin.sig
"$venv/bin/pip" show model-signing | grep -E '^(Name|Version):'
