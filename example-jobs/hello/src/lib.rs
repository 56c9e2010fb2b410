//! `hello`: greets a name from the context. The smallest useful job.
use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    name: String,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

#[job]
fn run(ctx: Context, job: &JobInfo) -> Result<Output, String> {
    elihu_guest::info!("greeting {} (job {}, attempt {})", ctx.name, job.id, job.attempt);
    let greeting = match elihu_guest::config("greeting") {
        Some(word) => format!("{word}, {}!", ctx.name),
        None => format!("Hello, {}!", ctx.name),
    };
    Ok(Output { greeting })
}
