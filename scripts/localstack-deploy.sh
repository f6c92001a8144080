#!/usr/bin/env bash
# Deploys the `local` stage (no VPC, Batch or container image; Train is a Step Functions Activity) to LocalStack.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/localstack-env.sh
# cdklocal strips AWS_* variables it does not know; keep the region.
export AWS_ENVAR_ALLOWLIST=AWS_REGION,AWS_DEFAULT_REGION
npx cdklocal bootstrap "aws://000000000000/$AWS_REGION"
# A fresh stack is more reliable on LocalStack than an update: destroy first when one exists.
if [ "${RSCLIP_REDEPLOY:-0}" = "1" ]; then npx cdklocal destroy "$RSCLIP_STACK" -c stage=local --force || true; fi
npx cdklocal deploy "$RSCLIP_STACK" -c stage=local --require-approval never --outputs-file "$RSCLIP_OUTPUTS"
echo "bucket:         $(rsclip_output BucketName)"
echo "train activity: $(rsclip_output TrainActivityArn)"
