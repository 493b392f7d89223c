#!/usr/bin/env bash
# Screenshot of the asset graph for the README: serves this project's instance on loopback, marks the
# UI's one-time welcome dialog as seen (GraphQL setNuxSeen), and renders the upstream lineage of
# release_decision with headless Chromium (Debian `chromium`). Usage: bash scripts/screenshot_ui.sh [out.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/asset_graph.png}"
port=3077
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD}"
.venv/bin/dagster-webserver -h 127.0.0.1 -p "$port" -w workspace.yaml > /tmp/ftassets-ui.log 2>&1 &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/server_info" > /dev/null && break; sleep 2; done
curl -sf -X POST -H 'Content-Type: application/json' -d '{"query":"mutation { setNuxSeen }"}' \
  "http://127.0.0.1:$port/graphql" > /dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=2000,1200 \
  --virtual-time-budget=25000 --screenshot="$out" \
  "http://127.0.0.1:$port/assets/release_decision?view=lineage&lineageScope=upstream&lineageDepth=20" 2> /dev/null
echo "wrote $out"
