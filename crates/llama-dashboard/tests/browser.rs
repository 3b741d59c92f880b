//! The web dashboard in real headless Chromium, driven over the W3C WebDriver protocol by
//! chromedriver (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them), against
//! `llama-dashboard serve` with the stand-in llama-server: a scan fills the models table, a
//! load changes a row's status live, charts take new points from the live stream, log filters
//! hide what they should, and settings round-trip through the server's validation. Each test
//! asserts what a user sees, one browser at a time (a browser per test is heavy on a small
//! machine). A screenshot of each page is saved under `target/browser-artefacts/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Server, config_set, eventually, free_port};
use serde_json::{Value, json};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Held by the test that has a browser open.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// A chromedriver we started, and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(&self.base)
            .call()
            .map(|mut r| r.body_mut().read_to_string());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        // A test that failed with the browser open does not stop the others.
        let turn = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
        let driver_path = find_program(&["chromedriver"]).expect(
            "chromedriver is not installed; install the Debian packages `chromium chromium-driver` (.ci/run does)",
        );
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
            .expect("chromium is not installed; install the Debian package `chromium`");
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = agent
                .get(format!("{root}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }
        }}});
        let answer: Value = agent
            .post(format!("{root}/session"))
            .send_json(&caps)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Browser {
            driver,
            base: format!("{root}/session/{id}"),
            agent,
            _turn: turn,
        }
    }

    /// One WebDriver command; its `value`, panicking on a WebDriver error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut response = match body {
            Some(body) => self.agent.post(&url).send_json(&body).unwrap(),
            None if method == "GET" => self.agent.get(&url).call().unwrap(),
            None => self.agent.post(&url).send_json(json!({})).unwrap(),
        };
        let answer: Value = response.body_mut().read_json().unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs a script in the page and returns what it returns.
    fn eval(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `script` returns something truthy; returns it.
    fn wait_for(&self, secs: u64, what: &str, script: &str) -> Value {
        eventually(secs, what, || {
            let value = self.eval(script);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            truthy.then_some(value)
        })
    }

    fn element(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT].as_str().unwrap().to_string()
    }

    /// Clicks the element as a user would.
    fn click(&self, css: &str) {
        let id = self.element(css);
        self.command("POST", &format!("/element/{id}/click"), None);
    }

    /// Replaces an input's text by typing.
    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.command("POST", &format!("/element/{id}/clear"), None);
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Saves a PNG of the window under `target/browser-artefacts/`.
    fn screenshot(&self, name: &str) {
        let data = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = artefacts();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

fn artefacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser-artefacts")
}

/// A dashboard over the corpus with the stand-in as its llama-server, sampling every 0.2 s.
fn dashboard() -> (tempfile::TempDir, Server) {
    let home = tempfile::tempdir().unwrap();
    common::corpus(&home.path().join("models"));
    config_set(
        home.path(),
        "serverPath",
        env!("CARGO_BIN_EXE_llama-stand-in"),
    );
    config_set(home.path(), "llama_server_port", &free_port().to_string());
    let server = Server::start(
        home.path(),
        &[],
        &[
            ("LLAMA_STAND_IN_LOAD_MS", "400"),
            ("LLAMA_STAND_IN_FAIL", "gemma-tiny.BF16"),
        ],
    );
    (home, server)
}

/// A script expression: the row (`tr`) of the models table for a model name, or null.
fn row_of(name: &str) -> String {
    format!(
        "[...document.querySelectorAll('#models tbody tr')]
            .find(r => r.querySelector('.name').textContent === '{name}')"
    )
}

/// A script expression: the status cell's text of a model's row, or null.
fn status_of(name: &str) -> String {
    format!(
        "(() => {{ const row = {}; return row ? row.querySelector('.status').textContent : null; }})()",
        row_of(name)
    )
}

/// Scans over the API, for the tests that are not about scanning; returns the catalog.
fn scanned(server: &Server) -> Vec<Value> {
    let (status, report) = server.http().call("POST", "/api/scan", None, None);
    assert_eq!(status, 200, "{report}");
    let (_, rows) = server.http().call("GET", "/api/models", None, None);
    rows.as_array().unwrap().clone()
}

fn id_of(models: &[Value], name: &str) -> String {
    models
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["id"].as_str())
        .unwrap_or_else(|| panic!("{name} is not in the catalog"))
        .to_string()
}

/// Opens a page of the dashboard and waits until it shows.
fn open_page(browser: &Browser, server: &Server, page: &str) {
    browser.open(&format!("{}/#/{page}", server.url));
    browser.wait_for(
        10,
        &format!("the {page} page"),
        &format!(
            "const p = document.querySelector('#page-{page}'); return p !== null && !p.hidden;"
        ),
    );
}

/// Waits until the page's live stream is connected.
fn wait_until_live(browser: &Browser) {
    browser.wait_for(
        10,
        "the live stream",
        "return document.querySelector('#live').textContent === 'live';",
    );
}

/// Waits until the status line says llama-server is ready.
fn wait_until_server_ready(browser: &Browser) {
    browser.wait_for(
        20,
        "llama-server ready in the status line",
        "return document.querySelector('#server-state').textContent === 'llama-server: ready';",
    );
}

/// Closes the browser, then stops the dashboard, which must exit cleanly.
fn close(browser: Browser, server: Server) {
    drop(browser);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn scanning_fills_the_models_table() {
    let (_home, server) = dashboard();
    let browser = Browser::start();
    open_page(&browser, &server, "models");
    wait_until_live(&browser);
    let rows = browser.eval("return document.querySelectorAll('#models tbody tr').length;");
    assert_eq!(rows, 0, "nothing scanned yet");

    browser.click("#scan");
    browser.wait_for(
        10,
        "the scanned models in the table",
        "return document.querySelectorAll('#models tbody tr').length === 4;",
    );
    let names = browser.eval(
        "return [...document.querySelectorAll('#models tbody .name')].map(c => c.textContent).sort();",
    );
    assert_eq!(
        names,
        json!([
            "gemma-tiny.BF16.gguf",
            "llama-tiny.Q4_K_M.gguf",
            "phi3-tiny.IQ4_XS.gguf",
            "qwen2-tiny.Q8_0.gguf"
        ])
    );
    let cells = browser.eval(&format!(
        "return [...{}.cells].map(c => c.textContent);",
        row_of("qwen2-tiny.Q8_0.gguf")
    ));
    for shown in ["qwen2", "Q8_0", "32768", "idle"] {
        assert!(
            cells.as_array().unwrap().contains(&json!(shown)),
            "{shown} in {cells}"
        );
    }

    // The details show the GGUF header's fields.
    let qwen = browser.eval(&format!(
        "return {}.getAttribute('data-model-id');",
        row_of("qwen2-tiny.Q8_0.gguf")
    ));
    let qwen = qwen.as_str().unwrap();
    browser.click(&format!(
        "tr[data-model-id='{qwen}'] button[data-action='details']"
    ));
    let fields = browser.wait_for(
        5,
        "the details",
        "const box = document.querySelector('#model-detail');
         return box.hidden ? null : [...box.querySelectorAll('dt')].map(d => d.textContent);",
    );
    for field in [
        "vocab_size",
        "parameter_count",
        "Quantization",
        "Context length",
    ] {
        assert!(
            fields.as_array().unwrap().contains(&json!(field)),
            "{field} in {fields}"
        );
    }

    // A favorite is marked at once and stored.
    browser.click(&format!(
        "tr[data-model-id='{qwen}'] button[data-action='favorite']"
    ));
    browser.wait_for(
        5,
        "the star filled",
        &format!("return document.querySelector(\"tr[data-model-id='{qwen}'] button[data-action='favorite']\").textContent === '★';"),
    );
    let (_, row) = server
        .http()
        .call("GET", &format!("/api/models/{qwen}"), None, None);
    assert_eq!(row["favorite"], 1);
    browser.screenshot("models");
    close(browser, server);
}

#[test]
fn the_overview_charts_grow_with_live_samples() {
    let (_home, server) = dashboard();
    let models = scanned(&server);
    let browser = Browser::start();
    open_page(&browser, &server, "overview");
    let before = browser
        .wait_for(
            10,
            "a first point",
            "return Number(document.querySelector('#chart-cpu').dataset.points);",
        )
        .as_f64()
        .unwrap();
    let after = browser
        .wait_for(
            10,
            "more points",
            &format!("const n = Number(document.querySelector('#chart-cpu').dataset.points); return n > {before} ? n : 0;"),
        )
        .as_f64()
        .unwrap();
    assert!(after > before);
    for chart in ["chart-mem", "chart-gpu", "chart-tps"] {
        let points = browser.eval(&format!(
            "return Number(document.querySelector('#{chart}').dataset.points);"
        ));
        assert!(points.as_f64().unwrap() > 0.0, "{chart}: {points}");
    }
    let cpu = browser.eval("return document.querySelector('#fig-cpu').textContent;");
    assert!(cpu.as_str().unwrap().ends_with(" %"), "{cpu}");
    wait_until_server_ready(&browser);

    // A request through the proxy shows in the recent requests, with its tokens.
    let (status, answer) = server.http().call(
        "POST",
        "/v1/completions",
        None,
        Some(json!({"model": "llama-tiny.Q4_K_M.gguf", "prompt": "Once", "max_tokens": 3})),
    );
    assert_eq!(status, 200, "{answer}");
    let cells = browser.wait_for(
        15,
        "the request in the table",
        "const row = document.querySelector('#requests tbody tr');
         return row ? [...row.cells].map(c => c.textContent) : null;",
    );
    let cells = cells.as_array().unwrap();
    assert_eq!(cells[1], "llama-tiny.Q4_K_M.gguf", "{cells:?}");
    assert_eq!(cells[3], "200", "{cells:?}");
    assert!(
        cells[5].as_str().unwrap().parse::<u64>().unwrap() > 0,
        "tokens: {cells:?}"
    );
    browser.screenshot("overview");
    assert!(!id_of(&models, "llama-tiny.Q4_K_M.gguf").is_empty());
    close(browser, server);
}

#[test]
fn the_log_tail_is_live_and_the_level_filter_hides_info() {
    let (_home, server) = dashboard();
    let browser = Browser::start();
    open_page(&browser, &server, "logs");
    wait_until_live(&browser);

    // New entries arrive without a reload: a scan's summary, then a failed load.
    let models = scanned(&server);
    browser.wait_for(
        10,
        "the scan's entry, live",
        "return [...document.querySelectorAll('#log-list .log-row')]
            .some(r => r.dataset.level === 'info' && r.querySelector('.log-message').textContent.startsWith('scan found 4 models'));",
    );
    let gemma = id_of(&models, "gemma-tiny.BF16.gguf");
    let (status, _) = server
        .http()
        .call("POST", &format!("/api/models/{gemma}/load"), None, None);
    assert_eq!(status, 502, "the stand-in fails this load");
    browser.wait_for(
        10,
        "the failure's entry, live",
        "return [...document.querySelectorAll('#log-list .log-row')].some(r => r.dataset.level === 'error');",
    );

    // Only `error`: the info lines go.
    for level in ["debug", "info", "warn", "critical"] {
        browser.click(&format!("#log-levels input[data-level='{level}']"));
    }
    let shown = browser.wait_for(
        10,
        "only error lines",
        "const rows = [...document.querySelectorAll('#log-list .log-row')];
         return rows.length > 0 && rows.every(r => r.dataset.level === 'error') ? rows.length : 0;",
    );
    assert!(shown.as_f64().unwrap() >= 1.0);
    // A live info entry stays hidden under that filter; a live error entry shows.
    scanned(&server);
    let (status, _) = server
        .http()
        .call("POST", &format!("/api/models/{gemma}/load"), None, None);
    assert_eq!(status, 502);
    browser.wait_for(
        10,
        "the second failure",
        &format!("return document.querySelectorAll('#log-list .log-row').length > {shown};"),
    );
    let levels = browser.eval(
        "return [...new Set([...document.querySelectorAll('#log-list .log-row')].map(r => r.dataset.level))];",
    );
    assert_eq!(levels, json!(["error"]));

    // A source filter: llama-server's own lines only.
    for level in ["debug", "info", "warn", "critical"] {
        browser.click(&format!("#log-levels input[data-level='{level}']"));
    }
    browser.eval("const s = document.querySelector('#log-source'); s.value = 'llama-server'; s.dispatchEvent(new Event('change'));");
    let sources = browser.wait_for(
        10,
        "llama-server's lines",
        "const rows = [...document.querySelectorAll('#log-list .log-row')];
         return rows.length > 0 && rows.every(r => r.querySelector('.log-source').textContent === 'llama-server') ? rows.length : 0;",
    );
    assert!(sources.as_f64().unwrap() > 0.0);
    browser.screenshot("logs");
    close(browser, server);
}

#[test]
fn settings_persist_and_invalid_values_show_the_servers_error() {
    let (_home, server) = dashboard();
    let browser = Browser::start();
    open_page(&browser, &server, "settings");
    browser.wait_for(
        10,
        "the settings form",
        "return document.querySelector('#setting-threads') !== null;",
    );
    browser.type_into("#setting-threads", "6");
    browser.click("#settings-form button[type='submit']");
    browser.wait_for(
        10,
        "saved",
        "return !document.querySelector('#settings-saved').hidden;",
    );
    let (_, config) = server.http().call("GET", "/api/config", None, None);
    assert_eq!(config["threads"], 6);
    browser.eval("location.reload();");
    browser.wait_for(
        10,
        "the saved value after a reload",
        "const i = document.querySelector('#setting-threads'); return i && i.value === '6';",
    );

    browser.type_into("#setting-llama_server_port", "99999");
    browser.click("#settings-form button[type='submit']");
    let message = browser.wait_for(
        10,
        "the server's error",
        "const e = document.querySelector('#settings-error'); return e.hidden ? '' : e.textContent;",
    );
    assert!(
        message.as_str().unwrap().contains("llama_server_port"),
        "{message}"
    );
    let marked = browser.eval(
        "return [...document.querySelectorAll('#settings-fields input.invalid')].map(i => i.name);",
    );
    assert_eq!(marked, json!(["llama_server_port"]));
    let (_, stored) = server.http().call("GET", "/api/config", None, None);
    assert_eq!(stored, config, "nothing stored");
    browser.screenshot("settings");
    close(browser, server);
}

#[test]
fn loading_a_model_changes_its_status_live() {
    let (_home, server) = dashboard();
    let models = scanned(&server);
    let browser = Browser::start();
    open_page(&browser, &server, "models");
    wait_until_server_ready(&browser);

    // Through `loading` to `loaded`, as llama-server reports it.
    let name = "llama-tiny.Q4_K_M.gguf";
    let id = id_of(&models, name);
    browser.click(&format!(
        "tr[data-model-id='{id}'] button[data-action='load']"
    ));
    browser.wait_for(
        5,
        "the status `loading`",
        &format!("return {} === 'loading';", status_of(name)),
    );
    browser.wait_for(
        10,
        "the status `loaded`",
        &format!("return {} === 'loaded';", status_of(name)),
    );
    let (_, row) = server
        .http()
        .call("GET", &format!("/api/models/{id}"), None, None);
    assert_eq!(row["status"], "loaded");

    // A load that fails says so, with llama-server's reason.
    let gemma = id_of(&models, "gemma-tiny.BF16.gguf");
    browser.click(&format!(
        "tr[data-model-id='{gemma}'] button[data-action='load']"
    ));
    browser.wait_for(
        10,
        "the status `error`",
        &format!("return {} === 'error';", status_of("gemma-tiny.BF16.gguf")),
    );
    let notice = browser.wait_for(
        5,
        "the failure's notice",
        "const n = document.querySelector('#notice'); return n.hidden ? '' : n.textContent;",
    );
    assert!(
        notice.as_str().unwrap().contains("gemma-tiny.BF16.gguf"),
        "{notice}"
    );
    browser.screenshot("models-loaded");

    // Unload: back to `unloaded`.
    browser.click(&format!(
        "tr[data-model-id='{id}'] button[data-action='unload']"
    ));
    browser.wait_for(
        10,
        "the status `unloaded`",
        &format!("return {} === 'unloaded';", status_of(name)),
    );
    close(browser, server);
}

#[test]
fn the_page_asks_for_the_api_key_and_never_shows_it() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(
        home.path(),
        &[],
        &[("LLAMA_DASHBOARD_API_KEY", "browser-test-key-0123456789")],
    );
    let browser = Browser::start();
    browser.open(&format!("{}/#/models", server.url));
    browser.wait_for(
        10,
        "the key form",
        "return !document.querySelector('#key-form').hidden;",
    );
    // A wrong key is refused and asked for again.
    browser.type_into("#key-input", "not-the-key");
    browser.click("#key-form button[type='submit']");
    browser.wait_for(
        10,
        "the refusal",
        "return !document.querySelector('#key-form').hidden && !document.querySelector('#key-error').hidden;",
    );
    browser.type_into("#key-input", "browser-test-key-0123456789");
    browser.click("#key-form button[type='submit']");
    browser.wait_for(10, "the page working with the key", "return document.querySelector('#live').textContent === 'live' && document.querySelector('#models-summary').textContent.includes('0 models');");
    let shown =
        browser.eval("return document.documentElement.outerHTML.includes('browser-test-key');");
    assert_eq!(shown, false, "the key is not in the page");
    drop(browser);
    drop(server);
}
