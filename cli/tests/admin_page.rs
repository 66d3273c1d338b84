//! The admin page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
//! Selenium: tests/admin_page.py): it loads with no console error, a wrong token gets a clear
//! message, and a source added from the page is harvested and its job shows its counts. The
//! screenshot it takes is kept outside the repository (its path is printed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{KillOnDrop, free_port, python_waf, wait_for_port};

mod support;

const TOKEN: &str = "admin-page-token";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_tree(from: &Path, to: &Path) -> usize {
    std::fs::create_dir_all(to).expect("mkdir");
    let mut files = 0;
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            files += copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
            files += 1;
        }
    }
    files
}

#[test]
fn the_admin_page_adds_a_source_and_shows_its_harvest_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the tests' Python with Selenium is missing: run tests/run.sh"
    );

    // A WAF (Python's own directory listing) of ISO 19139 documents.
    let waf = dir.path().join("waf");
    let documents = copy_tree(&root().join("tests/records/waf/iso19139"), &waf);
    let (_waf, waf_port) = python_waf(&python, &waf);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sheaf"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(dir.path().join("data"))
            .env_remove("SHEAF_BUCKET")
            .env("SHEAF_API_TOKEN", TOKEN)
            // The test's WAF listens on loopback.
            .env("SHEAF_ALLOW_PRIVATE_URLS", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sheaf serve"),
    );
    wait_for_port(port, &mut serve.0, "sheaf serve", Duration::from_secs(30));

    let screenshot = std::env::temp_dir().join("sheaf-admin-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let driven = Command::new(&python)
        .arg(root().join("tests/admin_page.py"))
        .arg(format!("http://{listen}"))
        .arg(TOKEN)
        .arg(format!("http://127.0.0.1:{waf_port}/"))
        .arg(&screenshot)
        .output()
        .expect("tests/admin_page.py");
    assert!(
        driven.status.success(),
        "the browser run failed (are chromium and chromium-driver installed? tests/run.sh \
         installs them): {}",
        String::from_utf8_lossy(&driven.stderr)
    );
    let seen: Value = serde_json::from_slice(&driven.stdout).expect("the page's report");

    // No console message of level error (or worse) while the page was used.
    let console = seen["console"].as_array().expect("console");
    let errors: Vec<&Value> = console
        .iter()
        .filter(|m| m["level"] == "SEVERE" || m["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    let refused = seen["wrong_token_message"].as_str().expect("message");
    assert!(
        refused.contains("token was refused") && refused.contains("SHEAF_API_TOKEN"),
        "{refused}"
    );
    assert_eq!(seen["main_hidden_after_wrong_token"], true);

    // The job row the page shows: status, then added/updated/unchanged/deleted/errored.
    let row: Vec<&str> = seen["job_row"]
        .as_array()
        .expect("row")
        .iter()
        .map(|c| c.as_str().expect("cell"))
        .collect();
    assert_eq!(row[1], "from-page", "{row:?}");
    assert_eq!(row[2], "finished", "{row:?}");
    assert_eq!(
        row[4..9],
        [documents.to_string().as_str(), "0", "0", "0", "0"],
        "{row:?}"
    );
    let last_job = seen["source_row"].as_str().expect("source row");
    assert!(
        last_job.contains(&format!("{documents} added")),
        "{last_job}"
    );
    let sections: Vec<&str> = seen["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for section in [
        "Sources",
        "Jobs",
        "Harvest log",
        "Catalogue",
        "Rejected documents",
        "Queues",
        "Notification targets",
        "Packaging",
    ] {
        assert!(sections.contains(&section), "{sections:?}");
    }

    // What the page showed is what the catalogue holds.
    let found: Value = reqwest::blocking::get(format!(
        "http://{listen}/api/catalog/search?source=from-page"
    ))
    .expect("search")
    .json()
    .expect("json");
    assert_eq!(found["total"], documents, "{found}");

    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    eprintln!("the admin page's screenshot: {}", screenshot.display());
}
