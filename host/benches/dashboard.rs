//! How long each dashboard page takes to render on a big database:
//! 1,000,000 jobs and 1,000,000 runs (filled in bulk with SQL), served
//! in-process and fetched over loopback HTTP; the first fetch (cold) and
//! the median and maximum of the next ten. Not a test: the figures go to
//! docs/benchmarks.md.
//!
//! ```text
//! cargo bench -p elihu --bench dashboard                      # SQLite in a temp dir
//! ELIHU_BENCH_DB=postgres://postgres@127.0.0.1:5432/bench \
//!     cargo bench -p elihu --bench dashboard                  # PostgreSQL
//! ELIHU_BENCH_ROWS=100000 ...                                 # another size
//! ```
//! A database that already holds the rows (same URL) is reused as it is.

use std::time::{Duration, Instant};

use elihu::api::{ApiState, router};
use elihu::store::TemplateDefaults;
use elihu::{Client, ClientOptions};

const TEMPLATES: i64 = 20;
const QUEUES: i64 = 5;
const TIMED: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: i64 = std::env::var("ELIHU_BENCH_ROWS").ok().map(|r| r.parse()).transpose()?.unwrap_or(1_000_000);
    let temp = tempfile::tempdir()?;
    let url = std::env::var("ELIHU_BENCH_DB").unwrap_or_else(|_| temp.path().join("bench.db").display().to_string());
    let postgres = url.starts_with("postgres");
    let client = Client::open(&url, ClientOptions::default()).await?;
    let now = client.clock().now().0;
    let existing = client.store().views().job_max_id().await?;
    if existing < rows {
        let started = Instant::now();
        fill(&client, &url, postgres, rows, now).await?;
        eprintln!("filled {rows} jobs and {rows} runs in {:.1} s", started.elapsed().as_secs_f64());
    } else {
        eprintln!("reusing the {existing} jobs already in {url}");
    }

    let state = ApiState { client: client.clone(), node: None, token: None };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let http = reqwest::Client::new();
    let mid = rows / 2;
    let pages = [
        "/".to_string(),
        "/jobs".to_string(),
        format!("/jobs?before={}", rows * 3 / 10),
        "/jobs?state=running".to_string(),
        "/jobs?template=tpl3&queue=q3".to_string(),
        "/jobs?q=no-such-text".to_string(),
        format!("/jobs/{mid}"),
        format!("/jobs/{}", rows + 10),
        "/runs".to_string(),
        "/templates".to_string(),
        "/templates/tpl1".to_string(),
        "/schedules".to_string(),
        "/nodes".to_string(),
    ];
    println!("| page | cold | median of {TIMED} | max |");
    println!("|---|---:|---:|---:|");
    for page in &pages {
        let mut times = Vec::new();
        for _ in 0..=TIMED {
            let started = Instant::now();
            let response = http.get(format!("http://{addr}{page}")).send().await?;
            let status = response.status();
            response.text().await?;
            times.push(started.elapsed());
            anyhow::ensure!(status.is_success() || status.as_u16() == 404, "{page} answered {status}");
        }
        let cold = times.remove(0);
        times.sort();
        println!("| `{page}` | {} | {} | {} |", ms(cold), ms(times[TIMED / 2]), ms(times[TIMED - 1]));
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// 20 templates; `rows` jobs over 5 queues (15% scheduled, 5% retrying, 1 in
/// 1,000 running) and `rows` runs over the last 7 days (90% succeeded, 9%
/// failed with 4 reasons, 1% cancelled).
async fn fill(client: &Client, url: &str, postgres: bool, rows: i64, now: i64) -> anyhow::Result<()> {
    let hello = elihu::examples::get("hello").expect("the hello example");
    let schema = serde_json::from_str(hello.schema.expect("hello has a schema"))?;
    let mut digest = String::new();
    for t in 0..TEMPLATES {
        let defaults = TemplateDefaults { queue: format!("q{}", t % QUEUES), ..TemplateDefaults::default() };
        digest = client.template_push(&format!("tpl{t}"), hello.wasm, &schema, &defaults, &Default::default()).await?.digest.as_str().to_string();
    }
    let series = if postgres {
        format!("generate_series(1::bigint, {rows}) AS s(i)")
    } else {
        format!("(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) SELECT i FROM s) AS s")
    };
    let jobs = format!(
        "INSERT INTO jobs (template, context, queue, priority, run_at, state, attempt, max_attempts, timeout_ms, memory_bytes,
                           current_run, node_id, created_at)
         SELECT 'tpl' || (i % {TEMPLATES}), '{{\"name\":\"n' || i || '\"}}', 'q' || (i % {TEMPLATES} % {QUEUES}), i % 3,
                CASE WHEN i % 100 < 20 THEN {now} + 3600000 ELSE {now} - 1000 END,
                CASE WHEN i % 1000 = 999 THEN 'running' ELSE 'available' END,
                CASE WHEN i % 100 < 5 OR i % 1000 = 999 THEN 1 ELSE 0 END, 3, 30000, 67108864,
                CASE WHEN i % 1000 = 999 THEN i ELSE NULL END,
                CASE WHEN i % 1000 = 999 THEN 'bench-node' ELSE NULL END,
                {now} - 60000
         FROM {series}"
    );
    let runs = format!(
        "INSERT INTO runs (job_id, template, attempt, max_attempts, node_id, digest, status, result, reason, message,
                           output, started_at, finished_at, expires_at)
         SELECT i, 'tpl' || (i % {TEMPLATES}), 1, 3, 'bench-node', '{digest}', 'done',
                CASE WHEN i % 100 < 90 THEN 'succeeded' WHEN i % 100 < 99 THEN 'failed' ELSE 'cancelled' END,
                CASE WHEN i % 100 < 90 THEN NULL WHEN i % 100 = 99 THEN 'cancelled'
                     WHEN i % 4 = 0 THEN 'error' WHEN i % 4 = 1 THEN 'timeout' WHEN i % 4 = 2 THEN 'trap' ELSE 'memory' END,
                CASE WHEN i % 100 < 90 THEN NULL ELSE 'failure number ' || i END,
                CASE WHEN i % 100 < 90 THEN '{{\"greeting\":\"Hi\"}}' ELSE NULL END,
                {now} - ({rows} - i) * 604800000 / {rows} - 500, {now} - ({rows} - i) * 604800000 / {rows} - (i % 400), {now}
         FROM {series}"
    );
    if postgres {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
        sqlx::query(&jobs).execute(&mut db).await?;
        sqlx::query(&runs).execute(&mut db).await?;
        sqlx::query("ANALYZE").execute(&mut db).await?;
    } else {
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(url).await?;
        sqlx::query(&jobs).execute(&mut db).await?;
        sqlx::query(&runs).execute(&mut db).await?;
    }
    Ok(())
}
