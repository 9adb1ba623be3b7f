#!/usr/bin/env bash
# API throughput and latency on loopback: authenticated `GET /api/stream/{id}` and
# `GET /api/stream?limit=20`, on SQLite and on PostgreSQL, with wrk beside the server.
#
#   bench/api.sh [seconds per run, default 10] [connections, default 32]
#
# Builds the release binary, starts a throwaway PostgreSQL, prints a Markdown table.
# Results and what they compare against: bench/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
duration="${1:-10}"
connections="${2:-32}"
export STUDIO_CACHE="${STUDIO_CACHE:-$HOME/.cache/studio}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STUDIO_CACHE/target}"
scripts/test-deps
cargo build --release -p studio-api --bin studio >&2
studio="$CARGO_TARGET_DIR/release/studio"
work="$(mktemp -d /tmp/studio-bench.XXXXXX)"
chmod 755 "$work" # the postgres user enters it
pids=()
as_pg=()
if ((EUID == 0)); then as_pg=(runuser -u postgres --); fi
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -d "$work/pg" ]]; then
    "${as_pg[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$work/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_postgres() {
  mkdir -p "$work/pg"
  if ((EUID == 0)); then chown postgres:postgres "$work/pg"; fi
  local port; port="$(free_port)"
  "${as_pg[@]}" /usr/lib/postgresql/15/bin/initdb -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  "${as_pg[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$work/pg/data" -l "$work/pg/log" -w \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE studio" >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/studio"
}

# wrk's summary as "req/s p50 p99" (latencies in ms).
measure() {
  local url="$1" key="$2"
  wrk -t2 -c"$connections" -d"${duration}s" --latency -H "Authorization: Bearer $key" "$url" >"$work/wrk.txt"
  python3 - "$work/wrk.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"wrk saw {errors.group(1)} error responses")
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f}")
PY
}

echo "| database | request | req/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
for backend in sqlite postgres; do
  data="$work/data-$backend"
  if [[ $backend == postgres ]]; then url="$(start_postgres)"; else url="sqlite://$data/studio.db"; fi
  port="$(free_port)"
  key="$("$studio" api-key create --name bench --database-url "$url" --data-dir "$data" | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')"
  STUDIO_LOG=warn "$studio" serve --database-url "$url" --data-dir "$data" --http-addr "127.0.0.1:$port" --rtmp-addr 127.0.0.1:0 --srt-addr 127.0.0.1:0 &
  pids+=($!)
  base="http://127.0.0.1:$port/api"
  for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
  id=""
  for i in $(seq 30); do
    id="$(curl -sf -H "Authorization: Bearer $key" -H 'content-type: application/json' -d "{\"name\":\"bench-$i\"}" "$base/stream" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
  done
  read -r rps p50 p99 < <(measure "$base/stream/$id" "$key")
  echo "| $backend | GET /api/stream/{id} | $rps | $p50 | $p99 |"
  read -r rps p50 p99 < <(measure "$base/stream?limit=20" "$key")
  echo "| $backend | GET /api/stream?limit=20 | $rps | $p50 | $p99 |"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
done
