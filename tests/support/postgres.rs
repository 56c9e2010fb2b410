//! A throwaway PostgreSQL for tests: `ELIHU_TEST_POSTGRES_URL` when given
//! (a server where the user may create databases), otherwise a cluster this
//! test process starts itself with initdb/pg_ctl (as the `postgres` user when
//! running as root) in a temp dir on a free port, stopped and removed by a
//! watchdog when the process exits. Each test gets a fresh database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// The server tests run against.
pub struct PgServer {
    /// URL of the server's `postgres` database, for creating test databases.
    admin_url: String,
    /// The cluster this process started, if it started one.
    local: Option<LocalCluster>,
}

struct LocalCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    socket_dir: PathBuf,
    as_postgres: bool,
}

fn find_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    if let Some(bin) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if Path::new(dir).join("initdb").exists() && Path::new(dir).join("pg_ctl").exists() {
            return Ok(PathBuf::from(dir));
        }
    }
    Err("the PostgreSQL tests need a server: set ELIHU_TEST_POSTGRES_URL to one where the user may create \
         databases, or install PostgreSQL (initdb and pg_ctl, e.g. `apt-get install postgresql`) so the tests \
         can start a throwaway cluster"
        .into())
}

impl LocalCluster {
    fn run(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().map_err(|e| format!("running {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {:?} failed: {}{}",
                tool,
                args,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB",
            self.port,
            self.socket_dir.display()
        );
        let log = self.data.parent().unwrap().join("postgres.log");
        self.run("pg_ctl", &["-D", self.data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "start"])
            .map(|_| ())
    }

    fn stop(&self) -> Result<(), String> {
        self.run("pg_ctl", &["-D", self.data.to_str().unwrap(), "-m", "fast", "-w", "stop"]).map(|_| ())
    }

    fn create() -> Result<LocalCluster, String> {
        let bin = find_bin()?;
        let root = std::env::temp_dir().join(format!("elihu-pg-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let as_postgres = unsafe_is_root();
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root).status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("could not hand the test cluster's directory to the postgres user".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?.local_addr().unwrap().port();
        let cluster = LocalCluster { bin, data: root.join("data"), port, socket_dir: root.clone(), as_postgres };
        cluster.run("initdb", &["-D", cluster.data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])?;
        cluster.start()?;
        // Stop the cluster and remove it once this test process is gone.
        let pg_ctl = if as_postgres {
            format!("runuser -u postgres -- {}", cluster.bin.join("pg_ctl").display())
        } else {
            cluster.bin.join("pg_ctl").display().to_string()
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            data = cluster.data.display(),
            root = root.display()
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the cluster's watchdog: {e}"))?;
        Ok(cluster)
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

/// The PostgreSQL server of this test process; panics with what to do when
/// there is none to be had.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("ELIHU_TEST_POSTGRES_URL") {
            return Ok(PgServer { admin_url: url, local: None });
        }
        let cluster = LocalCluster::create()?;
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
        Ok(PgServer { admin_url, local: Some(cluster) })
    });
    match server {
        Ok(s) => s,
        Err(why) => panic!("{why}"),
    }
}

impl PgServer {
    /// A cluster of its own, for a test that restarts PostgreSQL (which would
    /// break the tests sharing [`server`]).
    pub fn dedicated() -> PgServer {
        if std::env::var("ELIHU_TEST_POSTGRES_URL").is_ok() {
            panic!("this test restarts PostgreSQL and needs a throwaway cluster; unset ELIHU_TEST_POSTGRES_URL to run it");
        }
        let cluster = LocalCluster::create().unwrap_or_else(|why| panic!("{why}"));
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
        PgServer { admin_url, local: Some(cluster) }
    }

    /// A new, empty database; its URL.
    pub async fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("elihu_test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.expect("connect to the test server");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create a test database");
        admin.close().await.ok();
        let (base, _) = self.admin_url.rsplit_once('/').expect("the URL names a database");
        format!("{base}/{name}")
    }

    /// Restarts the server (for tests of reconnection); only for a
    /// [`dedicated`](Self::dedicated) cluster.
    pub fn restart(&self) {
        let cluster = self.local.as_ref().expect("only a dedicated cluster is restarted");
        cluster.stop().expect("stop PostgreSQL");
        cluster.start().expect("start PostgreSQL again");
    }
}
