#!/usr/bin/env bash
# Serves the deployed state machine's Train activity from this machine (CPU, or a GPU with RSCLIP_EP=cuda,webgpu).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/localstack-env.sh
ACTIVITY_ARN=$(rsclip_output TrainActivityArn)
export ACTIVITY_ARN
echo "polling $ACTIVITY_ARN"
exec npm run -s rsclip -- worker --activity-arn "$ACTIVITY_ARN"
