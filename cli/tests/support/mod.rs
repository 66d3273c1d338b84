//! What the command-line tests share: free ports, child processes that end with the test,
//! waiting for a server to listen.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

// Each test file uses a part of what it shares.
#[path = "../../../common/tests/support/ports.rs"]
#[allow(dead_code)]
mod ports;
#[allow(unused_imports)]
pub use ports::{KillOnDrop, free_port, wait_for_port, wait_for_port_file};

/// A WAF of the files under `folder`, served on a free loopback port by Python's own
/// directory listing (`python` is the tests' `.venv` one); returns it and its port.
pub fn python_waf(python: &Path, folder: &Path) -> (KillOnDrop, u16) {
    let port = free_port();
    let mut server = KillOnDrop(
        Command::new(python)
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(folder)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python http.server"),
    );
    wait_for_port(port, &mut server.0, "the WAF", Duration::from_secs(30));
    (server, port)
}
