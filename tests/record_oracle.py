"""Reads metadata records with OWSLib, a reader independent of Sheaf's, for a field-by-field
comparison: ISO 19139 (gmd and gmi) with owslib.iso.MD_Metadata, Dublin Core (csw:Record,
oai_dc, GeoNetwork's simpledc) with owslib.csw.CswRecord, CKAN package JSON as CKAN's API
documents its keys. ISO 19115-3 has no reader in OWSLib 0.28: such files answer "unread".

Usage: record_oracle.py FILE...   Prints a JSON list, one object a file.
"""

import json
import sys
import warnings

from owslib.csw import CswRecord
from owslib.etree import etree
from owslib.iso import MD_Metadata

warnings.simplefilter("ignore")

GMD = "{http://www.isotc211.org/2005/gmd}"
GMI = "{http://www.isotc211.org/2005/gmi}"
DC = "{http://purl.org/dc/elements/1.1/}"


def text(value):
    return " ".join(value.split()) if value else None


def iso(root):
    md = MD_Metadata(root)
    ident = md.identificationinfo[0] if md.identificationinfo else None
    # OWSLib 0.28 reads no keywords of a service (SV_ServiceIdentification): unknown there.
    keywords = [] if hasattr(ident, "keywords2") else None
    for group in getattr(ident, "keywords2", None) or []:
        keywords.extend(getattr(k, "name", k) for k in group.keywords if getattr(k, "name", k))
    bbox = None
    b = getattr(ident, "bbox", None)
    if b is not None and not hasattr(b, "minx"):  # a service's extent holds its box
        b = getattr(b, "boundingBox", None)
    if b is not None and None not in (b.minx, b.miny, b.maxx, b.maxy):
        bbox = [float(b.minx), float(b.miny), float(b.maxx), float(b.maxy)]
    emails = [c.email for c in (md.contact or []) if c.email]
    emails += [c.email for c in (getattr(ident, "contact", None) or []) if c.email]
    links = [o.url for o in (md.distribution.online if md.distribution else []) if o.url]
    return {
        "format": "iso19139",
        "id": md.identifier,
        "title": text(getattr(ident, "title", None)),
        "abstract": text(getattr(ident, "abstract", None)),
        "bbox": bbox,
        "keywords": keywords,
        "time": [getattr(ident, "temporalextent_start", None), getattr(ident, "temporalextent_end", None)],
        "emails": emails,
        "links": links,
        "datestamp": md.datestamp,
    }


def dublin_core(root):
    r = CswRecord(root)
    # CswRecord keeps dct:abstract only; Dublin Core's own element for it is dc:description.
    description = root.findtext(DC + "description")
    bbox = None
    if r.bbox is not None:
        bbox = [float(r.bbox.minx), float(r.bbox.miny), float(r.bbox.maxx), float(r.bbox.maxy)]
    return {
        "format": "dublin-core",
        "id": r.identifier,
        "title": text(r.title),
        "abstract": text(r.abstract or description),
        "bbox": bbox,
        "keywords": [s for s in r.subjects if s],
        "links": [ref["url"] for ref in r.references if ref.get("url")],
        "datestamp": r.modified or r.date,
    }


def ckan(path):
    with open(path, encoding="utf-8") as f:
        package = json.load(f)
    package = package.get("result", package)
    return {
        "format": "ckan",
        "id": package.get("id") or package.get("name"),
        "title": text(package.get("title")),
        "abstract": text(package.get("notes")),
        "keywords": [t["name"] for t in package.get("tags", [])],
        "links": [r["url"] for r in package.get("resources", []) if r.get("url")],
        "datestamp": package.get("metadata_modified"),
    }


out = []
for path in sys.argv[1:]:
    if path.endswith(".json"):
        out.append({"file": path, **ckan(path)})
        continue
    root = etree.parse(path).getroot()
    if root.tag in (GMD + "MD_Metadata", GMI + "MI_Metadata"):
        out.append({"file": path, **iso(root)})
    elif root.find(DC + "identifier") is not None or root.find(DC + "title") is not None:
        out.append({"file": path, **dublin_core(root)})
    else:
        out.append({"file": path, "format": "unread"})
print(json.dumps(out))
