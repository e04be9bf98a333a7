#!/usr/bin/env bash
# `make run`: start Mosquitto with mosquitto/mosquitto.conf and the bridge; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
plugin=$(find /usr/lib -name mosquitto_dynamic_security.so 2>/dev/null | head -n 1)
if [ -z "$plugin" ]; then
  echo "make run: mosquitto_dynamic_security.so not found (Debian's mosquitto package ships it)" >&2
  exit 1
fi
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "make run: something already listens on 127.0.0.1:1883 (a system Mosquitto?); stop it first" >&2
  exit 1
fi

mkdir -p data/mosquitto
# The bridge administers the broker's accounts; this writes its account once (never overwrites).
.venv/bin/printbridge broker-init --dynsec-file data/mosquitto/dynamic-security.json >/dev/null
sed "s#^plugin .*#plugin $plugin#" mosquitto/mosquitto.conf > data/mosquitto/run.conf

"$mosquitto_bin" -c data/mosquitto/run.conf 2> data/mosquitto/mosquitto.log &
broker=$!
trap 'kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break
  kill -0 "$broker" 2>/dev/null || { echo "Mosquitto did not start:" >&2; tail -n 20 data/mosquitto/mosquitto.log >&2; exit 1; }
  sleep 0.05
done
echo "Mosquitto on 127.0.0.1:1883 (log: data/mosquitto/mosquitto.log)" >&2
.venv/bin/printbridge serve
