"""A partner catalogue's remote notification endpoint, as the notification tests use it: it
receives GeoNetwork-style POSTs (form fields action, uuid, XMLFile), reads them with Python's
own form and XML parsers (independent of Sheaf's encoder), and records what it got.

Usage: notify_receiver.py PORT_FILE LOG MODE_FILE
Serves on 127.0.0.1 and a free port, written to PORT_FILE once it listens. Appends one JSON
line per POST to LOG: path, content_type, fields (name -> list of values), whether XMLFile
parses as XML, and how it answered. MODE_FILE (read on every request; missing means "ok")
tells it how to answer: "ok" (200), "fail" (500), or "hang" (answers only after 30 s).
"""

import json
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


def main():
    port_file, log_path, mode_file = sys.argv[1:4]
    lock = threading.Lock()

    def mode():
        try:
            with open(mode_file, encoding="utf-8") as f:
                return f.read().strip() or "ok"
        except FileNotFoundError:
            return "ok"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8")
            fields = parse_qs(body, keep_blank_values=True, strict_parsing=bool(body))
            xml_parses = None
            if "XMLFile" in fields:
                try:
                    ET.fromstring(fields["XMLFile"][0])
                    xml_parses = True
                except ET.ParseError:
                    xml_parses = False
            how = mode()
            answer = {"ok": 200, "fail": 500, "hang": 200}.get(how, 200)
            with lock, open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps({
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "fields": fields,
                    "xml_parses": xml_parses,
                    "answered": how,
                }) + "\n")
            if how == "hang":
                time.sleep(30)
            self.send_response(answer)
            text = b"received" if answer == 200 else b"receiver told to fail"
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file + ".part", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".part", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
