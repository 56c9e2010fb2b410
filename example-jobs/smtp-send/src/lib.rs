//! `smtp-send`: sends one mail over SMTP on a plain `tcp://` grant, speaking
//! the line protocol itself (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT). The
//! server is the template's `server` config value (`host:port`); the
//! password is the readable secret `smtp_password`, which the job must hold
//! to speak it (`--secret smtp_password` on the template). Returns the
//! server's last reply to the message.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use base64::Engine as _;
use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    from: String,
    to: String,
    subject: String,
    body: String,
}

#[derive(Serialize)]
struct Output {
    accepted: String,
}

/// One connection: reads replies through a buffer and writes commands on
/// the same stream (WASI cannot duplicate a socket, so no `try_clone`).
struct Session {
    reader: BufReader<TcpStream>,
}

impl Session {
    /// Reads one reply (all its continuation lines) and checks its code.
    fn reply(&mut self, expect: &str) -> Result<String, String> {
        let mut last = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).map_err(|e| format!("reading from the server: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            let line = line.trim_end().to_string();
            let more = line.as_bytes().get(3) == Some(&b'-');
            last = line;
            if !more {
                break;
            }
        }
        if !last.starts_with(expect) {
            return Err(format!("the server answered `{last}` where {expect} was expected"));
        }
        Ok(last)
    }

    fn send(&mut self, line: &str, expect: &str) -> Result<String, String> {
        let stream = self.reader.get_mut();
        stream.write_all(format!("{line}\r\n").as_bytes()).map_err(|e| format!("writing to the server: {e}"))?;
        self.reply(expect)
    }
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<Output, String> {
    let server = elihu_guest::config("server").ok_or("the template sets no `server` config value (host:port)")?;
    let stream = TcpStream::connect(server.as_str()).map_err(|e| format!("connecting to {server}: {e}"))?;
    let mut session = Session { reader: BufReader::new(stream) };
    session.reply("220")?;
    session.send("EHLO elihu", "250")?;
    if let Some(password) = elihu_guest::secret("smtp_password") {
        let user = elihu_guest::config("user").unwrap_or_else(|| ctx.from.clone());
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        session.send(&format!("AUTH PLAIN {token}"), "235")?;
    }
    session.send(&format!("MAIL FROM:<{}>", ctx.from), "250")?;
    session.send(&format!("RCPT TO:<{}>", ctx.to), "250")?;
    session.send("DATA", "354")?;
    let body = ctx.body.replace("\n.", "\n..");
    let message = format!("From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\n\r\n{body}\r\n.", ctx.from, ctx.to, ctx.subject);
    let accepted = session.send(&message, "250")?;
    session.send("QUIT", "221")?;
    elihu_guest::info!("mail to {} accepted: {accepted}", ctx.to);
    Ok(Output { accepted })
}
