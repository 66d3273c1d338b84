//! The OGC API documents as plain HTML pages (`f=html`, or a browser's Accept), so a person
//! can browse and search the catalogue with nothing but links and a form.

use quick_xml::escape::escape;
use serde_json::Value;

use super::{COLLECTION, ItemsQuery, item_url};

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}}\
li{{margin:.4em 0}} dt{{font-weight:bold}}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Any document with a title and links (landing page, collections, a collection).
pub fn links_page(doc: &Value) -> String {
    let title = doc["title"].as_str().unwrap_or("Sheaf catalogue");
    let mut body = format!(
        "<h1>{}</h1><p>{}</p><ul>",
        escape(title),
        escape(text(doc, "description"))
    );
    let own = doc["links"].as_array().into_iter().flatten();
    let of_collections = doc["collections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["links"].as_array().into_iter().flatten());
    for l in own.chain(of_collections) {
        body.push_str(&format!(
            "<li><a href=\"{}\">{}</a> ({})</li>",
            escape(text(l, "href")),
            escape(text(l, "title")),
            escape(text(l, "rel"))
        ));
    }
    body.push_str("</ul>");
    page(title, &body)
}

pub fn items_page(base: &str, query: &ItemsQuery, doc: &Value) -> String {
    let mut body = format!(
        "<h1>Records</h1><form method=\"get\"><input name=\"q\" value=\"{}\" placeholder=\"words\"> \
<input name=\"bbox\" value=\"{}\" placeholder=\"W,S,E,N\"> \
<input name=\"datetime\" value=\"{}\" placeholder=\"2020-01-01/..\"> \
<input type=\"hidden\" name=\"f\" value=\"html\"><button>Search</button></form>\
<p>{} matching, {} shown.</p><ol start=\"{}\">",
        escape(query.given("q")),
        escape(query.given("bbox")),
        escape(query.given("datetime")),
        doc["numberMatched"],
        doc["numberReturned"],
        query.offset + 1
    );
    for feature in doc["features"].as_array().into_iter().flatten() {
        let id = text(feature, "id");
        body.push_str(&format!(
            "<li><a href=\"{}?f=html\">{}</a></li>",
            escape(item_url(base, id)),
            escape(text(&feature["properties"], "title"))
        ));
    }
    body.push_str("</ol><p>");
    for l in doc["links"].as_array().into_iter().flatten() {
        let rel = text(l, "rel");
        if rel == "next" || rel == "prev" {
            let href = text(l, "href").replace("f=json", "f=html");
            body.push_str(&format!(
                "<a href=\"{}\">{}</a> ",
                escape(&href),
                escape(rel)
            ));
        }
    }
    body.push_str(&format!(
        "</p><p><a href=\"{}/collections/{COLLECTION}?f=html\">the catalogue</a></p>",
        escape(base)
    ));
    page("Records", &body)
}

pub fn record_page(doc: &Value) -> String {
    let p = &doc["properties"];
    let title = text(p, "title");
    let mut body = format!(
        "<h1>{}</h1><p>{}</p><dl>",
        escape(title),
        escape(text(p, "description"))
    );
    body.push_str(&format!(
        "<dt>Identifier</dt><dd>{}</dd>",
        escape(text(doc, "id"))
    ));
    let keywords: Vec<&str> = p["keywords"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !keywords.is_empty() {
        body.push_str(&format!(
            "<dt>Keywords</dt><dd>{}</dd>",
            escape(keywords.join(", "))
        ));
    }
    if let Some(b) = doc["bbox"].as_array() {
        let b: Vec<String> = b.iter().map(|v| v.to_string()).collect();
        body.push_str(&format!(
            "<dt>Extent (W, S, E, N)</dt><dd>{}</dd>",
            b.join(", ")
        ));
    }
    if let Some(interval) = doc["time"]["interval"].as_array() {
        let t: Vec<&str> = interval.iter().filter_map(Value::as_str).collect();
        body.push_str(&format!("<dt>Time</dt><dd>{}</dd>", escape(t.join(" – "))));
    }
    if let Some(updated) = p["updated"].as_str() {
        body.push_str(&format!("<dt>Updated</dt><dd>{}</dd>", escape(updated)));
    }
    body.push_str("</dl><h2>Links</h2><ul>");
    for l in doc["links"].as_array().into_iter().flatten() {
        let label = l["title"].as_str().unwrap_or_else(|| text(l, "href"));
        body.push_str(&format!(
            "<li><a href=\"{}\">{}</a> ({})</li>",
            escape(text(l, "href")),
            escape(label),
            escape(text(l, "rel"))
        ));
    }
    body.push_str("</ul>");
    page(title, &body)
}
