#!/usr/bin/env bash
# Time of `deskside-agent check` on Windows under Wine next to Linux, same
# machine: one local release relay, one Linux agent and one Windows agent
# (deskside-agent.exe through scripts/wine-run) enrolled with it; `check`
# and `check --quick` three times each; the median of the three wall times
# and, from the last run, what was measured (so a fast run that measured
# nothing shows).
#
# Needs release builds:
#   cargo build --release -p deskside-agent -p deskside-relay -p deskside-console --bins
#   cargo build --release --target x86_64-pc-windows-gnu -p deskside-agent --bin deskside-agent
# Usage: tests/bench/windows-check-time.sh
#   WINDOWS_EXE=path/to/deskside-agent.exe   (default: target/x86_64-pc-windows-gnu/release/)
#   DESKSIDE_WINEPREFIX=/tmp/my-prefix       (default: scripts/wine-run's own)
# Wine's own start-up, for comparison: scripts/wine-run "$WINDOWS_EXE" --version.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release
exe="${WINDOWS_EXE:-target/x86_64-pc-windows-gnu/release/deskside-agent.exe}"
for program in "$bin/deskside-relay" "$bin/deskside" "$bin/deskside-agent" "$exe"; do
  [ -x "$program" ] || [ -f "$program" ] || { echo "error: $program is missing: build it (see the header)" >&2; exit 1; }
done
work="$(mktemp -d)"
windows_state="C:\\deskside-check-time-$$"
"$bin/deskside-relay" serve --dev --listen 127.0.0.1:0 --data-dir "$work/relay" >"$work/relay.out" 2>"$work/relay.err" &
relay_pid=$!
trap 'kill "$relay_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 150); do grep -q '"ready"' "$work/relay.out" 2>/dev/null && break; sleep 0.2; done
ready_field() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])" "$work/relay.out" "$1"; }
"$bin/deskside" --profile "$work/admin.json" login --relay "$(ready_field listen)" \
  --fingerprint "$(ready_field fingerprint)" --token "$(cat "$work/relay/admin-token")" >/dev/null
token() {
  "$bin/deskside" --profile "$work/admin.json" enroll-token create --uses 1 --expires 10m --json |
    python3 -c "import json,sys; print(json.loads(sys.stdin.read())['token'])"
}
"$bin/deskside-agent" --state-dir "$work/linux" enroll "$(token)" >/dev/null
scripts/wine-run "$exe" --state-dir "$windows_state" enroll "$(token)" >/dev/null 2>&1
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in "check" "check --quick"; do
  for os in linux windows; do
    times=()
    for _ in 1 2 3; do
      start=$(date +%s.%N)
      if [ "$os" = linux ]; then
        # shellcheck disable=SC2086 # $mode is two words on purpose
        "$bin/deskside-agent" --state-dir "$work/linux" $mode --json >"$work/out.json" 2>/dev/null || true
      else
        # shellcheck disable=SC2086
        scripts/wine-run "$exe" --state-dir "$windows_state" $mode --json >"$work/out.json" 2>/dev/null || true
      fi
      end=$(date +%s.%N)
      times+=("$(python3 -c "print(f'{$end - $start:.2f}')")")
    done
    median="$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)"
    echo "$os '$mode': ${times[*]} s, median $median s"
    python3 - "$work/out.json" <<'PY'
import json, sys
report = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
snapshot = report["snapshot"]
path = snapshot["path"].get("measured", {})
download = path.get("download", {}).get("measured", {}).get("mbps")
print(f"  last run: udp_ok={path.get('udp_ok')}, idle RTT median "
      f"{path.get('idle_rtt', {}).get('median_ms')} ms, download {download} Mbit/s, "
      f"snapshot duration {snapshot['duration_ms']} ms, "
      f"findings {[f['id'] for f in report['verdict']['findings']]}")
PY
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
