//! `cargo xtask tidy`: the architecture's rules, checked mechanically (run by `cargo xtask test`).
//!
//! It reads `cargo metadata --no-deps` (each workspace crate's declared dependencies, with their
//! kind and whether they are optional, and its features) and the sources, and fails when:
//! - a crate does not declare `[package.metadata.coffer] layer = "domain" | "adapter" | "root"`;
//! - a domain crate depends on an I/O library (sqlx, redis, reqwest, axum, hyper, vaultrs,
//!   aws-*) or on an adapter crate, through a normal or build dependency, optional ones (enabled
//!   by a feature, `testkit` included) too;
//! - an adapter depends on another adapter (adapters meet only in the root);
//! - a contract-suite case (a `pub async fn` returning nothing in a crate's `testkit`) is not in
//!   one of that testkit's `macro_rules!` case lists, so it would silently never run;
//! - a source file (tests and testkits too) is over [`MAX_LINES`] lines.
//!
//! Dev-dependencies may use adapters (a domain crate's tests may run against a real key file).
//! The root layer (the composition root, the binaries, xtask) may depend on anything.
//!
//! The rules are pure functions over [`Crate`] values and file texts, so each is unit-tested
//! with a violation put in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The longest a source file may be, tests and testkits included.
pub const MAX_LINES: usize = 800;

/// Libraries that do I/O: no domain crate may depend on them.
const IO_CRATES: &[&str] = &["sqlx", "redis", "reqwest", "axum", "hyper", "vaultrs"];
/// Prefixes of I/O library families.
const IO_PREFIXES: &[&str] = &["aws-", "sqlx-"];

/// Where a crate sits in the hexagon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Rules and ports: no I/O.
    Domain,
    /// Implements a port (or drives the application) with I/O.
    Adapter,
    /// Composition and binaries: may use anything.
    Root,
}

impl Layer {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "domain" => Some(Self::Domain),
            "adapter" => Some(Self::Adapter),
            "root" => Some(Self::Root),
            _ => None,
        }
    }
}

/// One dependency as declared in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// The package's name (not its rename).
    pub name: String,
    /// A dev-dependency (allowed to reach adapters).
    pub dev: bool,
    /// Features of the declaring crate that enable it, when optional.
    pub enabled_by: Vec<String>,
}

/// One workspace crate.
#[derive(Debug, Clone)]
pub struct Crate {
    /// Its package name.
    pub name: String,
    /// Its declared layer; `Err` holds what was written when it is missing or unknown.
    pub layer: Result<Layer, String>,
    /// Its declared dependencies.
    pub deps: Vec<Dep>,
    /// Its directory.
    pub dir: PathBuf,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which rule: `layer`, `domain-io`, `adapter-adapter`, `contract-case`, `file-length`.
    pub rule: &'static str,
    /// What is wrong and where.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.detail)
    }
}

fn violation(rule: &'static str, detail: String) -> Violation {
    Violation { rule, detail }
}

/// Runs every rule over the workspace at `root`.
pub fn run(root: &Path) -> Result<()> {
    let crates = workspace_crates(root)?;
    let mut found = layer_rules(&crates);
    for krate in &crates {
        found.extend(contract_cases(&krate.name, &testkit_sources(&krate.dir)?));
    }
    found.extend(file_lengths(&source_files(root)?));
    if found.is_empty() {
        eprintln!(
            "tidy: {} crates, layers, contract cases and file lengths are in order",
            crates.len()
        );
        return Ok(());
    }
    for v in &found {
        eprintln!("tidy: {v}");
    }
    bail!("tidy: {} rule(s) broken", found.len())
}

/// The workspace's crates, from `cargo metadata --no-deps`.
fn workspace_crates(root: &Path) -> Result<Vec<Crate>> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("cargo metadata's output")?;
    parse_metadata(&meta)
}

/// Turns `cargo metadata`'s JSON into [`Crate`]s.
pub fn parse_metadata(meta: &Value) -> Result<Vec<Crate>> {
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata without packages")?;
    packages.iter().map(parse_package).collect()
}

fn parse_package(pkg: &Value) -> Result<Crate> {
    let name = pkg["name"].as_str().context("a package without name")?;
    let layer = match &pkg["metadata"]["coffer"]["layer"] {
        Value::String(s) => Layer::parse(s).ok_or_else(|| format!("{s:?}")),
        Value::Null => Err("nothing".to_owned()),
        other => Err(other.to_string()),
    };
    let features = pkg["features"].as_object();
    let mut deps = Vec::new();
    for d in pkg["dependencies"].as_array().into_iter().flatten() {
        let dep_name = d["name"].as_str().context("a dependency without name")?;
        // The key the manifest uses for it: its rename, if any.
        let key = d["rename"].as_str().unwrap_or(dep_name);
        let optional = d["optional"].as_bool().unwrap_or(false);
        let enabled_by = if optional {
            features
                .into_iter()
                .flatten()
                .filter(|(_, enables)| {
                    enables.as_array().into_iter().flatten().any(|e| {
                        e.as_str().is_some_and(|e| {
                            let target = e.strip_prefix("dep:").unwrap_or(e);
                            let target = target.split('/').next().unwrap_or(target);
                            target.trim_end_matches('?') == key
                        })
                    })
                })
                .map(|(f, _)| f.clone())
                .collect()
        } else {
            Vec::new()
        };
        deps.push(Dep {
            name: dep_name.to_owned(),
            dev: d["kind"].as_str() == Some("dev"),
            enabled_by,
        });
    }
    let manifest = pkg["manifest_path"]
        .as_str()
        .context("a package without manifest_path")?;
    let dir = Path::new(manifest)
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Crate {
        name: name.to_owned(),
        layer,
        deps,
        dir,
    })
}

fn is_io_crate(name: &str) -> bool {
    IO_CRATES.contains(&name) || IO_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The layer rules: every crate has a layer; domain crates do no I/O and use no adapter;
/// adapters use no other adapter.
pub fn layer_rules(crates: &[Crate]) -> Vec<Violation> {
    let layer_of = |name: &str| {
        crates
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.layer.as_ref().ok().copied())
    };
    let mut found = Vec::new();
    for krate in crates {
        let layer = match &krate.layer {
            Ok(layer) => *layer,
            Err(written) => {
                found.push(violation(
                    "layer",
                    format!(
                        "{} declares {written} as [package.metadata.coffer] layer; \
                         write \"domain\", \"adapter\" or \"root\"",
                        krate.name
                    ),
                ));
                continue;
            }
        };
        for dep in krate.deps.iter().filter(|d| !d.dev) {
            let via = if dep.enabled_by.is_empty() {
                String::new()
            } else {
                format!(" (through the feature {})", dep.enabled_by.join(", "))
            };
            let dep_is_adapter = layer_of(&dep.name) == Some(Layer::Adapter);
            match layer {
                Layer::Domain if is_io_crate(&dep.name) => found.push(violation(
                    "domain-io",
                    format!(
                        "the domain crate {} depends on the I/O library {}{via}",
                        krate.name, dep.name
                    ),
                )),
                Layer::Domain if dep_is_adapter => found.push(violation(
                    "domain-io",
                    format!(
                        "the domain crate {} depends on the adapter {}{via}",
                        krate.name, dep.name
                    ),
                )),
                Layer::Adapter if dep_is_adapter => found.push(violation(
                    "adapter-adapter",
                    format!(
                        "the adapter {} depends on the adapter {}{via}; adapters meet only in \
                         the root (coffer-app), through a port",
                        krate.name, dep.name
                    ),
                )),
                _ => {}
            }
        }
    }
    found
}

/// A crate's testkit sources: `src/testkit.rs` and everything under `src/testkit/`.
fn testkit_sources(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let single = dir.join("src/testkit.rs");
    if single.is_file() {
        files.push(single);
    }
    let folder = dir.join("src/testkit");
    if folder.is_dir() {
        collect_rs(&folder, &mut files)?;
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {p:?}"))?;
            Ok((p, text))
        })
        .collect()
}

/// Every contract case of a testkit (a `pub async fn` that returns nothing) must be named in
/// one of its `macro_rules!` bodies.
pub fn contract_cases(krate: &str, files: &[(PathBuf, String)]) -> Vec<Violation> {
    let macro_bodies: String = files
        .iter()
        .flat_map(|(_, text)| macro_bodies(text))
        .collect::<Vec<_>>()
        .join("\n");
    let listed: std::collections::BTreeSet<&str> = idents(&macro_bodies).collect();
    let mut found = Vec::new();
    for (path, text) in files {
        for case in cases(text) {
            if !listed.contains(case.as_str()) {
                found.push(violation(
                    "contract-case",
                    format!(
                        "{krate}: the contract case {case} ({}) is in no macro_rules! case \
                         list, so no adapter runs it",
                        path.display()
                    ),
                ));
            }
        }
    }
    found
}

/// The names of the `pub async fn`s with no return type.
fn cases(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("pub async fn ") {
        let after = &rest[at + "pub async fn ".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The signature runs to the body's opening brace (or a `;` in a trait).
        let end = after.find(['{', ';']).unwrap_or(after.len());
        let signature = &after[..end];
        // Only items at the start of a line (not inside a string or a comment).
        let line_start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
        let indent = &rest[line_start..at];
        if !signature.contains("->") && !name.is_empty() && indent.trim().is_empty() {
            out.push(name);
        }
        rest = &after[end..];
    }
    out
}

/// The bodies of the `macro_rules!` definitions in a file (brace-matched).
fn macro_bodies(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("macro_rules!") {
        let after = &rest[at..];
        let Some(open) = after.find('{') else { break };
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

fn idents(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|s| !s.is_empty())
}

/// The `.rs` files of the workspace (crates, apps, xtask, fuzz), paths relative to `root`.
fn source_files(root: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let mut files = Vec::new();
    for top in ["crates", "apps", "xtask", "fuzz"] {
        let dir = root.join(top);
        if dir.is_dir() {
            collect_rs(&dir, &mut files)?;
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {p:?}"))?;
            let rel = p.strip_prefix(root).map_or(p.clone(), Path::to_path_buf);
            Ok((rel, text.lines().count()))
        })
        .collect()
}

/// No source file over [`MAX_LINES`], tests and testkits included.
pub fn file_lengths(files: &[(PathBuf, usize)]) -> Vec<Violation> {
    files
        .iter()
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(rel, lines)| {
            violation(
                "file-length",
                format!(
                    "{} has {lines} lines (at most {MAX_LINES}): split it by use case, with a \
                     leaf module for shared helpers",
                    rel.display()
                ),
            )
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {dir:?}"))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if path.is_dir() {
            // Build output of the fuzz crate and hidden folders are not sources.
            if name.is_some_and(|n| n == "target" || n.starts_with('.')) {
                continue;
            }
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
