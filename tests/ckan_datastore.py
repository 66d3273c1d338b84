#!/usr/bin/env python3
"""A CKAN datastore_search endpoint for Sheaf's packaging tests and benchmark.

It answers POST /api/3/action/datastore_search as CKAN 2.9+ does (fields, total, records
as objects, or as csv/tsv text without a header when records_format asks for it), with filters,
q, offset, limit and sort by _id. The resource id chooses the data:

  rows-N           N generated rows of 12 columns (commas, quotes, newlines, numbers, dates,
                   nulls, non-ASCII text)
  old-rows-N       the same, from a CKAN older than 2.7: records_format is refused (409)
  random-N         N rows of hard-to-compress text (for multipart uploads of several parts)
  fails-N-K        rows-N, but any page starting at offset >= K answers HTTP 500
  garbage-N-K      rows-N, but any page starting at offset >= K is not JSON
  slow-MS-ID       the dataset ID (any of these), each page of rows answered MS milliseconds
                   late (a slow datastore)
  dwc-N            N rows shaped as Darwin Core occurrences (space-separated field names,
                   associatedMedia as a JSON list, fields that match no term)

GET /files/NAME?size=BYTES serves a generated file; GET /_calls counts datastore_search
calls. `render` writes pre-rendered pages for the benchmark; `--pages DIR` serves them.
`serve --port-file FILE` binds a free port and writes it to FILE once it listens (a port
chosen by the caller and released before this binds it can be taken by another test meanwhile).
"""
import argparse
import base64
import csv
import io
import json
import os
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GENERA = ["Quercus", "Passer", "Apis", "Salmo", "Rosa", "Larus", "Bufo", "Pinus", "Vulpes", "Ursus"]
SPECIES = ["robur", "domesticus", "mellifera", "trutta", "canina", "argentatus", "bufo", "sylvestris", "vulpes", "arctos", "alba", "major"]
PLACES = ["Tring, Hertfordshire, England", "Kew, Richmond upon Thames", "Loch Ness, Highland, Scotland", "Cairngorms National Park", "South Kensington, London", "Wicken Fen, Cambridgeshire", "Skomer Island, Pembrokeshire, Wales"]
PEOPLE = ["A. Smith", "B. O'Neill", "C. \"Kit\" Jones", "D. Müller", "E. Åberg", "F. Nguyễn"]
REMARKS = ["", "checked", "Überprüft – ok", "label says \"juvenile\"", "two, maybe three", None]

FIELDS = ["_id", "occurrence_id", "name", "locality", "count", "ratio", "observed",
          "recorded_by", "depth", "remarks", "code", "flag"]
FIELD_TYPES = ["int", "text", "text", "text", "int", "numeric", "date", "text", "numeric",
               "text", "text", "bool"]


def row(i):
    """Row i (0-based) of the generated datasets: about 180 bytes of CSV."""
    locality = PLACES[i % len(PLACES)]
    if i % 17 == 0:
        locality += "\nsecond line of the label"
    return {
        "_id": i + 1,
        "occurrence_id": "urn:catalog:NHMUK:ZOO:%09d" % (i * 7919 % 1000000007),
        "name": '%s %s L., 1753, "var. %d"' % (GENERA[i % 10], SPECIES[(i * 31) % 12], i % 97),
        "locality": locality,
        "count": (i * 37) % 1000,
        "ratio": round(((i * 7919) % 100000) / 997.0, 3),
        "observed": "%04d-%02d-%02d" % (1900 + i % 120, 1 + i % 12, 1 + i % 28),
        "recorded_by": PEOPLE[(i * 7) % len(PEOPLE)],
        "depth": None if i % 5 == 0 else round((i % 4000) / 10.0, 1),
        "remarks": REMARKS[(i * 11) % len(REMARKS)],
        "code": "%08x" % ((i * 2654435761) % (1 << 32)),
        "flag": i % 3 == 0,
    }


def random_row(i):
    rng = random.Random(i)
    text = base64.b64encode(rng.randbytes(300)).decode().replace("+", ",").replace("/", '"')
    return {"_id": i + 1, "text": text, "number": rng.randint(0, 10**9)}


DWC_FIELDS = ["_id", "Catalog number", "Scientific name", "Locality", "Decimal latitude",
              "Decimal longitude", "Event date", "colour", "Gut contents", "associatedMedia"]


def dwc_row(i):
    media = [] if i % 3 == 0 else [
        {"identifier": "https://data.example.org/media/%d-%d.jpg" % (i, k), "title": "Specimen %d view %d" % (i, k)}
        for k in range(1 + i % 2)
    ]
    return {
        "_id": i + 1,
        "Catalog number": "NHMUK %d" % (1000 + i),
        "Scientific name": "%s %s" % (GENERA[i % 10], SPECIES[i % 12]),
        "Locality": PLACES[i % len(PLACES)],
        "Decimal latitude": round(50 + (i % 100) / 37.0, 5),
        "Decimal longitude": round(-3 + (i % 100) / 41.0, 5),
        "Event date": "%04d-%02d-%02d" % (1950 + i % 70, 1 + i % 12, 1 + i % 28),
        "colour": ["red", "green", None][i % 3],
        "Gut contents": "seeds, \"grit\"" if i % 4 == 0 else None,
        "associatedMedia": json.dumps(media) if media else None,
    }


def dataset(resource_id):
    """(fields, field types, row function, row count, failure mode, failure offset)."""
    m = re.fullmatch(r"(rows|old-rows|random|dwc)-(\d+)", resource_id)
    if m:
        kind, n = m.group(1), int(m.group(2))
        if kind == "random":
            return ["_id", "text", "number"], ["int", "text", "int"], random_row, n, kind, None
        if kind == "dwc":
            return DWC_FIELDS, ["int"] + ["text"] * 9, dwc_row, n, kind, None
        return FIELDS, FIELD_TYPES, row, n, kind, None
    m = re.fullmatch(r"(fails|garbage)-(\d+)-(\d+)", resource_id)
    if m:
        return FIELDS, FIELD_TYPES, row, int(m.group(2)), m.group(1), int(m.group(3))
    return None


def cell(value):
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def matches(record, filters, q):
    for key, want in (filters or {}).items():
        wanted = want if isinstance(want, list) else [want]
        if cell(record.get(key)) not in [cell(w) for w in wanted]:
            return False
    if q:
        return any(q.lower() in cell(v).lower() for v in record.values())
    return True


CALLS = {"datastore_search": 0, "pages": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    pages_dir = None

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/_calls"):
            with LOCK:
                return self.reply(200, json.dumps(CALLS))
        m = re.fullmatch(r"/files/([^?]+)\?size=(\d+)", self.path)
        if m:
            size = int(m.group(2))
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            line = b"".join(b"%d,file line with, some text\n" % i for i in range(2000))
            sent = 0
            while sent < size:
                chunk = line[: size - sent]
                self.wfile.write(chunk)
                sent += len(chunk)
            return
        self.reply(404, json.dumps({"success": False, "error": {"message": "Not found"}}))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.startswith("/api/3/action/datastore_search"):
            return self.reply(404, json.dumps({"success": False}))
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            return self.reply(400, json.dumps({"success": False, "error": {"message": "Bad JSON"}}))
        with LOCK:
            CALLS["datastore_search"] += 1
            if int(params.get("limit", 100)) > 0:
                CALLS["pages"] += 1
        if self.pages_dir:
            return self.prerendered(params)
        resource_id, delay = params.get("resource_id", ""), 0.0
        slow = re.fullmatch(r"slow-(\d+)-(.+)", resource_id)
        if slow:
            resource_id, delay = slow.group(2), int(slow.group(1)) / 1000.0
        spec = dataset(resource_id)
        if spec is None:
            return self.reply(404, json.dumps({"success": False, "error": {"__type": "Not Found Error", "message": "Not found: Resource was not found."}}))
        fields, types, make, n, mode, fail_at = spec
        fmt = params.get("records_format", "objects")
        if mode == "old-rows" and "records_format" in params:
            return self.reply(409, json.dumps({"success": False, "error": {"__type": "Validation Error", "records_format": ["The input field records_format was not expected."]}}))
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        if limit > 32000:
            return self.reply(409, json.dumps({"success": False, "error": {"limit": ["Must be less than or equal to 32000"]}}))
        if delay and limit > 0:
            time.sleep(delay)
        if fail_at is not None and limit > 0 and offset >= fail_at:
            if mode == "fails":
                return self.reply(500, "<html>Internal Server Error</html>", "text/html")
            return self.reply(200, '{"success": true, "result": {"records": "1,2,3\n')
        filters, q = params.get("filters"), params.get("q")
        if filters or q:
            selected = [r for r in (make(i) for i in range(n)) if matches(r, filters, q)]
            total = len(selected)
            page = selected[offset: offset + limit]
        else:
            total = n
            page = [make(i) for i in range(offset, min(n, offset + limit))]
        result = {
            "resource_id": params["resource_id"],
            "fields": [{"id": f, "type": t} for f, t in zip(fields, types)],
            "total": total,
            "limit": limit,
            "offset": offset,
            "_links": {"start": "/api/3/action/datastore_search", "next": "..."},
        }
        if fmt in ("csv", "tsv"):
            out = io.StringIO()
            w = csv.writer(out, delimiter="," if fmt == "csv" else "\t")
            for r in page:
                w.writerow([cell(r.get(f)) for f in fields])
            result["records"] = out.getvalue()
            result["records_format"] = fmt
        else:
            result["records"] = page
        self.reply(200, json.dumps({"help": "datastore_search", "success": True, "result": result}))

    def prerendered(self, params):
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        name = "count.json" if limit == 0 else "page-%d.json" % offset
        try:
            with open(os.path.join(self.pages_dir, name), "rb") as f:
                body = f.read()
        except FileNotFoundError:
            body = json.dumps({"success": True, "result": {"fields": [], "total": 0, "records": ""}}).encode()
        self.reply(200, body)


def render(rows, page_size, out_dir, csv_path):
    """Pre-renders every page of rows-N as CKAN would answer it, and the same rows as one CSV
    (header + rows, as the packager writes it) for `zip -6` to compress."""
    os.makedirs(out_dir, exist_ok=True)
    fields = [{"id": f, "type": t} for f, t in zip(FIELDS, FIELD_TYPES)]
    with open(os.path.join(out_dir, "count.json"), "w") as f:
        json.dump({"success": True, "result": {"fields": fields, "total": rows, "records": ""}}, f)
    whole = open(csv_path, "w", newline="", encoding="utf-8")
    whole_writer = csv.writer(whole, lineterminator="\n")
    whole_writer.writerow(FIELDS)
    for offset in range(0, rows, page_size):
        out = io.StringIO()
        w = csv.writer(out)
        for i in range(offset, min(rows, offset + page_size)):
            values = [cell(v) for v in row(i).values()]
            w.writerow(values)
            whole_writer.writerow(values)
        body = {"success": True, "result": {"fields": fields, "total": rows, "offset": offset,
                                             "limit": page_size, "records": out.getvalue(),
                                             "records_format": "csv"}}
        with open(os.path.join(out_dir, "page-%d.json" % offset), "w") as f:
            json.dump(body, f)
    whole.close()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve")
    serve.add_argument("--port", type=int, default=0, help="0 (the default): a free port")
    serve.add_argument("--port-file", help="where to write the port once it listens")
    serve.add_argument("--pages")
    r = sub.add_parser("render")
    r.add_argument("--rows", type=int, required=True)
    r.add_argument("--page-size", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--csv", required=True)
    args = parser.parse_args()
    if args.command == "render":
        render(args.rows, args.page_size, args.out, args.csv)
        return
    Handler.pages_dir = args.pages
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.port_file:
        # Written whole, then renamed, so a reader never sees half a port.
        with open(args.port_file + ".part", "w", encoding="utf-8") as f:
            f.write(str(server.server_address[1]))
        os.rename(args.port_file + ".part", args.port_file)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
