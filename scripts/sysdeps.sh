#!/usr/bin/env bash
# Install what firesentry needs from Debian when it is missing: Mosquitto, the PostgreSQL
# server and Python's venv module. Idempotent; does nothing when all are present.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)  # the README's TLS example
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # the embedded broker's certificates
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the console's browser tests (Playwright drives it)
# The console in Chinese: without a CJK font the browser tests' pictures show boxes.
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
# The console's map (一张图): Leaflet, served from where Debian puts it (api.map_library_dir).
[ -e /usr/share/javascript/leaflet/leaflet.esm.js ] || need+=(libjs-leaflet)
PY="${PYTHON:-python3}"
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${need[*]}" >&2; exit 1; }
    SUDO=sudo
fi
echo "installing from Debian: ${need[*]}"
# Installing must not start system services that could clash with anything (policy-rc.d).
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
