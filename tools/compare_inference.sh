#!/usr/bin/env bash
# Rotor's `dense_vs_pruned` benchmark and the peers, alternately, in one session.
#
#   tools/compare_inference.sh [ISA ...]      e.g. tools/compare_inference.sh avx2 avx512
#
# Each round runs the peers (ONNX Runtime, then PyTorch, through tools/peer_bench.py) and
# then Rotor's benchmark once per instruction set named (ROTOR_ISA; with none named, the
# one Rotor detects), so that every Rotor figure has a peer figure measured minutes before
# it. Criterion keeps each set's medians as a baseline named after the set, which
# tools/speedup_chart.py reads. Everything printed is also written under $OUT.
#
# Environment: PEER_PYTHON (the Python with requirements-peer.txt installed, default
# /tmp/peer/bin/python), ROUNDS (default 2), RAYON_NUM_THREADS (default 2, used by both
# sides), PEER_ONLY (ort, torch or all; default all), OUT (default target/compare).
# The machine must be otherwise idle: see tools/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PEER_PYTHON=${PEER_PYTHON:-/tmp/peer/bin/python}
ROUNDS=${ROUNDS:-2}
PEER_ONLY=${PEER_ONLY:-all}
OUT=${OUT:-target/compare}
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
ISAS=("$@")
[ ${#ISAS[@]} -gt 0 ] || ISAS=(detected)

if ! "$PEER_PYTHON" -c 'import onnxruntime, torch' 2>/dev/null; then
    echo "no peer environment at $PEER_PYTHON; make one with:" >&2
    echo "  python3 -m venv /tmp/peer && /tmp/peer/bin/pip install -r tools/requirements-peer.txt" >&2
    exit 1
fi
mkdir -p "$OUT"
# Build first, so that no round times a machine busy compiling.
cargo bench --bench dense_vs_pruned --no-run 2>&1 | tail -n 1

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round of $ROUNDS: peers ($(date -u +%H:%M:%S) UTC)"
    "$PEER_PYTHON" tools/peer_bench.py --only "$PEER_ONLY" \
        --json "$OUT/peers-round$round.json" 2>&1 | tee "$OUT/peers-round$round.txt"
    for isa in "${ISAS[@]}"; do
        echo "== round $round of $ROUNDS: Rotor, $isa ($(date -u +%H:%M:%S) UTC)"
        if [ "$isa" = detected ]; then
            env -u ROTOR_ISA cargo bench --bench dense_vs_pruned -- --save-baseline "$isa"
        else
            ROTOR_ISA=$isa cargo bench --bench dense_vs_pruned -- --save-baseline "$isa"
        fi 2>&1 | tee "$OUT/rotor-$isa-round$round.txt"
    done
done
echo "logs in $OUT; chart: python tools/speedup_chart.py target/criterion ${ISAS[*]}"
