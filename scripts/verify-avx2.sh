#!/usr/bin/env bash
# verify-reference for every fixture as an AVX2-only AMD EPYC (Rome) would run it, on any x86-64 host: qemu's user
# mode reports that CPU, so onnxruntime's MLAS picks its AVX2 kernels instead of AVX-512 ones (about 50x slower
# than native; the ResNet fixture takes ~5 minutes). Needs Debian's qemu-user (apt-get install -y qemu-user).
set -euo pipefail
cd "$(dirname "$0")/.."
cpu="${QEMU_CPU_MODEL:-EPYC-Rome}"
status=0
for dir in "${@:-test/fixtures/open_clip-tiny test/fixtures/open_clip-tiny-quickgelu test/fixtures/open_clip-tiny-rn test/fixtures/open_clip-tiny-rn-variant}"; do
  for d in $dir; do
    echo "== $d on qemu -cpu $cpu"
    # qemu warns once per thread about CPUID bits its TCG cannot emulate; those lines are not ours.
    qemu-x86_64 -cpu "$cpu" "$(command -v node)" --import tsx cli/main.ts verify-reference "$d" 2> >(grep -v "TCG doesn't support" >&2) || status=1
  done
done
exit $status
