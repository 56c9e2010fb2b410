//! `webhook`: POSTs its context as JSON to the URL its template's `url`
//! config value names, and returns the response's status. The bearer token
//! is a header grant on the template
//! (`--allow-host URL --header 'Authorization=Bearer {{secret:NAME}}'`):
//! the host adds it, the job never holds it. A status of 400 or more fails
//! the run, so the job is retried.
use elihu_guest::{JobInfo, http, job};
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct Output {
    status: u16,
}

#[job]
fn run(ctx: Value, _job: &JobInfo) -> Result<Output, String> {
    let url = elihu_guest::config("url").ok_or("the template sets no `url` config value (elihu template push --config url=...)")?;
    let response = http::Request::post(&url).json(&ctx).map_err(|e| e.to_string())?.send().map_err(|e| e.to_string())?;
    let status = response.status();
    elihu_guest::info!("POST {url}: {status}");
    if status >= 400 {
        return Err(format!("{url} answered {status}"));
    }
    Ok(Output { status })
}
