//! The HTTP API through the router itself (no socket): authentication of changing calls,
//! 400s that name the field, and the WAF listing.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::http::{AppState, TrustedLocal, router};
use common::store::PutMode;
use serde_json::{Value, json};
use tower::ServiceExt;

fn app(dir: &std::path::Path) -> (axum::Router, common::services::Services) {
    let services = support::local_services(dir);
    let app = router(AppState {
        services: services.clone(),
        api_token: Some("s3cret-token".into()),
        read_token: None,
        local_store: None,
    });
    (app, services)
}

async fn call(app: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

fn get(path: impl AsRef<str>) -> Request<Body> {
    Request::get(path.as_ref())
        .body(Body::empty())
        .expect("request")
}

/// A reading call with the API token.
fn read(path: impl AsRef<str>) -> Request<Body> {
    Request::get(path.as_ref())
        .header("authorization", "Bearer s3cret-token")
        .body(Body::empty())
        .expect("request")
}

fn post(path: &str, body: Value, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path).header("content-type", "application/json");
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

#[tokio::test]
async fn changing_calls_need_the_token_and_bad_sources_name_their_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = app(dir.path());
    let source = json!({"name": "noaa", "url": "https://example.org/waf/", "type": "waf"});

    let (status, _) = call(&app, post("/api/harvest/sources", source.clone(), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &app,
        post("/api/harvest/sources", source.clone(), Some("wrong")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        &app,
        post("/api/harvest/sources", source.clone(), Some("s3cret-token")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["frequency"], "manual");
    let (status, _) = call(
        &app,
        post("/api/harvest/sources", source, Some("s3cret-token")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Reading needs no token.
    let (status, body) = call(&app, read("/api/harvest/sources")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["name"], "noaa");

    // `serve` marks trusted loopback requests; lambda_http never does.
    let mut trusted = post(
        "/api/harvest/sources",
        json!({"name": "local", "url": "http://127.0.0.1:9/", "type": "waf"}),
        None,
    );
    trusted.extensions_mut().insert(TrustedLocal);
    let (status, _) = call(&app, trusted).await;
    assert_eq!(status, StatusCode::CREATED);

    for (body, field) in [
        (json!({"name": "a", "type": "waf"}), "url"),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "gopher"}),
            "type",
        ),
        (
            json!({"name": "A B", "url": "https://x.org/", "type": "waf"}),
            "name",
        ),
        (
            json!({"name": "a", "url": "ftp://x.org/", "type": "waf"}),
            "url",
        ),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "waf", "config": []}),
            "config",
        ),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "waf", "config": {"colour": 1}}),
            "config.colour",
        ),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "waf", "owner": "not-an-email"}),
            "owner",
        ),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "waf", "frequency": "hourly"}),
            "frequency",
        ),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "waf", "config": {"default_tags": "a,b"}}),
            "config.default_tags",
        ),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "dcat"}),
            "type",
        ),
        (
            json!({"name": "a", "url": "https://x.org/", "type": "ckan", "config": {"remote_orgs": "all"}}),
            "config.remote_orgs",
        ),
        (
            json!({"name": "a", "url": "https://x.org/csw", "type": "csw", "config": {"page_size": 0}}),
            "config.page_size",
        ),
    ] {
        let (status, answer) = call(
            &app,
            post("/api/harvest/sources", body.clone(), Some("s3cret-token")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
    }

    let (status, _) = call(&app, read("/api/harvest/sources/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, read("/api/harvest/jobs/20200101T000000Z-x")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // One unfinished job per source.
    let (status, job) = call(
        &app,
        post(
            "/api/harvest/sources/noaa/jobs",
            json!({}),
            Some("s3cret-token"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let (status, _) = call(
        &app,
        post(
            "/api/harvest/sources/noaa/jobs",
            json!({}),
            Some("s3cret-token"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let id = job["id"].as_str().expect("id");
    let (status, shown) = call(&app, read(format!("/api/harvest/jobs/{id}"))).await;
    assert_eq!(
        (status, shown["status"].clone()),
        (StatusCode::OK, json!("new"))
    );
    let (status, aborted) = call(
        &app,
        post(
            &format!("/api/harvest/jobs/{id}/abort"),
            json!({}),
            Some("s3cret-token"),
        ),
    )
    .await;
    assert_eq!(
        (status, aborted["status"].clone()),
        (StatusCode::OK, json!("aborted"))
    );
    let (status, _) = call(
        &app,
        post(
            "/api/harvest/sources/noaa/jobs",
            json!({}),
            Some("s3cret-token"),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a new job once the last one ended"
    );
}

#[tokio::test]
async fn the_central_waf_is_listed_as_folders_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = app(dir.path());
    for key in ["waf/src/a.xml", "waf/src/sub/b.xml", "sources/secret.json"] {
        services
            .store
            .put(
                key,
                Bytes::from_static(b"<x/>"),
                "application/xml",
                PutMode::Overwrite,
            )
            .await
            .expect("put");
    }
    let (status, html) = call(&app, get("/waf/src/")).await;
    assert_eq!(status, StatusCode::OK);
    let html = html.as_str().expect("html").to_string();
    assert!(
        html.contains("<a href=\"a.xml\">a.xml</a>") && html.contains("<a href=\"sub/\">sub/</a>"),
        "{html}"
    );
    let (status, listing) = call(
        &app,
        Request::get("/waf/src/")
            .header("accept", "application/json")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listing["entries"].as_array().map(Vec::len),
        Some(2),
        "{listing}"
    );
    let (status, body) = call(&app, get("/waf/src/sub/b.xml")).await;
    assert_eq!((status, body), (StatusCode::OK, json!("<x/>")));
    let (status, _) = call(&app, get("/waf/src/../../sources/secret.json")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing outside waf/ is served"
    );
}

#[tokio::test]
async fn the_harvest_log_lists_newest_first_by_level_and_old_days_are_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = app(dir.path());
    let source = json!({"name": "logged", "url": "https://example.org/waf/", "type": "waf"});
    let (status, _) = call(
        &app,
        post("/api/harvest/sources", source, Some("s3cret-token")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, job) = call(
        &app,
        post(
            "/api/harvest/sources/logged/jobs",
            json!({}),
            Some("s3cret-token"),
        ),
    )
    .await;
    let id = job["id"].as_str().expect("id");
    call(
        &app,
        post(
            &format!("/api/harvest/jobs/{id}/abort"),
            json!({}),
            Some("s3cret-token"),
        ),
    )
    .await;

    let (status, all) = call(&app, read("/api/harvest/log")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["success"], true);
    let result = all["result"].as_array().expect("result");
    assert_eq!(result.len(), 2, "{all}");
    assert_eq!(result[0]["level"], "WARNING", "newest first: {all}");
    assert!(
        result[0]["content"]
            .as_str()
            .expect("content")
            .contains("aborted")
    );
    assert!(
        result[1]["content"]
            .as_str()
            .expect("content")
            .contains("created")
    );
    for field in ["content", "level", "created"] {
        assert!(result[0].get(field).is_some(), "{field}");
    }
    let (_, info) = call(&app, read("/api/harvest/log?level=info")).await;
    assert_eq!(info["result"].as_array().map(Vec::len), Some(1));
    let (_, paged) = call(&app, read("/api/harvest/log?limit=1&offset=1")).await;
    assert_eq!(paged["result"][0]["level"], "INFO");

    // Retention: a day older than the limit goes, today stays.
    let old = json!({"content": "old", "level": "INFO", "created": "2020-01-01T00:00:00Z"});
    // Keys count down from the end of time: newest first.
    let micros = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .unwrap()
        .timestamp_micros() as u64;
    services
        .store
        .put(
            &format!("log/{:020}-INFO-aaaaaaaa.json", u64::MAX - micros),
            Bytes::from(old.to_string()),
            "application/json",
            PutMode::Create,
        )
        .await
        .expect("put");
    assert_eq!(
        common::harvest_log::clean(services.store.as_ref(), 30)
            .await
            .expect("clean"),
        1
    );
    let (_, after) = call(&app, read("/api/harvest/log")).await;
    assert_eq!(after["result"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn jobs_are_listed_newest_first_a_page_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _services) = app(dir.path());
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let source = json!({"name": name, "url": "https://example.org/waf/", "type": "waf"});
        call(
            &app,
            post("/api/harvest/sources", source, Some("s3cret-token")),
        )
        .await;
    }
    // Three jobs of "one" (each aborted so the next may start), then one of "two".
    for name in ["one", "one", "one", "two"] {
        let (status, job) = call(
            &app,
            post(
                &format!("/api/harvest/sources/{name}/jobs"),
                json!({}),
                Some("s3cret-token"),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        let id = job["id"].as_str().expect("id").to_string();
        call(
            &app,
            post(
                &format!("/api/harvest/jobs/{id}/abort"),
                json!({}),
                Some("s3cret-token"),
            ),
        )
        .await;
        ids.push(id);
        // Job ids carry their second: the next job is a second newer.
        tokio::time::sleep(std::time::Duration::from_millis(1001)).await;
    }
    let listed = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|j| j["id"].as_str().expect("id").to_string())
            .collect()
    };
    let (_, all) = call(&app, read("/api/harvest/jobs")).await;
    assert_eq!(
        listed(&all),
        [&ids[3], &ids[2], &ids[1], &ids[0]].map(String::clone)
    );
    let (_, page) = call(&app, read("/api/harvest/jobs?source=one&limit=2")).await;
    assert_eq!(listed(&page), [&ids[2], &ids[1]].map(String::clone));
    let (_, rest) = call(&app, read("/api/harvest/jobs?source=one&limit=2&offset=2")).await;
    assert_eq!(listed(&rest), [ids[0].clone()]);
    assert_eq!(rest[0]["source"], "one");
}

/// A page number at the edge of u64 neither overflows nor sizes a buffer: an empty page.
#[tokio::test]
async fn a_page_far_past_the_end_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = app(dir.path());
    let (status, body) = call(
        &app,
        get(format!(
            "/api/catalog/search?page={}&page_size=1000",
            u64::MAX
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["records"], json!([]));
    let (status, body) = call(
        &app,
        get("/ogcapi/collections/metadata/items?offset=18446744073709551615&limit=1000"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["features"], json!([]));
    let (status, body) = call(
        &app,
        get("/csw?service=CSW&version=2.0.2&request=GetRecords&typeNames=csw:Record&startPosition=18446744073709551615"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.as_str()
            .unwrap()
            .contains("numberOfRecordsReturned=\"0\""),
        "{body}"
    );
}

/// Every route the router declares and who may call it (see the test below).
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/api/harvest/sources", "read"),
    ("POST", "/api/harvest/sources", "api"),
    ("GET", "/api/harvest/sources/{name}", "read"),
    ("PATCH", "/api/harvest/sources/{name}", "api"),
    ("DELETE", "/api/harvest/sources/{name}", "api"),
    ("POST", "/api/harvest/sources/{name}/clear", "api"),
    ("POST", "/api/harvest/sources/{name}/jobs", "api"),
    ("GET", "/api/harvest/jobs", "read"),
    ("GET", "/api/harvest/jobs/{id}", "read"),
    ("POST", "/api/harvest/jobs/{id}/abort", "api"),
    ("GET", "/api/harvest/log", "read"),
    ("GET", "/api/catalog/search", "public"),
    ("GET", "/api/catalog/records/{id}", "public"),
    ("GET", "/api/catalog/queues", "read"),
    ("POST", "/api/catalog/queues/{queue}/redrive", "api"),
    ("GET", "/api/catalog/status", "read"),
    ("POST", "/api/catalog/rebuild", "api"),
    ("GET", "/api/catalog/rebuild/result", "read"),
    ("GET", "/api/catalog/rebuild/report", "read"),
    ("GET", "/api/catalog/rejected", "read"),
    ("GET", "/api/notifications/targets", "read"),
    ("POST", "/api/notifications/targets", "api"),
    ("PATCH", "/api/notifications/targets/{name}", "api"),
    ("DELETE", "/api/notifications/targets/{name}", "api"),
    ("GET", "/api/notifications/failures", "read"),
    ("POST", "/api/notifications/retry", "api"),
    ("GET", "/api/packager/statistics", "read"),
    ("GET", "/api/auth", "public"),
    ("GET", "/api/openapi.json", "public"),
    ("GET", "/csw", "public"),
    ("POST", "/csw", "public"),
    ("GET", "/ogcapi", "public"),
    ("GET", "/ogcapi/", "public"),
    ("GET", "/ogcapi/conformance", "public"),
    ("GET", "/ogcapi/collections", "public"),
    ("GET", "/ogcapi/collections/{name}", "public"),
    ("GET", "/ogcapi/collections/{name}/items", "public"),
    ("GET", "/ogcapi/collections/{name}/items/{*id}", "public"),
    ("GET", "/waf", "public"),
    ("GET", "/waf/", "public"),
    ("GET", "/waf/{*path}", "public"),
    ("GET", "/downloads/{*key}", "public"),
    ("GET", "/admin", "public"),
    ("GET", "/admin/admin.js", "public"),
    ("GET", "/admin/admin.css", "public"),
    ("GET", "/", "public"),
    ("POST", "/", "secret"),
    ("POST", "/status", "secret"),
    ("POST", "/package_datastore", "secret"),
    ("POST", "/package_dwc_archive", "secret"),
    ("POST", "/package_url", "secret"),
    ("POST", "/statistics", "secret"),
    ("POST", "/statistics/requests", "secret"),
    ("POST", "/statistics/errors", "secret"),
    ("POST", "/clear_cache", "secret"),
    ("POST", "/clear_caches", "secret"),
];

/// Who may call what: every route the router declares (read from `http/mod.rs`, so a new
/// route without a row here fails), with no token, a wrong one, the read token and the API
/// token. "public" answers anyone; "read" needs the read or the API token; "api" needs the API
/// token; "secret" is ckanpackager's, checked by its `secret` parameter, not a bearer token.
#[tokio::test]
async fn every_route_answers_only_whom_it_should() {
    // The router's routes, as declared: `.route("PATH", ...)` inside `nest("/api", ...)` or not.
    let source = std::fs::read_to_string(support::workspace_root().join("common/src/http/mod.rs"))
        .expect("http/mod.rs");
    let nested_until = source
        .find("Router::new()\n        .nest(\"/api\"")
        .expect("the /api nest");
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
    let declared: std::collections::BTreeSet<String> = route
        .captures_iter(&source)
        .map(|c| {
            let (at, path) = (c.get(0).unwrap().start(), &c[1]);
            if at < nested_until {
                format!("/api{path}")
            } else {
                path.to_string()
            }
        })
        .collect();
    let tabled: std::collections::BTreeSet<String> =
        ROUTES.iter().map(|(_, p, _)| p.to_string()).collect();
    assert_eq!(
        declared, tabled,
        "every route has its rows in the table, and only those"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let services = support::local_services(dir.path());
    let app = router(AppState {
        services,
        api_token: Some("the-api-token".into()),
        read_token: Some("the-read-token".into()),
        local_store: None,
    });
    let concrete = |path: &str| {
        path.replace("{name}", "nope")
            .replace("{id}", "20200101T000000Z-x")
            .replace("{*id}", "nope")
            .replace("{*path}", "nope.xml")
            .replace("{*key}", "nope")
            .replace("{queue}", "nope")
    };
    for (method, path, who) in ROUTES {
        let url = concrete(path);
        for (token, name) in [
            (None, "no token"),
            (Some("wrong-token"), "a wrong token"),
            (Some("the-api-toke"), "a prefix of the token"),
            (Some("the-read-token"), "the read token"),
            (Some("the-api-token"), "the API token"),
        ] {
            let mut request = Request::builder().method(*method).uri(&url);
            if let Some(t) = token {
                request = request.header("authorization", format!("Bearer {t}"));
            }
            let response = app
                .clone()
                .oneshot(request.body(Body::from("{}")).unwrap())
                .await
                .unwrap();
            let refused = response.status() == StatusCode::UNAUTHORIZED;
            let should_refuse = match *who {
                "public" | "secret" => false,
                "read" => !matches!(token, Some("the-read-token" | "the-api-token")),
                "api" => token != Some("the-api-token"),
                other => panic!("unknown class {other}"),
            };
            assert_eq!(
                refused,
                should_refuse,
                "{method} {url} with {name}: {}",
                response.status()
            );
            if refused {
                assert_eq!(
                    response
                        .headers()
                        .get("www-authenticate")
                        .map(|v| v.to_str().unwrap()),
                    Some("Bearer")
                );
            }
        }
    }
}

/// A request body over the limit is refused with 413 on every route that reads one, before
/// the handler sees it (and before ckanpackager's secret is even read).
#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = app(dir.path());
    let app = app.layer(axum::Extension(TrustedLocal));
    let big = vec![b' '; common::http::MAX_BODY_BYTES + 1];
    for (method, path) in [
        ("POST", "/api/harvest/sources"),
        ("PATCH", "/api/harvest/sources/x"),
        ("POST", "/api/notifications/targets"),
        ("PATCH", "/api/notifications/targets/x"),
        ("POST", "/csw"),
        ("POST", "/package_datastore"),
        ("POST", "/package_url"),
        ("POST", "/package_dwc_archive"),
        ("POST", "/statistics"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(big.clone()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}"
        );
    }
    // Just under the limit is read (and refused for what it says, not its size).
    let request = Request::post("/api/harvest/sources")
        .header("content-type", "application/json")
        .body(Body::from(vec![b' '; common::http::MAX_BODY_BYTES]))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// A CKAN source's API key is never in an answer: masked wherever a source is shown, and a
/// PATCH that sends the masked config back keeps the key.
#[tokio::test]
async fn a_sources_api_key_never_leaves_in_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = app(dir.path());
    let auth = "Bearer s3cret-token";
    let secret = "0d5a3b6e-real-ckan-api-key";
    let source = json!({
        "name": "portal", "url": "https://ckan.example.org/", "type": "ckan",
        "config": {"api_key": secret, "force_all": false}
    });
    let request = |method: &str, path: &str, body: Option<&Value>| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap()
    };
    let mut answers = Vec::new();
    let (status, added) = call(&app, request("POST", "/api/harvest/sources", Some(&source))).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    answers.push(added.clone());
    answers.push(
        call(&app, request("GET", "/api/harvest/sources", None))
            .await
            .1,
    );
    answers.push(
        call(&app, request("GET", "/api/harvest/sources/portal", None))
            .await
            .1,
    );
    let mut config = added["config"].clone();
    assert_eq!(config["api_key"], common::sources::SECRET_MASK);
    config["force_all"] = json!(true);
    let (status, patched) = call(
        &app,
        request(
            "PATCH",
            "/api/harvest/sources/portal",
            Some(&json!({ "config": config })),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    answers.push(patched);
    for answer in &answers {
        assert!(!answer.to_string().contains(secret), "{answer}");
    }
    let stored = common::pipeline::load_source(services.store.as_ref(), "portal")
        .await
        .expect("source");
    assert_eq!(stored.config["api_key"], secret);
    assert_eq!(stored.config["force_all"], true);
}

/// `/api/openapi.json` describes exactly the routes the router declares (the table above, which
/// the route test checks against the router), each protected route with the bearer scheme and
/// the public ones without; and it is a valid OpenAPI 3 document (openapi-spec-validator).
#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = app(dir.path());
    let (status, doc) = call(&app, get("/api/openapi.json")).await;
    assert_eq!(status, StatusCode::OK, "public, like the catalogue");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let mut described = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            described.insert((method.to_uppercase(), path.clone(), secured));
        }
    }
    let declared: std::collections::BTreeSet<(String, String, bool)> = ROUTES
        .iter()
        .map(|(method, path, who)| {
            let path = path.replace("{*", "{");
            (method.to_string(), path, matches!(*who, "read" | "api"))
        })
        .collect();
    assert_eq!(described, declared);
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let checked = std::process::Command::new(support::python())
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
