#!/usr/bin/env python3
"""Reads a zip with Python's zipfile: every entry's CRC is checked (testzip) and each entry's
name, size and SHA-256 are printed as JSON, for the test to compare with what it expects."""
import hashlib
import json
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    if bad is not None:
        sys.exit("zipfile: bad CRC in %s" % bad)
    entries = []
    for info in z.infolist():
        h = hashlib.sha256()
        with z.open(info) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        entries.append({"name": info.filename, "size": info.file_size, "sha256": h.hexdigest()})
    print(json.dumps(entries))
