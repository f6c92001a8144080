#!/usr/bin/env bash
# Uploads a tiny generated dataset to the deployed bucket and waits for models/<dataset>/latest.json.
# Needs `npm run localstack:worker` running in another terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/localstack-env.sh
RSCLIP_BUCKET=$(rsclip_output BucketName)
RSCLIP_STATE_MACHINE=$(rsclip_output StateMachineArn)
export RSCLIP_BUCKET RSCLIP_STATE_MACHINE
exec npx tsx scripts/localstack-smoke.ts "$@"
