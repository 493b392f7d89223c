#!/usr/bin/env bash
# Screenshots of the Dagster UI with headless Chromium (Debian `chromium`): serves the instance of
# DAGSTER_HOME (default: this repository's) for the data folder of FTASSETS_DATA_DIR on loopback, marks
# the UI's one-time welcome dialog as seen (GraphQL setNuxSeen), and renders pages.
#   bash scripts/screenshot_ui.sh [out.png]   the upstream lineage of release_decision (docs/asset_graph.png)
#   bash scripts/screenshot_ui.sh --pages     the pages a reviewer reads, into docs/ui/ (needs materializations)
set -euo pipefail
cd "$(dirname "$0")/.."
port=3077
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD}"
.venv/bin/dagster-webserver -h 127.0.0.1 -p "$port" -w workspace.yaml > /tmp/ftassets-ui.log 2>&1 &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/server_info" > /dev/null && break; sleep 2; done
curl -sf -X POST -H 'Content-Type: application/json' -d '{"query":"mutation { setNuxSeen }"}' \
  "http://127.0.0.1:$port/graphql" > /dev/null
shot() {  # shot OUT PATH [HEIGHT]
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="1600,${3:-1200}" \
    --virtual-time-budget=25000 --screenshot="$1" "http://127.0.0.1:$port$2" 2> /dev/null
  echo "wrote $1"
}
if [ "${1:-}" != "--pages" ]; then
  shot "${1:-docs/asset_graph.png}" "/assets/release_decision?view=lineage&lineageScope=upstream&lineageDepth=20"
  exit 0
fi
mkdir -p docs/ui
shot docs/ui/catalog_kinds.png "/assets?view=flat" 1000
shot docs/ui/eval_report_metadata.png "/assets/eval_report?view=events" 2400
shot docs/ui/eval_report_plots.png "/assets/eval_report?view=plots" 1600
shot docs/ui/data_splits_overview.png "/assets/data_splits" 1800
shot docs/ui/data_splits_preview.png "/assets/data_splits?view=events" 2000
shot docs/ui/sft_adapter_loss_curve.png "/assets/sft_adapter?view=events" 2000
shot docs/ui/blind_review_packet.png "/assets/blind_review_packet?view=events" 2000
shot docs/ui/human_review_launchpad.png "/assets/human_review" 1200
