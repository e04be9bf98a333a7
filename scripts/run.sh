#!/usr/bin/env bash
# `make run`: start Mosquitto with mosquitto/mosquitto.conf and the bridge; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
# PRINTBRIDGE_BROKER_PORT moves the broker off 1883 (the tests use a free port); the bridge follows it.
port=${PRINTBRIDGE_BROKER_PORT:-1883}
export PRINTBRIDGE_MQTT_URL=${PRINTBRIDGE_MQTT_URL:-mqtt://127.0.0.1:$port}

mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
plugin=$(find /usr/lib -name mosquitto_dynamic_security.so 2>/dev/null | head -n 1)
if [ -z "$plugin" ]; then
  echo "make run: mosquitto_dynamic_security.so not found (Debian's mosquitto package ships it)" >&2
  exit 1
fi
if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
  echo "make run: something already listens on 127.0.0.1:$port (a system Mosquitto?); stop it first" >&2
  exit 1
fi

mkdir -p data/mosquitto
# The bridge administers the broker's accounts; this writes its account once (never overwrites).
.venv/bin/printbridge broker-init --dynsec-file data/mosquitto/dynamic-security.json >/dev/null
sed -e "s#^plugin .*#plugin $plugin#" -e "s#^listener 1883 127.0.0.1\$#listener $port 127.0.0.1#" \
  mosquitto/mosquitto.conf > data/mosquitto/run.conf

"$mosquitto_bin" -c data/mosquitto/run.conf 2> data/mosquitto/mosquitto.log &
broker=$!
# (`|| true`: on Ctrl-C the broker has had the SIGINT too, and a failing kill would make the exit status 1)
trap 'kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  kill -0 "$broker" 2>/dev/null || { echo "Mosquitto did not start:" >&2; tail -n 20 data/mosquitto/mosquitto.log >&2; exit 1; }
  sleep 0.05
done
echo "Mosquitto on 127.0.0.1:$port (log: data/mosquitto/mosquitto.log)" >&2
.venv/bin/printbridge serve
