//! Loopback ports and the server processes that listen on them, for every integration test of
//! the workspace (the command-line tests include this file by its path).

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A free loopback port that no other test process holds.
///
/// The kernel's free port is released before the server binds it, so two tests running at
/// once can draw the same one: one server then fails to bind, and its test talks to the other
/// test's server. Each port drawn here is claimed by a lock on a file named after it, held
/// until this process ends, so no other test draws it meanwhile.
pub fn free_port() -> u16 {
    static CLAIMED: Mutex<Vec<File>> = Mutex::new(Vec::new());
    let folder = std::env::temp_dir().join("sheaf-test-ports");
    std::fs::create_dir_all(&folder).expect("the ports' lock folder");
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let lock = File::create(folder.join(port.to_string())).expect("a port's lock file");
        if lock.try_lock().is_ok() {
            CLAIMED.lock().expect("the claimed ports").push(lock);
            return port;
        }
    }
    panic!("1000 free ports in a row were claimed by other tests");
}

/// A child process killed (and reaped) when the test lets it go.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on 127.0.0.1:`port`; fails the test when `child`, the server
/// meant to listen there, exits first, or after `limit`.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str, limit: Duration) {
    poll(child, &format!("{what}, on port {port},"), limit, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// Waits for a server that binds a free port itself to write it to `port_file` (whole: it
/// writes elsewhere and renames), then for it to listen there; fails the test as
/// [`wait_for_port`] does, each wait after `limit`.
pub fn wait_for_port_file(port_file: &Path, child: &mut Child, what: &str, limit: Duration) -> u16 {
    let port = poll(child, what, limit, || {
        let text = std::fs::read_to_string(port_file).ok()?;
        Some(text.trim().parse::<u16>().expect("a port"))
    });
    wait_for_port(port, child, what, limit);
    port
}

/// `ready`'s first value; fails the test when `child` exits first, or after `limit`.
fn poll<T>(
    child: &mut Child,
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it was ready: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} was not ready within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
