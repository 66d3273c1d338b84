//! What the command-line tests share: free ports, child processes that end with the test,
//! waiting for a server to listen.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process killed (and reaped) when the test lets it go.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on 127.0.0.1:`port`; fails the test after `limit`.
pub fn wait_for_port(port: u16, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A WAF of the files under `folder`, served on a free loopback port by Python's own
/// directory listing (`python` is the tests' `.venv` one); returns it and its port.
pub fn python_waf(python: &Path, folder: &Path) -> (KillOnDrop, u16) {
    let port = free_port();
    let server = KillOnDrop(
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
    wait_for_port(port, "the WAF", Duration::from_secs(30));
    (server, port)
}
