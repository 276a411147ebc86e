#!/usr/bin/env bash
# Start the Ray head node for a soulsai_ray cluster, with token authentication on.
#
#   scripts/start_head.sh [--node-ip IP] [--dashboard-host 127.0.0.1] [--num-cpus N] [--PORT-FLAG P]...
#
# The head runs the driver, learner, replay and weight store. It offers no `soulsgym` resource, so
# SoulsGym rollout actors land only on game PCs. It prints the exact commands game PCs use to join.
#
# The cluster token is $RAY_AUTH_TOKEN, or else the file at $RAY_AUTH_TOKEN_PATH (default
# ~/.ray/auth_token); the file is created if missing and kept at mode 600 in a mode 700 folder.
# Every port Ray opens is pinned to its value in scripts/ports.env, the cluster's one list of ports
# (docs/security.md); the `ray start` flag of the same name overrides one, e.g. --port 6380.
set -euo pipefail
# shellcheck source=ports.env
source "$(dirname "${BASH_SOURCE[0]}")/ports.env"

declare -A PORTS=(
  [port]=$GCS_PORT                                        # head only
  [ray-client-server-port]=$RAY_CLIENT_SERVER_PORT        # head only, unused: keep it closed
  [dashboard-port]=$DASHBOARD_PORT                        # head only, on --dashboard-host
  [object-manager-port]=$OBJECT_MANAGER_PORT              # from here on: every node
  [node-manager-port]=$NODE_MANAGER_PORT
  [dashboard-agent-grpc-port]=$DASHBOARD_AGENT_GRPC_PORT
  [runtime-env-agent-port]=$RUNTIME_ENV_AGENT_PORT
  [metrics-export-port]=$METRICS_EXPORT_PORT
  [dashboard-agent-listen-port]=$DASHBOARD_AGENT_LISTEN_PORT
  [min-worker-port]=$MIN_WORKER_PORT
  [max-worker-port]=$MAX_WORKER_PORT
)
# The head's own Prometheus endpoints (autoscaler and dashboard metrics) take their ports from
# these environment variables, not from flags, and listen on every address: pin them too.
export AUTOSCALER_METRIC_PORT DASHBOARD_METRIC_PORT
NODE_IP=""
DASHBOARD_HOST=127.0.0.1
NUM_CPUS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --node-ip) NODE_IP="$2"; shift 2 ;;
    --dashboard-host) DASHBOARD_HOST="$2"; shift 2 ;;
    --num-cpus) NUM_CPUS="$2"; shift 2 ;;
    --*port)
      [ -n "${PORTS[${1#--}]+pinned}" ] || { echo "unknown argument: $1" >&2; exit 2; }
      PORTS[${1#--}]="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

RAY="${RAY:-ray}"
command -v "$RAY" >/dev/null 2>&1 || RAY="$(dirname "$0")/../.venv/bin/ray"
[ -x "$(command -v "$RAY")" ] || { echo "ray not found: run 'make install' first or put ray on PATH" >&2; exit 1; }
PYTHON="$(dirname "$(command -v "$RAY")")/python"

if [ -z "$NODE_IP" ]; then
  NODE_IP="$(hostname -I 2>/dev/null | awk '{print $1}')"
  [ -n "$NODE_IP" ] || { echo "could not detect this machine's IP; pass --node-ip" >&2; exit 1; }
fi

# Creates the token file at $1 (mode 600, folder 700) or tightens an existing one; sets TOKEN_PATH.
secure_token_file() {
  local dir mode
  dir="$(dirname "$1")"
  [ -d "$dir" ] || (umask 077 && mkdir -p "$dir")
  dir="$(cd "$dir" && pwd -P)"
  mode="$(stat -c %a "$dir")"
  if (( 8#$mode & 8#077 )); then
    if [ -O "$dir" ] && [ ! -k "$dir" ] && [ "$dir" != / ] && [ "$dir" != "$HOME_DIR" ]; then
      chmod 700 "$dir"
      echo "tightened the token folder $dir from mode $mode to 700" >&2
    else
      echo "note: the token folder $dir is shared (mode $mode); a folder of its own is safer" >&2
    fi
  fi
  TOKEN_PATH="$dir/$(basename "$1")"
  if [ -s "$TOKEN_PATH" ]; then
    mode="$(stat -c %a "$TOKEN_PATH")"
    if (( 8#$mode & 8#077 )); then
      chmod 600 "$TOKEN_PATH"
      echo "tightened the token file $TOKEN_PATH from mode $mode to 600" >&2
    fi
  else
    (umask 077 && touch "$TOKEN_PATH" && chmod 600 "$TOKEN_PATH" \
      && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$TOKEN_PATH")
    echo "generated a new cluster token in $TOKEN_PATH"
  fi
}

HOME_DIR="$(cd ~ && pwd -P)"
export RAY_AUTH_MODE=token
TOKEN_PATH=""
if [ -n "${RAY_AUTH_TOKEN:-}" ]; then
  TOKEN_SOURCE="the RAY_AUTH_TOKEN environment variable"
else
  secure_token_file "${RAY_AUTH_TOKEN_PATH:-$HOME_DIR/.ray/auth_token}"
  export RAY_AUTH_TOKEN_PATH="$TOKEN_PATH"
  TOKEN_SOURCE="$TOKEN_PATH"
fi

args=(--head --node-ip-address="$NODE_IP" --dashboard-host="$DASHBOARD_HOST" --disable-usage-stats)
for flag in "${!PORTS[@]}"; do args+=("--$flag=${PORTS[$flag]}"); done
[ -n "$NUM_CPUS" ] && args+=(--num-cpus="$NUM_CPUS")
"$RAY" start "${args[@]}"

VERSIONS="$("$PYTHON" -c 'import platform, ray; print(f"Python {platform.python_version()}, Ray {ray.__version__}")')"
DRIVER_ENV=""
if [ -n "$TOKEN_PATH" ] && [ "$TOKEN_PATH" != "$HOME_DIR/.ray/auth_token" ]; then
  DRIVER_ENV="RAY_AUTH_TOKEN_PATH=$TOKEN_PATH "
fi
HEAD="$NODE_IP:${PORTS[port]}"
cat <<MSG

Head node is up at $HEAD with token authentication ($VERSIONS).
Every node needs the same Python and Ray versions, and the token from $TOKEN_SOURCE.
The token lets its holder run any code on every node: copy it only to game PCs you trust, keep
its file private there (chmod 600 FILE), and never send it over the internet in the clear.

Join from a Windows game PC (PowerShell, in the soulsai_ray checkout):
    .\\scripts\\join_cluster.ps1 -HeadAddress $HEAD -TokenFile C:\\path\\to\\auth_token

Join from a Linux machine:
    scripts/join_cluster.sh $HEAD --token-file /path/to/auth_token

Then train on the head:
    ${DRIVER_ENV}.venv/bin/python scripts/train.py env=iudex cluster=remote

Firewall: open only these TCP ports, only between the head and the game PCs (never the internet):
MSG
printf '    %-13s %s\n' \
  "${PORTS[port]}" "GCS, on the head; from the game PCs" \
  "${PORTS[object-manager-port]}, ${PORTS[node-manager-port]}" "object manager, node manager, on every node; from every other node" \
  "${PORTS[min-worker-port]}-${PORTS[max-worker-port]}" "workers, on every node; from every other node" \
  "${PORTS[dashboard-agent-grpc-port]}, ${PORTS[dashboard-agent-listen-port]}" "dashboard agent gRPC and HTTP, on every node; from the head" \
  "${PORTS[metrics-export-port]}" "metrics export, on every node; from the head (Prometheus)"
echo "Keep closed: ${PORTS[runtime-env-agent-port]} (runtime env agent, used by its own node)," \
  "${PORTS[ray-client-server-port]} (Ray Client server, unused: drivers run on the head),"
echo "$AUTOSCALER_METRIC_PORT, $DASHBOARD_METRIC_PORT (head metrics, read by a Prometheus on the head)," \
  "and ${PORTS[dashboard-port]} (dashboard, listening on $DASHBOARD_HOST)."
