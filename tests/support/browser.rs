//! Headless Chromium for the dashboard tests, driven through chromedriver
//! (Debian's `chromium` and `chromium-driver`) with thirtyfour. One
//! chromedriver per test process on a free loopback port, stopped by a
//! watchdog when the process exits; one browser session per test with its
//! own profile, at most two at a time (each Chromium is a few hundred MB and
//! a core's worth of start-up).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a wait for the page lasts, and how often it looks.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

const INSTALL: &str = "the dashboard's browser tests need Chromium and chromedriver: \
                       apt-get install chromium chromium-driver (or set ELIHU_TEST_CHROMEDRIVER to a chromedriver)";

/// A program on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The port of this process's chromedriver; panics with what to install when there is none.
fn chromedriver() -> u16 {
    static PORT: OnceLock<Result<u16, String>> = OnceLock::new();
    let port = PORT.get_or_init(|| {
        let driver = std::env::var_os("ELIHU_TEST_CHROMEDRIVER").map(PathBuf::from).or_else(|| on_path("chromedriver"));
        let browser = on_path("chromium").or_else(|| on_path("chromium-browser")).or_else(|| on_path("google-chrome"));
        let (Some(driver), Some(_)) = (driver, browser) else { return Err(INSTALL.to_string()) };
        let port = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?.local_addr().unwrap().port();
        let mut child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}; {INSTALL}", driver.display()))?;
        // Ready when it says so (it prints the line once it listens).
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("started successfully") => break,
                Some(Ok(_)) => {}
                _ => return Err(format!("chromedriver exited before it was ready; {INSTALL}")),
            }
        }
        // Drain its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let script = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; kill {}", std::process::id(), child.id());
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting chromedriver's watchdog: {e}"))?;
        Ok(port)
    });
    match port {
        Ok(port) => *port,
        Err(why) => panic!("{why}"),
    }
}

/// A browser session; call [`Browser::close`] at the end of the test.
pub struct Browser {
    pub driver: WebDriver,
    _profile: tempfile::TempDir,
    _permit: SemaphorePermit<'static>,
}

impl Browser {
    /// A fresh headless Chromium with an empty profile.
    pub async fn open() -> Browser {
        static SESSIONS: Semaphore = Semaphore::const_new(2);
        let port = chromedriver();
        let permit = SESSIONS.acquire().await.expect("the session semaphore is never closed");
        let profile = tempfile::tempdir().expect("temp dir");
        let mut caps = DesiredCapabilities::chrome();
        for arg in [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ] {
            caps.add_arg(arg).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display())).unwrap();
        let driver = WebDriver::new(format!("http://127.0.0.1:{port}"), caps).await.unwrap_or_else(|e| panic!("a Chromium session: {e}; {INSTALL}"));
        driver.set_implicit_wait_timeout(Duration::ZERO).await.unwrap();
        Browser { driver, _profile: profile, _permit: permit }
    }

    /// The first element matching `css`, waiting for it (up to 30 s).
    pub async fn find(&self, css: &str) -> WebElement {
        let found = self
            .driver
            .query(By::Css(css))
            .wait(WAIT, POLL)
            .first()
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!("no `{css}` on {}: {e}", self.url().await),
        }
    }

    /// The text of the first element matching `css`, waiting for one (up to 30 s).
    pub async fn text(&self, css: &str) -> String {
        self.wait(css, None).await
    }

    /// Waits (up to 30 s) until an element matching `css` contains `text`; its text.
    pub async fn until_text(&self, css: &str, text: &str) -> String {
        self.wait(css, Some(text)).await
    }

    /// An attribute of the first element matching `css`, waiting for one.
    pub async fn attr(&self, css: &str, name: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            // A live page replaces its elements while we read them: read again.
            if let Ok(Some(value)) = self.find(css).await.attr(name).await {
                return value;
            }
            assert!(Instant::now() < deadline, "no `{css}` with `{name}` on {}", self.url().await);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Clicks the first element matching `css` (again, if a live page
    /// replaced it before the click landed).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline && e.to_string().contains("stale") => {}
                Err(e) => panic!("clicking `{css}` on {}: {e}", self.url().await),
            }
        }
    }

    /// A WebDriver wait: polls the page until an element matching `css`
    /// (with `text` in it, if given) is there.
    async fn wait(&self, css: &str, text: Option<&str>) -> String {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            // Elements a live refresh replaced mid-read are stale: skip them and look again.
            for element in self.driver.find_all(By::Css(css)).await.unwrap_or_default() {
                if let Ok(t) = element.text().await {
                    if text.is_none_or(|text| t.contains(text)) {
                        return t;
                    }
                    seen.push(t);
                }
            }
            if Instant::now() > deadline {
                panic!("no `{css}` containing `{}` on {} within {WAIT:?}; saw {seen:?}", text.unwrap_or(""), self.url().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the page's address is no longer `from` (a form took us on); the new one.
    pub async fn until_left(&self, from: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if url != from {
                return url;
            }
            assert!(Instant::now() < deadline, "still on {from} after {WAIT:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// The page's address now.
    pub async fn url(&self) -> String {
        self.driver.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// Saves a screenshot as `NAME.png`: under `docs/screenshots/` (the
    /// README's) when `ELIHU_UPDATE_SCREENSHOTS=1`, else under the target dir.
    pub async fn screenshot(&self, name: &str) {
        let dir = if std::env::var("ELIHU_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            super::polyglot::repo().join("docs").join("screenshots")
        } else {
            super::polyglot::target_dir().join("screenshots")
        };
        std::fs::create_dir_all(&dir).unwrap();
        self.driver.screenshot(&dir.join(format!("{name}.png"))).await.expect("a screenshot");
    }

    /// Ends the session.
    pub async fn close(self) {
        self.driver.quit().await.expect("the session ends");
    }
}
