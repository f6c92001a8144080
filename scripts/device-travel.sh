#!/usr/bin/env bash
# What travels to the GPU machine is the tracked tree (68.9 MiB, 65.8 of it test/fixtures) plus what a call
# carries, 64 MiB at most; with the CUDA payload (~37 MiB) the rest must stay under ~27 MiB. The GPU checks
# (scripts/gpu-check.sh, bench-train) need no fixture, so for the calls of a device session:
#   scripts/device-travel.sh light     # untrack test/fixtures (files stay on disk, ignored): 3.1 MiB travels
#   ... run the device calls ...
#   scripts/device-travel.sh restore   # track them again, exactly as before
# Between the two the index holds the fixtures' removal: never commit then (light refuses a dirty index for that).
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURES=test/fixtures
EXCLUDE=.git/info/exclude
LINE="/$FIXTURES/"

case "${1:-}" in
  light)
    if ! git diff --cached --quiet; then
      echo "device-travel: the index has staged changes; commit or unstage them first" >&2
      exit 1
    fi
    git rm -r -q --cached "$FIXTURES"
    grep -qxF "$LINE" "$EXCLUDE" 2>/dev/null || echo "$LINE" >>"$EXCLUDE"
    echo "device-travel: $FIXTURES untracked for device calls; run '$0 restore' before any commit"
    ;;
  restore)
    git reset -q -- "$FIXTURES"
    if [ -f "$EXCLUDE" ]; then
      grep -vxF "$LINE" "$EXCLUDE" >"$EXCLUDE.tmp" || true
      mv "$EXCLUDE.tmp" "$EXCLUDE"
    fi
    git diff --quiet -- "$FIXTURES" && echo "device-travel: $FIXTURES tracked again, unchanged"
    ;;
  *)
    echo "usage: $0 light|restore" >&2
    exit 2
    ;;
esac
