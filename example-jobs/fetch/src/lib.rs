//! `fetch`: makes HTTP requests and reports what came of each (status and
//! body size, or the error), without failing itself. A probe for operators
//! checking a template's grants, and for the tests of the host's bounds.
use elihu_guest::{JobInfo, http, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    /// Bytes of request body to send.
    #[serde(default)]
    body_bytes: usize,
    /// How many times to make the request.
    #[serde(default = "one")]
    times: u32,
    #[serde(default = "default_redirects")]
    max_redirects: u32,
    /// Headers to set.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

fn default_method() -> String {
    "GET".into()
}

fn one() -> u32 {
    1
}

fn default_redirects() -> u32 {
    5
}

#[derive(Serialize, Default)]
struct Result_ {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Output {
    results: Vec<Result_>,
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<Output, String> {
    let mut results = Vec::new();
    for _ in 0..ctx.times {
        let mut request =
            http::Request::new(&ctx.method, &ctx.url).body(vec![b'b'; ctx.body_bytes]).max_redirects(ctx.max_redirects);
        for (name, value) in &ctx.headers {
            request = request.header(name, value);
        }
        results.push(match request.send() {
            Ok(r) => Result_ { status: Some(r.status()), bytes: Some(r.bytes().len()), url: Some(r.url().to_string()), error: None },
            Err(e) => Result_ { error: Some(e.to_string()), ..Result_::default() },
        });
    }
    Ok(Output { results })
}
