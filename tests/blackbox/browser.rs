//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! which `.ci/run` installs), for the console test: just the few commands it needs, spoken
//! as JSON over HTTP to a chromedriver on a free loopback port.
//!
//! Without the two programs the test is skipped with the reason printed, except where
//! `AIMP_REQUIRE_BROWSER=1` (CI) makes their absence a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::agent;

/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn find(program: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// A headless Chromium at `width` x `height`; `None` (with the reason printed) when
    /// Chromium or chromedriver is missing and the environment does not require them.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let chromium = find("chromium", "AIMP_CHROMIUM");
        let driver = find("chromedriver", "AIMP_CHROMEDRIVER");
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let reason = "chromium and chromedriver are not installed \
                          (apt-get install chromium chromium-driver; .ci/run does)";
            if std::env::var("AIMP_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("AIMP_REQUIRE_BROWSER=1 but {reason}");
            }
            eprintln!("SKIPPED: {reason}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent().get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver: child,
            base,
            session: String::new(),
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let reply = browser.call("POST", "/session", Some(caps));
        browser.session = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_string();
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let a = agent();
        let response = match (method, body) {
            ("GET", _) => a.get(&url).call(),
            ("DELETE", _) => a.delete(&url).call(),
            (_, body) => a
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        }
        .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let (status, reply) = super::parse(response);
        assert!(status < 300, "webdriver {method} {path}: {status} {reply}");
        reply["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page, gives its result.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Waits until `script` returns true, failing with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(script, json!([])) == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self.eval("return document.body.innerText", json!([]));
                panic!(
                    "timed out waiting for {what}; the page says:\n{text}\nlog: {:?}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the element (for a file input: one path a line).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Drops `files` on the element `css` as a person dragging them from a file manager
    /// would: the files are read into a scratch file input the page does not watch, then
    /// handed to a `drop` event on the zone.
    pub fn drop_files(&self, css: &str, files: &[&Path]) {
        self.eval(
            "const i = document.createElement('input'); i.type = 'file'; i.multiple = true; \
             i.id = 'webdriver-files'; i.hidden = true; document.body.append(i);",
            json!([]),
        );
        let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        self.type_into("#webdriver-files", &paths.join("\n"));
        self.eval(
            "const i = document.getElementById('webdriver-files'); \
             const dt = new DataTransfer(); for (const f of i.files) dt.items.add(f); \
             i.remove(); \
             const zone = document.querySelector(arguments[0]); \
             zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true})); \
             zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
            json!([css]),
        );
    }

    pub fn text(&self, css: &str) -> String {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub fn screenshot(&self, path: &Path) {
        let png = self.session_call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("base64");
        std::fs::write(path, bytes).expect("write screenshot");
    }

    /// The page's console and network log since the last call: (level, message).
    pub fn log(&self) -> Vec<(String, String)> {
        let entries = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})));
        entries
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = agent()
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
