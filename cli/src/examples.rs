//! The example WAF `serve` offers a newcomer under `/examples/waf/`: records written for the
//! project, embedded in the binary, listed the way nginx's autoindex lists a folder.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

pub const RECORDS: &[(&str, &str)] = &[
    (
        "air-quality.xml",
        include_str!("../examples-waf/air-quality.xml"),
    ),
    (
        "land-cover.xml",
        include_str!("../examples-waf/land-cover.xml"),
    ),
    (
        "river-discharge.xml",
        include_str!("../examples-waf/river-discharge.xml"),
    ),
    (
        "sea-temperature.xml",
        include_str!("../examples-waf/sea-temperature.xml"),
    ),
];

async fn index() -> Html<String> {
    let mut html = String::from(
        "<html>\r\n<head><title>Index of /examples/waf/</title></head>\r\n<body>\r\n<h1>Index of /examples/waf/</h1><hr><pre><a href=\"../\">../</a>\r\n",
    );
    for (name, body) in RECORDS {
        html.push_str(&format!(
            "<a href=\"{name}\">{name}</a>{:>width$}{:>20}\r\n",
            "02-May-2024 10:00",
            body.len(),
            width = 51 - name.len() + 17
        ));
    }
    html.push_str("</pre><hr></body>\r\n</html>\r\n");
    Html(html)
}

async fn record(Path(name): Path<String>) -> Response {
    match RECORDS.iter().find(|(n, _)| *n == name) {
        Some((_, body)) => ([(header::CONTENT_TYPE, "application/xml")], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/examples/waf/", get(index))
        .route("/examples/waf/{name}", get(record))
}
