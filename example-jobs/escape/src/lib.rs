//! `escape`: tries to leave the sandbox (files, directories, environment,
//! TCP, name lookup, UDP, HTTP) and reports what it got. On a template that
//! grants nothing, every attempt is denied.
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};

use elihu_guest::{JobInfo, http, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    /// Where to try a TCP connection (`host:port`).
    #[serde(default = "default_connect")]
    connect: String,
    /// Where to try an HTTP request.
    #[serde(default = "default_url")]
    url: String,
}

fn default_url() -> String {
    "http://127.0.0.1:80/".into()
}

fn default_connect() -> String {
    "127.0.0.1:80".into()
}

#[derive(Serialize)]
struct Attempt {
    what: String,
    denied: bool,
    detail: String,
}

#[derive(Serialize)]
struct Output {
    all_denied: bool,
    attempts: Vec<Attempt>,
}

fn attempt(what: &str, result: Result<String, String>) -> Attempt {
    match result {
        Ok(got) => Attempt { what: what.into(), denied: false, detail: got },
        Err(why) => Attempt { what: what.into(), denied: true, detail: why },
    }
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<Output, String> {
    let attempts = vec![
        attempt(
            "read /etc/passwd",
            std::fs::read_to_string("/etc/passwd")
                .map(|s| format!("read {} bytes", s.len()))
                .map_err(|e| e.to_string()),
        ),
        attempt(
            "list /",
            std::fs::read_dir("/")
                .map(|d| format!("{} entries", d.count()))
                .map_err(|e| e.to_string()),
        ),
        attempt(
            "write /tmp/elihu-escape",
            std::fs::write("/tmp/elihu-escape", b"out").map(|_| "written".into()).map_err(|e| e.to_string()),
        ),
        attempt("read environment variables", {
            let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            if vars.is_empty() { Err("no variables visible".into()) } else { Ok(vars.join(",")) }
        }),
        attempt(&format!("connect tcp {}", ctx.connect), {
            TcpStream::connect(ctx.connect.as_str())
                .and_then(|mut s| {
                    let mut buf = [0u8; 16];
                    let n = s.read(&mut buf)?;
                    Ok(format!("connected, read {n} bytes"))
                })
                .map_err(|e| e.to_string())
        }),
        attempt(
            "resolve localhost",
            ("localhost", 80)
                .to_socket_addrs()
                .map(|a| format!("{} addresses", a.count()))
                .map_err(|e| e.to_string()),
        ),
        attempt(
            "bind udp 0.0.0.0:0",
            UdpSocket::bind("0.0.0.0:0").map(|s| format!("bound {:?}", s.local_addr())).map_err(|e| e.to_string()),
        ),
        attempt(
            &format!("http get {}", ctx.url),
            http::get(&ctx.url).map(|r| format!("status {}", r.status())).map_err(|e| e.to_string()),
        ),
    ];
    for a in &attempts {
        elihu_guest::info!("{}: {} ({})", a.what, if a.denied { "denied" } else { "ALLOWED" }, a.detail);
    }
    Ok(Output { all_denied: attempts.iter().all(|a| a.denied), attempts })
}
