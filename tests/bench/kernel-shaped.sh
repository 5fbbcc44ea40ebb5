#!/usr/bin/env bash
# Throughput accuracy on a kernel-shaped path, side by side with iperf3.
#
# Two network namespaces joined by a veth pair; `tc tbf` on each end
# shapes that direction to RATE Mbit/s (this kernel has no netem, tbf works).
# The relay runs in dsA, the agent's measurement code (deskside-bench-path
# --direct) and the iperf3 client in dsB. Needs root, iproute2 and iperf3
# (`apt-get install iperf3`), and release binaries
# (`cargo build --release --workspace --bins`).
#
# Usage: sudo tests/bench/kernel-shaped.sh [RATE_MBIT ...]   (default 1 10 50 100 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(1 10 50 100 200)
command -v iperf3 >/dev/null || { echo "error: iperf3 is missing: apt-get install iperf3" >&2; exit 1; }

cleanup() {
  ip netns pids dsA 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del dsA 2>/dev/null || true
  ip netns del dsB 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add dsA
ip netns add dsB
ip link add vA type veth peer name vB
ip link set vA netns dsA
ip link set vB netns dsB
ip -n dsA addr add 10.77.0.1/24 dev vA
ip -n dsB addr add 10.77.0.2/24 dev vB
for ns in dsA dsB; do ip -n "$ns" link set lo up; done
ip -n dsA link set vA up
ip -n dsB link set vB up
ip netns exec dsA iperf3 -s -D -B 10.77.0.1 >/dev/null

printf '%8s %14s %14s %14s %14s\n' "shaped" "iperf3 down" "deskside down" "iperf3 up" "deskside up"
port=4433
for rate in "${rates[@]}"; do
  # Burst: at least 10 ms of traffic (and 32 KB) so tbf is not the limit at
  # high rates; queue: 50 ms.
  burst=$(( rate * 1000000 / 8 / 100 )); [ "$burst" -ge 32768 ] || burst=32768
  for pair in "dsA vA" "dsB vB"; do
    set -- $pair
    tc -n "$1" qdisc replace dev "$2" root tbf rate "${rate}mbit" burst "$burst" latency 50ms
  done
  # iperf3: TCP goodput over 3 s, one flow, like the agent's test.
  up=$(ip netns exec dsB iperf3 -c 10.77.0.1 -t 3 -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))')
  down=$(ip netns exec dsB iperf3 -c 10.77.0.1 -t 3 -R -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))')
  port=$((port + 1))
  ours=$(ip netns exec dsB "$bin/deskside-bench-path" --direct "10.77.0.1:$port" --relay-netns dsA \
          --rates "$rate" --runs 3 --snapshots 0 | awk '/ Mb /{print $3, $6}')
  printf '%5s Mb %11s Mb %11s Mb %11s Mb %11s Mb\n' "$rate" "$down" "${ours%% *}" "$up" "${ours##* }"
done
