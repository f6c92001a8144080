#!/usr/bin/env bash
# Starts LocalStack (docker-compose.localstack.yml) and waits until Step Functions, Lambda and S3 answer.
set -euo pipefail
cd "$(dirname "$0")/.."
docker compose -f docker-compose.localstack.yml up -d
for _ in $(seq 1 90); do
  health=$(curl -fsS http://localhost:4566/_localstack/health || true)
  if echo "$health" | grep -Eq '"stepfunctions": "(available|running)"' &&
     echo "$health" | grep -Eq '"lambda": "(available|running)"' &&
     echo "$health" | grep -Eq '"s3": "(available|running)"'; then
    echo "LocalStack is up"
    exit 0
  fi
  sleep 2
done
echo "LocalStack did not become healthy in 180 s; see: docker compose -f docker-compose.localstack.yml logs" >&2
exit 1
