//! Every function of `template.yaml` run the way Lambda runs it: `sam build` (the Makefile's
//! one bootstrap), then `sam local invoke` of each function in the Runtime Interface
//! Emulator's container, against moto (S3, SQS, SES) and a WAF on nginx.
//!
//! The harness (`tests/run.sh`) starts Debian's docker daemon and exports `DOCKER_HOST`; this
//! test makes the stand-in for `public.ecr.aws/lambda/provided:al2023-x86_64` with
//! `docker import` from a root filesystem of busybox and the libraries the bootstrap links, so
//! nothing is pulled. The container reaches moto and nginx through forwarders this test opens
//! on the docker bridge's gateway address (SAM ignores `--docker-network host`), each passing
//! bytes to the server's loopback port.
//!
//! Messages travel as on AWS: what a function sends lands in moto's queue, and the test hands
//! each queue's messages to its function as an SQS event, as the event source mapping would.
//!
//! Permissions are proven here too: moto enforces IAM (from the moment the resources exist),
//! and each function runs as an IAM user holding exactly the policies SAM's translator gives
//! its role (`tests/iam_policies.py`), so a permission the template lacks fails its call.
//! moto checks actions and resources, not conditions: SES's sender condition is checked
//! against the template instead.

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Moto, Nginx, workspace_root};

const TOKEN: &str = "lambda-test-token";
const SECRET: &str = "lambda-test-secret";
const MAIL_FROM: &str = "sheaf@example.org";
const BASE_IMAGE: &str = "public.ecr.aws/lambda/provided:al2023-x86_64";

/// The queues of the template, each with the function its event source mapping feeds.
const STAGES: [(&str, &str); 7] = [
    ("gather", "GatherFunction"),
    ("fetch", "FetchFunction"),
    ("import", "ImportFunction"),
    ("index", "IndexFunction"),
    ("notify", "NotifyFunction"),
    ("rebuild", "RebuildFunction"),
    ("package-fast", "PackageFastFunction"),
];

fn docker(args: &[&str]) -> std::process::Output {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e} (tests/run.sh installs docker.io)"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sam(root: &Path) -> Command {
    let mut command = Command::new(root.join(".venv/bin/sam"));
    command
        .current_dir(root)
        .env("SAM_CLI_TELEMETRY", "0")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("SHEAF_ARCH", "x86_64");
    command
}

/// The highest `GLIBC_2.N` a binary's dynamic symbols need.
fn newest_glibc(binary: &Path) -> (u32, u32) {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(binary)
        .output()
        .expect("objdump (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .max()
        .expect("the bootstrap links glibc")
}

/// Lambda's deployment package: the bootstrap, deflated.
fn zipped_size(binary: &Path) -> usize {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options).expect("zip entry");
    zip.write_all(&std::fs::read(binary).expect("read bootstrap"))
        .expect("deflate");
    zip.finish().expect("zip").into_inner().len()
}

/// The stand-in for Lambda's provided.al2023 image: busybox for the `sh`, `mv` and `chmod`
/// SAM's image build runs, and the shared libraries the bootstrap links (with the loader).
fn import_base_image(bootstrap: &Path, dir: &Path) {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "tmp", "var/task", "var/runtime", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("rootfs folder");
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox (tests/run.sh installs busybox-static)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for tool in ["sh", "mv", "chmod", "cat", "ls", "rm", "mkdir"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).expect("symlink");
    }
    // Amazon Linux's CA bundle path, filled from this machine's.
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if Path::new(bundle).exists() {
            let target = rootfs.join("etc/pki/tls/certs/ca-bundle.crt");
            std::fs::create_dir_all(target.parent().expect("parent")).expect("certs folder");
            std::fs::copy(bundle, target).expect("copy the CA bundle");
            break;
        }
    }
    let ldd = Command::new("ldd").arg(bootstrap).output().expect("ldd");
    let listing = String::from_utf8_lossy(&ldd.stdout);
    let libraries: Vec<&str> = listing
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .collect();
    assert!(!libraries.is_empty(), "ldd found no libraries: {listing}");
    for library in libraries {
        let target = rootfs.join(library.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("lib folder");
        std::fs::copy(library, &target).unwrap_or_else(|e| panic!("copy {library}: {e}"));
    }
    let tarball = dir.join("rootfs.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(tar.success(), "tar of the root filesystem failed");
    docker(&["import", &tarball.display().to_string(), BASE_IMAGE]);
    // SAM adds the emulator to the base in an image of its own; made again from this base.
    let _ = Command::new("docker")
        .args([
            "rmi",
            "-f",
            "public.ecr.aws/lambda/provided:al2023-rapid-x86_64",
        ])
        .output();
}

/// The docker bridge's address on this machine: its gateway, else (the default bridge does not
/// always name one) the first address of its subnet, which docker gives the bridge.
fn bridge_gateway() -> IpAddr {
    let out = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{json .IPAM.Config}}",
    ]);
    let config: Value = serde_json::from_slice(&out.stdout).expect("the bridge's IPAM config");
    let first = &config[0];
    if let Some(gateway) = first["Gateway"].as_str().filter(|g| !g.is_empty()) {
        return gateway.parse().expect("the gateway address");
    }
    let subnet = first["Subnet"].as_str().expect("the bridge's subnet");
    let network: std::net::Ipv4Addr = subnet
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("an IPv4 subnet");
    IpAddr::V4(std::net::Ipv4Addr::from(u32::from(network) + 1))
}

/// Passes every connection to `gateway:PORT` on to `127.0.0.1:target`, so a container reaches
/// a server the test started on loopback. Returns the port.
fn forward(gateway: IpAddr, target: u16) -> u16 {
    let listener = TcpListener::bind((gateway, 0)).expect("bind on the docker gateway");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            for (mut from, mut to) in [
                (
                    inbound.try_clone().expect("clone"),
                    outbound.try_clone().expect("clone"),
                ),
                (outbound, inbound),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

/// One `sam local invoke`: the function's answer, and what it logged.
struct Invocation {
    payload: Value,
    logs: String,
}

struct Stack {
    root: PathBuf,
    template: PathBuf,
    env_vars: PathBuf,
    dir: PathBuf,
    /// Each invocation's time to get ready, in ms, as the bootstrap logs it.
    init_ms: Vec<(String, f64)>,
    /// Each function's highest peak resident memory, in MiB, as the bootstrap logs it.
    peak_rss_mb: std::collections::BTreeMap<String, f64>,
    /// Each function's IAM user: (access key, secret).
    users: std::collections::BTreeMap<String, (String, String)>,
}

impl Stack {
    fn invoke(&mut self, function: &str, event: &Value) -> Invocation {
        let event_file = self.dir.join(format!("{function}-event.json"));
        std::fs::write(&event_file, event.to_string()).expect("write event");
        let (key, secret) = self
            .users
            .get(function)
            .expect("the function's IAM user")
            .clone();
        let out = sam(&self.root)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .args(["local", "invoke", function, "--skip-pull-image"])
            .arg("-t")
            .arg(&self.template)
            .arg("-e")
            .arg(&event_file)
            .arg("--env-vars")
            .arg(&self.env_vars)
            .args(["--parameter-overrides", "Architecture=x86_64"])
            .output()
            .expect("sam local invoke");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let logs = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "sam local invoke {function} failed:\n{logs}"
        );
        let payload: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("{function} answered no JSON: {stdout}\n{logs}"));
        // SAM exits 0 when the handler fails: the payload says so.
        assert!(
            payload.get("errorType").is_none() && payload.get("errorMessage").is_none(),
            "{function} failed: {payload}\n{logs}"
        );
        // The bootstrap logs its time to get ready (the emulator's Init Duration is not it).
        if let Some(ms) = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|l| l["fields"]["init_ms"].as_f64())
        {
            self.init_ms.push((function.to_string(), ms));
        }
        for peak in logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|l| l["fields"]["peak_rss_mb"].as_f64())
        {
            let highest = self.peak_rss_mb.entry(function.to_string()).or_default();
            *highest = highest.max(peak);
        }
        Invocation { payload, logs }
    }

    /// An HTTP API (payload 2.0) request to the api function, as API Gateway sends it.
    fn http(&mut self, method: &str, path: &str, query: &str, body: Option<&Value>) -> Value {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.request(method, path, query, body)
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: Option<(&str, String)>,
    ) -> Value {
        let mut event: Value = serde_json::from_str(
            &std::fs::read_to_string(self.root.join("infra/events/api.json")).expect("api.json"),
        )
        .expect("api event");
        event["rawPath"] = json!(path);
        event["rawQueryString"] = json!(query);
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
        event["headers"]["authorization"] = json!(format!("Bearer {TOKEN}"));
        let params: serde_json::Map<String, Value> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
        if let Some((content_type, body)) = body {
            event["body"] = json!(body);
            event["headers"]["content-type"] = json!(content_type);
        }
        let answer = self.invoke("ApiFunction", &event).payload;
        let status = answer["statusCode"].as_u64().expect("statusCode");
        let text = answer["body"].as_str().unwrap_or_default();
        assert!(
            status < 300,
            "{method} {path}?{query} answered {status}: {text}"
        );
        serde_json::from_str(text).unwrap_or(Value::Null)
    }
}

/// What `run_stages` waits for.
enum Until<'a> {
    /// The harvest job of this id has ended.
    JobEnds(&'a str),
    /// The catalogue's rebuild has ended.
    RebuildEnds,
}

/// Feeds the stages from their queues, as event source mappings would, until `until`. With
/// `kill_one_fetch`, one fetch message goes to its dead-letter queue (as after five failed
/// deliveries) and the scheduler must end its document.
async fn run_stages(
    stack: &mut Stack,
    sqs: &aws_sdk_sqs::Client,
    queue_urls: &std::collections::BTreeMap<String, (String, String)>,
    until: Until<'_>,
    kill_one_fetch: bool,
) {
    let mut dead_lettered = None;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(
            Instant::now() < deadline,
            "the stages did not finish in 240 s"
        );
        let mut moved = false;
        for (queue, function) in STAGES {
            let (url, dlq) = &queue_urls[queue];
            let mut messages = receive(sqs, url, 0).await;
            if messages.is_empty() {
                continue;
            }
            moved = true;
            // One document's fetch message dies (as after five failed deliveries): the
            // scheduler must end that document as an error for the job to finish.
            if queue == "fetch" && kill_one_fetch && dead_lettered.is_none() {
                let victim = messages.remove(0);
                sqs.send_message()
                    .queue_url(dlq)
                    .message_body(victim.body().expect("body"))
                    .send()
                    .await
                    .expect("to the dead-letter queue");
                delete(sqs, url, &victim).await;
                dead_lettered = Some(victim.body().expect("body").to_string());
                let report = stack
                    .invoke(
                        "SchedulerFunction",
                        &serde_json::from_str(
                            &std::fs::read_to_string(
                                stack.root.join("infra/events/scheduler.json"),
                            )
                            .expect("scheduler.json"),
                        )
                        .expect("event"),
                    )
                    .payload;
                assert_eq!(
                    report["dead_lettered"].as_array().map(Vec::len),
                    Some(1),
                    "the scheduler ends the dead-lettered document: {report}"
                );
                if messages.is_empty() {
                    continue;
                }
            }
            deliver(
                stack,
                sqs,
                function,
                (queue, url),
                &messages,
                "a message of the harvest failed",
            )
            .await;
        }
        if !moved {
            let ended = match until {
                Until::JobEnds(id) => {
                    let job = stack.http("GET", &format!("/api/harvest/jobs/{id}"), "", None);
                    job["status"] == json!("finished") || job["status"] == json!("aborted")
                }
                Until::RebuildEnds => {
                    let state = stack.http("GET", "/api/catalog/rebuild/result", "", None);
                    state["status"] != json!("running")
                }
            };
            if ended {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    assert_eq!(
        dead_lettered.is_some(),
        kill_one_fetch,
        "a fetch message went to the dead-letter queue"
    );
}

/// Hands `messages` of `queue` (its short name) to `function` as the event source mapping
/// would, requires that none failed (`context` says what a failure means), and deletes them.
async fn deliver(
    stack: &mut Stack,
    sqs: &aws_sdk_sqs::Client,
    function: &str,
    (queue, url): (&str, &str),
    messages: &[aws_sdk_sqs::types::Message],
    context: &str,
) {
    let answer = stack.invoke(function, &sqs_event(messages, &format!("sheaf-{queue}")));
    assert_eq!(
        answer.payload["batchItemFailures"],
        json!([]),
        "{function}: {context}\n{}",
        answer.logs
    );
    for message in messages {
        delete(sqs, url, message).await;
    }
}

/// An SQS event of the messages received, as Lambda's event source mapping builds it.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let count = m
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .cloned()
                .unwrap_or_else(|| "1".into());
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {"ApproximateReceiveCount": count},
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"),
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_runs_under_the_lambda_runtime_against_moto() {
    let root = workspace_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();

    // --- the daemon, and one build of the stack ----------------------------------------------
    let server = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!server.stdout.is_empty(), "no docker daemon answers");
    let build_dir = dir.join("build");
    let started = Instant::now();
    let out = sam(&root)
        .args([
            "build",
            "-t",
            "template.yaml",
            "--parameter-overrides",
            "Architecture=x86_64",
        ])
        .arg("-b")
        .arg(&build_dir)
        .output()
        .expect("sam build");
    assert!(
        out.status.success(),
        "sam build failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("sam build: {:.1} s", started.elapsed().as_secs_f64());

    // One bootstrap serves every function.
    let functions: Vec<&str> = STAGES
        .iter()
        .map(|(_, f)| *f)
        .chain(["ApiFunction", "PackageSlowFunction", "SchedulerFunction"])
        .collect();
    let bootstrap = build_dir.join("ApiFunction/bootstrap");
    let bytes = std::fs::read(&bootstrap).expect("the api function's bootstrap");
    for function in &functions {
        let other = std::fs::read(build_dir.join(function).join("bootstrap"))
            .unwrap_or_else(|e| panic!("{function}'s bootstrap: {e}"));
        assert!(other == bytes, "{function} has a bootstrap of its own");
    }
    let glibc = newest_glibc(&bootstrap);
    assert!(
        glibc <= (2, 34),
        "the bootstrap needs GLIBC_{}.{}; Amazon Linux 2023 has 2.34",
        glibc.0,
        glibc.1
    );
    let zipped = zipped_size(&bootstrap);
    eprintln!(
        "bootstrap: {:.1} MB, zipped {:.2} MB, newest glibc symbol 2.{}",
        bytes.len() as f64 / 1e6,
        zipped as f64 / 1e6,
        glibc.1
    );
    assert!(
        zipped < 10_000_000,
        "the zipped bootstrap is {zipped} bytes"
    );

    import_base_image(&bootstrap, &dir);

    // --- the servers, reached from the container through the bridge's gateway --------------
    let gateway = bridge_gateway();
    let moto = Moto::start();
    let moto_seen = SocketAddr::new(gateway, forward(gateway, moto.port));
    let waf_dir = dir.join("waf");
    support::copy_tree(&root.join("tests/records/waf/iso19139"), &waf_dir);
    let documents = walk_xml(&waf_dir);
    let nginx = Nginx::serve(&waf_dir);
    let waf_seen = SocketAddr::new(gateway, forward(gateway, nginx.port));

    let bucket = "sheaf-lambda";
    moto.bucket(bucket).await;
    let mut env = serde_json::Map::new();
    let mut queue_urls = std::collections::BTreeMap::new();
    // The queues by the template's logical ids (package-fast: PackageFastQueue), for the IAM
    // policies' resources.
    let mut logical_queues = serde_json::Map::new();
    for queue in [
        "gather",
        "fetch",
        "import",
        "index",
        "notify",
        "rebuild",
        "package-fast",
        "package-slow",
    ] {
        let q = moto.queue(&format!("sheaf-{queue}"), 5).await;
        let logical: String = queue
            .split('-')
            .map(|word| word[..1].to_uppercase() + &word[1..])
            .collect();
        logical_queues.insert(format!("{logical}Queue"), json!(format!("sheaf-{queue}")));
        logical_queues.insert(
            format!("{logical}DeadLetterQueue"),
            json!(format!("sheaf-{queue}-dlq")),
        );
        let var = queue.replace('-', "_").to_uppercase();
        env.insert(format!("SHEAF_{var}_QUEUE_URL"), json!(q.url()));
        env.insert(
            format!("SHEAF_{var}_DLQ_URL"),
            json!(q.dead_letter_url().expect("dlq")),
        );
        queue_urls.insert(
            queue.to_string(),
            (
                q.url().to_string(),
                q.dead_letter_url().expect("dlq").to_string(),
            ),
        );
    }
    aws_sdk_ses::Client::new(&moto.sdk_config().await)
        .verify_email_identity()
        .email_address(MAIL_FROM)
        .send()
        .await
        .expect("verify the sender");
    env.insert("SHEAF_BUCKET".into(), json!(bucket));
    env.insert("SHEAF_MAIL_FROM".into(), json!(MAIL_FROM));
    env.insert("SHEAF_ALLOW_PRIVATE_URLS".into(), json!("true"));
    // The api function reads its token and the packager's secret from Secrets Manager, as
    // the template's secrets give them, under its role's permission.
    let secrets_manager = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let mut secrets = serde_json::Map::new();
    for (logical, variable, value) in [
        ("ApiTokenSecret", "SHEAF_API_TOKEN_SECRET_ID", TOKEN),
        ("PackagerSecretSecret", "SHEAF_PACKAGER_SECRET_ID", SECRET),
    ] {
        let created = secrets_manager
            .create_secret()
            .name(format!("sheaf-{logical}"))
            .secret_string(value)
            .send()
            .await
            .expect("create a secret");
        let arn = created.arn().expect("the secret's ARN");
        secrets.insert(logical.into(), json!(arn));
        env.insert(variable.into(), json!(arn));
    }
    let env_vars = dir.join("env.json");
    std::fs::write(&env_vars, json!({ "Parameters": env }).to_string()).expect("env.json");

    // SAM passes a function only the variables its template declares: a copy of the built
    // template declares AWS_ENDPOINT_URL, moto's address as the container sees it.
    let built = std::fs::read_to_string(build_dir.join("template.yaml")).expect("built template");
    let (before, after) = built
        .split_once("SHEAF_BUCKET:")
        .expect("the template's globals declare SHEAF_BUCKET");
    let indent: String = before.chars().rev().take_while(|c| *c == ' ').collect();
    let mut copy =
        format!("{before}AWS_ENDPOINT_URL: http://{moto_seen}\n{indent}SHEAF_BUCKET:{after}");
    // The package functions get 62 s instead of their minutes, so a package from a slow
    // datastore outlasts an invocation (a package keeps its last minute for finishing).
    for function in ["PackageFastFunction:", "PackageSlowFunction:"] {
        let at = copy.find(function).expect("a package function");
        let timeout = at + copy[at..].find("Timeout: ").expect("its timeout") + "Timeout: ".len();
        let end = timeout + copy[timeout..].find('\n').expect("a line");
        copy.replace_range(timeout..end, "62");
    }
    let template = build_dir.join("template.moto.yaml");
    std::fs::write(&template, copy).expect("write the template copy");

    // --- IAM: a user a function, holding its role's policies; enforced from here on --------
    let request = json!({
        "endpoint": moto.endpoint(),
        "template": root.join("template.yaml"),
        "bucket": bucket,
        "queues": logical_queues,
        "mail_from": MAIL_FROM,
        "secrets": &secrets,
    });
    let mut script = Command::new(support::python())
        .arg(root.join("tests/iam_policies.py"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tests/iam_policies.py");
    script
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let out = script.wait_with_output().expect("iam_policies.py");
    assert!(
        out.status.success(),
        "iam_policies.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let iam: Value = serde_json::from_slice(&out.stdout).expect("iam_policies.py's JSON");
    let users: std::collections::BTreeMap<String, (String, String)> = iam["users"]
        .as_object()
        .expect("users")
        .iter()
        .map(|(name, u)| {
            let text = |f: &str| u[f].as_str().expect("key").to_string();
            (name.clone(), (text("key"), text("secret")))
        })
        .collect();
    for function in &functions {
        assert!(users.contains_key(*function), "no role for {function}");
    }
    // What moto cannot check: every SES permission is for the configured sender only.
    for (function, conditions) in iam["ses_conditions"].as_object().expect("conditions") {
        for condition in conditions.as_array().expect("list") {
            assert_eq!(
                condition,
                &json!({"StringEquals": {"ses:FromAddress": MAIL_FROM}}),
                "{function} may send email as another sender"
            );
        }
    }
    // What moto cannot check either: Secrets Manager grants, against the table of who reads
    // which secret (the api function both, no other function any).
    for (function, grants) in iam["secret_grants"].as_object().expect("grants") {
        let mut granted: Vec<(String, String)> = grants
            .as_array()
            .expect("list")
            .iter()
            .map(|g| (g["actions"].to_string(), g["resource"].to_string()))
            .collect();
        granted.sort();
        let mut expected: Vec<(String, String)> = match function.as_str() {
            "ApiFunction" => secrets
                .values()
                .map(|arn| {
                    (
                        json!(["secretsmanager:GetSecretValue"]).to_string(),
                        arn.to_string(),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        expected.sort();
        assert_eq!(granted, expected, "{function}'s Secrets Manager grants");
    }
    let enforced = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", moto.endpoint()))
        .body("0")
        .send()
        .await
        .expect("moto reset-auth");
    assert!(
        enforced.status().is_success(),
        "moto reset-auth: {}",
        enforced.status()
    );
    let (admin_key, admin_secret) = users["TestAdmin"].clone();
    let admin = common::aws::load_sdk_config(&common::aws::AwsSettings {
        static_credentials: Some((admin_key, admin_secret)),
        ..moto.settings()
    })
    .await;
    let sqs = aws_sdk_sqs::Client::new(&admin);
    let s3 = common::aws::s3_client(&admin, &moto.settings());
    // Enforced: the credentials of before are refused now.
    assert!(
        moto.sqs().await.list_queues().send().await.is_err(),
        "moto does not enforce IAM"
    );

    let mut stack = Stack {
        root: root.clone(),
        template,
        env_vars,
        dir: dir.clone(),
        init_ms: Vec::new(),
        peak_rss_mb: Default::default(),
        users,
    };

    // --- the api: packager status, and a source harvested -----------------------------------
    let answer = stack.request(
        "POST",
        "/status",
        "",
        Some((
            "application/x-www-form-urlencoded",
            format!("secret={SECRET}"),
        )),
    );
    assert_eq!(answer["success"], json!(true), "packager status: {answer}");

    // A partner catalogue, told of every change (GeoNetwork's remote notifications).
    let receiver = support::NotifyReceiver::start();
    let receiver_seen = SocketAddr::new(gateway, forward(gateway, receiver.port));
    stack.http(
        "POST",
        "/api/notifications/targets",
        "",
        Some(&json!({"name": "partner", "url": format!("http://{receiver_seen}/partner")})),
    );
    stack.http(
        "POST",
        "/api/harvest/sources",
        "",
        Some(&json!({"name": "lambda-waf", "url": format!("http://{waf_seen}/"), "type": "waf"})),
    );
    let job = stack.http("POST", "/api/harvest/sources/lambda-waf/jobs", "", None);
    let job_id = job["id"].as_str().expect("job id").to_string();

    // --- the stages, fed from their queues until the harvest is done -------------------------
    run_stages(&mut stack, &sqs, &queue_urls, Until::JobEnds(&job_id), true).await;

    let job = stack.http("GET", &format!("/api/harvest/jobs/{job_id}"), "", None);
    eprintln!("job: {job}");
    assert_eq!(job["status"], json!("finished"), "{job}");
    let new = job["stats"]["added"].as_u64().expect("added count");
    assert_eq!(
        new as usize,
        documents - 1,
        "every document but the dead one: {job}"
    );
    assert_eq!(job["stats"]["errored"].as_u64(), Some(1), "{job}");

    let found = stack.http(
        "GET",
        "/api/catalog/search",
        "source=lambda-waf&page_size=100",
        None,
    );
    eprintln!("search: {found}");
    assert_eq!(
        found["total"].as_u64(),
        Some(new),
        "search answers every record: {found}"
    );

    // --- the dead letter, redriven through the api, does its work ----------------------------
    // Its job has ended: a new job of the source takes it over and imports the document.
    let redriven = stack.http("POST", "/api/catalog/queues/fetch/redrive", "", None);
    assert_eq!(redriven["taken_over"], json!(1), "{redriven}");
    let taken = redriven["jobs_started"][0]
        .as_str()
        .expect("a job started")
        .to_string();
    run_stages(&mut stack, &sqs, &queue_urls, Until::JobEnds(&taken), false).await;
    let job = stack.http("GET", &format!("/api/harvest/jobs/{taken}"), "", None);
    assert_eq!(
        (&job["stats"]["added"], &job["stats"]["errored"]),
        (&json!(1), &json!(0)),
        "the redriven document is added: {job}"
    );
    let found = stack.http(
        "GET",
        "/api/catalog/search",
        "source=lambda-waf&page_size=100",
        None,
    );
    assert_eq!(
        found["total"].as_u64(),
        Some(documents as u64),
        "every document is in the catalogue: {found}"
    );

    // The notify function told the partner of every record.
    let in_catalogue: std::collections::BTreeSet<String> = found["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    let told = receiver.received();
    assert!(
        told.iter().all(|n| n.field("action") == "update"),
        "{told:?}"
    );
    let heard: std::collections::BTreeSet<String> =
        told.iter().map(|n| n.field("uuid").to_string()).collect();
    assert_eq!(heard, in_catalogue, "the partner heard of every record");

    // --- a rebuild: the rebuild function re-imports the source through the stages -----------
    let started = stack.http("POST", "/api/catalog/rebuild", "", None);
    eprintln!("rebuild: {started}");
    run_stages(&mut stack, &sqs, &queue_urls, Until::RebuildEnds, false).await;
    let rebuilt = stack.http("GET", "/api/catalog/rebuild/result", "", None);
    assert_eq!(rebuilt["status"], json!("finished"), "{rebuilt}");
    assert_eq!(rebuilt["sources_done"], json!(1), "{rebuilt}");
    let status = stack.http("GET", "/api/catalog/status", "", None);
    assert_eq!(status["consistent"], json!(true), "{status}");
    assert_eq!(
        status["records"].as_u64(),
        Some(documents as u64),
        "{status}"
    );

    // --- a partial batch failure names only the failed message ------------------------------
    // The index function's role reaches the records and the index only: a rebuild message
    // delivered to it fails (S3 denies the rebuild's state), the index message beside it
    // does its work.
    let record = |id: &str, body: &str| {
        json!({"messageId": id, "receiptHandle": id, "body": body,
               "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"})
    };
    let batch = json!({"Records": [
        record("index-1", &json!({"kind": "index", "keys": []}).to_string()),
        record("rebuild-2", &json!({"kind": "rebuild", "id": "3f2a9c81d7e4"}).to_string()),
    ]});
    let answer = stack.invoke("IndexFunction", &batch);
    let failed: Vec<&str> = answer.payload["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    assert_eq!(failed, ["rebuild-2"], "{}", answer.logs);
    assert!(answer.logs.contains("AccessDenied"), "{}", answer.logs);

    // --- a package: accepted by the api, waits for a build under way, then built over several
    // invocations (a slow datastore outlasts each) and sent ------------------------------------
    let ckan = support::CkanDatastore::start();
    let ckan_seen = SocketAddr::new(gateway, forward(gateway, ckan.port));
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("secret", SECRET)
        .append_pair(
            "api_url",
            &format!("http://{ckan_seen}/api/3/action/datastore_search"),
        )
        .append_pair("resource_id", "slow-2500-rows-12000")
        .append_pair("email", "requester@example.org")
        .finish();
    let accepted = stack.request(
        "POST",
        "/package_datastore",
        "",
        Some(("application/x-www-form-urlencoded", form)),
    );
    assert_eq!(accepted["queue"], json!("package-fast"), "{accepted}");
    let (fast, _) = &queue_urls["package-fast"];
    let messages = receive(&sqs, fast, 10).await;
    assert_eq!(messages.len(), 1, "one package message");
    let message: common::package::PackageMessage =
        serde_json::from_str(messages[0].body().expect("body")).expect("a package message");
    // Another delivery is building the same package: this one asks to be delivered later.
    let building = format!("packages/{}.building", message.request.cache_key());
    s3.put_object()
        .bucket(bucket)
        .key(&building)
        .body(
            json!({"started": chrono::Utc::now()})
                .to_string()
                .into_bytes()
                .into(),
        )
        .send()
        .await
        .expect("a build under way");
    deliver(
        &mut stack,
        &sqs,
        "PackageFastFunction",
        ("package-fast", fast),
        &messages,
        "the package function could not wait for the build",
    )
    .await;
    s3.delete_object()
        .bucket(bucket)
        .key(&building)
        .send()
        .await
        .expect("the other build ends");
    // The wait message comes back after the packager's wait (30 s).
    let mut waited = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while waited.is_empty() && Instant::now() < until {
        waited = receive(&sqs, fast, 20).await;
    }
    assert_eq!(waited.len(), 1, "the wait message came back");
    deliver(
        &mut stack,
        &sqs,
        "PackageFastFunction",
        ("package-fast", fast),
        &waited,
        "the package's first invocation failed",
    )
    .await;
    // Three pages of 5,000 rows, 2.5 s each: an invocation writes one and hands on through the
    // slow queue.
    let (slow, _) = &queue_urls["package-slow"];
    let mut continued = 0;
    loop {
        let messages = receive(&sqs, slow, 2).await;
        if messages.is_empty() {
            break;
        }
        assert!(continued < 5, "the package did not end");
        continued += messages.len();
        deliver(
            &mut stack,
            &sqs,
            "PackageSlowFunction",
            ("package-slow", slow),
            &messages,
            "a continuation of the package failed",
        )
        .await;
    }
    assert!(
        continued >= 2,
        "the build went on in {continued} further invocations"
    );
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("packages/")
        .send()
        .await
        .expect("list packages");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.iter().all(|k| !k.contains(".resume")),
        "nothing set aside remains: {keys:?}"
    );
    let zip_key = keys
        .iter()
        .find(|k| k.ends_with(".zip"))
        .unwrap_or_else(|| panic!("no zip in packages/: {keys:?}"));
    let zip = s3
        .get_object()
        .bucket(bucket)
        .key(*zip_key)
        .send()
        .await
        .expect("the zip")
        .body
        .collect()
        .await
        .expect("its bytes")
        .into_bytes();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    let rows = csv::Reader::from_reader(archive.by_name("resource.csv").expect("the entry"))
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("every row reads")
        .len();
    assert_eq!(rows, 12_000, "every row, once");
    let ses = aws_sdk_ses::Client::new(&admin);
    let quota = ses.get_send_quota().send().await.expect("SES quota");
    // One email to one recipient: moto (5.2.5) counts its recipient twice, once from the
    // Destinations Sheaf passes and once from the To header it parses besides. (Its data dump,
    // where messages could be read back, fails once multipart objects exist.)
    assert_eq!(quota.sent_last24_hours(), 2.0, "SES sent the link once");

    eprintln!("ready after (ms): {:?}", stack.init_ms);
    assert!(
        !stack.init_ms.is_empty(),
        "no invocation logged its init time"
    );
    eprintln!("peak resident memory (MiB): {:?}", stack.peak_rss_mb);
    for function in [
        "ApiFunction",
        "GatherFunction",
        "FetchFunction",
        "SchedulerFunction",
        "PackageFastFunction",
        "PackageSlowFunction",
    ] {
        assert!(
            stack.peak_rss_mb.contains_key(function),
            "{function} logged no peak memory"
        );
    }
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    wait_seconds: i32,
) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .visibility_timeout(300)
        .send()
        .await
        .expect("receive")
        .messages()
        .to_vec()
}

async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, message: &aws_sdk_sqs::types::Message) {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(message.receipt_handle().expect("receipt"))
        .send()
        .await
        .expect("delete");
}

fn walk_xml(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| {
            if e.file_type().expect("type").is_dir() {
                walk_xml(&e.path())
            } else {
                usize::from(e.path().extension().is_some_and(|x| x == "xml"))
            }
        })
        .sum()
}
