//! A real headless Chromium for the sign-in tests, driven over WebDriver, and the "client
//! application" a redirect URI points at.
//!
//! Chromium and chromedriver are Debian's packages (`hack/tools/chromium.sh` installs
//! them), so the driver always matches the browser. Everything stays on loopback: the
//! machine's network may be closed, and a test must not depend on it.

use std::fs::File;
use std::future::Future;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use axum::extract::{RawQuery, State};
use axum::response::Html;
use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long one step (finding an element, a page load, a click) may take. Generous: the
/// tests share two cores with a control plane and several servers.
const STEP: Duration = Duration::from_millis(STEP_MS);
const STEP_MS: u64 = 20_000;

/// Chromium's flags. Headless, and quiet on the network: without the background and
/// component flags Chromium keeps calling Google's services (and, on a closed network,
/// retrying refused connections); the resolver rule answers every name but 127.0.0.1
/// with "not found" at once, so nothing waits on DNS. No sandbox, because the tests may
/// run as root or in a container without user namespaces; no /dev/shm, which containers
/// keep small.
const FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];

/// A headless Chromium with its own chromedriver and a fresh profile: no cookie or cache
/// survives from one test to the next.
pub struct Browser {
    client: Client,
    /// Dropped after the client: kills chromedriver and Chromium.
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session in a new Chromium.
    pub async fn start() -> anyhow::Result<Self> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            ensure!(
                Path::new(bin).exists(),
                "{bin} is missing: run hack/tools/chromium.sh"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("oauth-operator-chromium-")
            .tempdir()?;
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromedriver.log");
        let port = envtest::free_port()?;
        let out = File::create(&log).with_context(|| log.display().to_string())?;
        // As envtest does for the control plane: under `setpriv --pdeathsig`, a test
        // binary killed by a signal takes chromedriver with it.
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut cmd = if setpriv.exists() {
            let mut c = Command::new(setpriv);
            c.arg("--pdeathsig=KILL").arg("--").arg(CHROMEDRIVER);
            c
        } else {
            Command::new(CHROMEDRIVER)
        };
        let driver = cmd
            .arg(format!("--port={port}"))
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            // Its own group, so that drop can kill Chromium's processes along with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting chromedriver")?;
        // From here on, a failed start kills it.
        let mut driver = Driver {
            child: driver,
            _dir: dir,
        };
        let url = format!("http://127.0.0.1:{port}");
        driver.wait_ready(&url, &log).await?;

        let mut chrome_options = json!({ "binary": CHROMIUM, "args": FLAGS });
        chrome_options["args"]
            .as_array_mut()
            .context("args")?
            .push(format!("--user-data-dir={}", profile.display()).into());
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome_options,
            // A page that never finishes loading fails the step instead of the whole test.
            "timeouts": { "pageLoad": STEP_MS, "script": STEP_MS, "implicit": 0 },
        });
        let capabilities = capabilities.as_object().cloned().context("capabilities")?;
        // Chromium's first start on a busy machine is the slow part.
        let mut builder = ClientBuilder::rustls()
            .context("fantoccini's HTTP client (it loads the system's root certificates)")?;
        builder.capabilities(capabilities);
        let connect = builder.connect(&url);
        let client = match tokio::time::timeout(Duration::from_secs(60), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => bail!(
                "opening a Chromium session: {e}; chromedriver says: {}",
                read(&log)
            ),
            Err(_) => bail!(
                "opening a Chromium session: no answer within 60 s; chromedriver says: {}",
                read(&log)
            ),
        };
        Ok(Browser {
            client,
            _driver: driver,
        })
    }

    /// Ends the session (chromedriver then quits Chromium), then stops chromedriver.
    pub async fn close(self) -> anyhow::Result<()> {
        let client = self.client.clone();
        step("closing the session", client.close()).await
    }

    /// Loads `url` and waits until the page has loaded, as a user typing it would. A page
    /// Chromium could not load (refused, not found) is an error here: WebDriver reports
    /// its error page as loaded, and the test would fail later, further from the cause.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        let what = format!("loading {url}");
        step(&what, self.client.goto(url)).await?;
        let document = step(&what, self.client.execute("return document.URL", vec![])).await?;
        if document
            .as_str()
            .is_some_and(|d| d.starts_with("chrome-error:"))
        {
            let text = self.text().await.unwrap_or_default();
            bail!("{what}: Chromium shows its error page: {text}");
        }
        Ok(())
    }

    /// The address bar's URL.
    pub async fn current_url(&self) -> anyhow::Result<String> {
        let url = step("reading the current URL", self.client.current_url()).await?;
        Ok(url.into())
    }

    /// Waits until the URL satisfies `done` (described by `what`) and returns it: after a
    /// click or a submit, WebDriver does not wait for the redirects that follow.
    pub async fn wait_for_url(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            // A read during a navigation may fail; only the last one counts.
            let last = self.current_url().await;
            if let Ok(url) = &last
                && done(url)
            {
                return Ok(url.clone());
            }
            if started.elapsed() > timeout {
                let now = match last {
                    Ok(url) => url,
                    Err(e) => format!("unknown ({e:#})"),
                };
                bail!("waiting {timeout:?} for the URL to be {what}: it is {now}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `value` into the `<input name=...>`, replacing what it held. Typed, not
    /// set by script, so the page's own input handling runs.
    pub async fn fill(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let css = format!("input[name=\"{}\"]", css_string(name));
        let input = self.find(&css).await?;
        step(&format!("clearing {css}"), input.clear()).await?;
        step(&format!("typing into {css}"), input.send_keys(value)).await
    }

    /// Sets the value of the `<input name=...>` by script, as an attacker editing the page
    /// would (hidden fields cannot be typed into).
    pub async fn set_value(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let css = format!("input[name=\"{}\"]", css_string(name));
        self.find(&css).await?;
        let script = "document.querySelector(arguments[0]).value = arguments[1];";
        step(
            &format!("setting {css}"),
            self.client.execute(script, vec![json!(css), json!(value)]),
        )
        .await
        .map(|_| ())
    }

    /// Clicks the element `css` matches, waiting for it to appear.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        step(&format!("clicking {css}"), element.click()).await
    }

    /// Clicks the page's first submit button, as a user would: the form is sent with
    /// that button's name and value, and its validation runs.
    ///
    /// Returns once another document has replaced the form's and loaded: WebDriver's click
    /// returns when the click is dispatched, and a read right after it could still see
    /// the form (a wrong-password page and the form it replaces read alike but for one
    /// line). The old document carries a mark the new one lacks.
    pub async fn submit(&self) -> anyhow::Result<()> {
        let mark = "window.__submitted = true; return null;";
        step("marking the form's page", self.client.execute(mark, vec![])).await?;
        self.click("button:not([type]), button[type=submit], input[type=submit]")
            .await?;
        let replaced = "return window.__submitted !== true && document.readyState === 'complete';";
        let started = Instant::now();
        loop {
            // A read during the navigation may fail; only a true answer ends the wait.
            let read = step(
                "reading the page's state",
                self.client.execute(replaced, vec![]),
            );
            if let Ok(serde_json::Value::Bool(true)) = read.await {
                return Ok(());
            }
            if started.elapsed() > STEP {
                let url = self.current_url().await.unwrap_or_default();
                bail!("no new page replaced the form within {STEP:?}: still at {url}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's text as rendered (what a user reads), not its markup.
    ///
    /// A page that is being replaced (a form just posted) can drop the body between
    /// finding it and reading it ("stale element"); the read is then tried again on the
    /// new page, within the step's bound.
    pub async fn text(&self) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let body = self.find("body").await?;
            match step("reading the page's text", body.text()).await {
                Ok(text) => return Ok(text),
                Err(e)
                    if started.elapsed() < STEP && format!("{e:#}").contains("stale element") =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The cookies the browser holds for the current page, with their attributes.
    pub async fn cookies(&self) -> anyhow::Result<Vec<Cookie<'static>>> {
        step("reading the cookies", self.client.get_all_cookies()).await
    }

    /// Waits for the first element `css` matches; the error names the page it was on.
    async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        let found = self
            .client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(css));
        // A little longer than the wait itself, which then reports first.
        let bound = STEP + Duration::from_secs(5);
        match step_for(&format!("waiting {STEP:?} for {css}"), bound, found).await {
            Ok(element) => Ok(element),
            Err(e) => {
                let url = self.current_url().await.unwrap_or_default();
                let why = format!("{e:#}");
                bail!("{} (on {url})", why.trim_end_matches([':', ' ']))
            }
        }
    }
}

/// chromedriver, leader of a process group that Chromium joins, and its directory: the
/// profile, the `$HOME` and XDG directories Chromium writes to (so nothing lands in the
/// real home directory), and the driver's log.
struct Driver {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Driver {
    /// Waits until chromedriver answers `/status` with `ready`, or exits, or 20 s pass.
    async fn wait_ready(&mut self, url: &str, log: &Path) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("chromedriver exited ({status}): {}", read(log));
            }
            let answer = http.get(format!("{url}/status")).send().await;
            if let Ok(res) = answer
                && let Ok(status) = res.json::<serde_json::Value>().await
                && status["value"]["ready"] == true
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!(
                    "chromedriver did not answer {url}/status within 20 s: {}",
                    read(log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    /// SIGKILL to the process group (Chromium's browser, renderer and helper processes
    /// are in it), then reap chromedriver; the directory goes after. Chromium's crash
    /// handler, which leaves the group, exits by itself once the browser is gone.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bounds a WebDriver command by [`STEP`] and says, on failure, what it was doing.
async fn step<T, E>(what: &str, command: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    step_for(what, STEP, command).await
}

async fn step_for<T, E>(
    what: &str,
    bound: Duration,
    command: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(bound, command).await {
        Ok(result) => result.with_context(|| what.to_string()),
        Err(_) => bail!("{what}: no answer from chromedriver within {bound:?}"),
    }
}

/// `s` inside a double-quoted CSS string.
fn css_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The client application a redirect URI points at: records the query of every request
/// to `/callback`, where the authorization server sends the code (or the error).
pub struct CallbackServer {
    url: String,
    queries: Mutex<mpsc::UnboundedReceiver<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackServer {
    /// Starts listening on a free loopback port; stops when dropped.
    pub async fn start() -> anyhow::Result<Self> {
        // A port from envtest like every other listener of the tests, so that no
        // process started later is told the same port.
        let port = envtest::free_port()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new()
            .route("/callback", axum::routing::get(callback))
            .with_state(Arc::new(tx));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(CallbackServer {
            url: format!("http://127.0.0.1:{port}/callback"),
            queries: Mutex::new(rx),
            task,
        })
    }

    /// The redirect URI: `http://127.0.0.1:PORT/callback`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The raw query string of the next request not yet returned, in arrival order.
    pub async fn next_query(&self, timeout: Duration) -> anyhow::Result<String> {
        let mut queries = self.queries.lock().await;
        match tokio::time::timeout(timeout, queries.recv()).await {
            Ok(Some(query)) => Ok(query),
            Ok(None) => bail!("the callback server at {} has stopped", self.url),
            Err(_) => bail!("no request reached {} within {timeout:?}", self.url),
        }
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn callback(
    State(queries): State<Arc<mpsc::UnboundedSender<String>>>,
    RawQuery(query): RawQuery,
) -> Html<&'static str> {
    let _ = queries.send(query.unwrap_or_default());
    Html("<!doctype html><title>callback</title><p>callback received</p>")
}
