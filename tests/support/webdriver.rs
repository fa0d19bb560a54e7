//! A real browser for tests: Debian's Chromium, headless, driven through chromedriver's
//! W3C WebDriver endpoints (plain HTTP + JSON). The driver process is ended on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::wait_for;

/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        let port = manman::testkit::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/test installs Debian's chromium-driver)");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_for("chromedriver", Duration::from_secs(20), || {
            ureq::get(&format!("{}/status", browser.base)).call().ok()
        });
        let session = browser.post(
            "/session",
            json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900"]}}}}),
        );
        let id = session["sessionId"]
            .as_str()
            .expect("a browser session")
            .to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let r = match ureq::post(&url).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "WebDriver {path}: {code} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("WebDriver {path}: {e}"),
        };
        r.into_json::<Value>().unwrap()["value"].clone()
    }

    fn get(&self, path: &str) -> Value {
        let r = ureq::get(&format!("{}{path}", self.base)).call().unwrap();
        r.into_json::<Value>().unwrap()["value"].clone()
    }

    pub fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs `script` in the page (its `return` value comes back).
    pub fn run(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
    }

    fn element(&self, css: &str) -> Option<String> {
        let url = format!("{}/element", self.base);
        let r = ureq::post(&url)
            .send_json(json!({"using": "css selector", "value": css}))
            .ok()?;
        let v: Value = r.into_json().ok()?;
        v["value"][ELEMENT].as_str().map(str::to_string)
    }

    /// Waits for `css` to exist, then types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = wait_for(css, Duration::from_secs(20), || self.element(css));
        self.post(&format!("/element/{id}/value"), json!({ "text": text }));
    }

    /// Waits for `css` to exist, then clicks it.
    pub fn click(&self, css: &str) {
        let id = wait_for(css, Duration::from_secs(20), || self.element(css));
        self.post(&format!("/element/{id}/click"), json!({}));
    }

    /// The visible text of `css`, once it exists.
    pub fn text(&self, css: &str) -> String {
        let id = wait_for(css, Duration::from_secs(20), || self.element(css));
        self.get(&format!("/element/{id}/text"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `css`'s text satisfies `ok`; returns it.
    pub fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        wait_for(what, Duration::from_secs(30), || {
            let id = self.element(css)?;
            let v = self.get(&format!("/element/{id}/text"));
            v.as_str().filter(|t| ok(t)).map(str::to_string)
        })
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let b64 = self.get("/screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
