#!/usr/bin/env bash
# Harvest benchmark: for each size N, a WAF of N ISO 19139 documents (the project's test
# records with fresh identifiers, 500 a folder) served by nginx on loopback; prints, side by
# side in one run:
#  - the network limit: 16 curl processes with keep-alive, each `curl -K` over a sixteenth of
#    the URL list, downloading every document to /dev/null (files/s);
#  - a first harvest by a release `sheaf run-test` into a fresh data folder (records/s, peak RSS,
#    CPU time a record: user and system);
#  - the unchanged re-harvest (records/s, peak RSS, CPU time a record);
#  - with SHEAF_BENCH_S3=1 the same two harvests into S3 on moto (from .venv; run-test hands
#    its stages' messages over in memory), and the requests each made a document (read from
#    moto's request log), priced at S3's list prices.
# Usage: tests/bench_harvest.sh [N ...]   (default: 10000 100000)
# SHEAF_BENCH_CSW=N adds a CSW source: pycsw (tests/pycsw_server.py, 100 records a page) loaded
# with N of the same generated records, harvested first and unchanged, beside the WAF figures.
# SHEAF_BENCH_RUNS (default 3): how many times the local pair of harvests runs, each into a
# fresh data folder; the median of each figure is printed after them (a harvest's peak RSS
# varies by a tenth from run to run, with the timing of the search index's merges).
# SHEAF_BENCH_BASELINE=PATH: a `sheaf` binary built from an earlier commit, whose local runs
# alternate with this build's, for a change measured side by side in one run.
# SHEAF_BENCH_WRAP, when set, prefixes each harvest (a profiler: `strace -c -f -o FILE`).
# SHEAF_BENCH_TEMPLATES=DIR: the WAF's documents are copies of the ISO 19139 documents in DIR
# (each in UTF-8 with a fileIdentifier; the others are left out) rather than the project's six
# test records of about 4 KB: real-world documents are larger (the real-fixture set's
# `$SHEAF_EXTRA_FIXTURES/iso19139`, 14 KB on average).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
cargo build --release -p sheaf >&2
work=$(mktemp -d)
cleanup() {
  kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  [ -n "${moto_pid:-}" ] && kill "$moto_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Both builds run from copies written here, one after the other: a file just written sits in
# the page cache in larger folios than one read from disk, and a process maps more of its
# executable at each fault then (the same build peaked 3 to 4 MiB higher, freshly copied, than
# its copy read back from disk), so binaries with different histories would not compare.
mkdir -p "$work/bin"
cp target/release/sheaf "$work/bin/sheaf"
baseline=""
if [ -n "${SHEAF_BENCH_BASELINE:-}" ]; then
  cp "$SHEAF_BENCH_BASELINE" "$work/bin/baseline"
  baseline="$work/bin/baseline"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
daemon on; worker_processes 1; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f;
  uwsgi_temp_path $work/u; scgi_temp_path $work/s; types { application/xml xml; }
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; root $work/site; autoindex on; location / { } } }
CONF
[ "$(id -u)" = 0 ] && sed -i '1s/^/user root;\n/' "$work/nginx.conf"
mkdir -p "$work/site"
"$(command -v nginx || echo /usr/sbin/nginx)" -c "$work/nginx.conf" -p "$work"

if [ "${SHEAF_BENCH_S3:-0}" = 1 ]; then
  moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$root/.venv/bin/moto_server" -p "$moto_port" > "$work/moto.log" 2>&1 &
  moto_pid=$!
  export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port AWS_ACCESS_KEY_ID=testing \
    AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
  sleep 2
fi

# Prints one result line from /usr/bin/time's output and the job's JSON.
report() { # label n time_file job_file
  python3 - "$@" <<'PY'
import json, sys
label, n, tfile, jfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
secs, kib, user, system = open(tfile).read().split()
secs, kib = float(secs), int(kib)
# CPU time (user and system) a record, in microseconds: what the harvest costs, apart from
# how much of the two cores it keeps busy.
cpu_us = (float(user) + float(system)) * 1e6 / n
with open(tfile + ".all", "a") as all_runs:
    all_runs.write(f"{label}\t{n}\t{secs}\t{kib}\t{cpu_us}\n")
s = json.load(open(jfile))["stats"]
print(f"{label:<28} {n:>7} records {secs:8.2f} s {n / secs:9.0f} records/s  peak RSS {kib / 1024:6.1f} MiB "
      f"CPU {cpu_us:5.0f} µs/record (added {s['added']}, unchanged {s['unchanged']}, errored {s['errored']})", flush=True)
PY
}

# Counts the requests of moto's log lines on stdin by S3's price classes and prices them (S3
# Standard, us-east-1 list prices: PUT, COPY, POST and LIST $0.005 a 1,000, GET and HEAD
# $0.0004 a 1,000, DELETE free; SQS $0.40 a million).
requests() { # documents bucket
  python3 -c '
import re, sys
n, bucket = int(sys.argv[1]), sys.argv[2]
counts = {"PUT/POST": 0, "LIST": 0, "GET/HEAD": 0, "DELETE": 0, "SQS": 0}
for line in sys.stdin:
    m = re.search(r"\"([A-Z]+) (\S+) HTTP", line)
    if not m:
        continue
    method, path = m.groups()
    if path.startswith("/" + bucket):
        if method == "GET" and ("list-type" in path or "prefix=" in path):
            counts["LIST"] += 1
        elif method in ("GET", "HEAD"):
            counts["GET/HEAD"] += 1
        elif method == "DELETE":
            counts["DELETE"] += 1
        else:
            counts["PUT/POST"] += 1
    elif method == "POST" and path == "/":
        counts["SQS"] += 1
cost = (counts["PUT/POST"] + counts["LIST"]) * 0.005 / 1000 + counts["GET/HEAD"] * 0.0004 / 1000 + counts["SQS"] * 0.4e-6
print("  requests a document: " + ", ".join(f"{k} {v / n:.2f}" for k, v in counts.items())
      + f"; ${cost / n * 1e6:.2f} a million documents", flush=True)
' "$@"
}

for n in "${sizes[@]}"; do
  site="$work/site/waf$n"
  python3 - "$site" "$n" tests/records/waf "${SHEAF_BENCH_TEMPLATES:-}" <<'PY'
import glob, os, re, sys, time
site, n, records, chosen = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ident = re.compile(r"(<gmd:fileIdentifier>\s*<gco:CharacterString>)([^<]*)(</gco:CharacterString>)")
if chosen:
    def utf8(path):
        try:
            return open(path, encoding="utf-8").read()
        except UnicodeDecodeError:
            return ""  # left out: its copies would be written back in another encoding
    paths = sorted(glob.glob(os.path.join(chosen, "**", "*.xml"), recursive=True))
    templates = [t for t in map(utf8, paths) if ident.search(t)]
    if not templates:
        sys.exit(f"no ISO 19139 document in UTF-8 with a fileIdentifier in {chosen}")
else:
    names = ["iso19139/coastal-erosion.xml", "iso19139/seabed-habitats.xml", "iso19139/glider-mission.xml",
             "iso19139/wms-service.xml", "iso19139/regional/lakes-inventory.xml", "iso19139/regional/forest-plots.xml"]
    templates = [open(os.path.join(records, t), encoding="utf-8").read() for t in names]
print(f"{len(templates)} template documents, {sum(len(t.encode()) for t in templates) // len(templates)} bytes on average", flush=True)
# Last modified an hour ago, as a WAF's documents are when a harvest comes (a file modified
# within the minute its listing was read is always asked for again).
hour_ago = time.time() - 3600
for i in range(n):
    folder = os.path.join(site, f"part{i // 500:04d}")
    if i % 500 == 0:
        os.makedirs(folder, exist_ok=True)
    text = ident.sub(lambda m: f"{m.group(1)}{m.group(2)}-copy{i}{m.group(3)}", templates[i % len(templates)], 1)
    path = os.path.join(folder, f"record-{i}.xml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.utime(path, (hour_ago, hour_ago))
PY
  base="http://127.0.0.1:$port/waf$n/"
  # The network limit: 16 curl processes with keep-alive over the same files.
  (cd "$site" && find . -name '*.xml' | sort) | awk -v b="$base" '{ sub("^\\./", ""); printf "url = \"%s%s\"\noutput = \"/dev/null\"\n", b, $0 }' > "$work/urls"
  total_lines=$(wc -l < "$work/urls")
  per=$(( (total_lines / 2 + 15) / 16 * 2 ))
  split -l "$per" "$work/urls" "$work/urls."
  start=$(date +%s.%N)
  curls=()
  for part in "$work"/urls.*; do curl -s -K "$part" & curls+=($!); done
  wait "${curls[@]}"
  end=$(date +%s.%N)
  python3 -c "import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'{\"curl x16, keep-alive\":<28} {n:>7} files   {s:8.2f} s {n / s:9.0f} files/s', flush=True)" "$n" "$start" "$end"
  rm -f "$work"/urls.*

  # One first harvest and its unchanged re-harvest, into a fresh data folder (or bucket).
  pair() { # mode
    local mode=$1 sheaf
    # The WAF is on loopback, which Sheaf refuses unless allowed.
    case $mode in
      local) sheaf="env SHEAF_ALLOW_PRIVATE_URLS=true $work/bin/sheaf --data-dir $work/data$n" ;;
      baseline) sheaf="env SHEAF_ALLOW_PRIVATE_URLS=true $baseline --data-dir $work/data$n" ;;
      s3)
        sheaf="env SHEAF_ALLOW_PRIVATE_URLS=true $work/bin/sheaf --bucket bench$n"
        python3 - "bench$n" <<'PY'
import os, sys, urllib.request
req = urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/" + sys.argv[1], method="PUT")
urllib.request.urlopen(req).read()
PY
        ;;
    esac
    $sheaf source add "bench$n" "$base" --type waf >/dev/null
    for run in first unchanged; do
      logged=$(wc -l 2>/dev/null < "$work/moto.log" || echo 0)
      /usr/bin/time -f '%e %M %U %S' -o "$work/time" ${SHEAF_BENCH_WRAP:-} $sheaf run-test "bench$n" --json > "$work/job.json" 2>"$work/stderr" \
        || { cat "$work/stderr" "$work/job.json" >&2; exit 1; }
      report "$mode $run harvest" "$n" "$work/time" "$work/job.json"
      [ "$mode" = s3 ] && tail -n +"$((logged + 1))" "$work/moto.log" | requests "$n" "bench$n"
    done
    rm -rf "$work/data$n"
  }

  # Local runs (with a baseline binary, alternating with it), then their medians.
  local_modes=(local)
  [ -n "${SHEAF_BENCH_BASELINE:-}" ] && local_modes+=(baseline)
  runs=${SHEAF_BENCH_RUNS:-3}
  rm -f "$work/time.all"
  for _ in $(seq "$runs"); do
    for mode in "${local_modes[@]}"; do pair "$mode"; done
  done
  [ "$runs" -gt 1 ] && python3 - "$work/time.all" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, n, secs, kib, cpu_us = line.rstrip("\n").split("\t")
    runs.setdefault(label, []).append((int(n) / float(secs), int(kib) / 1024, float(cpu_us)))
for label, figures in runs.items():
    rate = statistics.median(r for r, _, _ in figures)
    rss = statistics.median(m for _, m, _ in figures)
    cpu = statistics.median(c for _, _, c in figures)
    mode, run = label.split()[:2]
    print(f"{'median, ' + mode + ' ' + run:<28} {n:>7} records {'':>10} {rate:9.0f} records/s  peak RSS {rss:6.1f} MiB "
          f"CPU {cpu:5.0f} µs/record (each of {len(figures)}: {', '.join(f'{m:.1f}' for _, m, _ in figures)} MiB)", flush=True)
PY
  [ "${SHEAF_BENCH_S3:-0}" = 1 ] && pair s3
  rm -rf "$site"
done

if [ -n "${SHEAF_BENCH_CSW:-}" ]; then
  n=$SHEAF_BENCH_CSW
  records="$work/csw-records"
  python3 - "$records" "$n" tests/records/waf <<'PY'
import os, re, sys
out, n, records = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = ["iso19139/coastal-erosion.xml", "iso19139/seabed-habitats.xml", "iso19139/glider-mission.xml",
         "iso19139/wms-service.xml", "iso19139/regional/lakes-inventory.xml", "iso19139/regional/forest-plots.xml"]
templates = [open(os.path.join(records, t), encoding="utf-8").read() for t in names]
ident = re.compile(r"(<gmd:fileIdentifier><gco:CharacterString>)([^<]*)(</gco:CharacterString>)")
os.makedirs(out, exist_ok=True)
for i in range(n):
    text = ident.sub(lambda m: f"{m.group(1)}{m.group(2)}-csw{i}{m.group(3)}", templates[i % len(templates)], 1)
    with open(os.path.join(out, f"record-{i}.xml"), "w", encoding="utf-8") as f:
        f.write(text)
PY
  load_start=$(date +%s)
  "$root/.venv/bin/python" tests/pycsw_server.py "$work/pycsw" "$records" "$work/pycsw.port" 100 >/dev/null 2>&1 &
  pycsw_pid=$!
  while [ ! -s "$work/pycsw.port" ]; do
    kill -0 "$pycsw_pid" 2>/dev/null || { echo "pycsw did not start" >&2; exit 1; }
    sleep 1
  done
  echo "pycsw loaded $n records in $(( $(date +%s) - load_start )) s" >&2
  csw_url="http://127.0.0.1:$(cat "$work/pycsw.port")/csw"
  # The server's limit: 16 curl processes with keep-alive asking GetRecordById for every record.
  python3 - "$csw_url" "$n" tests/records/waf > "$work/csw-urls" <<'PY'
import re, sys, urllib.parse
url, n, records = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = ["iso19139/coastal-erosion.xml", "iso19139/seabed-habitats.xml", "iso19139/glider-mission.xml",
         "iso19139/wms-service.xml", "iso19139/regional/lakes-inventory.xml", "iso19139/regional/forest-plots.xml"]
ids = []
for t in names:
    m = re.search(r"<gmd:fileIdentifier><gco:CharacterString>([^<]*)<", open(f"{records}/{t}", encoding="utf-8").read())
    ids.append(m.group(1))
for i in range(n):
    q = urllib.parse.urlencode({"service": "CSW", "version": "2.0.2", "request": "GetRecordById",
        "id": f"{ids[i % len(ids)]}-csw{i}", "elementSetName": "full",
        "outputSchema": "http://www.isotc211.org/2005/gmd"})
    print(f'url = "{url}?{q}"\noutput = "/dev/null"')
PY
  per=$(( ($(wc -l < "$work/csw-urls") / 2 + 15) / 16 * 2 ))
  split -l "$per" "$work/csw-urls" "$work/csw-urls."
  start=$(date +%s.%N)
  curls=()
  for part in "$work"/csw-urls.*; do curl -s -K "$part" & curls+=($!); done
  wait "${curls[@]}"
  end=$(date +%s.%N)
  python3 -c "import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'{\"csw curl x16 GetRecordById\":<28} {n:>7} records {s:8.2f} s {n / s:9.0f} records/s', flush=True)" "$n" "$start" "$end"
  sheaf="env SHEAF_ALLOW_PRIVATE_URLS=true $work/bin/sheaf --data-dir $work/data-csw"
  $sheaf source add benchcsw "$csw_url" --type csw \
    --config '{"page_size": 100}' >/dev/null
  for run in first unchanged; do
    /usr/bin/time -f '%e %M %U %S' -o "$work/time" ${SHEAF_BENCH_WRAP:-} $sheaf run-test benchcsw --json \
      > "$work/job.json" 2>"$work/stderr" || { cat "$work/stderr" "$work/job.json" >&2; kill "$pycsw_pid"; exit 1; }
    report "csw (pycsw) $run harvest" "$n" "$work/time" "$work/job.json"
  done
  kill "$pycsw_pid" 2>/dev/null || true
fi
