"""A real CSW 2.0.2 server for the tests: pycsw (pinned in tests/requirements.txt), its records
loaded from a folder into a fresh SQLite repository, served on 127.0.0.1 until killed. pycsw
answers OAI-PMH on the same URL with `?mode=oaipmh`.

Usage: pycsw_server.py WORKDIR RECORDS_DIR PORT_FILE [MAXRECORDS]
Binds a free port, loads the records, then writes the port to PORT_FILE (the harness waits for
it) and serves. `MAXRECORDS` is the server's own cap on a page (default 10, pycsw's sample).
"""

import os
import sys
import warnings
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

warnings.filterwarnings("ignore")

from pycsw.core import admin  # noqa: E402
from pycsw.core.config import StaticContext  # noqa: E402


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main():
    workdir, records, port_file = sys.argv[1:4]
    maxrecords = sys.argv[4] if len(sys.argv) > 4 else "10"
    os.makedirs(workdir, exist_ok=True)
    database = "sqlite:///" + os.path.join(os.path.abspath(workdir), "records.db")
    # Bound first (pycsw's configuration names its own URL); requests are served only after
    # `app` below exists.
    server = make_server("127.0.0.1", 0, lambda e, s: app(e, s), ThreadingServer, QuietHandler)
    port = server.server_port
    config = os.path.join(workdir, "pycsw.cfg")
    with open(config, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(port=port, database=database, home=workdir, maxrecords=maxrecords))
    os.environ["PYCSW_CONFIG"] = config
    os.environ["PYCSW_ROOT"] = workdir
    admin.setup_db(database, "records", workdir)
    admin.load_records(StaticContext(), database, "records", records, recursive=True)

    from pycsw.wsgi import application

    def app(environ, start_response):
        # pycsw's WSGI wrapper prints every path: keep the test output clean.
        stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
        try:
            return application(environ, start_response)
        finally:
            sys.stdout.close()
            sys.stdout = stdout

    with open(port_file + ".part", "w", encoding="utf-8") as f:
        f.write(str(port))
    os.rename(port_file + ".part", port_file)
    server.serve_forever()


CONFIG = """[server]
home={home}
url=http://127.0.0.1:{port}/csw
mimetype=application/xml; charset=UTF-8
encoding=UTF-8
language=en-US
maxrecords={maxrecords}
loglevel=ERROR
logfile=
pretty_print=true
profiles=apiso

[manager]
transactions=false
allowed_ips=127.0.0.1

[metadata:main]
identification_title=Sheaf test catalogue
identification_abstract=Records of the Sheaf tests
identification_keywords=test
identification_fees=None
identification_accessconstraints=None
provider_name=Sheaf tests
provider_url=http://127.0.0.1/
contact_name=Tests
contact_position=None
contact_address=None
contact_city=None
contact_stateorprovince=None
contact_postalcode=None
contact_country=None
contact_phone=None
contact_fax=None
contact_email=tests@localhost
contact_url=http://127.0.0.1/
contact_hours=None
contact_instructions=None
contact_role=pointOfContact

[repository]
database={database}
table=records

[metadata:inspire]
enabled=false
"""

if __name__ == "__main__":
    main()
