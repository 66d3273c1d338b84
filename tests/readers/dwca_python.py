#!/usr/bin/env python3
"""Opens a Darwin Core Archive with python-dwca-reader and prints what it found as JSON: the
core's row type and rows (id, a few terms, dynamicProperties), and each extension's rows."""
import json
import sys

from dwca.read import DwCAReader

with DwCAReader(sys.argv[1]) as dwca:
    core = dwca.descriptor.core
    out = {
        "core_type": core.type,
        "core_file": core.file_location,
        "core_terms": sorted(core.terms),
        "extensions": [e.type for e in dwca.descriptor.extensions],
        "rows": [],
    }
    for row in dwca:
        out["rows"].append({
            "id": row.id,
            "data": row.data,
            "extensions": [{"type": e.rowtype, "data": e.data} for e in row.extensions],
        })
    print(json.dumps(out))
