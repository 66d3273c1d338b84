//! Real servers for the integration tests, on free loopback ports: nginx serving a folder with
//! autoindex, and moto's server for S3, SQS and SES. A missing program fails the test: install
//! them with `tests/run.sh`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use common::aws::{AwsSettings, load_sdk_config, s3_client};
use common::catalog::{S3Index, TantivyIndex};
use common::fetch::{AddressPolicy, ReqwestFetcher};
use common::mail::OutboxMailer;
use common::queue::{LocalQueue, QueueName, Queues, SqsQueue};
use common::services::{Services, Settings};
use common::store::{LocalStore, S3Store};

mod ports;
pub use ports::{KillOnDrop, free_port, wait_for_port, wait_for_port_file};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn find_program(env_var: &str, candidates: &[PathBuf], hint: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    for c in candidates {
        if c.exists() {
            return c.clone();
        }
    }
    panic!("{hint} not found (set {env_var}, or run tests/run.sh, which installs it)");
}

/// nginx serving `root` with `autoindex on`, as a real WAF server does.
pub struct Nginx {
    pub port: u16,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn serve(root: &Path) -> Nginx {
        Nginx::serve_with(root, "")
    }

    /// nginx with `location` directives of the test's own inside `location / { }`.
    pub fn serve_with(root: &Path, location: &str) -> Nginx {
        let program = find_program(
            "SHEAF_NGINX",
            &[
                PathBuf::from("/usr/sbin/nginx"),
                PathBuf::from("/usr/local/sbin/nginx"),
            ],
            "nginx",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
events {{ worker_connections 64; }}\n\
http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
 types {{ application/xml xml; text/plain txt; text/html html; }}\n\
 server {{ listen 127.0.0.1:{port}; root {root}; autoindex on; location / {{ {location} }} }}\n}}\n",
            root = root.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let mut child = Command::new(program)
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_for_port(port, &mut child, "nginx", Duration::from_secs(30));
        Nginx {
            port,
            _child: KillOnDrop(child),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

/// moto's server (S3, SQS, SES) on a free port.
pub struct Moto {
    pub port: u16,
    _child: KillOnDrop,
}

impl Moto {
    pub fn start() -> Moto {
        let program = find_program(
            "SHEAF_MOTO_SERVER",
            &[workspace_root().join(".venv/bin/moto_server")],
            "moto_server",
        );
        let port = free_port();
        let mut child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_for_port(port, &mut child, "moto_server", Duration::from_secs(30));
        Moto {
            port,
            _child: KillOnDrop(child),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            endpoint_url: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            static_credentials: Some(("testing".into(), "testing".into())),
        }
    }

    /// An SDK configuration with fake credentials, pointed at this server.
    pub async fn sdk_config(&self) -> SdkConfig {
        load_sdk_config(&self.settings()).await
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.sdk_config().await, &self.settings())
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    pub async fn bucket(&self, name: &str) -> S3Store {
        let s3 = self.s3().await;
        s3.create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
        S3Store::new(s3, name)
    }

    /// A queue with a dead-letter queue after `max_receive` receives, as template.yaml sets.
    pub async fn queue(&self, name: &str, max_receive: u32) -> SqsQueue {
        let sqs = self.sqs().await;
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .expect("dlq");
        let dlq_url = dlq.queue_url().expect("dlq url").to_string();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq arn");
        let arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("arn")
            .clone();
        let policy =
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max_receive}"}}"#);
        let q = sqs
            .create_queue()
            .queue_name(name)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                policy,
            )
            .send()
            .await
            .expect("queue");
        SqsQueue::new(sqs, q.queue_url().expect("url"), Some(dlq_url))
    }
}

pub fn test_settings() -> Settings {
    Settings {
        check_delay: Duration::from_millis(300),
        ..Settings::default()
    }
}

pub fn fetcher() -> Arc<ReqwestFetcher> {
    Arc::new(
        ReqwestFetcher::new(AddressPolicy::AllowPrivate, Duration::from_secs(20)).expect("fetcher"),
    )
}

/// Sets a file's modification time (what nginx's validators and listing show).
pub fn set_modified(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("set mtime");
}

/// Handles a message's body as a queue worker would; a body that is not a Sheaf message
/// fails the test (a worker would log and drop it).
pub async fn handle_body(
    services: &Services,
    body: &str,
    receive_count: u32,
) -> Result<(), common::pipeline::PipelineError> {
    let message = common::pipeline::Incoming::parse(body).expect("a Sheaf message");
    common::pipeline::handle_incoming(services, &message, receive_count).await
}

/// Local mode over a temporary folder.
pub fn local_services(dir: &Path) -> Services {
    // One database for the store and the queues, as `sheaf` opens a data folder.
    let database = dir.join("sheaf.db");
    let store =
        LocalStore::open_with_database(&dir.join("store"), &database, "http://127.0.0.1:8765")
            .expect("store");
    let mut queues = Queues::new();
    for name in QueueName::ALL {
        let queue = LocalQueue::open_with_database(&dir.join("queues"), &database, name.as_str());
        queues = queues.with(name, Arc::new(queue.expect("queue")));
    }
    Services {
        store: Arc::new(store),
        queues,
        mailer: Arc::new(OutboxMailer::new(dir.join("outbox"))),
        fetcher: fetcher(),
        index: Arc::new(TantivyIndex::open(&dir.join("index")).expect("index")),
        settings: test_settings(),
    }
}

/// AWS mode: a bucket and SQS queues in moto.
pub async fn aws_services(moto: &Moto, dir: &Path) -> Services {
    let store = moto.bucket("sheaf-test").await;
    let mut queues = Queues::new();
    for name in [
        QueueName::Gather,
        QueueName::Fetch,
        QueueName::Import,
        QueueName::Index,
        QueueName::Rebuild,
        QueueName::Notify,
    ] {
        queues = queues.with(
            name,
            Arc::new(moto.queue(&format!("sheaf-{}", name.as_str()), 5).await),
        );
    }
    let store: Arc<dyn common::store::ObjectStore> = Arc::new(store);
    Services {
        index: Arc::new(S3Index::new(store.clone(), &dir.join("index-copies"))),
        store,
        queues,
        mailer: Arc::new(OutboxMailer::new(dir.join("outbox"))),
        fetcher: fetcher(),
        settings: test_settings(),
    }
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A WAF source with every option at its default.
pub fn waf_source(name: &str, url: impl Into<String>) -> common::sources::NewSource {
    common::sources::NewSource {
        name: name.into(),
        url: url.into(),
        source_type: common::domain::source::SourceType::Waf,
        title: None,
        active: None,
        owner: None,
        frequency: None,
        config: None,
    }
}

/// The Python the tests use: the project's .venv (python-dwca-reader lives there), else python3.
pub fn python() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// The catalogue the protocol tests load into their servers: ISO 19139 records and one
/// csw:Record from tests/records/waf, in nested folders under `dir`, but those whose
/// identifier is in `skip`. Returns the records as Sheaf reads the files.
pub fn catalogue_records(dir: &Path, skip: &[&str]) -> Vec<common::domain::record::Metadata> {
    let waf = workspace_root().join("tests/records/waf");
    let files = [
        "iso19139/coastal-erosion.xml",
        "iso19139/seabed-habitats.xml",
        "iso19139/glider-mission.xml",
        "iso19139/wms-service.xml",
        "iso19139/regional/lakes-inventory.xml",
        "iso19139/regional/forest-plots.xml",
        "dublin-core/record-harbour-survey.xml",
    ];
    let mut held = Vec::new();
    for file in files {
        let bytes = std::fs::read(waf.join(file)).expect("test record");
        let metadata = common::parse::read_metadata(&bytes, common::parse::XmlLimits::default())
            .expect("a valid record");
        if skip.contains(&metadata.id.as_str()) {
            continue;
        }
        let target = dir.join(file);
        std::fs::create_dir_all(target.parent().unwrap()).expect("mkdir");
        std::fs::write(target, bytes).expect("copy");
        held.push(metadata);
    }
    held
}

/// The identifiers of a source's records in the catalogue, as its search finds them once the
/// index has applied the changes waiting for it.
pub async fn catalogue_ids(
    services: &Services,
    source: &str,
) -> std::collections::BTreeSet<String> {
    common::pipeline::drain_index(services)
        .await
        .expect("index changes applied");
    let page = common::catalog::search(
        services.index.as_ref(),
        &common::catalog::SearchQuery {
            source: Some(source.into()),
            page_size: Some(100),
            ..common::catalog::SearchQuery::default()
        },
    )
    .await
    .expect("search");
    page.records.into_iter().map(|r| r.metadata.id).collect()
}

/// Points source `name` at another URL (another server, or a proxy in front of it).
pub async fn point_source_at(services: &Services, name: &str, url: String) {
    common::sources::patch_source(
        services.store.as_ref(),
        name,
        common::sources::SourcePatch {
            url: Some(url),
            ..common::sources::SourcePatch::default()
        },
    )
    .await
    .expect("patch source");
}

/// Every identifier a harvester's gather of `source` (a source's JSON) lists, page by page
/// (at most 20), or its error.
pub async fn gather_all(
    harvester: &dyn common::harvest::Harvester,
    services: &Services,
    source: serde_json::Value,
) -> Result<Vec<String>, String> {
    let source: common::domain::source::Source = serde_json::from_value(source).expect("source");
    let mut ids = Vec::new();
    let mut cursor = None;
    for _ in 0..20 {
        let page = harvester
            .gather_page(services, &source, cursor.as_ref())
            .await
            .map_err(|e| e.message)?;
        ids.extend(page.documents.into_iter().map(|d| d.guid));
        match page.next {
            None => return Ok(ids),
            next => cursor = next,
        }
    }
    Err(format!("the gather did not end after 20 pages: {ids:?}"))
}

/// Starts one of the tests' Python servers (from .venv), which writes its port to `port_file`
/// once it listens, and waits for it.
fn start_python_server(
    script: &str,
    args: &[&std::ffi::OsStr],
    port_file: &Path,
    what: &str,
) -> (u16, KillOnDrop) {
    let venv_python = workspace_root().join(".venv/bin/python");
    let program = find_program(
        "SHEAF_TEST_PYTHON",
        &[venv_python],
        "the tests' Python (.venv)",
    );
    let mut child = Command::new(program)
        .arg(workspace_root().join(script))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let what = format!("{what} (from .venv, which tests/run.sh installs)");
    let port = wait_for_port_file(port_file, &mut child, &what, Duration::from_secs(60));
    (port, KillOnDrop(child))
}

/// ckanext-harvest's mock CKAN (tests/mock_ckan_server.py), with the requests it received.
pub struct MockCkan {
    pub port: u16,
    _child: KillOnDrop,
    dir: tempfile::TempDir,
}

/// One request the mock CKAN received.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CkanRequest {
    pub path: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
}

impl MockCkan {
    pub fn start() -> MockCkan {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let log = dir.path().join("requests.jsonl");
        let (port, child) = start_python_server(
            "tests/mock_ckan_server.py",
            &[port_file.as_os_str(), log.as_os_str()],
            &port_file,
            "the mock CKAN",
        );
        MockCkan {
            port,
            _child: child,
            dir,
        }
    }

    /// The CKAN's root; `scenario` is one of the mock's test names (`site_down`,
    /// `datasets_added`, `invalid_tag`), which it reads from the path's first segment.
    pub fn url(&self, scenario: Option<&str>) -> String {
        match scenario {
            None => format!("http://127.0.0.1:{}", self.port),
            Some(name) => format!("http://127.0.0.1:{}/{name}", self.port),
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<CkanRequest> {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a logged request"))
            .collect()
    }

    /// The dataset as `package_show` answers it.
    pub async fn package(&self, id: &str) -> serde_json::Value {
        let url = format!("{}/api/3/action/package_show?id={id}", self.url(None));
        let body = reqwest::get(url)
            .await
            .expect("package_show")
            .bytes()
            .await
            .expect("an answer");
        let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        answer["result"].clone()
    }
}

/// A partner catalogue's notification endpoint (tests/notify_receiver.py): records every POST
/// it receives, read by Python's own form and XML parsers, and answers as it is told.
pub struct NotifyReceiver {
    pub port: u16,
    _child: KillOnDrop,
    dir: tempfile::TempDir,
}

/// One POST the receiver got.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Notification {
    pub path: String,
    pub content_type: Option<String>,
    pub fields: BTreeMap<String, Vec<String>>,
    pub xml_parses: Option<bool>,
    pub answered: String,
}

impl Notification {
    /// The one value of a field (the test fails on none or several).
    pub fn field(&self, name: &str) -> &str {
        match self.fields.get(name).map(Vec::as_slice) {
            Some([one]) => one,
            other => panic!("field {name}: {other:?} in {self:?}"),
        }
    }
}

impl NotifyReceiver {
    pub fn start() -> NotifyReceiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let log = dir.path().join("received.jsonl");
        let mode = dir.path().join("mode");
        let (port, child) = start_python_server(
            "tests/notify_receiver.py",
            &[port_file.as_os_str(), log.as_os_str(), mode.as_os_str()],
            &port_file,
            "the notification receiver",
        );
        NotifyReceiver {
            port,
            _child: child,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// "ok", "fail" (HTTP 500) or "hang" (no answer for 30 s).
    pub fn answer(&self, mode: &str) {
        std::fs::write(self.dir.path().join("mode"), mode).expect("mode");
    }

    /// Every POST so far, in order.
    pub fn received(&self) -> Vec<Notification> {
        std::fs::read_to_string(self.dir.path().join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a logged notification"))
            .collect()
    }
}

/// pycsw (from .venv) serving the records of a folder: tests/pycsw_server.py.
pub struct Pycsw {
    pub port: u16,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Pycsw {
    /// Loads every record under `records` and serves them, at most `max_records` a page.
    pub fn serve(records: &Path, max_records: u32) -> Pycsw {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let (port, child) = start_python_server(
            "tests/pycsw_server.py",
            &[
                dir.path().join("work").as_os_str(),
                records.as_os_str(),
                port_file.as_os_str(),
                std::ffi::OsStr::new(&max_records.to_string()),
            ],
            &port_file,
            "pycsw",
        );
        Pycsw {
            port,
            _child: child,
            _dir: dir,
        }
    }

    /// The CSW endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/csw", self.port)
    }
}

/// tests/ckan_datastore.py: a CKAN datastore_search endpoint (see its doc string for the
/// datasets its resource ids name).
pub struct CkanDatastore {
    pub port: u16,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl CkanDatastore {
    pub fn start() -> CkanDatastore {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let (port, child) = start_python_server(
            "tests/ckan_datastore.py",
            &[
                "serve".as_ref(),
                "--port-file".as_ref(),
                port_file.as_os_str(),
            ],
            &port_file,
            "ckan_datastore.py",
        );
        CkanDatastore {
            port,
            _child: child,
            _dir: dir,
        }
    }

    pub fn api_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/api/3/action/datastore_search",
            self.port
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// How many datastore_search calls asked for rows (not counting `limit=0` calls).
    pub async fn page_calls(&self) -> u64 {
        let calls = reqwest::get(self.url("/_calls"))
            .await
            .expect("calls")
            .bytes()
            .await
            .expect("calls body");
        let calls: serde_json::Value = serde_json::from_slice(&calls).expect("calls json");
        calls["pages"].as_u64().expect("pages")
    }

    /// Every row of `resource_id` as CKAN's JSON objects give them, as text in field order.
    pub async fn rows(
        &self,
        resource_id: &str,
        offset: u64,
        limit: u64,
    ) -> (Vec<String>, Vec<Vec<String>>) {
        let body =
            serde_json::json!({"resource_id": resource_id, "offset": offset, "limit": limit});
        let answer = reqwest::Client::new()
            .post(self.api_url())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("datastore")
            .bytes()
            .await
            .expect("datastore body");
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("datastore json");
        let fields: Vec<String> = answer["result"]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["id"].as_str().expect("id").to_string())
            .collect();
        let rows = answer["result"]["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                fields
                    .iter()
                    .map(|f| match &r[f] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        (fields, rows)
    }
}

/// The decoded bodies (text, then HTML) and the headers of an RFC 5322 message Sheaf wrote.
pub fn email_parts(raw: &str) -> (String, Vec<String>) {
    use base64::Engine;
    let headers = raw.split("\r\n\r\n").next().unwrap_or("").to_string();
    let mut bodies = Vec::new();
    let mut lines = raw.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.eq_ignore_ascii_case("Content-Transfer-Encoding: base64") {
            let _blank = lines.next();
            let mut encoded = String::new();
            while let Some(l) = lines.peek() {
                if l.is_empty() || l.starts_with("--") {
                    break;
                }
                encoded.push_str(l);
                lines.next();
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .expect("base64 body");
            bodies.push(String::from_utf8(bytes).expect("utf-8 body"));
        }
    }
    (headers, bodies)
}

/// Runs one zip reader on `zip`; it must succeed. Returns what it printed.
fn zip_reader(what: &str, command: &mut Command, zip: &Path) -> String {
    let out = command
        .arg(zip)
        .output()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} refused {}: {text}{}",
        zip.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Reads `zip` with Python's zipfile, `unzip -t` and Java's java.util.zip (as a stream and by
/// its central directory); each must accept it and all must agree on every entry's bytes.
/// Returns (name, size, sha256) per entry.
pub fn three_readers(zip: &Path) -> Vec<(String, u64, String)> {
    let root = workspace_root();
    let listed = zip_reader(
        "Python's zipfile",
        Command::new(python()).arg(root.join("tests/readers/zip_python.py")),
        zip,
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("zipfile json");
    let python: Vec<(String, u64, String)> = listed
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_string(),
                e["size"].as_u64().expect("size"),
                e["sha256"].as_str().expect("sha").to_string(),
            )
        })
        .collect();

    let tested = zip_reader(
        "unzip -t (apt-get install unzip)",
        Command::new("unzip").arg("-t"),
        zip,
    );
    assert!(tested.contains("No errors detected"), "unzip -t: {tested}");

    let text = zip_reader(
        "java.util.zip (java, a JDK 11 or later)",
        Command::new("java").arg(root.join("tests/readers/ZipJava.java")),
        zip,
    );
    for way in ["stream", "central"] {
        let java: Vec<(String, u64, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix(way).map(str::trim))
            .map(|l| {
                let mut parts = l.rsplitn(3, ' ');
                let sha = parts.next().expect("sha").to_string();
                let size = parts.next().expect("size").parse().expect("size");
                (parts.next().expect("name").to_string(), size, sha)
            })
            .collect();
        assert_eq!(java, python, "java.util.zip ({way}) and Python disagree");
    }
    python
}

/// A catalogue record with only the fields a search test sets.
pub fn test_record(id: &str, title: &str, abstract_text: &str) -> common::domain::record::Record {
    use common::domain::record::{Metadata, Record, RecordFormat};
    Record {
        metadata: Metadata {
            id: id.into(),
            title: title.into(),
            abstract_text: abstract_text.into(),
            keywords: Vec::new(),
            bbox: None,
            time: None,
            contacts: Vec::new(),
            links: Vec::new(),
            format: RecordFormat::Iso19139,
            modified: None,
            ckan: None,
        },
        source: "main".into(),
        original_url: format!("http://example.org/{id}.xml"),
        harvested: "2026-01-01T00:00:00Z".into(),
        sha256: "0".repeat(64),
    }
}

/// A scenario (an async fn taking `&Services`) as two tests: in local mode, and on moto.
#[macro_export]
macro_rules! in_local_mode_and_on_moto {
    ($local:ident, $moto:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $local() {
            let dir = tempfile::tempdir().expect("tempdir");
            $scenario(&$crate::support::local_services(dir.path())).await;
        }

        #[tokio::test]
        async fn $moto() {
            let moto = $crate::support::Moto::start();
            let dir = tempfile::tempdir().expect("tempdir");
            $scenario(&$crate::support::aws_services(&moto, dir.path()).await).await;
        }
    };
}

/// Sheaf's reading of each record file against OWSLib's (`tests/record_oracle.py`), field by
/// field: identifier, title, abstract, keywords, box, time extent, contacts' emails, links and
/// date. Returns the files compared and each difference found.
pub fn differences_from_owslib(files: &[PathBuf]) -> (usize, Vec<String>) {
    use common::catalog::{Edge, seconds};
    let out = Command::new(python())
        .arg(workspace_root().join("tests/record_oracle.py"))
        .args(files)
        .output()
        .expect("python with OWSLib");
    assert!(
        out.status.success(),
        "record_oracle.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let oracle: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let words = |v: &serde_json::Value| -> String {
        v.as_str()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let strings = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let same_moment =
        |a: &str, b: &str, edge| seconds(a, edge).is_some() && seconds(a, edge) == seconds(b, edge);
    let mut compared = 0;
    let mut differences = Vec::new();
    for theirs in oracle {
        if theirs["format"] == "unread" {
            continue;
        }
        let file = theirs["file"].as_str().unwrap_or("").to_string();
        let bytes = std::fs::read(&file).expect("record file");
        let read = if file.ends_with(".json") {
            common::parse::read_package(&bytes)
        } else {
            common::parse::read_metadata(&bytes, common::parse::XmlLimits::default())
        };
        let ours = match read {
            Ok(m) => m,
            // OWSLib reads anything; Sheaf refuses a record without identifier or title.
            Err(e) if words(&theirs["title"]).is_empty() || words(&theirs["id"]).is_empty() => {
                let _ = e;
                continue;
            }
            Err(e) => {
                differences.push(format!("{file}: Sheaf refuses it ({e}), OWSLib reads it"));
                continue;
            }
        };
        compared += 1;
        let mut differ = |field: &str, sheaf: String, owslib: String| {
            differences.push(format!("{file}: {field}: Sheaf {sheaf}, OWSLib {owslib}"));
        };
        if ours.id != words(&theirs["id"]) {
            differ("identifier", ours.id.clone(), theirs["id"].to_string());
        }
        if !words(&theirs["title"]).is_empty()
            && ours.title.split_whitespace().collect::<Vec<_>>().join(" ")
                != words(&theirs["title"])
        {
            differ("title", ours.title.clone(), theirs["title"].to_string());
        }
        if ours
            .abstract_text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            != words(&theirs["abstract"])
        {
            differ(
                "abstract",
                ours.abstract_text.clone(),
                theirs["abstract"].to_string(),
            );
        }
        let keywords: std::collections::BTreeSet<String> = ours.keywords.iter().cloned().collect();
        if !theirs["keywords"].is_null() && keywords != strings(&theirs["keywords"]) {
            differ(
                "keywords",
                format!("{keywords:?}"),
                theirs["keywords"].to_string(),
            );
        }
        // OWSLib gives a record's first box; Sheaf's is the union of all it gives.
        if let Some(b) = theirs["bbox"].as_array() {
            let b: Vec<f64> = b.iter().filter_map(|v| v.as_f64()).collect();
            let e = 1e-6;
            let holds = ours.bbox.is_some_and(|o| {
                b.len() == 4
                    && o.west <= b[0] + e
                    && o.south <= b[1] + e
                    && o.east >= b[2] - e
                    && o.north >= b[3] - e
            });
            if !holds {
                differ("bbox", format!("{:?}", ours.bbox), format!("{b:?}"));
            }
        }
        let time = &theirs["time"];
        for (i, edge, ours_edge) in [
            (
                0,
                Edge::First,
                ours.time.as_ref().and_then(|t| t.start.clone()),
            ),
            (
                1,
                Edge::Last,
                ours.time.as_ref().and_then(|t| t.end.clone()),
            ),
        ] {
            if let Some(theirs) = time[i].as_str()
                && !ours_edge
                    .as_deref()
                    .is_some_and(|o| same_moment(o, theirs, edge))
            {
                differ("time extent", format!("{ours_edge:?}"), theirs.to_string());
            }
        }
        let emails: std::collections::BTreeSet<String> = ours
            .contacts
            .iter()
            .filter_map(|c| c.email.clone())
            .collect();
        if !strings(&theirs["emails"]).is_subset(&emails) {
            differ(
                "emails",
                format!("{emails:?}"),
                theirs["emails"].to_string(),
            );
        }
        let links: std::collections::BTreeSet<String> =
            ours.links.iter().map(|l| l.url.clone()).collect();
        if !strings(&theirs["links"]).is_subset(&links) {
            differ("links", format!("{links:?}"), theirs["links"].to_string());
        }
        if let Some(date) = theirs["datestamp"].as_str()
            && !ours
                .modified
                .as_deref()
                .is_some_and(|m| same_moment(m, date, Edge::First))
        {
            differ("date", format!("{:?}", ours.modified), date.to_string());
        }
    }
    (compared, differences)
}
