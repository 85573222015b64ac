//! The README's curl walkthrough, run as written against a started server, on a machine that has
//! only what the README asks for: a shell, `curl` and `jq` (no `uuidgen`, which Debian does not
//! install by default).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Database, Server};

/// The walkthrough's shell block.
fn walkthrough() -> String {
    let readme = include_str!("../../../README.md");
    let (_, after) = readme
        .split_once("## A walkthrough with curl")
        .expect("the README has its walkthrough");
    let (_, block) = after.split_once("```sh\n").expect("a sh block");
    let (block, _) = block.split_once("```").expect("the block ends");
    block.to_owned()
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() {
    let s = Server::start(Database::Sqlite).await;
    let script = walkthrough();
    assert!(script.contains("API=http://127.0.0.1:8080\n"));
    let script = script.replacen(
        "API=http://127.0.0.1:8080\n",
        &format!("API={}\n", s.base),
        1,
    );
    // A PATH with curl and jq only.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["curl", "jq"] {
        let found = ["/usr/bin", "/bin", "/usr/local/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("the walkthrough needs {tool}"));
        std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
    }
    let out = tokio::process::Command::new("/bin/bash")
        .arg("-c")
        .arg(format!("set -eu\n{script}"))
        .env_clear()
        .env("PATH", bin.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The answers, one JSON document after another; the last lists alice's wallet: the
    // capture of her hold, the transfer to bob, then the deposit.
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}:\n{stdout}\n{stderr}"));
    let history = answers.last().unwrap();
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{stdout}\n{stderr}"))
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["capture", "transfer", "deposit"],
        "{stdout}\n{stderr}"
    );
    // A refusal is a problem document, with its code.
    assert!(
        answers.iter().all(|a| a.get("code").is_none()),
        "a step was refused:\n{stdout}"
    );
}
