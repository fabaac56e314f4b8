#!/usr/bin/env bash
# Peak and resident memory of the agent across hostile-sized write requests
# (docs/BENCHMARKS.md, "HTTP write API: memory per request").
#
#   bench/http_memory.sh [path/to/pythond]
#
# Starts an agent with a file sink in a scratch directory, posts (1) 16 KiB of gzip
# inflating to 8 MiB of `m v=1` lines and (2) 32 MiB of `m v=1` lines, and prints
# VmHWM / VmRSS from /proc after each.
set -euo pipefail
bin=${1:-target/release/pythond}
bin=$(realpath "$bin")
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/conf.d" "$dir/python.d"
cat > "$dir/pythond.toml" <<TOML
[http]
listen = "127.0.0.1:0"
request_timeout = "600s"
max_points_per_request = 10000000

[[sinks]]
type = "file"
path = "points.ndjson"
TOML
(cd "$dir" && exec "$bin" run --config pythond.toml 2>agent.log) &
pid=$!
for _ in $(seq 100); do
    grep -q "HTTP API listening on" "$dir/agent.log" 2>/dev/null && break
    sleep 0.1
done
base=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/agent.log" | head -1)
mem() { grep -E '^(VmHWM|VmRSS)' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }
echo "idle: $(mem)"
python3 -c 'import sys, gzip; sys.stdout.buffer.write(gzip.compress(b"m v=1\n" * ((8 << 20) // 6), 9))' > "$dir/gz"
echo "gzip body: $(stat -c %s "$dir/gz") bytes"
/usr/bin/time -f "%e s" curl -s -o /dev/null -w "%{http_code} " -H 'Content-Encoding: gzip' --data-binary "@$dir/gz" "$base/v1/write/metric"
echo "after 8 MiB (gzip): $(mem)"
python3 -c 'import sys; sys.stdout.buffer.write(b"m v=1\n" * ((32 << 20) // 6 - 1))' > "$dir/plain"
/usr/bin/time -f "%e s" curl -s -o /dev/null -w "%{http_code} " --data-binary "@$dir/plain" "$base/v1/write/metric"
echo "after 32 MiB (plain): $(mem)"
