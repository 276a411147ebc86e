#!/usr/bin/env bash
# Join a soulsai_ray head node from a Linux machine (a sampler box or a Linux game PC).
#
#   scripts/join_cluster.sh HEAD_IP[:PORT] [--token-file PATH] [--resources '{"soulsgym": 1}'] [--num-cpus N]
#
# Checks that the head is reachable and the token is present before starting Ray, so a wrong
# address or a missing token gives a clear message instead of a hang. Warns when other users can
# read the token file. Ports are pinned to the values below, the same as on the head (README,
# "Security"); the `ray start` flag of the same name overrides one, e.g. --metrics-export-port 8090.
set -euo pipefail

declare -A PORTS=(
  [object-manager-port]=8076
  [node-manager-port]=8077
  [dashboard-agent-grpc-port]=8078
  [runtime-env-agent-port]=8079
  [metrics-export-port]=8080
  [dashboard-agent-listen-port]=52365
  [min-worker-port]=10002
  [max-worker-port]=10999
)
[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
HEAD="$1"; shift
case "$HEAD" in *:*) ;; *) HEAD="$HEAD:6379" ;; esac
TOKEN_FILE="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
RESOURCES='{}'
NUM_CPUS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --token-file) TOKEN_FILE="$2"; shift 2 ;;
    --resources) RESOURCES="$2"; shift 2 ;;
    --num-cpus) NUM_CPUS="$2"; shift 2 ;;
    --*port)
      [ -n "${PORTS[${1#--}]+pinned}" ] || { echo "unknown argument: $1" >&2; exit 2; }
      PORTS[${1#--}]="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

RAY="${RAY:-ray}"
command -v "$RAY" >/dev/null 2>&1 || RAY="$(dirname "$0")/../.venv/bin/ray"
[ -x "$(command -v "$RAY")" ] || { echo "ray not found: run 'make install' first or put ray on PATH" >&2; exit 1; }
PYTHON="$(dirname "$(command -v "$RAY")")/python"

if [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  [ -s "$TOKEN_FILE" ] || { echo "no cluster token at $TOKEN_FILE: copy the head's ~/.ray/auth_token here or pass --token-file" >&2; exit 1; }
  TOKEN_FILE="$(cd "$(dirname "$TOKEN_FILE")" && pwd -P)/$(basename "$TOKEN_FILE")"
  mode="$(stat -c %a "$TOKEN_FILE")"
  if (( 8#$mode & 8#044 )); then
    echo "warning: other users can read the cluster token $TOKEN_FILE (mode $mode); run: chmod 600 $TOKEN_FILE" >&2
  fi
  export RAY_AUTH_TOKEN_PATH="$TOKEN_FILE"
fi
export RAY_AUTH_MODE=token

if ! "$PYTHON" - "$HEAD" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
try:
    socket.create_connection((host, int(port)), timeout=5).close()
except OSError as err:
    sys.exit(f"cannot reach the head at {host}:{port} ({err}); is scripts/start_head.sh running and the port open?")
PY
then exit 1; fi

echo "joining $HEAD with $("$PYTHON" -c 'import platform, ray; print(f"Python {platform.python_version()}, Ray {ray.__version__}")') (must match the head)"
args=(--address="$HEAD" --resources="$RESOURCES" --disable-usage-stats)
for flag in "${!PORTS[@]}"; do args+=("--$flag=${PORTS[$flag]}"); done
[ -n "$NUM_CPUS" ] && args+=(--num-cpus="$NUM_CPUS")
if ! "$RAY" start "${args[@]}"; then
  echo "ray start failed: check that the token matches the head's and that Python/Ray versions are the same on both machines" >&2
  exit 1
fi
