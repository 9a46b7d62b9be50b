#!/usr/bin/env bash
# One-command setup (called by `make setup`): system packages, Python 3.10 venv with pinned
# versions, models, the demo backend and the trained NLU model. Safe to run again: each step
# skips itself when its inputs are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages (only as root; otherwise say what is missing).
SYSTEM_PACKAGES=(libportaudio2 libsndfile1 chromium pulseaudio pulseaudio-utils libasound2-plugins espeak-ng baresip-core)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "warning: missing Debian packages ${missing[*]} (run as root or install them yourself)"
  fi
fi

# 2. Python 3.10 (Rasa 3.6 needs it): pyenv, then the system, then uv.
find_python() {
  local candidates=()
  command -v pyenv >/dev/null && candidates+=("$(pyenv root)/versions/3.10.13/bin/python3.10")
  candidates+=("$HOME/.pyenv/versions/3.10.13/bin/python3.10" /usr/bin/python3.10 /usr/local/bin/python3.10)
  for c in "${candidates[@]}"; do [ -x "$c" ] && { echo "$c"; return; }; done
  if command -v uv >/dev/null; then uv python find 3.10 2>/dev/null && return; fi
  return 1
}
if [ ! -x .venv/bin/python ]; then
  PY=$(find_python) || { echo "error: Python 3.10 not found (install it with pyenv or uv)" >&2; exit 1; }
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi

# 3. Pinned dependencies; re-run only when pyproject.toml or constraints.txt change.
deps_hash=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.deps-hash 2>/dev/null)" != "$deps_hash" ]; then
  log "installing Python packages (pinned by constraints.txt)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
  echo "$deps_hash" > .venv/.deps-hash
fi

# 4. Models, demo backend, NLU model (each step skips work that is already done).
log "provisioning models"
.venv/bin/voicebot models provision
log "seeding the demo bank backend"
.venv/bin/voicebot demo seed
log "training the NLU model"
.venv/bin/voicebot train
log "done"
