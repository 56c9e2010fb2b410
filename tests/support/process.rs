//! Driving the `elihu` binary from tests: commands, `serve` processes,
//! and waiting on state another process writes.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::node::TestDb;
use super::{artifact_dir, schema_path};

/// `elihu ARGS` against the database of `db`, with a shared artifact cache.
pub fn elihu(db: &TestDb, args: &[&str]) -> Output {
    command(db, args).output().expect("elihu runs")
}

pub fn command(db: &TestDb, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_elihu"));
    cmd.args(args)
        .current_dir(db.dir.path())
        .env("ELIHU_DATABASE_URL", db.url())
        .env("ELIHU_CACHE_DIR", artifact_dir())
        .env_remove("ELIHU_CONFIG_FILE");
    cmd
}

pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn wasm(name: &str) -> String {
    elihu::examples::get(name).unwrap().wasm_path.to_string()
}

pub fn cli_push(db: &TestDb, name: &str, extra: &[&str]) {
    let schema = schema_path(name);
    let w = wasm(name);
    let mut args = vec!["template", "push", name, &w, "--schema", schema.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = ok(&elihu(db, &args));
    assert!(out.starts_with(&format!("template {name} version ")), "{out}");
}

/// A `serve` process on a free port; killed on drop if still running.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(db: &TestDb, extra: &[&str]) -> Server {
        Server::start_with_env(db, extra, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_with_env(db: &TestDb, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &addr as &str, "--poll", "50ms"];
        args.extend_from_slice(extra);
        let child = command(db, &args).envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("serve starts");
        let server = Server { child, addr };
        // Ready when the API answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&server.addr).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        use std::io::Read;
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (status, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the database (another process writes it) until `done` holds.
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

