//! The API's documentation page, `/docs`, rendered by a real browser (Debian's headless
//! Chromium, which `cargo xtask test` installs when missing) with every address but the
//! server's cut off: every operation of the document renders, and the page's
//! Content-Security-Policy refuses nothing it needs. Nothing the page needs comes from elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Database, Server};

/// Where Debian's package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The page as the browser built it once its scripts ran, and what the browser logged.
async fn render_offline(url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            // Offline: names resolve to nothing, and every connection but loopback goes to a
            // proxy that is not there.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("{CHROMIUM} does not run ({e}): `cargo xtask test` installs Debian's chromium")
        });
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_renders_every_operation_offline() {
    let s = Server::start(Database::Sqlite).await;
    let doc: serde_json::Value = s
        .client
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            operations.push(op["operationId"].as_str().unwrap().to_owned());
        }
    }
    assert!(operations.len() > 30, "{operations:?}");

    let (dom, log) = render_offline(&format!("{}/docs", s.base)).await;
    let missing: Vec<_> = operations
        .iter()
        .filter(|id| !dom.contains(&format!("id=\"operation/{id}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "operations the page did not render: {missing:?}\nthe browser said:\n{log}"
    );
    // Redoc's menu footer always asks for its logo from its CDN: the policy refuses it and the
    // footer shows its text alone. Nothing else may be refused.
    let refused: Vec<_> = log
        .lines()
        .filter(|l| l.contains("Content Security Policy"))
        .filter(|l| !l.contains("'https://cdn.redoc.ly/redoc/logo-mini.svg' violates"))
        .collect();
    assert!(
        refused.is_empty(),
        "the page breaks its own policy: {refused:#?}"
    );
    s.stop().await;
}
