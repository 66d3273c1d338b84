"""The CKAN the harvest tests run: ckanext-harvest's own mock CKAN (`mock_ckan.py` of the
ckanext-harvest sdist pinned in tests/requirements.txt), its handler run as it is.

Usage: mock_ckan_server.py PORT_FILE REQUEST_LOG
`mock_ckan.serve()` binds every interface on port 8998; this serves its `MockCkanHandler` on
127.0.0.1 and a free port instead, writes the port to PORT_FILE (the harness waits for it),
and appends one JSON line per request to REQUEST_LOG (`path`, and the `authorization` and
`user_agent` headers), so a test can check what Sheaf asked for and what it sent along.
"""

import importlib.metadata
import importlib.util
import json
import os
import sys
import threading
from socketserver import TCPServer


def load_mock_ckan():
    # By its path: importing the package would import ckanext-harvest's CKAN plugin.
    for file in importlib.metadata.files("ckanext-harvest"):
        if str(file).endswith("tests/harvesters/mock_ckan.py"):
            spec = importlib.util.spec_from_file_location("mock_ckan", file.locate())
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    sys.exit("mock_ckan.py is not in the installed ckanext-harvest (run tests/run.sh)")


def main():
    port_file, request_log = sys.argv[1:3]
    mock_ckan = load_mock_ckan()
    lock = threading.Lock()

    class Handler(mock_ckan.MockCkanHandler):
        def do_GET(self):
            with lock, open(request_log, "a", encoding="utf-8") as log:
                log.write(json.dumps({
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "user_agent": self.headers.get("User-Agent"),
                }) + "\n")
            return super().do_GET()

        def log_message(self, *args):
            pass

    class Server(TCPServer):
        allow_reuse_address = True
        # Sheaf fetches several datasets at once; the mock answers one request at a time.
        request_queue_size = 64

        def handle_error(self, request, client_address):
            # The mock closes its response stream itself, and the base handler's flush after
            # it raises ValueError: the answer was sent, nothing went wrong.
            if not isinstance(sys.exc_info()[1], ValueError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    with open(port_file + ".part", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".part", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
