//! The dashboard end to end: real headless Chromium through chromedriver on
//! a node served in this process (the overview with every outcome, a failed
//! job's reason, cancelling a running job from its page, pausing a schedule,
//! the template form with a valid and an invalid context, logging in), the
//! checks every request passes (over plain HTTP), and every page on both
//! databases. The browser tests write screenshots (see `support::browser`).

use std::time::Duration;

use elihu::client::ScheduleSpec;
use elihu::model::{CatchUp, JobId};
use elihu::schedule::Rule;
use elihu::store::{JobFilter, TemplateDefaults};
use elihu::{Client, Enqueue, Event, Node};
use serde_json::json;
use thirtyfour::prelude::*;

use crate::support::browser::Browser;
use crate::support::node::*;

/// A client with a node working `default`, served on a loopback port.
async fn dashboard(db: &TestDb, token: Option<&str>) -> (Client, Node, String) {
    let client = db.client().await;
    let node = start(&client, &[("default", 4)]).await;
    let addr = serve_api(&client, Some(&node), token).await;
    (client, node, addr)
}

async fn enqueue(client: &Client, request: Enqueue) -> JobId {
    client.enqueue(request).await.expect("enqueued").id()
}

/// A running `spin` job (it loops until cancelled).
async fn running_spin(client: &Client) -> JobId {
    let mut events = client.subscribe();
    let id = enqueue(client, Enqueue::new("spin", json!({}))).await;
    next_event(&mut events, |e| matches!(e, Event::Started { job_id, .. } if *job_id == id)).await;
    id
}

fn no_retry() -> TemplateDefaults {
    defaults(1)
}

#[tokio::test]
async fn the_overview_shows_every_outcome_and_a_failed_job_its_reason() {
    let db = TestDb::new();
    let (client, node, addr) = dashboard(&db, None).await;
    push(&client, "hello", no_retry()).await;
    push(&client, "panic", no_retry()).await;
    push(&client, "spin", no_retry()).await;
    push(&client, "progress", defaults(3)).await;
    let mut events = client.subscribe();
    // Succeeded, failed (a trap), cancelled, retrying, scheduled, running.
    let ok = enqueue(&client, Enqueue::new("hello", json!({"name": "Ada"}))).await;
    assert!(matches!(final_event(&mut events, ok).await, Event::Succeeded { .. }));
    let failed = enqueue(&client, Enqueue::new("panic", json!({"message": "the disk is on fire"}))).await;
    assert!(matches!(final_event(&mut events, failed).await, Event::Failed { .. }));
    let cancelled = running_spin(&client).await;
    client.cancel(cancelled).await.unwrap();
    assert!(matches!(final_event(&mut events, cancelled).await, Event::Cancelled { .. }));
    let retrying = enqueue(&client, Enqueue::new("progress", json!({"steps": 2, "fail_after": 1}))).await;
    next_event(&mut events, |e| matches!(e, Event::Retried { job_id, .. } if *job_id == retrying)).await;
    let mut later = Enqueue::new("hello", json!({"name": "later"}));
    later.delay = Some(Duration::from_secs(3600));
    enqueue(&client, later).await;
    let running = running_spin(&client).await;

    let browser = Browser::open().await;
    browser.driver.goto(format!("http://{addr}/")).await.unwrap();
    let row = "#queues tr[data-queue=default]";
    assert_eq!(browser.text(&format!("{row} td.running")).await, "1");
    assert_eq!(browser.text(&format!("{row} td.scheduled")).await, "1");
    assert_eq!(browser.text(&format!("{row} td.retrying")).await, "1");
    assert_eq!(browser.text(&format!("{row} td.available")).await, "0");
    // Succeeded: hello; failed: panic and progress's first attempt.
    let plot = browser.attr("#throughput", "aria-label").await;
    assert!(plot.ends_with("2 succeeded, 2 failed") || plot.ends_with("1 succeeded, 2 failed"), "{plot}");
    browser.find("#p50").await;
    // The leader is elected within a maintenance pass; the page refreshes itself.
    browser.until_text(&format!("#nodes tr[data-node='{}']", node.id()), "leader").await;
    browser.screenshot("overview").await;

    browser.driver.goto(format!("http://{addr}/runs")).await.unwrap();
    let group = browser.find("#failures tr[data-template=panic][data-reason=trap]").await;
    assert!(group.text().await.unwrap().contains("the disk is on fire"), "{}", group.text().await.unwrap());
    browser.screenshot("runs").await;
    group.find(By::Css("td.message a")).await.unwrap().click().await.unwrap();
    browser.until_text("#job-status", "failed").await;
    assert_eq!(browser.text("#runs td.reason").await, "trap");
    assert!(browser.text("#runs td.message").await.contains("the disk is on fire"));
    assert!(browser.text("#context").await.contains("the disk is on fire"));
    browser.screenshot("job").await;
    // Retry: the same context again, as a new job.
    let failed_page = browser.url().await;
    browser.click("#retry").await;
    let url = browser.until_left(&failed_page).await;
    let again: i64 = url.rsplit('/').next().unwrap().parse().unwrap();
    assert_ne!(again, failed.0, "{url}");
    let run = next_event(&mut events, |e| e.job_id() == JobId(again) && e.is_final()).await;
    assert!(matches!(run, Event::Failed { .. }), "{run:?}");

    browser.driver.goto(format!("http://{addr}/jobs")).await.unwrap();
    browser.find(&format!("#jobs tr[data-job='{}']", running.0)).await;
    browser.screenshot("jobs").await;
    browser.close().await;
    client.cancel(running).await.unwrap();
    node.shutdown().await;
}

#[tokio::test]
async fn a_running_job_is_cancelled_from_its_page() {
    let db = TestDb::new();
    let (client, node, addr) = dashboard(&db, None).await;
    push(&client, "spin", no_retry()).await;
    let id = running_spin(&client).await;
    let browser = Browser::open().await;
    browser.driver.goto(format!("http://{addr}/jobs/{id}")).await.unwrap();
    browser.until_text("#job-status", "running").await;
    browser.find("#running progress").await;
    browser.click("#cancel").await;
    // The page refreshes itself until the run has ended.
    browser.until_text("#runs td.result", "cancelled").await;
    browser.until_text("#job-status", "cancelled").await;
    assert_eq!(browser.text("#runs td.reason").await, "cancelled");
    browser.close().await;
    assert!(client.job_get(id).await.unwrap().is_none(), "the cancelled job is finished");
    node.shutdown().await;
}

#[tokio::test]
async fn a_running_job_streams_its_log_to_its_page() {
    let db = TestDb::new();
    let (client, node, addr) = dashboard(&db, Some("s3cret")).await;
    push(&client, "spin", no_retry()).await;
    // Held in a paused queue until the page is watching.
    client.queue_pause("default").await.unwrap();
    let id = enqueue(&client, Enqueue::new("spin", json!({}))).await;
    let browser = Browser::open().await;
    browser.driver.goto(format!("http://{addr}/login")).await.unwrap();
    browser.find("#token").await.send_keys("s3cret").await.unwrap();
    browser.click("#login").await;
    browser.until_text("h1", "Overview").await;
    browser.driver.goto(format!("http://{addr}/jobs/{id}")).await.unwrap();
    browser.find("#live-log[data-connected]").await;
    client.queue_resume("default").await.unwrap();
    browser.until_text("#live-log", "spinning forever").await;
    browser.until_text("#job-status", "running").await;
    browser.close().await;
    client.cancel(id).await.unwrap();
    node.shutdown().await;
}

#[tokio::test]
async fn many_jobs_are_cancelled_from_the_list() {
    let db = TestDb::new();
    let client = db.client().await;
    let addr = serve_api(&client, None, None).await;
    push(&client, "hello", no_retry()).await;
    let mut ids = vec![];
    for name in ["a", "b", "c"] {
        ids.push(enqueue(&client, Enqueue::new("hello", json!({"name": name}))).await);
    }
    let browser = Browser::open().await;
    browser.driver.goto(format!("http://{addr}/jobs?q=%22b%22")).await.unwrap();
    assert_eq!(browser.driver.find_all(By::Css("#jobs tbody tr")).await.unwrap().len(), 1, "the text filter finds one job");
    browser.driver.goto(format!("http://{addr}/jobs")).await.unwrap();
    for id in &ids[..2] {
        browser.click(&format!("#jobs tr[data-job='{id}'] input[name=id]")).await;
    }
    browser.click("#cancel-selected").await;
    browser.until_text("#notice", "Cancelled 2 job(s)").await;
    browser.close().await;
    let left: Vec<JobId> = client.job_list(&JobFilter::default()).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(left, vec![ids[2]]);
}

#[tokio::test]
async fn a_schedule_is_paused_from_the_schedules_page() {
    let db = TestDb::new();
    let client = db.client().await;
    let addr = serve_api(&client, None, None).await;
    push(&client, "hello", no_retry()).await;
    let spec = ScheduleSpec {
        name: "nightly".into(),
        template: "hello".into(),
        context: json!({"name": "night"}),
        rule: Rule::from_parts(None, Some(Duration::from_secs(3600)), None).unwrap(),
        catch_up: CatchUp::default(),
    };
    client.schedule_put(spec).await.unwrap();
    let browser = Browser::open().await;
    browser.driver.goto(format!("http://{addr}/schedules")).await.unwrap();
    let row = "#schedules tr[data-schedule=nightly]";
    browser.until_text(&format!("{row} td.state"), "active").await;
    browser.screenshot("schedules").await;
    browser.click(&format!("{row} button")).await;
    browser.until_text(&format!("{row} td.state"), "paused").await;
    browser.close().await;
    assert!(client.schedule_get("nightly").await.unwrap().paused);
}

#[tokio::test]
async fn the_template_form_enqueues_and_shows_violations_at_their_fields() {
    let db = TestDb::new();
    let client = db.client().await;
    let addr = serve_api(&client, None, None).await;
    push(&client, "progress", no_retry()).await;
    let browser = Browser::open().await;
    browser.driver.goto(format!("http://{addr}/templates/progress")).await.unwrap();
    // Breaks the schema (minimum 1): refused, the message at the field, nothing enqueued.
    let steps = browser.find("input[name='c.steps']").await;
    steps.send_keys("0").await.unwrap();
    browser.click("#submit").await;
    let error = browser.find("span.error[data-field=steps]").await;
    assert!(error.text().await.unwrap().contains("less than the minimum of 1"), "{}", error.text().await.unwrap());
    assert_eq!(browser.find("input[name='c.steps']").await.value().await.unwrap().as_deref(), Some("0"), "the typed value is kept");
    assert!(client.job_list(&JobFilter::default()).await.unwrap().is_empty(), "nothing was enqueued");
    browser.screenshot("template-form").await;
    // A value that is not a number is refused before any enqueue.
    let steps = browser.find("input[name='c.steps']").await;
    steps.clear().await.unwrap();
    steps.send_keys("two").await.unwrap();
    browser.click("#submit").await;
    browser.until_text("span.error[data-field=steps]", "not a whole number").await;
    // A valid one lands on the new job's page.
    let steps = browser.find("input[name='c.steps']").await;
    steps.clear().await.unwrap();
    steps.send_keys("3").await.unwrap();
    let form_page = browser.url().await;
    browser.click("#submit").await;
    assert!(browser.until_left(&form_page).await.contains("/jobs/"));
    assert!(browser.text("#context").await.contains("\"steps\": 3"));
    browser.close().await;
    let jobs = client.job_list(&JobFilter::default()).await.unwrap();
    assert_eq!((jobs.len(), jobs[0].context.as_str()), (1, "{\"steps\":3}"));
}

#[tokio::test]
async fn with_a_token_the_dashboard_needs_a_login() {
    let db = TestDb::new();
    let client = db.client().await;
    let addr = serve_api(&client, None, Some("s3cret")).await;
    let browser = Browser::open().await;
    // Refused without it: every page sends to the login.
    browser.driver.goto(format!("http://{addr}/jobs")).await.unwrap();
    browser.find("form.login").await;
    assert!(browser.url().await.ends_with("/login"));
    browser.find("#token").await.send_keys("wrong").await.unwrap();
    browser.click("#login").await;
    browser.until_text("span.error[data-field=token]", "not this elihu's token").await;
    browser.driver.goto(format!("http://{addr}/")).await.unwrap();
    browser.find("form.login").await;
    browser.screenshot("login").await;
    // The right token: a session cookie the page's scripts cannot read.
    browser.find("#token").await.send_keys("s3cret").await.unwrap();
    browser.click("#login").await;
    browser.until_text("h1", "Overview").await;
    let cookie = browser.driver.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookie.json(), &json!(""), "the session cookie is HttpOnly");
    browser.driver.goto(format!("http://{addr}/jobs")).await.unwrap();
    browser.until_text("h1", "Jobs").await;
    assert!(!browser.url().await.contains("s3cret"));
    // Logging out ends the session.
    browser.click("form.logout button").await;
    browser.find("form.login").await;
    browser.driver.goto(format!("http://{addr}/")).await.unwrap();
    browser.find("form.login").await;
    browser.close().await;
}

/// A raw request to the dashboard: status, `Location` and body.
async fn raw(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut request = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if method == "POST" {
        request = request.header("content-type", "application/x-www-form-urlencoded").body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

/// The form token of the dashboard at `addr` (from a page that embeds it).
async fn form_token(addr: &str, headers: &[(&str, &str)]) -> String {
    let (_, _, page) = raw(addr, "GET", "/jobs", headers, "").await;
    let at = page.find("name=\"_csrf\" value=\"").expect("the page embeds the form token") + 20;
    page[at..at + 32].to_string()
}

/// Forged POSTs are refused and change nothing; without a token only a
/// loopback Host is served; with one, pages without a session go to the
/// login and actions are refused.
#[tokio::test]
async fn forged_requests_are_refused() {
    let db = TestDb::new();
    let client = db.client().await;
    push(&client, "hello", no_retry()).await;
    let id = enqueue(&client, Enqueue::new("hello", json!({"name": "kept"}))).await;
    let addr = serve_api(&client, None, None).await;
    let cancel = format!("/jobs/{id}/cancel");
    let (status, _, body) = raw(&addr, "POST", &cancel, &[], "").await;
    assert_eq!(status, 403, "no form token: {body}");
    let csrf = form_token(&addr, &[]).await;
    let (status, _, _) = raw(&addr, "POST", &cancel, &[("origin", "http://evil.example")], &format!("_csrf={csrf}")).await;
    assert_eq!(status, 403, "another origin");
    let (status, _, _) = raw(&addr, "POST", &cancel, &[("sec-fetch-site", "cross-site")], &format!("_csrf={csrf}")).await;
    assert_eq!(status, 403, "a cross-site form");
    let (status, _, _) = raw(&addr, "GET", "/", &[("host", "rebound.example:80")], "").await;
    assert_eq!(status, 403, "a Host that is not loopback");
    // The API too: a page of another site cannot change anything through it.
    let api_cancel = format!("/v1/jobs/{id}/cancel");
    let (status, _, body) = raw(&addr, "POST", &api_cancel, &[("origin", "http://evil.example")], "").await;
    assert_eq!(status, 403, "the API from another origin: {body}");
    assert!(body.contains("another site"), "{body}");
    let (status, _, _) = raw(&addr, "POST", "/v1/jobs", &[("sec-fetch-site", "cross-site"), ("content-type", "text/plain")], r#"{"template":"hello","context":{"name":"x"}}"#).await;
    assert_eq!(status, 403, "a cross-site form posting to the API");
    assert_eq!(client.job_list(&JobFilter::default()).await.unwrap().len(), 1, "nothing was enqueued");
    assert!(client.job_get(id).await.unwrap().is_some(), "nothing was cancelled");
    let (status, location, _) = raw(&addr, "POST", &cancel, &[], &format!("_csrf={csrf}")).await;
    assert_eq!((status, location.as_str()), (303, format!("/jobs/{id}").as_str()));
    assert!(client.job_get(id).await.unwrap().is_none(), "our own form cancels");

    let guarded = serve_api(&client, None, Some("s3cret")).await;
    let (status, location, _) = raw(&guarded, "GET", "/", &[], "").await;
    assert_eq!((status, location.as_str()), (303, "/login"));
    let (status, _, _) = raw(&guarded, "POST", "/jobs/cancel", &[], "").await;
    assert_eq!(status, 401);
    let (status, _, _) = raw(&guarded, "GET", "/", &[("cookie", "elihu_session=s3cret")], "").await;
    assert_eq!(status, 303, "the token itself is not a session");
    let (status, _, _) = raw(&guarded, "GET", "/", &[("authorization", "Bearer s3cret")], "").await;
    assert_eq!(status, 200, "the bearer token works as for the API");
}

/// Every page renders on both databases (their queries are the dashboard's own).
async fn every_page_renders(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (client, node, addr) = dashboard(&db, None).await;
    push(&client, "hello", no_retry()).await;
    push(&client, "panic", no_retry()).await;
    let mut events = client.subscribe();
    let ok = enqueue(&client, Enqueue::new("hello", json!({"name": "Ada"}))).await;
    final_event(&mut events, ok).await;
    let failed = enqueue(&client, Enqueue::new("panic", json!({"message": "boom"}))).await;
    final_event(&mut events, failed).await;
    // `escape` tries the network; its template grants nothing, so its calls
    // are refused, and the job page lists them from the run's audit.
    push(&client, "escape", no_retry()).await;
    let escape = enqueue(&client, Enqueue::new("escape", json!({"url": "http://127.0.0.1:9/nothing"}))).await;
    final_event(&mut events, escape).await;
    let pages = [
        ("/".to_string(), "p50"),
        ("/jobs?state=available&template=hello&queue=default&q=x".to_string(), "No queued or running job"),
        (format!("/jobs/{failed}"), "boom"),
        (format!("/jobs/{ok}"), "Hello, Ada!"),
        (format!("/jobs/{escape}"), "Outbound calls of attempt 1"),
        ("/runs".to_string(), "boom"),
        ("/templates".to_string(), "hello"),
        ("/templates/hello".to_string(), "Who to greet."),
        ("/schedules".to_string(), "No schedule yet"),
        ("/nodes".to_string(), "leader"),
    ];
    for (path, text) in pages {
        let (status, _, body) = raw(&addr, "GET", &path, &[], "").await;
        assert_eq!(status, 200, "{path}: {body}");
        if path == "/nodes" {
            // The leader is elected within a maintenance pass.
            crate::support::process::until("a leader", || async { raw(&addr, "GET", "/nodes", &[], "").await.2.contains("leader") }).await;
        } else {
            assert!(body.contains(text), "{path} lacks `{text}`: {body}");
        }
    }
    let (_, _, body) = raw(&addr, "GET", &format!("/jobs/{escape}"), &[], "").await;
    assert!(body.contains("badge refused") && body.contains("<code>http://127.0.0.1:9/nothing</code>"), "the refused call is listed: {body}");
    // Every pushed version is listed with its digest, newest first; a
    // deleted template's versions go with it.
    let rows = |body: &str| -> Vec<String> {
        let table = body.split("id=\"versions\"").nth(1).and_then(|t| t.split("</table>").next()).unwrap_or_default();
        table.split("<code>").skip(1).map(|c| c.split("</code>").next().unwrap().to_string()).collect()
    };
    let one = push_as(&client, "versioned", "version", no_retry()).await;
    client.template_delete("versioned", false).await.unwrap();
    let first = push_as(&client, "versioned", "version", no_retry()).await;
    let second = push_as(&client, "versioned", "version-2", no_retry()).await;
    assert_eq!((one.version, first.version, second.version), (1, 1, 2));
    let (status, _, body) = raw(&addr, "GET", "/templates/versioned", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(&body), [second.digest.as_str(), first.digest.as_str()], "{body}");
    assert_ne!(first.digest, second.digest);
    let (status, _, body) = raw(&addr, "GET", "/jobs/999999", &[], "").await;
    assert_eq!(status, 404, "{body}");
    node.shutdown().await;
}

on_both_backends!(every_page_renders);
