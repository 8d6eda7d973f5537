#!/usr/bin/env bash
# Two-way interoperability check between `nnguard` and the Python reference
# `model_signing` CLI (PyPI `model-signing`), on a copy of the fixture model:
#   1. nnguard keygen; nnguard sign   -> model_signing verify key  (must succeed)
#   2. model_signing sign key         -> nnguard verify            (must succeed)
#   3. the committed nnguard golden bundle -> model_signing verify key
#   4. after each tampering, both tools must reject both signatures.
#
#   ./interop.sh [PATH/TO/nnguard]      (default: `nnguard` on PATH)
#
# Needs python3 and network access to PyPI for a throw-away virtual environment; set
# MODEL_SIGNING_BIN to an installed `model_signing` to skip the install.
set -euo pipefail

NNGUARD="${1:-nnguard}"
MODEL_SIGNING_VERSION="${MODEL_SIGNING_VERSION:-1.1.1}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ -n "${MODEL_SIGNING_BIN:-}" ]]; then
  ms="$MODEL_SIGNING_BIN"
else
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet "model-signing==${MODEL_SIGNING_VERSION}" pyopenssl
  ms="$work/venv/bin/model_signing"
fi
echo "nnguard: $("$NNGUARD" --version)"
echo "model_signing: $("$(dirname "$ms")/pip" show model-signing 2>/dev/null | sed -n 's/^Version: //p')"

cd "$work"
failures=0
expect() { # expect CODE DESCRIPTION -- COMMAND...
  local want="$1" what="$2"; shift 3
  local got=0
  "$@" >"$work/out" 2>&1 || got=$?
  # model_signing exits 1 on any failure; nnguard 1 (finding) or 2 (error).
  if [[ "$want" == 0 && "$got" == 0 ]] || [[ "$want" != 0 && "$got" != 0 ]]; then
    printf 'ok    %-60s (exit %s)\n' "$what" "$got"
  else
    printf 'FAIL  %-60s (exit %s, wanted %s)\n' "$what" "$got" "$want"; sed 's/^/      /' "$work/out"
    failures=$((failures + 1))
  fi
}

reset_model() { rm -rf model; cp -r "$here/model" model; }
reset_model
"$NNGUARD" keygen --private-key key.pem --public-key key.pub.pem >/dev/null

expect 0 "nnguard sign"                           -- "$NNGUARD" sign model --key key.pem --signature nn.sig
expect 0 "model_signing sign key"                 -- "$ms" sign key model --private_key key.pem --signature py.sig
expect 0 "model_signing verifies the nnguard signature" -- "$ms" verify key model --public_key key.pub.pem --signature nn.sig
expect 0 "nnguard verifies the model_signing signature" -- "$NNGUARD" verify model --key key.pub.pem --signature py.sig
expect 0 "model_signing verifies the committed nnguard golden" -- \
  "$ms" verify key "$here/model" --public_key "$here/keys/test-only-public-key.pem" --signature "$here/nnguard-signed/model.sig"
expect 0 "nnguard signs a single file"            -- "$NNGUARD" sign model/weights.bin --key key.pem --signature nn1.sig
expect 0 "model_signing verifies it"              -- "$ms" verify key model/weights.bin --public_key key.pub.pem --signature nn1.sig

tamper() { # tamper DESCRIPTION -- SHELL-COMMAND
  local what="$1"; shift 2
  reset_model
  bash -c "$*"
  expect 1 "$what: nnguard rejects the nnguard signature"        -- "$NNGUARD" verify model --key key.pub.pem --signature nn.sig
  expect 1 "$what: nnguard rejects the model_signing signature"  -- "$NNGUARD" verify model --key key.pub.pem --signature py.sig
  expect 1 "$what: model_signing rejects the nnguard signature"  -- "$ms" verify key model --public_key key.pub.pem --signature nn.sig
  expect 1 "$what: model_signing rejects its own signature"      -- "$ms" verify key model --public_key key.pub.pem --signature py.sig
}
tamper "changed byte"  -- 'printf x >> model/config.json'
tamper "added file"    -- 'echo hi > model/extra.txt'
tamper "missing file"  -- 'rm model/tokenizer/vocab.txt'
tamper "renamed file"  -- 'mv model/weights.bin model/weights2.bin'
tamper "symlink"       -- 'mv model/weights.bin outside.bin && ln -s "$PWD/outside.bin" model/weights.bin'

reset_model
expect 1 "wrong key: nnguard"        -- "$NNGUARD" verify model --key "$here/keys/other-public-key.pem" --signature py.sig
expect 1 "wrong key: model_signing"  -- "$ms" verify key model --public_key "$here/keys/other-public-key.pem" --signature nn.sig

if (( failures > 0 )); then echo "$failures check(s) failed"; exit 1; fi
echo "all interoperability checks passed"
