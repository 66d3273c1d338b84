"""Searches Sheaf's /csw as QGIS's MetaSearch does: with OWSLib's CatalogueServiceWeb.

Reads a plan as JSON on stdin ({"url", "word", "bbox": [w, s, e, n], "ids": [a, b],
"since"}), runs each search, validates every answer against the CSW 2.0.2 schemas shipped in
pycsw's package, and prints what each search found as JSON: {name: {"ids": [...],
"matches": n}, "invalid": [...], ...}. The Rust test compares it with /api/catalog/search.
"""

import json
import os
import sys

import pycsw
from lxml import etree
from owslib.csw import CatalogueServiceWeb
from owslib.fes import (
    And,
    BBox,
    Not,
    Or,
    PropertyIsEqualTo,
    PropertyIsGreaterThanOrEqualTo,
    PropertyIsLike,
)

CSW = "http://www.opengis.net/cat/csw/2.0.2"
GMD = "http://www.isotc211.org/2005/gmd"
SCHEMAS = os.path.join(os.path.dirname(pycsw.__file__), "core", "schemas", "ogc")

plan = json.load(sys.stdin)
schema = etree.XMLSchema(etree.parse(os.path.join(SCHEMAS, "csw", "2.0.2", "CSW-discovery.xsd")))
out = {"invalid": []}


def validate(name, body):
    doc = etree.fromstring(body)
    if not schema.validate(doc):
        out["invalid"].append({"answer": name, "errors": [str(e) for e in schema.error_log][:5]})
    return doc


csw = CatalogueServiceWeb(plan["url"], version="2.0.2", timeout=30)
validate("GetCapabilities", csw.response)
out["capabilities"] = {
    "type": csw.identification.type,
    "version": csw.identification.version,
    "operations": sorted(op.name for op in csw.operations),
}


def search(name, constraints=None, esn="full", schema_uri=CSW, cql=None, **kw):
    """Every page of a search, following nextRecord; returns the identifiers in order."""
    ids, start, pages = [], 1, 0
    while True:
        csw.getrecords2(
            constraints=constraints or [],
            esn=esn,
            outputschema=schema_uri,
            startposition=start,
            maxrecords=kw.get("page", 5),
            cql=cql,
            resulttype=kw.get("resulttype", "results"),
        )
        if schema_uri == CSW:
            validate(name, csw.response)
        pages += 1
        ids.extend(csw.records.keys())
        matches = csw.results["matches"]
        nxt = csw.results["nextrecord"]
        if not nxt or kw.get("resulttype") == "hits" or pages > 50:
            break
        start = nxt
    out[name] = {"ids": ids, "matches": matches, "pages": pages}
    return csw


word = plan["word"]
w, s, e, n = plan["bbox"]
like = PropertyIsLike("csw:AnyText", "%" + word + "%")
box = BBox([w, s, e, n])
search("word", [like])
search("bbox", [box])
search("word_and_bbox", [And([like, box])])
search("ids_or", [Or([PropertyIsEqualTo("dc:identifier", i) for i in plan["ids"]])])
search("not_word", [Not([like])])
search("since", [PropertyIsGreaterThanOrEqualTo("dct:modified", plan["since"])])
search("title_like", [PropertyIsLike("dc:title", "%" + word + "%")])
search("all_brief", esn="brief", page=3)
search("all_summary", esn="summary", page=100)
search("hits", [like], resulttype="hits")
search("cql", cql="AnyText like '%" + word + "%'")

# Each record's summary fields as OWSLib reads them (bbox in W,S,E,N after the axis swap).
search("fields", esn="full", page=100)
out["fields"]["records"] = {
    rid: {
        "title": r.title,
        "abstract": r.abstract,
        "subjects": sorted(x for x in r.subjects if x),
        "bbox": [r.bbox.minx, r.bbox.miny, r.bbox.maxx, r.bbox.maxy] if r.bbox else None,
        "modified": r.modified,
        "references": sorted(ref["url"] for ref in r.references),
    }
    for rid, r in csw.records.items()
}

# ISO answers: OWSLib reads MD_Metadata into its ISO model.
csw.getrecordbyid(id=plan["ids"], outputschema=GMD)


def iso_title(record):
    ident = record.identification
    ident = ident[0] if isinstance(ident, list) and ident else ident
    return ident.title if ident else None


out["iso_by_id"] = {rid: {"title": iso_title(r)} for rid, r in csw.records.items()}
search("iso_word", [like], schema_uri=GMD)

csw.getrecordbyid(id=plan["ids"])
validate("GetRecordById", csw.response)
out["by_id"] = sorted(csw.records.keys())

print(json.dumps(out))
