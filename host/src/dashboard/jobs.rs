//! Jobs: the list (filters by state, template, queue and text in the
//! context; keyset pages newest first, scanning a bounded window of ids;
//! select many and cancel) and the job page (context, checkpoint, every run
//! as a timeline, progress and the log live while running, output, the
//! stored log and each run's outbound calls; cancel, run now,
//! and retry of a finished failed job with the same context).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Failure, JOB_WINDOW, Live, Shell, ago, at, badge, csrf_field, form, given, json_block, see_other, span, thousands};
use crate::api::ApiState;
use crate::client::Enqueue;
use crate::model::{JobId, RunResult};
use crate::store::{Job, JobPageQuery, JobState, Run, RunStatus};

/// Jobs per page.
const PAGE: i64 = 50;

/// The list's filters and cursor, as the query string carries them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
    template: Option<String>,
    queue: Option<String>,
    q: Option<String>,
    before: Option<i64>,
    cancelled: Option<u32>,
}

impl ListQuery {
    /// This query string with another cursor.
    fn with_before(&self, before: i64) -> String {
        let mut pairs = vec![];
        for (k, v) in [("state", &self.state), ("template", &self.template), ("queue", &self.queue), ("q", &self.q)] {
            if let Some(v) = given(v) {
                pairs.push((k, v));
            }
        }
        pairs.push(("before", before.to_string()));
        format!("/jobs?{}", serde_html_form::to_string(&pairs).unwrap_or_default())
    }
}

/// `GET /jobs`.
pub(crate) async fn list(State(state): State<ApiState>, shell: Shell, Query(q): Query<ListQuery>) -> Result<Response, Failure> {
    let wanted_state = given(&q.state);
    if let Some(s) = &wanted_state
        && JobState::parse(s).is_none()
    {
        return Err(Failure::bad_request(format!("state `{s}` is not one of available, running")));
    }
    let views = state.client.store().views();
    let before = match q.before {
        Some(b) => b,
        None => views.job_max_id().await? + 1,
    };
    let floor = (before - JOB_WINDOW).max(0);
    let mut jobs = views
        .job_page(&JobPageQuery {
            state: wanted_state.clone(),
            template: given(&q.template),
            queue: given(&q.queue),
            text: given(&q.q),
            before,
            floor,
            limit: PAGE + 1,
        })
        .await?;
    let more = jobs.len() as i64 > PAGE;
    jobs.truncate(PAGE as usize);
    let now = state.client.clock().now();
    let templates = state.client.template_list().await?;
    let main = html! {
        h1 { "Jobs" }
        form.filters method="get" action="/jobs" {
            label { "state " select name="state" {
                option value="" { "any" }
                @for s in ["available", "running"] { option value=(s) selected[wanted_state.as_deref() == Some(s)] { (s) } }
            } }
            label { "template " select name="template" {
                option value="" { "any" }
                @for t in &templates { option value=(t.name) selected[given(&q.template).as_deref() == Some(t.name.as_str())] { (t.name) } }
            } }
            label { "queue " input type="text" name="queue" value=[given(&q.queue)] size="10"; }
            label { "context contains " input type="search" name="q" value=[given(&q.q)] size="16"; }
            button type="submit" { "Filter" }
        }
        @if let Some(n) = q.cancelled { p.notice #notice { "Cancelled " (n) " job(s)." } }
        form method="post" action="/jobs/cancel" {
            (csrf_field())
            table #jobs {
                thead { tr {
                    th { input #select-all type="checkbox" aria-label="select all"; }
                    th.num { "id" } th { "template" } th { "queue" } th { "state" } th.num { "attempt" } th { "run at" } th { "context" }
                } }
                tbody {
                    @for j in &jobs {
                        tr data-job=(j.id) {
                            td { input type="checkbox" name="id" value=(j.id) aria-label={ "select job " (j.id) }; }
                            td.num { a href={ "/jobs/" (j.id) } { (j.id) } }
                            td { (j.template) }
                            td { (j.queue) }
                            td { (badge(state_of(j))) }
                            td.num { (j.attempt) "/" (j.max_attempts) }
                            td title=(at(j.run_at)) { (ago(now, j.run_at)) }
                            td.context { code { (short(&j.context, 80)) } }
                        }
                    }
                }
            }
            @if jobs.is_empty() { p.empty { "No queued or running job matches among ids " (thousands(floor)) "–" (thousands(before - 1)) "." } }
            p.actions {
                button #cancel-selected type="submit" { "Cancel selected" }
                " "
                @if more {
                    a.next href=(q.with_before(jobs.last().map_or(before, |j| j.id.0))) { "Older →" }
                } @else if floor > 0 {
                    "Searched ids " (thousands(floor)) "–" (thousands(before - 1)) ". "
                    a.next href=(q.with_before(floor)) { "Search older →" }
                }
                " " a href="/jobs" { "Newest" }
            }
        }
        p.note { "Finished jobs are not listed: their history is under their runs (a job's page keeps it)." }
    };
    Ok(shell.page(StatusCode::OK, "jobs", Live::No, main))
}

fn state_of(job: &Job) -> &'static str {
    match job.state {
        JobState::Running if job.cancel_requested => "cancelling",
        JobState::Running => "running",
        JobState::Available if job.attempt > 0 => "retrying",
        JobState::Available => "available",
    }
}

fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[derive(Deserialize)]
struct Selected {
    #[serde(default)]
    id: Vec<i64>,
}

/// `POST /jobs/cancel`: cancels every selected job.
pub(crate) async fn cancel_many(State(state): State<ApiState>, body: Bytes) -> Result<Response, Failure> {
    let selected: Selected = form(&body)?;
    let mut cancelled = 0;
    for id in selected.id {
        if state.client.cancel(JobId(id)).await? != crate::store::CancelOutcome::NotFound {
            cancelled += 1;
        }
    }
    Ok(see_other(&format!("/jobs?cancelled={cancelled}")))
}

/// What the job page shows.
struct JobView {
    id: JobId,
    job: Option<Job>,
    /// Oldest first.
    runs: Vec<Run>,
    /// The context: the job's, or the one kept with its final failure.
    context: Option<String>,
}

async fn read(state: &ApiState, id: JobId) -> Result<JobView, Failure> {
    let job = state.client.job_get(id).await?;
    let runs = state.client.store().views().job_runs(id, 100).await?;
    if job.is_none() && runs.is_empty() {
        return Err(Failure::not_found(format!("there is no job {id}: it never existed, or its runs were pruned")));
    }
    let context = match (&job, runs.last()) {
        (Some(job), _) => Some(job.context.clone()),
        (None, Some(last)) => state.client.store().views().run_context(last.id).await?,
        (None, None) => None,
    };
    Ok(JobView { id, job, runs, context })
}

fn finished_failed(view: &JobView) -> bool {
    view.job.is_none() && view.runs.last().is_some_and(|r| r.result == Some(RunResult::Failed)) && view.context.is_some()
}

fn render(view: &JobView, now: crate::model::Millis, can_run: bool, error: Option<&str>) -> Markup {
    let id = view.id;
    let template = view.job.as_ref().map(|j| j.template.clone()).or_else(|| view.runs.last().map(|r| r.template.clone()));
    let status = match (&view.job, view.runs.last()) {
        (Some(job), _) => state_of(job),
        (None, Some(run)) => run.result.map_or("finished", RunResult::as_str),
        (None, None) => "gone",
    };
    let running = view.runs.iter().find(|r| r.status == RunStatus::Running);
    let last_done = view.runs.iter().rev().find(|r| r.status == RunStatus::Done);
    let checkpoint = view.job.as_ref().and_then(|j| j.checkpoint.clone()).or_else(|| view.runs.last().and_then(|r| r.checkpoint.clone()));
    html! {
        h1 { "Job " (id) " " span #job-status { (badge(status)) } }
        @if let Some(error) = error { p.error #action-error { (error) } }
        dl.facts {
            @if let Some(t) = &template { dt { "template" } dd { a href={ "/templates/" (t) } { (t) } } }
            @if let Some(job) = &view.job {
                dt { "queue" } dd { (job.queue) }
                dt { "priority" } dd { (job.priority) }
                dt { "attempts" } dd { (job.attempt) " of " (job.max_attempts) }
                dt { "run at" } dd { (at(job.run_at)) " (" (ago(now, job.run_at)) ")" }
                dt { "enqueued" } dd { (at(job.created_at)) }
                @if let Some(key) = &job.unique_key { dt { "unique key" } dd { (key) } }
            }
        }
        div.actions {
            @if view.job.is_some() {
                form method="post" action={ "/jobs/" (id) "/cancel" } {
                    (csrf_field()) button #cancel type="submit" { "Cancel" }
                }
            }
            @if can_run && view.job.as_ref().is_some_and(|j| j.state == JobState::Available) {
                form method="post" action={ "/jobs/" (id) "/run" } {
                    (csrf_field()) button #run-now type="submit" { "Run now" }
                }
            }
            @if finished_failed(view) {
                form method="post" action={ "/jobs/" (id) "/retry" } {
                    (csrf_field()) button #retry type="submit" { "Retry" }
                }
            }
        }
        @if let Some(run) = running {
            section #running {
                h2 { "Running: attempt " (run.attempt) " on " (run.node_id) }
                @let p = run.progress.as_ref();
                progress #progress max="100" value=(p.map_or(0, |p| p.percent)) { (p.map_or(0, |p| p.percent)) "%" }
                " " span #progress-message { @if let Some(p) = p { (p.percent) "% " (p.message) } }
            }
        }
        @if view.job.is_some() {
            // Filled by the page's script from `GET /v1/events?job=ID` while
            // the page is open; the stored log replaces it when the run ends.
            h2 { "Live log" }
            pre #live-log data-job=(id) {}
        }
        h2 { "Runs" }
        @if view.runs.is_empty() { p.empty { "No run yet." } } @else {
            table #runs {
                thead { tr { th.num { "attempt" } th { "node" } th { "digest" } th { "result" } th { "reason" } th { "started" } th.num { "duration" } th { "message" } } }
                tbody {
                    @for r in &view.runs {
                        tr data-run=(r.id) {
                            td.num { (r.attempt) "/" (r.max_attempts) }
                            td { (r.node_id) }
                            td title=(r.digest.as_str()) { code { (r.digest.short()) } }
                            td.result { @match r.result { Some(result) => (badge(result.as_str())), None => (badge("running")) } }
                            td.reason { @if let Some(reason) = r.reason { (reason.as_str()) } }
                            td title=(at(r.started_at)) { (ago(now, r.started_at)) }
                            td.num { (span(r.finished_at.unwrap_or(now).0 - r.started_at.0)) }
                            td.message { @if let Some(m) = &r.message { (m) } }
                        }
                    }
                }
            }
        }
        @for r in view.runs.iter().filter(|r| !r.calls.is_empty()) {
            h2 { "Outbound calls of attempt " (r.attempt) }
            table.calls data-run=(r.id) {
                thead { tr { th.num { "at" } th { "method" } th { "target" } th { "outcome" } th.num { "sent" } th.num { "received" } th.num { "duration" } } }
                tbody {
                    @for c in &r.calls {
                        tr {
                            td.num { (span(c.at_ms as i64)) }
                            td { (c.method) }
                            td { code { (c.target) } }
                            td.outcome {
                                @if let Some(denied) = &c.denied { (badge("refused")) " " (denied) }
                                @else if let Some(error) = &c.error { (badge("failed")) " " (error) }
                                @else if let Some(status) = c.status { (status) }
                            }
                            td.num { @if let Some(n) = c.bytes_sent { (n) } }
                            td.num { @if let Some(n) = c.bytes_received { (n) } }
                            td.num { (span(c.duration_ms as i64)) }
                        }
                    }
                }
            }
        }
        @if let Some(context) = &view.context { h2 { "Context" } (json_block("context", context)) }
        @if let Some(cp) = &checkpoint { h2 { "Checkpoint" } (json_block("checkpoint", cp)) }
        @if let Some(run) = last_done {
            @if let Some(output) = &run.output { h2 { "Output" } (json_block("output", output)) }
            @if !run.logs.is_empty() {
                h2 { "Log of attempt " (run.attempt) }
                pre #log { @for line in run.logs.iter().rev().take(200).collect::<Vec<_>>().into_iter().rev() {
                    (line.level.as_str()) " " (line.message) "\n"
                } }
            }
        }
    }
}

async fn show(state: &ApiState, shell: &Shell, id: JobId, status: StatusCode, error: Option<&str>) -> Result<Response, Failure> {
    let view = read(state, id).await?;
    let live = if view.job.is_some() { Live::Every(1000) } else { Live::No };
    let main = render(&view, state.client.clock().now(), state.node.is_some(), error);
    Ok(shell.page(status, &format!("job {id}"), live, main))
}

/// `GET /jobs/{id}`.
pub(crate) async fn page(State(state): State<ApiState>, shell: Shell, Path(id): Path<i64>) -> Result<Response, Failure> {
    show(&state, &shell, JobId(id), StatusCode::OK, None).await
}

/// `POST /jobs/{id}/cancel`.
pub(crate) async fn cancel(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Response, Failure> {
    state.client.cancel(JobId(id)).await?;
    Ok(see_other(&format!("/jobs/{id}")))
}

/// `POST /jobs/{id}/run`: runs a waiting job on this node now.
pub(crate) async fn run_now(State(state): State<ApiState>, shell: Shell, Path(id): Path<i64>) -> Result<Response, Failure> {
    let Some(node) = &state.node else {
        return show(&state, &shell, JobId(id), StatusCode::CONFLICT, Some("run now needs a node; this server runs none")).await;
    };
    if !node.run_now(JobId(id)).await? {
        return show(&state, &shell, JobId(id), StatusCode::CONFLICT, Some("the job is not waiting (it runs already, or it is finished)")).await;
    }
    Ok(see_other(&format!("/jobs/{id}")))
}

/// `POST /jobs/{id}/retry`: enqueues a finished failed job again with its context.
pub(crate) async fn retry(State(state): State<ApiState>, shell: Shell, Path(id): Path<i64>) -> Result<Response, Failure> {
    let view = read(&state, JobId(id)).await?;
    let (Some(run), Some(context), true) = (view.runs.last(), &view.context, finished_failed(&view)) else {
        return show(&state, &shell, JobId(id), StatusCode::CONFLICT, Some("only a finished job whose last run failed can be retried")).await;
    };
    let context = serde_json::from_str(context).map_err(|e| Failure::bad_request(format!("the stored context is not JSON: {e}")))?;
    let inserted = match state.client.enqueue(Enqueue::new(run.template.clone(), context)).await {
        Ok(inserted) => inserted,
        Err(e) => return show(&state, &shell, JobId(id), StatusCode::UNPROCESSABLE_ENTITY, Some(&e.to_string())).await,
    };
    Ok(see_other(&format!("/jobs/{}", inserted.id())))
}
