#!/usr/bin/env bash
# Join a soulsai_ray head node from a Linux machine (a sampler box or a Linux game PC).
#
#   scripts/join_cluster.sh HEAD_IP[:PORT] [--token-file PATH] [--resources '{"soulsgym": 1}'] [--num-cpus N]
#
# Checks that the head is reachable and the token is present before starting Ray, so a wrong
# address or a missing token gives a clear message instead of a hang. Warns when other users can
# read the token file. Ports are pinned to their values in scripts/ports.env, as on the head
# (docs/security.md); a `ray start` port flag overrides one, e.g. --metrics-export-port 8090.
set -euo pipefail
# shellcheck source=ports.env
source "$(dirname "${BASH_SOURCE[0]}")/ports.env"

declare -A PORTS=(
  [object-manager-port]=$OBJECT_MANAGER_PORT
  [node-manager-port]=$NODE_MANAGER_PORT
  [dashboard-agent-grpc-port]=$DASHBOARD_AGENT_GRPC_PORT
  [runtime-env-agent-port]=$RUNTIME_ENV_AGENT_PORT
  [metrics-export-port]=$METRICS_EXPORT_PORT
  [dashboard-agent-listen-port]=$DASHBOARD_AGENT_LISTEN_PORT
  [min-worker-port]=$MIN_WORKER_PORT
  [max-worker-port]=$MAX_WORKER_PORT
)
[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
HEAD="$1"; shift
case "$HEAD" in *:*) ;; *) HEAD="$HEAD:$GCS_PORT" ;; esac
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
