//! The `sheaf` command as users run it: sources, run-test with its exit status, `--json`
//! shapes, and `serve` harvesting its example WAF on first start.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn sheaf(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("SHEAF_BUCKET")
        .env("SHEAF_ALLOW_PRIVATE_URLS", "false")
        .output()
        .expect("run sheaf")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_harvests_its_example_and_the_commands_manage_sources_and_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_sheaf"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(&data)
            .env_remove("SHEAF_BUCKET")
            .env_remove("SHEAF_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
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
        if finished
            && let Ok(resp) = client.get(format!("{base}/api/catalog/search")).send()
            && let Ok(v) = resp.json::<Value>()
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

    let run = json(&sheaf(&data, &["run-test", "example", "--json"]));
    assert_eq!(run["status"], "finished");
    assert_eq!(run["stats"]["unchanged"], 4, "{run}");
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
    let run = sheaf(dir.path(), &["run-test", "closed", "--json"]);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let job: Value = serde_json::from_slice(&run.stdout).expect("job JSON");
    assert_eq!(
        job["gather_errors"].as_array().map(Vec::len),
        Some(1),
        "{job}"
    );

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
struct Moto(std::process::Child, u16);

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
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto(child, port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_same_binary_harvests_into_s3_on_an_aws_compatible_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The example WAF, served by a local `serve`.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = Serve(
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
    let endpoint = format!("http://127.0.0.1:{}", moto.1);
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
}
