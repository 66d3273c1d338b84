//! The `sheaf` command as users run it: sources, run-test with its exit status, `--json`
//! shapes, and `serve` harvesting its example WAF on first start.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{KillOnDrop, free_port, python_waf, wait_for_port, wait_for_port_file};

mod support;

/// `sheaf` as a user runs it: private and loopback addresses refused but `serve`'s example WAF.
fn sheaf(data: &std::path::Path, args: &[&str]) -> Output {
    sheaf_with(data, args, &[("SHEAF_ALLOW_PRIVATE_URLS", "false")])
}

/// `sheaf` with `env` set (a test's servers listen on loopback: SHEAF_ALLOW_PRIVATE_URLS).
fn sheaf_with(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("SHEAF_BUCKET")
        .envs(env.iter().copied())
        .output()
        .expect("run sheaf")
}

const ALLOW_PRIVATE: &[(&str, &str)] = &[("SHEAF_ALLOW_PRIVATE_URLS", "true")];

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// `sheaf serve` on a free port over `data`, with `env` set; returns it and its address.
fn serve(data: &std::path::Path, env: &[(&str, &str)]) -> (KillOnDrop, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_sheaf"));
    command
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(data)
        .env_remove("SHEAF_BUCKET")
        .env_remove("SHEAF_API_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (KillOnDrop(command.spawn().expect("serve")), listen)
}

#[test]
fn serve_harvests_its_example_and_the_commands_manage_sources_and_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (_serve, listen) = serve(&data, &[]);
    let base = format!("http://{listen}");
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let search = loop {
        assert!(
            Instant::now() < deadline,
            "the example harvest did not appear in the catalogue"
        );
        let finished = client
            .get(format!("{base}/api/harvest/jobs?source=example"))
            .send()
            .and_then(|r| r.json::<Value>())
            .is_ok_and(|jobs| jobs[0]["status"] == "finished");
        // The search index catches up a moment after the job.
        if finished
            && let Ok(resp) = client.get(format!("{base}/api/catalog/search")).send()
            && let Ok(v) = resp.json::<Value>()
            && v["total"] == 4
        {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(search["total"], 4, "{search}");
    assert_eq!(search["records"].as_array().map(Vec::len), Some(4));
    assert_eq!(search["page"], 1);
    let listing = client
        .get(format!("{base}/waf/example/"))
        .send()
        .expect("waf")
        .text()
        .expect("html");
    assert!(listing.contains("sea-temperature.xml"), "{listing}");
    let as_json: Value = client
        .get(format!("{base}/waf/example/"))
        .header("Accept", "application/json")
        .send()
        .expect("waf json")
        .json()
        .expect("json");
    assert_eq!(as_json["entries"].as_array().map(Vec::len), Some(4));
    let record: Value = client
        .get(format!(
            "{base}/api/catalog/records/sheaf-example-land-cover"
        ))
        .send()
        .expect("record")
        .json()
        .expect("json");
    assert_eq!(record["title"], "Land cover of the Iberian Peninsula, 2018");
    let xml = client
        .get(format!(
            "{base}/api/catalog/records/sheaf-example-land-cover.xml"
        ))
        .send()
        .expect("xml");
    assert!(xml.text().expect("xml").contains("gmd:MD_Metadata"));
    let jsonld = client
        .get(format!(
            "{base}/api/catalog/records/sheaf-example-land-cover.jsonld"
        ))
        .send()
        .expect("jsonld");
    assert_eq!(
        jsonld.headers()["content-type"],
        "application/ld+json",
        "{jsonld:?}"
    );
    let jsonld: Value = jsonld.json().expect("json");
    assert_eq!(jsonld["@type"], "Dataset");
    assert_eq!(jsonld["name"], "Land cover of the Iberian Peninsula, 2018");
    assert!(
        jsonld["spatialCoverage"]["geo"]["box"].is_string(),
        "{jsonld}"
    );

    // A bad source config is a 400 that names the field.
    let bad = client
        .post(format!("{base}/api/harvest/sources"))
        .json(&serde_json::json!({"name": "bad one", "url": "http://x.org/", "type": "waf"}))
        .send()
        .expect("post");
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().expect("json")["field"], "name");
    let bad = client
        .post(format!("{base}/api/harvest/sources"))
        .json(&serde_json::json!({"name": "x", "url": "http://x.org/", "type": "waf", "frequency": "hourly"}))
        .send()
        .expect("post");
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().expect("json")["field"], "frequency");

    // The command line over the same folder, beside the running server.
    let listed = json(&sheaf(&data, &["sources", "--json"]));
    assert_eq!(listed[0]["name"], "example");
    let jobs = json(&sheaf(&data, &["jobs", "--json"]));
    let job = &jobs[0];
    for field in [
        "id",
        "source",
        "status",
        "created",
        "started",
        "finished",
        "stats",
        "gather_errors",
        "object_errors",
    ] {
        assert!(job.get(field).is_some(), "job has {field}: {job}");
    }
    assert_eq!(job["stats"]["added"], 4);

    // The command reaches the example WAF at serve's address (and no other loopback one).
    let run = json(&sheaf(
        &data,
        &["--listen", &listen, "run-test", "example", "--json"],
    ));
    assert_eq!(run["status"], "finished");
    assert_eq!(run["stats"]["unchanged"], 4, "{run}");

    // The catalogue from the command line, beside the server that writes its index.
    let found = json(&sheaf(
        &data,
        &["catalog", "search", "--q", "land cover", "--json"],
    ));
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["records"][0]["id"], "sheaf-example-land-cover");
    let shown = json(&sheaf(
        &data,
        &["catalog", "show", "sheaf-example-land-cover", "--json"],
    ));
    assert_eq!(shown["title"], "Land cover of the Iberian Peninsula, 2018");
    let status = sheaf(&data, &["catalog", "status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let status = json(&status);
    assert_eq!(status["sources"][0]["records"], 4, "{status}");
    assert_eq!(status["indexed"], 4, "{status}");
    assert_eq!(status["consistent"], true, "{status}");
}

/// `serve`'s search, polled until `done` holds of its answer to `query` (the indexer applies
/// changes a moment after the harvest that made them).
fn search_until(listen: &str, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(v) = client
            .get(format!("http://{listen}/api/catalog/search?{query}"))
            .send()
            .and_then(|r| r.json::<Value>())
        {
            if done(&v) {
                return v;
            }
            last = v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("serve's search for {query} did not catch up: {last}");
}

/// `run-test` beside a running `serve`, which holds the search index: the records a harvest
/// adds, changes and removes reach serve's search all the same (run-test leaves the changes
/// to serve's indexer rather than taking them up again and again).
#[test]
fn run_test_beside_serve_leaves_its_record_changes_to_serves_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the tests' Python is missing: run tests/run.sh"
    );
    // A WAF (Python's own directory listing) of four ISO 19139 documents.
    let waf = dir.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    let records = root.join("tests/records/waf/iso19139");
    for name in [
        "coastal-erosion.xml",
        "seabed-habitats.xml",
        "glider-mission.xml",
        "wms-service.xml",
    ] {
        std::fs::copy(records.join(name), waf.join(name)).expect("copy");
    }
    let (_waf, waf_port) = python_waf(&python, &waf);
    let data = dir.path().join("data");
    let (mut serve, listen) = serve(&data, ALLOW_PRIVATE);
    let serve_port = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    wait_for_port(serve_port, &mut serve.0, "serve", Duration::from_secs(30));
    let url = format!("http://127.0.0.1:{waf_port}/");
    json(&sheaf_with(
        &data,
        &["source", "add", "mirror", &url, "--type", "waf", "--json"],
        ALLOW_PRIVATE,
    ));

    let first = json(&sheaf_with(
        &data,
        &["run-test", "mirror", "--json"],
        ALLOW_PRIVATE,
    ));
    assert_eq!(first["stats"]["added"], 4, "{first}");
    search_until(&listen, "source=mirror", |v| v["total"] == 4);

    // One document retitled, one removed.
    let coastal = waf.join("coastal-erosion.xml");
    let text = std::fs::read_to_string(&coastal).expect("read");
    let retitled = text.replace(
        "Coastal erosion rates, Atlantic coast",
        "Shoreline retreat rates, Atlantic coast",
    );
    assert_ne!(text, retitled);
    std::fs::write(&coastal, retitled).expect("write");
    // Its Last-Modified moves on even within the second of the first harvest.
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&coastal)
        .and_then(|f| f.set_modified(later))
        .expect("mtime");
    std::fs::remove_file(waf.join("seabed-habitats.xml")).expect("remove");

    let second = json(&sheaf_with(
        &data,
        &["run-test", "mirror", "--json"],
        ALLOW_PRIVATE,
    ));
    let stats = &second["stats"];
    assert_eq!(
        (&stats["updated"], &stats["deleted"], &stats["unchanged"]),
        (&Value::from(1), &Value::from(1), &Value::from(2)),
        "{second}"
    );
    let found = search_until(&listen, "source=mirror&q=shoreline%20retreat", |v| {
        v["total"] == 1
    });
    assert_eq!(
        found["records"][0]["id"], "b8e0c8a2-1f7e-4c55-9d0e-2f4a1c3e7a01",
        "{found}"
    );
    let all = search_until(&listen, "source=mirror", |v| v["total"] == 3);
    let ids: Vec<&str> = all["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"a9f1d3b4-7c2e-4e8a-b1f0-5d6e7c8b9a02"),
        "{all}"
    );
    search_until(&listen, "source=mirror&q=coastal%20erosion", |v| {
        v["total"] == 0
    });
}

#[test]
fn run_test_exits_1_when_the_gather_fails_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port(); // nothing listens there
    let added = sheaf(
        dir.path(),
        &[
            "source",
            "add",
            "closed",
            &format!("http://127.0.0.1:{port}/waf/"),
            "--type",
            "waf",
            "--json",
        ],
    );
    let source = json(&added);
    assert_eq!(source["type"], "waf");
    assert_eq!(source["active"], true);
    // Without SHEAF_ALLOW_PRIVATE_URLS a loopback source is refused before any connection,
    // saying why. Run without a network (`unshare -n`): a connection attempt would fail
    // otherwise ("unreachable"), so only the policy's refusal passes.
    let run = Command::new("unshare")
        .args(["-n", "--"])
        .arg(env!("CARGO_BIN_EXE_sheaf"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run-test", "closed", "--json"])
        .env_remove("SHEAF_BUCKET")
        .env("SHEAF_ALLOW_PRIVATE_URLS", "false")
        .output()
        .expect("unshare -n (util-linux) runs sheaf without network");
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let job: Value = serde_json::from_slice(&run.stdout).expect("job JSON");
    let errors = job["gather_errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{job}");
    let message = errors[0]["message"].as_str().expect("message");
    assert!(
        message.contains("127.0.0.1 is a loopback address")
            && message.contains("SHEAF_ALLOW_PRIVATE_URLS=true"),
        "{message}"
    );
    // Allowed, it connects (nothing listens there: a transport error, not a refusal).
    let run = sheaf_with(dir.path(), &["run-test", "closed", "--json"], ALLOW_PRIVATE);
    assert_eq!(run.status.code(), Some(1));
    let job: Value = serde_json::from_slice(&run.stdout).expect("job JSON");
    let message = job["gather_errors"][0]["message"]
        .as_str()
        .expect("message");
    assert!(!message.contains("loopback address"), "{message}");

    let usage = sheaf(
        dir.path(),
        &["source", "add", "x", "http://x.org/", "--type", "ftp"],
    );
    assert_eq!(usage.status.code(), Some(2));
    let missing = sheaf(dir.path(), &["source", "show", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    let rm = sheaf(dir.path(), &["source", "rm", "closed"]);
    assert!(rm.status.success());
    let active = json(&sheaf(dir.path(), &["sources", "--json"]));
    assert_eq!(active.as_array().map(Vec::len), Some(0));
    let all = json(&sheaf(dir.path(), &["sources", "--all", "--json"]));
    assert_eq!(all[0]["active"], false);
}

/// moto's server on a free port (tests/run.sh installs it in .venv).
struct Moto {
    _process: KillOnDrop,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let program = std::env::var("SHEAF_MOTO_SERVER").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/moto_server").to_string()
        });
        let port = free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (run tests/run.sh, which installs moto)"));
        let mut child = KillOnDrop(child);
        wait_for_port(port, &mut child.0, "moto_server", Duration::from_secs(30));
        Moto {
            _process: child,
            port,
        }
    }
}

#[test]
fn the_same_binary_harvests_into_s3_on_an_aws_compatible_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The example WAF, served by a local `serve`.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sheaf"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(dir.path().join("local"))
            .env_remove("SHEAF_BUCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let moto = Moto::start();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let client = reqwest::blocking::Client::new();
    let created = client
        .put(format!("{endpoint}/sheaf-cli"))
        .send()
        .expect("create bucket");
    assert!(created.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("http://{listen}/examples/waf/"))
        .send()
        .is_err()
    {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let aws = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sheaf"))
            .args(["--bucket", "sheaf-cli"])
            .args(args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("SHEAF_ALLOW_PRIVATE_URLS", "true")
            .output()
            .expect("sheaf")
    };
    let url = format!("http://{listen}/examples/waf/");
    json(&aws(&[
        "source", "add", "remote", &url, "--type", "waf", "--json",
    ]));
    let job = json(&aws(&["run-test", "remote", "--json"]));
    assert_eq!(job["stats"]["added"], 4, "{job}");
    let listing = client
        .get(format!(
            "{endpoint}/sheaf-cli?list-type=2&prefix=waf/remote/"
        ))
        .send()
        .expect("list")
        .text()
        .expect("xml");
    assert!(
        listing.contains("<Key>waf/remote/land-cover.xml</Key>"),
        "{listing}"
    );
    let sources = json(&aws(&["sources", "--json"]));
    assert_eq!(sources[0]["name"], "remote");
    // With no index queue of the stack's, run-test's indexer put the records in the index on
    // S3 (in commits of many records, not one each).
    let found = json(&aws(&["catalog", "search", "--q", "land cover", "--json"]));
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["records"][0]["id"], "sheaf-example-land-cover");
    let status = aws(&["catalog", "status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let status = json(&status);
    assert_eq!(status["indexed"], 4, "{status}");
    assert_eq!(status["consistent"], true, "{status}");
}

/// `sheaf redrive QUEUE` names the queues it knows when given another, and reports what it
/// did as JSON (the redrive itself is proven in common's tests/redrive.rs).
#[test]
fn redrive_names_its_queues_and_reports_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wrong = sheaf(&data, &["redrive", "fetches"]);
    assert_eq!(wrong.status.code(), Some(2));
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        said.contains("no queue \"fetches\": one of gather, fetch, import"),
        "{said}"
    );
    let report = json(&sheaf(&data, &["--json", "redrive", "fetch"]));
    assert_eq!(report["queue"], "fetch");
    assert_eq!(report["looked_at"], 0, "{report}");
}

/// On AWS the token may live in Secrets Manager: `serve --bucket` reads the secret that
/// `SHEAF_API_TOKEN_SECRET_ID` names at start and requires it; a secret it cannot read, or a
/// token given both ways, stops it with the reason instead of serving without one.
#[test]
fn serve_reads_its_token_from_secrets_manager() {
    let moto = Moto::start();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let client = reqwest::blocking::Client::new();
    assert!(
        client
            .put(format!("{endpoint}/sheaf-secrets"))
            .send()
            .expect("create bucket")
            .status()
            .is_success()
    );
    let created = client
        .post(&endpoint)
        .header("X-Amz-Target", "secretsmanager.CreateSecret")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/secretsmanager/aws4_request",
        )
        .body(r#"{"Name": "sheaf/api-token", "SecretString": "token-from-the-secret\n"}"#)
        .send()
        .expect("create the secret");
    assert!(created.status().is_success(), "{:?}", created.text());
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |env: &[(&str, &str)]| {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = dir
            .path()
            .join(format!("serve-{}.log", listen.replace(':', "-")));
        let child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
            .args(["--bucket", "sheaf-secrets", "serve", "--listen", &listen])
            .env_remove("SHEAF_API_TOKEN")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("serve");
        (KillOnDrop(child), listen, log)
    };

    let (_serve, listen, _) = start(&[("SHEAF_API_TOKEN_SECRET_ID", "sheaf/api-token")]);
    let status = |token: Option<&str>| {
        let mut request = client.get(format!("http://{listen}/api/harvest/jobs"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().map(|r| r.status().as_u16())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(None).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(None).unwrap(), 401);
    assert_eq!(status(Some("token-from-the-secret")).unwrap(), 200);

    for (env, reason) in [
        (
            &[("SHEAF_API_TOKEN_SECRET_ID", "sheaf/no-such-secret")][..],
            "reading the secret sheaf/no-such-secret (SHEAF_API_TOKEN_SECRET_ID)",
        ),
        (
            &[
                ("SHEAF_API_TOKEN_SECRET_ID", "sheaf/api-token"),
                ("SHEAF_API_TOKEN", "plain"),
            ][..],
            "both SHEAF_API_TOKEN and SHEAF_API_TOKEN_SECRET_ID are set",
        ),
    ] {
        let (mut serve, _, log) = start(env);
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(code) = serve.0.try_wait().expect("wait") {
                break code;
            }
            assert!(Instant::now() < deadline, "serve did not stop: {env:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let said = std::fs::read_to_string(&log).expect("log");
        assert_eq!(code.code(), Some(1), "{said}");
        assert!(said.contains(reason), "{said}");
    }
}

/// tests/ckan_datastore.py on a free port (a CKAN datastore_search endpoint), and the folder
/// its port file is in.
fn ckan_datastore() -> (KillOnDrop, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port_file = dir.path().join("port");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let child = Command::new("python3")
        .arg(format!("{root}/tests/ckan_datastore.py"))
        .args(["serve", "--port-file"])
        .arg(&port_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 tests/ckan_datastore.py");
    let mut child = KillOnDrop(child);
    let port = wait_for_port_file(
        &port_file,
        &mut child.0,
        "the datastore",
        Duration::from_secs(20),
    );
    (
        child,
        format!("http://127.0.0.1:{port}/api/3/action/datastore_search"),
        dir,
    )
}

/// Data rows of `entry` in `zip`, counted by Python's csv module (quoted newlines and all).
fn csv_rows(zip: &std::path::Path, entry: &str) -> u64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import csv,io,sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); print(sum(1 for _ in csv.reader(io.TextIOWrapper(z.open(sys.argv[2]), encoding='utf-8'))) - 1)",
        ])
        .arg(zip)
        .arg(entry)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("count")
}

#[test]
fn package_datastore_writes_a_zip_file_or_a_stored_package_with_its_link() {
    let (_ckan, api_url, _ckan_dir) = ckan_datastore();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = dir.path().join("rows.zip");
    let file = json(&sheaf_with(
        &data,
        &[
            "--json",
            "package",
            "datastore",
            "--api-url",
            &api_url,
            "--resource-id",
            "rows-1234",
            "--out",
            out.to_str().expect("path"),
        ],
        ALLOW_PRIVATE,
    ));
    assert_eq!(file["rows"], 1234, "{file}");
    let tested = Command::new("unzip")
        .arg("-t")
        .arg(&out)
        .output()
        .expect("unzip");
    assert!(
        tested.status.success(),
        "{}",
        String::from_utf8_lossy(&tested.stdout)
    );
    assert_eq!(csv_rows(&out, "resource.csv"), 1234);

    let stored = json(&sheaf_with(
        &data,
        &[
            "--json",
            "package",
            "datastore",
            "--api-url",
            &api_url,
            "--resource-id",
            "rows-50",
            "--format",
            "tsv",
            "--email",
            "cli@example.org",
        ],
        ALLOW_PRIVATE,
    ));
    assert_eq!(stored["package"]["rows"], 50, "{stored}");
    assert!(
        stored["download_url"]
            .as_str()
            .expect("url")
            .contains("/downloads/packages/")
    );
    let mails = std::fs::read_dir(data.join("outbox"))
        .expect("outbox")
        .count();
    assert_eq!(mails, 1);

    // Bad input: the parameter is named and the exit status is 1.
    let bad = sheaf_with(
        &data,
        &[
            "package",
            "datastore",
            "--api-url",
            &api_url,
            "--resource-id",
            "r",
            "--filters",
            "{nope",
        ],
        ALLOW_PRIVATE,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("filters"));
}

#[test]
fn serve_packages_a_request_and_serves_the_emailed_link() {
    let (_ckan, api_url, _ckan_dir) = ckan_datastore();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (_serve, listen) = serve(
        &data,
        &[
            ("SHEAF_PACKAGER_SECRET", "cli-secret"),
            ("SHEAF_PACKAGER_PAGE_SIZE", "400"),
            ("SHEAF_ALLOW_PRIVATE_URLS", "true"),
        ],
    );
    let base = format!("http://{listen}");
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer: Value = loop {
        assert!(Instant::now() < deadline, "serve did not answer");
        if let Ok(r) = client
            .post(format!("{base}/package_datastore"))
            .form(&[
                ("secret", "cli-secret"),
                ("api_url", api_url.as_str()),
                ("resource_id", "rows-3000"),
                ("email", "serve@example.org"),
            ])
            .send()
        {
            break r.json().expect("json");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer["success"], true, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mail = loop {
        assert!(Instant::now() < deadline, "no email arrived in the outbox");
        let found = std::fs::read_dir(data.join("outbox"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path()).ok());
        if let Some(m) = found {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = Command::new("python3")
        .args(["-c", "import email,sys; m=email.message_from_string(sys.stdin.read()); print([p.get_payload(decode=True).decode() for p in m.walk() if p.get_content_type()=='text/plain'][0])"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(mail.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python3 email");
    let text = String::from_utf8_lossy(&out.stdout);
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/downloads/"))
        .unwrap_or_else(|| panic!("no link in {text}"));
    assert!(link.starts_with(&base), "{link}");
    let zip = client.get(link).send().expect("download");
    assert_eq!(zip.status(), 200);
    let bytes = zip.bytes().expect("zip");
    let path = dir.path().join("served.zip");
    std::fs::write(&path, &bytes).expect("write");
    assert_eq!(csv_rows(&path, "resource.csv"), 3000);
}

/// `purge-queues` empties the stage queues, says how many messages each held, and aborts the
/// job it starved (its gather message is gone), which then says why.
#[test]
fn purge_queues_empties_the_stage_queues_and_aborts_the_starved_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let added = sheaf(
        &data,
        &[
            "source",
            "add",
            "far",
            "https://example.org/waf/",
            "--type",
            "waf",
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let started = json(&sheaf(&data, &["job-all", "--json"]));
    let job = started[0]["id"].as_str().expect("a job").to_string();

    let report = json(&sheaf(&data, &["purge-queues", "--json"]));
    let held: Vec<(String, u64)> = report["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| {
            (
                q["queue"].as_str().unwrap().to_string(),
                q["messages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            ("gather".to_string(), 1),
            ("fetch".to_string(), 0),
            ("import".to_string(), 0)
        ]
    );
    assert_eq!(report["aborted"], serde_json::json!([job]));
    let jobs = json(&sheaf(&data, &["jobs", "--source", "far", "--json"]));
    assert_eq!(jobs[0]["status"], "aborted");
    let errors = jobs[0]["gather_errors"].to_string();
    assert!(errors.contains("the stage queues were purged"), "{errors}");

    let again = json(&sheaf(&data, &["purge-queues", "--json"]));
    assert!(
        again["queues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["messages"] == 0),
        "{again}"
    );
    assert_eq!(again["aborted"], serde_json::json!([]));
    let text = sheaf(&data, &["purge-queues"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("gather: 0 messages purged"));
}

/// With `SHEAF_API_TOKEN` set, `serve` trusts no caller without it, loopback included, and
/// says at start what it requires; the catalogue stays public.
#[test]
fn serve_with_a_token_trusts_nobody_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("SHEAF_BUCKET")
        .env("SHEAF_API_TOKEN", "serve-token")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    let _serve = KillOnDrop(child);
    let base = format!("http://{listen}");
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().map(|r| r.status().as_u16())
    };
    while status("/api/catalog/search", None).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status("/api/harvest/jobs", None).unwrap(), 401);
    assert_eq!(
        status("/api/harvest/jobs", Some("serve-token")).unwrap(),
        200
    );
    assert_eq!(status("/api/catalog/search", None).unwrap(), 200);
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(
        said.contains("/api needs Authorization: Bearer SHEAF_API_TOKEN"),
        "{said}"
    );
}
