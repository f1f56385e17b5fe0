#!/usr/bin/env bash
# One of Rotor's benchmarks and the peers', alternately, in one session.
#
#   tools/compare_with_peers.sh inference [ISA ...]   e.g. ... inference avx2 avx512
#   tools/compare_with_peers.sh training [ISA ...]
#
# `inference` is Rotor's `dense_vs_pruned` benchmark against ONNX Runtime's and PyTorch's
# inference; `training` is its `train_step` benchmark against PyTorch's training step.
# Each round runs the peers (through tools/peer_bench.py) and then Rotor's benchmark once
# per instruction set named (ROTOR_ISA; with none named, the one Rotor detects), so that
# every Rotor figure has a peer figure measured minutes before it. Criterion keeps each
# set's medians as a baseline named after the set, which tools/speedup_chart.py reads.
# Everything printed is also written under $OUT.
#
# Environment: PEER_PYTHON (the Python with requirements-peer.txt installed, default
# /tmp/peer/bin/python), ROUNDS (default 2), RAYON_NUM_THREADS (default 2, used by both
# sides), PEER_ONLY (for inference: ort, torch or all; default all), OUT (default
# target/compare).
# The machine must be otherwise idle: see tools/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PEER_PYTHON=${PEER_PYTHON:-/tmp/peer/bin/python}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-target/compare}
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
case "${1:-}" in
    inference) BENCH=dense_vs_pruned; PEER_ONLY=${PEER_ONLY:-all} ;;
    training) BENCH=train_step; PEER_ONLY=training ;;
    *) echo "usage: $0 inference|training [ISA ...]" >&2; exit 2 ;;
esac
shift
ISAS=("$@")
[ ${#ISAS[@]} -gt 0 ] || ISAS=(detected)

if ! "$PEER_PYTHON" -c 'import onnxruntime, torch' 2>/dev/null; then
    echo "no peer environment at $PEER_PYTHON; make one with:" >&2
    echo "  python3 -m venv /tmp/peer && /tmp/peer/bin/pip install -r tools/requirements-peer.txt" >&2
    exit 1
fi
mkdir -p "$OUT"
# Build first, so that no round times a machine busy compiling.
cargo bench --bench "$BENCH" --no-run 2>&1 | tail -n 1

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round of $ROUNDS: peers ($(date -u +%H:%M:%S) UTC)"
    "$PEER_PYTHON" tools/peer_bench.py --only "$PEER_ONLY" \
        --json "$OUT/$BENCH-peers-round$round.json" 2>&1 | tee "$OUT/$BENCH-peers-round$round.txt"
    for isa in "${ISAS[@]}"; do
        echo "== round $round of $ROUNDS: Rotor, $isa ($(date -u +%H:%M:%S) UTC)"
        if [ "$isa" = detected ]; then
            env -u ROTOR_ISA cargo bench --bench "$BENCH" -- --save-baseline "$isa"
        else
            ROTOR_ISA=$isa cargo bench --bench "$BENCH" -- --save-baseline "$isa"
        fi 2>&1 | tee "$OUT/$BENCH-rotor-$isa-round$round.txt"
    done
done
echo "logs in $OUT"
if [ "$BENCH" = dense_vs_pruned ]; then
    echo "chart: python tools/speedup_chart.py target/criterion ${ISAS[*]}"
fi
