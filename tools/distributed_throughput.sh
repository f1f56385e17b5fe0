#!/usr/bin/env bash
# Training throughput of MnistNet (the mnist_rrelu example's first epoch) in one process with
# N threads against N MPI ranks of one thread each, in alternating rounds on one machine.
#
#   ROUNDS=3 RANKS=2 LIMIT=20000 tools/distributed_throughput.sh
#
# Needs Open MPI (Debian: libopenmpi-dev openmpi-bin libclang-dev).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-3}
ranks=${RANKS:-2}
limit=${LIMIT:-20000}

cargo build --release --features mpi --example mnist_rrelu
bin=target/release/examples/mnist_rrelu
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Training only: prune at zeta 0 (no search), no fine-tuning.
common=(--epochs 1 --train-limit "$limit" --zeta 0 --finetune-epochs 0 --save "$out/m.safetensors")
mpirun=(mpirun -np "$ranks" -x RAYON_NUM_THREADS=1)
if [[ $(id -u) == 0 ]]; then mpirun+=(--allow-run-as-root); fi

epoch_rate() { grep -o '[0-9]* images/s' | awk 'NR == 1 { print $1 }'; }
for round in $(seq "$rounds"); do
    single=$(RAYON_NUM_THREADS=$ranks "$bin" "${common[@]}" | epoch_rate)
    multi=$("${mpirun[@]}" "$bin" --distributed "${common[@]}" | epoch_rate)
    ratio=$(awk -v a="$multi" -v b="$single" 'BEGIN { printf "%.2f", a / b }')
    echo "round $round: 1 process x $ranks threads $single images/s; $ranks ranks x 1 thread $multi images/s; ratio $ratio"
done
