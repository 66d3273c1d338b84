#!/usr/bin/env bash
# Harvest benchmark: a WAF of N records (the project's test records, copied with fresh
# identifiers) served by nginx on loopback, harvested by a release `sheaf run-test` into a
# fresh data folder, twice (first harvest, then the unchanged re-harvest). Prints records/s
# and peak memory of each run. Usage: tests/bench_harvest.sh [N=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-2000}
cargo build --release -p sheaf >&2
work=$(mktemp -d)
trap 'kill $(cat "$work/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/site/waf"
templates=(tests/records/waf/iso19139/*.xml tests/records/waf/iso19139/regional/*.xml tests/records/waf/iso19115-3/*.xml tests/records/waf/dublin-core/record-harbour-survey.xml)
for i in $(seq 1 "$n"); do
  t=${templates[$(( i % ${#templates[@]} ))]}
  dir="$work/site/waf/part$(( i / 500 ))"
  mkdir -p "$dir"
  # A fresh identifier per copy: every identifier in these records starts one of these elements.
  sed -E "s#(<gco:CharacterString>|<dc:identifier>)([^<]*)(</gco:CharacterString></gmd:fileIdentifier>|</gco:CharacterString></mcc:code>|</dc:identifier>)#\1\2-copy$i\3#" "$t" > "$dir/record-$i.xml"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
daemon on; worker_processes 1; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 256; }
http { access_log off; client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f;
  uwsgi_temp_path $work/u; scgi_temp_path $work/s; types { application/xml xml; }
  server { listen 127.0.0.1:$port; root $work/site; autoindex on; location / { } } }
CONF
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ "$(id -u)" = 0 ] && sed -i '1s/^/user root;\n/' "$work/nginx.conf"
"$nginx_bin" -c "$work/nginx.conf" -p "$work"
sheaf="$root/target/release/sheaf --data-dir $work/data"
$sheaf source add bench "http://127.0.0.1:$port/waf/" --type waf >/dev/null
for run in first unchanged; do
  /usr/bin/time -f '%e %M' -o "$work/time" $sheaf run-test bench --json > "$work/job.json" 2>/dev/null
  read -r secs kib < "$work/time"
  python3 - "$work/job.json" "$secs" "$kib" "$run" "$n" <<'PY'
import json, sys
job = json.load(open(sys.argv[1])); secs, kib, run, n = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
s = job["stats"]
print(f"{run:>9} harvest of {n} records: {secs:.2f} s, {n / secs:.0f} records/s, peak RSS {kib / 1024:.1f} MiB "
      f"(added {s['added']}, unchanged {s['unchanged']}, errored {s['errored']})")
PY
done
