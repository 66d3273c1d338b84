//! The packager end to end through its HTTP API, in local mode and on moto (S3, SQS, SES), with
//! tests/ckan_datastore.py as the CKAN datastore: the zips pass three independent readers and
//! hold exactly the datastore's rows; the cache, the queue split, the emails, the statistics,
//! Darwin Core Archives and every kind of bad input.

mod support;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::http::{AppState, DeployedOrigin, router};
use common::package::PackagerSettings;
use common::queue::QueueName;
use common::services::Services;
use common::store::LocalStore;
use serde_json::Value;
use support::{CkanDatastore, email_parts, handle_body, three_readers};
use tower::ServiceExt;

const SECRET: &str = "8ba6d280d4ce9a416e9b604f3f0ebb";

fn settings(tweak: impl FnOnce(&mut PackagerSettings)) -> PackagerSettings {
    let mut p = PackagerSettings {
        secret: Some(SECRET.into()),
        page_size: 700,
        address_policy: common::fetch::AddressPolicy::AllowPrivate,
        ..PackagerSettings::default()
    };
    tweak(&mut p);
    p
}

fn local(dir: &Path, tweak: impl FnOnce(&mut PackagerSettings)) -> (axum::Router, Services) {
    let mut services = support::local_services(dir);
    services.settings.packager = settings(tweak);
    let local_store = LocalStore::open(&dir.join("store"), "http://127.0.0.1:8765").expect("store");
    let app = router(AppState {
        services: services.clone(),
        api_token: None,
        read_token: None,
        local_store: Some(local_store),
    });
    (app, services)
}

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, Value, Vec<u8>) {
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("location").to_string());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 30)
        .await
        .expect("body")
        .to_vec();
    let value = serde_json::from_slice(&bytes).unwrap_or(match location {
        Some(l) => Value::String(l),
        None => Value::Null,
    });
    (status, value, bytes)
}

fn form(path: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request")
}

async fn call(app: &axum::Router, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
    let (status, value, _) = send(app, form(path, pairs)).await;
    (status, value)
}

/// Runs every package message as the workers do: a failed one is delivered again at once,
/// until its last attempt.
async fn drain(services: &Services) -> u32 {
    let mut handled = 0;
    loop {
        let mut any = false;
        for name in [QueueName::PackageFast, QueueName::PackageSlow] {
            let queue = services.queues.get(name).expect("queue").clone();
            for m in queue
                .receive(10, Duration::from_secs(120))
                .await
                .expect("receive")
            {
                any = true;
                handled += 1;
                match handle_body(services, &m.body, m.receive_count).await {
                    Ok(()) => queue.delete(&m.receipt).await.expect("delete"),
                    Err(_) => queue
                        .change_visibility(&m.receipt, Duration::ZERO)
                        .await
                        .expect("visibility"),
                }
            }
        }
        if !any {
            return handled;
        }
    }
}

/// Emails in the outbox, oldest first.
fn outbox(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("outbox")) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort_by_key(|p| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .expect("mtime")
    });
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("eml"))
        .collect()
}

fn link_in(text: &str) -> String {
    let re = regex::Regex::new(r"https?://[^\s<>]+/downloads/[^\s<>]+").expect("regex");
    re.find(text).expect("a download link").as_str().to_string()
}

/// The zip behind the link in an email's text, downloaded through the router (local mode).
async fn emailed_zip(app: &axum::Router, text_body: &str) -> Vec<u8> {
    let path = link_in(text_body).replace("http://127.0.0.1:8765", "");
    let (status, _, zip) = send(app, Request::get(path).body(Body::empty()).expect("get")).await;
    assert_eq!(status, StatusCode::OK);
    zip
}

/// The rows of `entry` in a zip, header first.
fn table(zip: &[u8], entry: &str, delimiter: u8) -> Vec<Vec<String>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
    let mut text = String::new();
    archive
        .by_name(entry)
        .expect("entry")
        .read_to_string(&mut text)
        .expect("read entry");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect()
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write zip");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_rows_arrive_exactly_in_a_zip_every_reader_accepts_and_the_cache_reuses_it() {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |_| {});
    let api = ckan.api_url();
    let request = |email: &'static str| {
        vec![
            ("secret", SECRET),
            ("api_url", api.as_str()),
            ("resource_id", "rows-2500"),
            ("email", email),
            ("offset", "100"),
            ("limit", "2000"),
        ]
    };
    let (status, answer) = call(&app, "/package_datastore", &request("first@example.org")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], true);
    assert!(answer["msg"].as_str().expect("msg").contains("emailed"));
    assert_eq!(drain(&services).await, 1);

    let mails = outbox(dir.path());
    assert_eq!(mails.len(), 1);
    let (headers, bodies) = email_parts(&mails[0]);
    assert!(headers.contains("To: first@example.org"), "{headers}");
    assert!(
        headers.contains("Subject: Resource from 127.0.0.1"),
        "{headers}"
    );
    let link = link_in(&bodies[0]);
    assert!(
        bodies[1].contains(&format!("<a href=\"{link}\">")),
        "{}",
        bodies[1]
    );
    assert!(!bodies[0].contains("DOI"), "no DOI paragraph without a DOI");
    let path = link.trim_start_matches("http://127.0.0.1:8765");
    let (status, _, zip) = send(&app, Request::get(path).body(Body::empty()).expect("get")).await;
    assert_eq!(status, StatusCode::OK);
    let entries = three_readers(&save(dir.path(), "first.zip", &zip));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "resource.csv");

    let (fields, expected) = ckan.rows("rows-2500", 100, 2000).await;
    let got = table(&zip, "resource.csv", b',');
    assert_eq!(got[0], fields, "the header is the datastore's fields");
    assert_eq!(got.len() - 1, 2000);
    assert_eq!(
        &got[1..],
        &expected[..],
        "the zip holds exactly the datastore's rows"
    );

    // The same request from someone else: the same zip, no second pass over the datastore.
    let pages = ckan.page_calls().await;
    let (status, _) = call(&app, "/package_datastore", &request("second@example.org")).await;
    assert_eq!(status, StatusCode::OK);
    drain(&services).await;
    assert_eq!(ckan.page_calls().await, pages, "the cached zip was reused");
    let mails = outbox(dir.path());
    assert_eq!(mails.len(), 2);
    let (headers, bodies) = email_parts(&mails[1]);
    assert!(headers.contains("To: second@example.org"));
    assert_eq!(
        link_in(&bodies[0]).split('?').next(),
        link.split('?').next()
    );

    // A tampered link is refused.
    let forged = path.replace("signature=", "signature=00");
    let (status, _, _) = send(&app, Request::get(forged).body(Body::empty()).expect("get")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // clear_cache: the next identical request reads the datastore again.
    let (status, answer) = call(&app, "/clear_cache", &[("secret", SECRET)]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["removed"], 1);
    call(&app, "/package_datastore", &request("third@example.org")).await;
    drain(&services).await;
    assert!(
        ckan.page_calls().await > pages,
        "after clear_cache the zip is built again"
    );

    // TSV, from a CKAN too old to write delimited records (the JSON records path).
    let (status, answer) = call(
        &app,
        "/package_datastore",
        &[
            ("secret", SECRET),
            ("api_url", api.as_str()),
            ("resource_id", "old-rows-1500"),
            ("email", "tsv@example.org"),
            ("format", "tsv"),
            ("doi", "10.5555/sheaf.tsv"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    drain(&services).await;
    let mails = outbox(dir.path());
    let (_, bodies) = email_parts(mails.last().expect("mail"));
    assert!(
        bodies[0]
            .contains("A DOI has been created for this data: https://doi.org/10.5555/sheaf.tsv"),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[1].contains("<a href=\"https://doi.org/10.5555/sheaf.tsv\">"),
        "{}",
        bodies[1]
    );
    let zip = emailed_zip(&app, &bodies[0]).await;
    three_readers(&save(dir.path(), "tsv.zip", &zip));
    let (fields, expected) = ckan.rows("old-rows-1500", 0, 1500).await;
    let got = table(&zip, "resource.tsv", b'\t');
    assert_eq!(got[0], fields);
    assert_eq!(&got[1..], &expected[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_split_between_the_fast_and_the_slow_queue_by_their_row_count() {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = local(dir.path(), |p| p.slow_request = 1000);
    let api = ckan.api_url();
    let queue_of = |resource: &'static str, limit: Option<&'static str>| {
        let app = app.clone();
        let api = api.clone();
        async move {
            let mut pairs = vec![
                ("secret", SECRET),
                ("api_url", api.as_str()),
                ("resource_id", resource),
                ("email", "q@example.org"),
            ];
            if let Some(l) = limit {
                pairs.push(("limit", l));
            }
            let (status, answer) = call(&app, "/package_datastore", &pairs).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer["queue"].as_str().expect("queue").to_string()
        }
    };
    assert_eq!(queue_of("rows-1500", None).await, "package-slow");
    assert_eq!(queue_of("rows-1500", Some("999")).await, "package-fast");
    assert_eq!(queue_of("rows-999", None).await, "package-fast");
    assert_eq!(queue_of("rows-1000", None).await, "package-slow");
    let (status, answer) = call(
        &app,
        "/package_url",
        &[
            ("secret", SECRET),
            ("resource_id", "file"),
            ("resource_url", &ckan.url("/files/data.csv?size=100")),
            ("email", "q@example.org"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["queue"], "package-fast");
    let (status, answer) = call(&app, "/status", &[("secret", SECRET)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["queue_length"], 5);
    assert_eq!(answer["worker_count"], 2);
    assert_eq!(answer["processed_requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_file_streams_into_the_zip() {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |_| {});
    let file_url = ckan.url("/files/observations.csv?size=3000000");
    let (status, answer) = call(
        &app,
        "/package_url",
        &[
            ("secret", SECRET),
            ("resource_id", "abc"),
            ("resource_url", &file_url),
            ("email", "file@example.org"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    drain(&services).await;
    let (_, bodies) = email_parts(&outbox(dir.path())[0]);
    let zip = emailed_zip(&app, &bodies[0]).await;
    let entries = three_readers(&save(dir.path(), "file.zip", &zip));
    let original = reqwest::get(&file_url)
        .await
        .expect("file")
        .bytes()
        .await
        .expect("bytes");
    use sha2::Digest;
    assert_eq!(
        entries,
        vec![(
            "observations.csv".to_string(),
            3_000_000,
            hex::encode(sha2::Sha256::digest(&original))
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_requests_errors_and_unique_emails() {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |_| {});
    let api = ckan.api_url();
    for (resource, email) in [
        ("rows-10", "Ann@Example.org"),
        ("rows-10", "ann@example.org"),
        ("rows-10", "bob@example.net"),
        ("rows-20", "ann@example.org"),
        ("garbage-900-700", "bob@example.net"),
    ] {
        let (status, answer) = call(
            &app,
            "/package_datastore",
            &[
                ("secret", SECRET),
                ("api_url", &api),
                ("resource_id", resource),
                ("email", email),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    drain(&services).await;
    let (status, stats) = call(&app, "/statistics", &[("secret", SECRET)]).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["success"], true);
    let totals = &stats["totals"];
    assert_eq!(
        totals["*"],
        serde_json::json!({"emails": 2, "requests": 4, "errors": 1})
    );
    assert_eq!(
        totals["rows-10"],
        serde_json::json!({"emails": 2, "requests": 3, "errors": 0})
    );
    assert_eq!(
        totals["rows-20"],
        serde_json::json!({"emails": 1, "requests": 1, "errors": 0})
    );
    assert_eq!(totals["garbage-900-700"]["errors"], 1);
    let (_, only) = call(
        &app,
        "/statistics",
        &[("secret", SECRET), ("resource_id", "rows-20")],
    )
    .await;
    assert_eq!(only["totals"].as_object().expect("totals").len(), 1);

    let (_, listed) = call(
        &app,
        "/statistics/requests",
        &[
            ("secret", SECRET),
            ("email", "ann@example.org"),
            ("limit", "2"),
        ],
    )
    .await;
    let requests = listed["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r["email"] == "ann@example.org" && r["domain"] == "example.org")
    );
    assert!(
        requests[0]["timestamp"].as_i64() >= requests[1]["timestamp"].as_i64(),
        "newest first"
    );
    let (_, errors) = call(&app, "/statistics/errors", &[("secret", SECRET)]).await;
    let errors = errors["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["resource_id"], "garbage-900-700");
    assert!(
        errors[0]["message"]
            .as_str()
            .expect("message")
            .contains("does not parse"),
        "{errors:?}"
    );
    let (status, answer) = call(&app, "/status", &[("secret", SECRET)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["processed_requests"], 4);

    // ANONYMIZE_EMAILS: a keyed hash and the domain; filtering by the address still works.
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |p| p.anonymize_emails = true);
    for email in ["carol@example.com", "CAROL@example.com", "dan@example.edu"] {
        call(
            &app,
            "/package_datastore",
            &[
                ("secret", SECRET),
                ("api_url", &api),
                ("resource_id", "rows-5"),
                ("email", email),
            ],
        )
        .await;
    }
    drain(&services).await;
    let (_, listed) = call(&app, "/statistics/requests", &[("secret", SECRET)]).await;
    let requests = listed["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 3);
    assert!(
        requests
            .iter()
            .all(|r| !r["email"].as_str().expect("email").contains('@')),
        "{requests:?}"
    );
    let (_, carol) = call(
        &app,
        "/statistics/requests",
        &[("secret", SECRET), ("email", "carol@example.com")],
    )
    .await;
    let carol = carol["requests"].as_array().expect("requests");
    assert_eq!(carol.len(), 2);
    assert_eq!(carol[0]["domain"], "example.com");
    let (_, stats) = call(&app, "/statistics", &[("secret", SECRET)]).await;
    assert_eq!(stats["totals"]["*"]["emails"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_parameter_named_and_are_no_packaging_errors() {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |_| {});
    let api = ckan.api_url();
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut pairs: Vec<(&str, String)> = vec![
            ("secret", SECRET.into()),
            ("api_url", api.clone()),
            ("resource_id", "rows-10".into()),
            ("email", "someone@example.org".into()),
        ];
        for (k, v) in extra {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k, v.to_string()));
        }
        pairs
    };
    let ask = |pairs: Vec<(&'static str, String)>| {
        let app = app.clone();
        async move {
            let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(&app, "/package_datastore", &refs).await
        }
    };
    let (status, answer) = ask(base(&[("secret", "wrong")])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["success"], false);
    let mut no_secret = base(&[]);
    no_secret.retain(|(k, _)| *k != "secret");
    assert_eq!(ask(no_secret).await.0, StatusCode::FORBIDDEN);
    for (param, value) in [
        ("email", "not-an-email"),
        (
            "api_url",
            "ftp://ckan.example.org/api/3/action/datastore_search",
        ),
        ("filters", "{not json"),
        ("limit", "ten"),
        ("format", "xlsx"),
    ] {
        let (status, answer) = ask(base(&[(param, value)])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}={value}: {answer}");
        assert_eq!(answer["param"], param, "{answer}");
        assert!(answer["msg"].as_str().expect("msg").contains(param));
    }
    let mut missing = base(&[]);
    missing.retain(|(k, _)| *k != "resource_id");
    let (status, answer) = ask(missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["msg"],
        "resource_id: Parameter resource_id is required"
    );
    // As ckanpackager counts them, the refusals are no packaging errors (and a refusal without
    // a resource_id is no resource named ""); the requester hears of them by email.
    // (Private addresses are refused in private_refusal.rs, without a network.)
    let (_, errors) = call(&app, "/statistics/errors", &[("secret", SECRET)]).await;
    assert_eq!(
        errors["errors"].as_array().expect("errors").len(),
        0,
        "{errors}"
    );
    let (_, stats) = call(&app, "/statistics", &[("secret", SECRET)]).await;
    assert!(stats["totals"].get("").is_none(), "{stats}");
    assert_eq!(
        stats["totals"]["*"]["errors"].as_u64().unwrap_or(0),
        0,
        "{stats}"
    );
    assert!(outbox(dir.path()).iter().any(|m| m.contains("refused")));

    // A datastore that fails mid-way (after retries) and one whose page does not parse: an
    // error recorded and emailed, the upload aborted, no zip offered.
    let before = outbox(dir.path()).len();
    for resource in ["fails-3000-1400", "garbage-3000-1400"] {
        let (status, answer) = ask(base(&[("resource_id", resource)])).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    drain(&services).await;
    let mails = outbox(dir.path());
    assert_eq!(mails.len(), before + 2);
    for mail in &mails[before..] {
        let (headers, bodies) = email_parts(mail);
        assert!(headers.contains("failed"), "{headers}");
        assert!(bodies[0].contains("could not be packaged"));
    }
    let (_, errors) = call(&app, "/statistics/errors", &[("secret", SECRET)]).await;
    let errors = errors["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["resource_id"] == "fails-3000-1400"
            && e["message"].as_str().unwrap_or("").contains("500")),
        "{errors:?}"
    );
    let zips: Vec<_> = services
        .store
        .list("packages/")
        .await
        .expect("list")
        .into_iter()
        .filter(|e| e.key.ends_with(".zip"))
        .collect();
    assert!(zips.is_empty(), "no zip is offered: {zips:?}");
    assert_eq!(
        temp_files(&dir.path().join("store")),
        0,
        "aborted uploads leave nothing behind"
    );

    // No secret configured: everything is refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, _) = local(dir.path(), |p| p.secret = None);
    let (status, _) = call(&app, "/status", &[("secret", "")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_may_be_json_or_url_quoted_json_as_ckanpackager_clients_send_them() {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |_| {});
    let json = serde_json::json!({
        "secret": SECRET, "api_url": ckan.api_url(), "resource_id": "rows-300",
        "email": "json@example.org", "filters": "{\"flag\": true}", "limit": 50
    });
    let request = Request::post("/package_datastore")
        .header("content-type", "application/json")
        .body(Body::from(json.to_string()))
        .expect("request");
    let (status, answer, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // urllib.quote(json.dumps(...)), posted as ckanpackager's README shows.
    let quoted: String = url::form_urlencoded::byte_serialize(
        serde_json::json!({
            "secret": SECRET, "api_url": ckan.api_url(), "resource_id": "rows-300",
            "email": "quoted@example.org", "q": "Kew"
        })
        .to_string()
        .as_bytes(),
    )
    .collect::<String>()
    .replace('+', "%20");
    let request = Request::post("/package_datastore")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(quoted))
        .expect("request");
    let (status, answer, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    drain(&services).await;
    let mails = outbox(dir.path());
    assert_eq!(mails.len(), 2);
    for (mail, check) in mails.iter().zip([2usize, 7]) {
        let (_, bodies) = email_parts(mail);
        let zip = emailed_zip(&app, &bodies[0]).await;
        let rows = table(&zip, "resource.csv", b',');
        let column = rows[0]
            .iter()
            .position(|f| f == if check == 2 { "flag" } else { "locality" })
            .expect("column");
        assert!(rows.len() > 1);
        for row in &rows[1..] {
            if check == 2 {
                assert_eq!(row[column], "true", "filters were applied");
            } else {
                assert!(
                    row.iter().any(|v| v.contains("Kew")),
                    "q was applied: {row:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_darwin_core_archive_opens_in_python_dwca_reader() {
    dwc_archive(900, 700).await;
    // Pages of over a megabyte: the rows reach the core entry in several pieces each.
    dwc_archive(12_000, 32_000).await;
}

async fn dwc_archive(count: usize, page_size: u64) {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |p| p.page_size = page_size);
    let resource = format!("dwc-{count}");
    let (status, answer) = call(
        &app,
        "/package_dwc_archive",
        &[
            ("secret", SECRET),
            ("api_url", &ckan.api_url()),
            ("resource_id", &resource),
            ("email", "dwc@example.org"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    drain(&services).await;
    let (_, bodies) = email_parts(&outbox(dir.path())[0]);
    let zip = emailed_zip(&app, &bodies[0]).await;
    let file = save(dir.path(), "dwca.zip", &zip);
    let names: Vec<String> = three_readers(&file).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["occurrence.csv", "multimedia.csv", "meta.xml"]);

    let out = std::process::Command::new(support::python())
        .arg(support::workspace_root().join("tests/readers/dwca_python.py"))
        .arg(&file)
        .output()
        .expect("python-dwca-reader");
    assert!(
        out.status.success(),
        "python-dwca-reader refused the archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(read["core_type"], "http://rs.tdwg.org/dwc/terms/Occurrence");
    assert_eq!(
        read["extensions"],
        serde_json::json!(["http://rs.gbif.org/terms/1.0/Multimedia"])
    );
    let terms: Vec<&str> = read["core_terms"]
        .as_array()
        .expect("terms")
        .iter()
        .map(|t| t.as_str().expect("term"))
        .collect();
    for term in [
        "catalogNumber",
        "scientificName",
        "locality",
        "decimalLatitude",
        "decimalLongitude",
        "eventDate",
        "dynamicProperties",
    ] {
        assert!(
            terms.contains(&format!("http://rs.tdwg.org/dwc/terms/{term}").as_str()),
            "{term} missing from {terms:?}"
        );
    }
    let rows = read["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), count);
    let (_, source) = ckan.rows(&resource, 0, count as u64).await;
    let dwc = |term: &str| format!("http://rs.tdwg.org/dwc/terms/{term}");
    for (row, original) in rows.iter().zip(&source) {
        assert_eq!(row["id"], original[0]);
        assert_eq!(row["data"][dwc("catalogNumber")], original[1]);
        assert_eq!(row["data"][dwc("scientificName")], original[2]);
        let dynamic: Value = serde_json::from_str(
            row["data"][dwc("dynamicProperties")]
                .as_str()
                .expect("dynamic"),
        )
        .expect("dynamicProperties is JSON");
        if !original[7].is_empty() {
            assert_eq!(dynamic["colour"], original[7]);
        }
        if !original[8].is_empty() {
            assert_eq!(dynamic["gutContents"], original[8]);
        }
        let media: Vec<Value> = if original[9].is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(&original[9]).expect("media")
        };
        let extension = row["extensions"].as_array().expect("extensions");
        assert_eq!(
            extension.len(),
            media.len(),
            "one multimedia row per media object"
        );
        for (e, m) in extension.iter().zip(&media) {
            assert_eq!(
                e["data"]["http://purl.org/dc/terms/identifier"],
                m["identifier"]
            );
            assert_eq!(e["data"]["http://purl.org/dc/terms/type"], "StillImage");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_the_zip_is_a_multipart_s3_object_the_link_redirects_to_and_ses_sends_it() {
    use common::mail::SesMailer;
    use std::sync::Arc;
    let ckan = CkanDatastore::start();
    let moto = support::Moto::start();
    // SES on a server of its own: moto's data dump, where SES messages are read back, fails
    // once S3 multipart objects exist.
    let moto_ses = support::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut services = support::aws_services(&moto, dir.path()).await;
    let mut queues = services.queues.clone();
    for name in [QueueName::PackageFast, QueueName::PackageSlow] {
        queues = queues.with(
            name,
            Arc::new(moto.queue(&format!("sheaf-{}", name.as_str()), 5).await),
        );
    }
    services.queues = queues;
    let ses = aws_sdk_ses::Client::new(&moto_ses.sdk_config().await);
    ses.verify_email_identity()
        .email_address("sheaf@example.org")
        .send()
        .await
        .expect("verify");
    services.mailer = Arc::new(SesMailer::new(ses));
    services.settings.mail_from = "sheaf@example.org".into();
    services.settings.packager = settings(|p| {
        p.page_size = 5000;
        p.slow_request = 20_000;
        p.public_url = Some("https://packager.example.org".into());
    });
    let app = router(AppState {
        services: services.clone(),
        api_token: None,
        read_token: None,
        local_store: None,
    });

    let (status, answer) = call(
        &app,
        "/package_datastore",
        &[
            ("secret", SECRET),
            ("api_url", &ckan.api_url()),
            ("resource_id", "random-40000"),
            ("email", "aws@example.org"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["queue"], "package-slow");
    assert_eq!(drain(&services).await, 1);

    let dump = reqwest::get(format!("{}/moto-api/data.json", moto_ses.endpoint()))
        .await
        .expect("moto")
        .text()
        .await
        .expect("body");
    let dump: Value = serde_json::from_str(&dump).expect("moto json");
    let received = dump["ses"]["RawMessage"].as_array().expect("raw messages");
    assert_eq!(received.len(), 1);
    let (headers, bodies) = email_parts(received[0]["raw_data"].as_str().expect("raw"));
    assert!(headers.contains("To: aws@example.org"), "{headers}");
    let link = link_in(&bodies[0]);
    assert!(
        link.starts_with("https://packager.example.org/downloads/packages/"),
        "{link}"
    );

    // The emailed link is Sheaf's; following it gives a fresh S3 presigned URL.
    let path = link.trim_start_matches("https://packager.example.org");
    let (status, location, _) =
        send(&app, Request::get(path).body(Body::empty()).expect("get")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let presigned = location.as_str().expect("location").to_string();
    assert!(presigned.starts_with(&moto.endpoint()), "{presigned}");
    let zip = reqwest::get(&presigned)
        .await
        .expect("presigned")
        .bytes()
        .await
        .expect("zip")
        .to_vec();
    three_readers(&save(dir.path(), "aws.zip", &zip));
    let got = table(&zip, "resource.csv", b',');
    assert_eq!(got.len(), 40_001);
    let (fields, first) = ckan.rows("random-40000", 0, 32_000).await;
    let (_, rest) = ckan.rows("random-40000", 32_000, 32_000).await;
    assert_eq!(got[0], fields);
    assert_eq!(&got[1..32_001], &first[..]);
    assert_eq!(&got[32_001..], &rest[..]);

    // Uploaded in parts of at least 5 MiB: S3's ETag of a multipart object ends in -PARTS.
    let key = path
        .trim_start_matches("/downloads/")
        .split('?')
        .next()
        .expect("key");
    let head = moto
        .s3()
        .await
        .head_object()
        .bucket("sheaf-test")
        .key(key)
        .send()
        .await
        .expect("head");
    let parts: usize = head
        .e_tag()
        .expect("etag")
        .trim_matches('"')
        .rsplit('-')
        .next()
        .expect("parts")
        .parse()
        .expect("a multipart ETag");
    let min = common::package::MIN_PART_SIZE;
    assert!(parts >= 2, "{} bytes in {parts} part(s)", zip.len());
    assert!(
        (parts - 1) * min <= zip.len(),
        "every part but the last is at least 5 MiB"
    );

    // A datastore failing mid-way: after its retries, an error, and no upload left open.
    let (status, _) = call(
        &app,
        "/package_datastore",
        &[
            ("secret", SECRET),
            ("api_url", &ckan.api_url()),
            ("resource_id", "fails-30000-15000"),
            ("email", "aws@example.org"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        drain(&services).await,
        5,
        "delivered until its last attempt"
    );
    let s3 = moto.s3().await;
    let open = s3
        .list_multipart_uploads()
        .bucket("sheaf-test")
        .send()
        .await
        .expect("uploads");
    assert!(
        open.uploads().is_empty(),
        "every failed upload was aborted: {:?}",
        open.uploads()
    );
    let zips = services
        .store
        .list("packages/")
        .await
        .expect("list")
        .into_iter()
        .filter(|e| e.key.ends_with(".zip"))
        .count();
    assert_eq!(zips, 1, "only the good zip is there");
    let dump = reqwest::get(format!("{}/moto-api/data.json", moto_ses.endpoint()))
        .await
        .expect("moto")
        .text()
        .await
        .expect("body");
    let dump: Value = serde_json::from_str(&dump).expect("moto json");
    let received = dump["ses"]["RawMessage"].as_array().expect("raw messages");
    assert_eq!(received.len(), 2);
    assert!(
        received[1]["raw_data"]
            .as_str()
            .expect("raw")
            .contains("failed")
    );
}

/// An entry over 4 GiB: the sizes no longer fit the classic fields, so the data descriptor
/// is 24 bytes and the central directory carries a zip64 extra field. Every reader must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_over_4_gib_is_written_with_zip64_records_every_reader_accepts() {
    use common::package::ZipStreamWriter;
    let line =
        b"1234567,\"Quercus robur L., 1753\",\"Tring, Hertfordshire\",52.1,-0.6,1999-05-01\n";
    let block: Vec<u8> = line.iter().copied().cycle().take(4 << 20).collect();
    let total: u64 = (1 << 32) + (8 << 20) + 12_345;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut zip = ZipStreamWriter::new(Vec::new(), 1);
    zip.add_entry("small.txt", b"before the large one\n")
        .await
        .expect("small");
    zip.start_entry("large.csv").await.expect("start");
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        zip.write(&block[..n]).await.expect("write");
        left -= n as u64;
    }
    let summary = zip.finish_entry().await.expect("finish");
    assert_eq!(summary.uncompressed, total);
    zip.add_entry("after.txt", b"after the large one\n")
        .await
        .expect("after");
    let bytes = zip.finish().await.expect("zip");
    let entries = three_readers(&save(dir.path(), "zip64.zip", &bytes));
    let sizes: Vec<(&str, u64)> = entries.iter().map(|(n, s, _)| (n.as_str(), *s)).collect();
    assert_eq!(
        sizes,
        [("small.txt", 21), ("large.csv", total), ("after.txt", 20)]
    );
}

/// Two deliveries of the same package do not both read the datastore: the second waits for
/// the build the first claimed (its message comes back later), unless that builder has been
/// silent so long it must have died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_request_waits_for_the_build_in_progress_instead_of_reading_again() {
    use common::package::{PackageKind, PackageRequest, Params};
    use common::store::PutMode;
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |p| p.wait_for_build = Duration::from_secs(1));
    let pairs = [
        ("secret", SECRET.to_string()),
        ("api_url", ckan.api_url()),
        ("resource_id", "rows-1500".to_string()),
        ("email", "waiting@example.org".to_string()),
    ];
    let params: Params = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let request = PackageRequest::from_params(
        PackageKind::Datastore,
        &params,
        common::fetch::AddressPolicy::AllowPrivate,
    )
    .expect("request");
    let building = format!("packages/{}.building", request.cache_key());
    let claim = |started: chrono::DateTime<chrono::Utc>| {
        serde_json::to_vec(&serde_json::json!({"started": started})).expect("json")
    };

    // Another delivery is building it: this one reads nothing and comes back later.
    services
        .store
        .put(
            &building,
            claim(chrono::Utc::now()).into(),
            "application/json",
            PutMode::Create,
        )
        .await
        .expect("claim");
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = call(&app, "/package_datastore", &refs).await;
    assert_eq!(status, StatusCode::OK);
    let pages = ckan.page_calls().await;
    drain(&services).await;
    assert_eq!(
        ckan.page_calls().await,
        pages,
        "no second pass over the datastore"
    );
    assert!(outbox(dir.path()).is_empty());
    let waiting = services
        .queues
        .get(QueueName::PackageFast)
        .expect("queue")
        .depth()
        .await
        .expect("depth");
    assert_eq!(
        waiting.visible + waiting.in_flight,
        1,
        "the request waits on the queue"
    );

    // That builder died (its claim is an hour old): the waiting request takes the build over.
    services
        .store
        .put(
            &building,
            claim(chrono::Utc::now() - chrono::Duration::hours(1)).into(),
            "application/json",
            PutMode::Overwrite,
        )
        .await
        .expect("stale claim");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    drain(&services).await;
    assert!(
        ckan.page_calls().await > pages,
        "built after the stale claim"
    );
    assert_eq!(outbox(dir.path()).len(), 1);
    let leftover = services.store.list(&building).await.expect("list");
    assert!(leftover.is_empty(), "the claim is released after the build");
}

/// A package that cannot finish before the invocation's deadline ends cleanly before it: the
/// upload aborted, the error recorded and emailed (rather than being killed mid-way and
/// delivered again to the same end).
/// A Darwin Core Archive cannot go on in another invocation: one that would outlast its
/// function ends before the deadline with the reason recorded and emailed, and no zip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_that_would_outlast_the_function_ends_cleanly_before_its_deadline() {
    use common::package::{PackageKind, PackageMessage, PackageRequest, Params, handle_message};
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |_| {});
    let mut params = Params::new();
    params.insert("api_url".into(), ckan.api_url());
    params.insert("resource_id".into(), "dwc-3000".into());
    params.insert("email".into(), "late@example.org".into());
    let request = PackageRequest::from_params(
        PackageKind::DwcArchive,
        &params,
        common::fetch::AddressPolicy::AllowPrivate,
    )
    .expect("request");
    let message = PackageMessage::new(request, "http://127.0.0.1:8765");
    // 30 seconds left: less than the minute a package keeps for finishing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    common::deadline::scope(Some(deadline), handle_message(&services, &message, 1))
        .await
        .expect("handled: recorded, not retried");
    let (_, errors) = call(&app, "/statistics/errors", &[("secret", SECRET)]).await;
    let message = errors["errors"][0]["message"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(message.contains("fewer rows"), "{message}");
    let mails = outbox(dir.path());
    assert_eq!(mails.len(), 1);
    assert!(email_parts(&mails[0]).1[0].contains("fewer rows"));
    let zips = services.store.list("packages/").await.expect("list");
    assert!(zips.iter().all(|e| !e.key.ends_with(".zip")), "{zips:?}");
    assert_eq!(temp_files(&dir.path().join("store")), 0);
}

/// A datastore package that would outlast its function (a slow datastore) is carried on by
/// following invocations from where each stopped, through the whole parts of its upload,
/// and still yields one zip with every row, in order, and one email: locally and on S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_outlasting_its_invocation_is_carried_on_by_the_next() {
    use std::sync::Arc;
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, services) = local(dir.path(), |p| p.page_size = 4000);
    carried_on(&ckan, services, dir.path()).await;
    assert_eq!(temp_files(&dir.path().join("store")), 0);

    let moto = support::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut services = support::aws_services(&moto, dir.path()).await;
    for name in [QueueName::PackageFast, QueueName::PackageSlow] {
        services.queues = services.queues.clone().with(
            name,
            Arc::new(moto.queue(&format!("sheaf-{}", name.as_str()), 5).await),
        );
    }
    services.settings.packager = settings(|p| p.page_size = 4000);
    carried_on(&ckan, services, dir.path()).await;
}

async fn carried_on(ckan: &CkanDatastore, services: Services, dir: &Path) {
    use common::package::{PackageKind, PackageRequest, Params, accept};
    // 40,000 rows of hard-to-compress text (about 12 MB zipped: parts of 5 MiB), ten pages
    // of 4,000, each answered 400 ms late.
    let resource = "slow-400-random-40000";
    let mut params = Params::new();
    params.insert("api_url".into(), ckan.api_url());
    params.insert("resource_id".into(), resource.into());
    params.insert("email".into(), "patient@example.org".into());
    let request = PackageRequest::from_params(
        PackageKind::Datastore,
        &params,
        common::fetch::AddressPolicy::AllowPrivate,
    )
    .expect("request");
    accept(&services, request, "http://127.0.0.1:8765")
        .await
        .expect("accepted");
    // Each invocation has a second before the minute a package keeps for finishing: two or
    // three pages.
    let mut invocations = 0;
    for _ in 0..100 {
        let mut any = false;
        for name in [QueueName::PackageFast, QueueName::PackageSlow] {
            let queue = services.queues.get(name).expect("queue").clone();
            for m in queue
                .receive(1, Duration::from_secs(300))
                .await
                .expect("receive")
            {
                any = true;
                invocations += 1;
                let deadline = std::time::Instant::now() + Duration::from_millis(61_000);
                common::deadline::scope(
                    Some(deadline),
                    handle_body(&services, &m.body, m.receive_count),
                )
                .await
                .expect("an invocation hands on or finishes");
                queue.delete(&m.receipt).await.expect("delete");
            }
        }
        if !any {
            break;
        }
    }
    assert!(
        invocations >= 3,
        "the build went on over {invocations} invocations"
    );
    eprintln!("{resource}: {invocations} invocations");
    let mails = std::fs::read_dir(dir.join("outbox"))
        .expect("outbox")
        .count();
    assert_eq!(mails, 1, "one email, once the zip is whole");
    let kept: Vec<String> = services
        .store
        .list("packages/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .filter(|k| !k.starts_with("packages/requests/"))
        .collect();
    assert!(
        kept.iter().all(|k| !k.contains(".resume")),
        "nothing set aside remains: {kept:?}"
    );
    let zip_key = kept.iter().find(|k| k.ends_with(".zip")).expect("the zip");
    let zip = services.store.get(zip_key).await.expect("zip").body;
    assert!(
        zip.len() > 10 << 20,
        "a zip of several parts: {}",
        zip.len()
    );
    let entries = three_readers(&save(dir, "carried-on.zip", &zip));
    assert_eq!(entries.len(), 1);
    let (fields, mut expected) = ckan.rows(resource, 0, 20_000).await;
    expected.extend(ckan.rows(resource, 20_000, 20_000).await.1);
    let got = table(&zip, "resource.csv", b',');
    assert_eq!(got[0], fields);
    assert_eq!(got.len() - 1, 40_000);
    assert!(got[1..] == expected[..], "every row, in order, once");
}

/// Temp files of unfinished writes anywhere under a local store (they sit beside their objects).
fn temp_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root)
        .expect("store folder")
        .map(|e| e.expect("entry"))
        .map(|e| {
            if e.file_type().expect("type").is_dir() {
                temp_files(&e.path())
            } else {
                usize::from(e.file_name().to_string_lossy().starts_with("\\partial-"))
            }
        })
        .sum()
}

/// An emailed link points where the deployment says, never where a request header does: a
/// client sending `Host` or `X-Forwarded-Host` would otherwise send the requester's link (and
/// the download) to a host of its choosing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emailed_links_never_take_their_host_from_the_request() {
    let ckan = CkanDatastore::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, services) = local(dir.path(), |_| {});
    let request = |resource: &str| {
        let mut request = form(
            "/package_url",
            &[
                ("secret", SECRET),
                ("resource_id", resource),
                (
                    "resource_url",
                    &ckan.url("/files/observations.csv?size=1000"),
                ),
                ("email", "links@example.org"),
            ],
        );
        let headers = request.headers_mut();
        headers.insert("host", "attacker.example".parse().unwrap());
        headers.insert("x-forwarded-host", "attacker.example".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        request
    };
    // Local mode: the address serve listens on.
    let (status, answer, _) = send(&app, request("one")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    drain(&services).await;
    let (_, bodies) = email_parts(&outbox(dir.path())[0]);
    let link = link_in(&bodies[0]);
    assert!(
        link.starts_with(&format!("{}/downloads/", services.settings.public_url)),
        "{link}"
    );
    // On AWS: API Gateway's domain, as the API function puts it in the request.
    let mut deployed = request("two");
    deployed.extensions_mut().insert(DeployedOrigin(
        "https://abc123.execute-api.eu-west-1.amazonaws.com".into(),
    ));
    let (status, answer, _) = send(&app, deployed).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    drain(&services).await;
    let (_, bodies) = email_parts(&outbox(dir.path())[1]);
    let link = link_in(&bodies[0]);
    assert!(
        link.starts_with("https://abc123.execute-api.eu-west-1.amazonaws.com/downloads/"),
        "{link}"
    );
    assert!(outbox(dir.path()).iter().all(|m| !m.contains("attacker")));
}
