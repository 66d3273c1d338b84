#!/usr/bin/env python3
"""Packaging benchmark: a release `sheaf package datastore` packs N rows of 12 columns (about
180 bytes of CSV a row: text with commas, quotes and newlines, numbers, dates, nulls) from
tests/ckan_datastore.py serving pre-rendered CKAN pages on loopback, into a fresh local store;
then `zip -6` compresses the same rows as one CSV file. Each is run 3 times; medians are
printed side by side: rows/s, peak memory (max RSS), archive size.

Usage: tests/bench_package.py [ROWS ...]   (default: 1000000 3000000)
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHEAF = os.path.join(ROOT, "target", "release", "sheaf")
DATASTORE = os.path.join(ROOT, "tests", "ckan_datastore.py")
PAGE_SIZE = 32000
RUNS = 3


def measured(cmd, env=None):
    """(seconds, peak RSS in MiB, stdout) of one run of cmd."""
    start = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = child.communicate()
    elapsed = time.monotonic() - start
    if child.returncode != 0:
        sys.exit("%s failed: %s" % (cmd[0], err.decode(errors="replace")))
    return elapsed, out


def peak_of(cmd, env=None):
    """Runs cmd under GNU time for its maximum resident set size, in MiB."""
    with tempfile.NamedTemporaryFile() as t:
        elapsed, out = measured(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd, env)
        kib = int(open(t.name).read().split()[-1])
    return elapsed, kib / 1024.0, out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rendered(rows):
    """Pages of rows-N as CKAN answers them, and the same rows as one CSV, made once."""
    folder = os.path.join(ROOT, "target", "bench-package", "rows-%d" % rows)
    done = os.path.join(folder, "complete")
    if not os.path.exists(done):
        shutil.rmtree(folder, ignore_errors=True)
        print("rendering %d rows (once; kept in %s)" % (rows, folder), file=sys.stderr)
        subprocess.check_call([sys.executable, DATASTORE, "render", "--rows", str(rows),
                               "--page-size", str(PAGE_SIZE), "--out", os.path.join(folder, "pages"),
                               "--csv", os.path.join(folder, "rows.csv")])
        open(done, "w").close()
    return os.path.join(folder, "pages"), os.path.join(folder, "rows.csv")


def bench(rows):
    pages, csv_file = rendered(rows)
    port = free_port()
    server = subprocess.Popen([sys.executable, DATASTORE, "serve", "--port", str(port), "--pages", pages],
                              stdout=subprocess.PIPE)
    server.stdout.readline()
    api = "http://127.0.0.1:%d/api/3/action/datastore_search" % port
    env = dict(os.environ, SHEAF_PACKAGER_PAGE_SIZE=str(PAGE_SIZE), RUST_LOG="warn")
    env.pop("SHEAF_BUCKET", None)
    sheaf, zip6 = [], []
    try:
        for _ in range(RUNS):
            data = tempfile.mkdtemp(prefix="sheaf-bench-")
            try:
                secs, mib, out = peak_of([SHEAF, "--data-dir", data, "--json", "package", "datastore",
                                          "--api-url", api, "--resource-id", "rows-%d" % rows], env)
                package = json.loads(out)["package"]
                assert package["rows"] == rows, package
                sheaf.append((secs, mib, package["bytes"]))
            finally:
                shutil.rmtree(data, ignore_errors=True)
        for _ in range(RUNS):
            work = tempfile.mkdtemp(prefix="zip6-bench-")
            try:
                target = os.path.join(work, "rows.zip")
                secs, mib, _ = peak_of(["zip", "-6", "-q", "-j", target, csv_file])
                zip6.append((secs, mib, os.path.getsize(target)))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        server.terminate()
        server.wait()
    med = lambda runs, i: statistics.median(r[i] for r in runs)
    s_secs, z_secs = med(sheaf, 0), med(zip6, 0)
    s_size, z_size = med(sheaf, 2), med(zip6, 2)
    csv_mb = os.path.getsize(csv_file) / 1e6
    print("%d rows (%.0f MB of CSV), median of %d runs" % (rows, csv_mb, RUNS))
    print("  %-26s %12s %10s %14s %10s" % ("", "rows/s", "seconds", "archive bytes", "peak MiB"))
    print("  %-26s %12.0f %10.2f %14d %10.1f" % ("sheaf package datastore", rows / s_secs, s_secs, s_size, med(sheaf, 1)))
    print("  %-26s %12.0f %10.2f %14d %10.1f" % ("zip -6 (the CSV alone)", rows / z_secs, z_secs, z_size, med(zip6, 1)))
    print("  sheaf / zip -6: %.2fx the speed, archive %+.2f%%" % (z_secs / s_secs, (s_size / z_size - 1) * 100))
    sys.stdout.flush()


def main():
    if not os.path.exists(SHEAF):
        sys.exit("build it first: cargo build --release -p sheaf")
    for rows in [int(a) for a in sys.argv[1:]] or [1_000_000, 3_000_000]:
        bench(rows)


if __name__ == "__main__":
    main()
