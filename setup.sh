#!/usr/bin/env bash
# Installs hybridmem into ./.venv (idempotent). Usage: ./setup.sh [--dev]
#   --dev  also installs the test and lint tools.
# Needs Python >= 3.10. The renderer needs an EGL driver (Mesa); on Debian/Ubuntu that is
# libegl1 + libgl1-mesa-dri, installed here with apt-get when missing and we are root.
set -euo pipefail
cd "$(dirname "$0")"

extras=""
case "${1:-}" in
  --dev) extras="[dev]" ;;
  "") ;;
  *) echo "setup.sh: unknown option '$1' (valid: --dev)" >&2; exit 2 ;;
esac

python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".${extras}"

egl_check='import moderngl; moderngl.create_standalone_context(backend="egl").release()'
if ! .venv/bin/python -c "$egl_check" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup.sh: installing Mesa EGL (libegl1 libgl1-mesa-dri) for headless rendering"
    apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri >/dev/null
  fi
  if ! .venv/bin/python -c "$egl_check"; then
    echo "setup.sh: no working EGL driver; install Mesa's EGL (Debian/Ubuntu: sudo apt-get install libegl1 libgl1-mesa-dri)" >&2
    exit 1
  fi
fi
echo "setup.sh: ready (.venv/bin/hybridmem)"
