"""Searches Sheaf's /ogcapi with OWSLib's OGC API - Records client.

Reads a plan as JSON on stdin ({"url", "word", "bbox": [w, s, e, n], "datetime", "id"}),
runs each search following the next links to the end, and prints what each found as JSON.
"""

import json
import sys

import requests
from owslib.ogcapi.records import Records

plan = json.load(sys.stdin)
api = Records(plan["url"], timeout=30)
out = {
    "landing_links": sorted(link["rel"] for link in api.links),
    "conformance": api.conformance()["conformsTo"],
    "records_collections": api.records(),
    "collection": api.collection("metadata")["itemType"],
}


def search(name, **kwargs):
    """The first page from OWSLib, then every next link as given: it must carry the search."""
    page = api.collection_items("metadata", limit=4, **kwargs)
    ids, pages, matched = [f["id"] for f in page["features"]], 1, page["numberMatched"]
    while pages <= 50:
        following = [link for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        page = requests.get(following[0]["href"], timeout=30).json()
        ids.extend(f["id"] for f in page["features"])
        pages += 1
    out[name] = {"ids": ids, "matches": matched, "pages": pages}


search("all")
search("word", q=plan["word"])
search("bbox", bbox=plan["bbox"])
search("word_and_bbox", q=plan["word"], bbox=plan["bbox"])
search("datetime", datetime_=plan["datetime"])
search("cql", filter="title like '%" + plan["word"] + "%'")

window = api.collection_items("metadata", limit=2, offset=2)
out["offset_2_limit_2"] = [f["id"] for f in window["features"]]

item = api.collection_item("metadata", plan["id"])
out["item"] = {
    "id": item["id"],
    "title": item["properties"]["title"],
    "keywords": item["properties"]["keywords"],
    "bbox": item.get("bbox"),
    "geometry": item["geometry"]["type"] if item["geometry"] else None,
    "links": sorted(link["rel"] for link in item["links"]),
}
html = requests.get(plan["url"] + "collections/metadata/items", params={"f": "html", "q": plan["word"]}, timeout=30)
out["html"] = {"status": html.status_code, "type": html.headers["content-type"], "body": html.text}
bad = requests.get(plan["url"] + "collections/metadata/items", params={"bbox": "1,2,3"}, timeout=30)
out["bad_bbox"] = {"status": bad.status_code, "body": bad.json()}
print(json.dumps(out))
