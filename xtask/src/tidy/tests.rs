//! Each rule, with a violation put in, and without.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

/// A package as `cargo metadata` prints it.
fn package(name: &str, layer: Option<&str>, deps: Value, features: Value) -> Value {
    let metadata = match layer {
        Some(l) => json!({ "coffer": { "layer": l } }),
        None => Value::Null,
    };
    json!({
        "name": name,
        "manifest_path": format!("/ws/crates/{name}/Cargo.toml"),
        "metadata": metadata,
        "dependencies": deps,
        "features": features,
    })
}

fn dep(name: &str, kind: Option<&str>, optional: bool) -> Value {
    json!({ "name": name, "kind": kind, "optional": optional, "rename": null })
}

fn crates(packages: Vec<Value>) -> Vec<Crate> {
    parse_metadata(&json!({ "packages": packages })).unwrap()
}

fn rules(found: &[Violation]) -> Vec<&'static str> {
    found.iter().map(|v| v.rule).collect()
}

#[test]
fn a_crate_without_a_layer_or_with_an_unknown_one_is_refused() {
    let ws = crates(vec![
        package("coffer-a", None, json!([]), json!({})),
        package("coffer-b", Some("middle"), json!([]), json!({})),
        package("coffer-c", Some("root"), json!([]), json!({})),
    ]);
    let found = layer_rules(&ws);
    assert_eq!(rules(&found), ["layer", "layer"]);
    assert!(found[0].detail.contains("coffer-a"));
    assert!(found[1].detail.contains("\"middle\""));
}

#[test]
fn a_domain_crate_may_not_depend_on_io_libraries_but_its_tests_may() {
    for io in [
        "sqlx",
        "redis",
        "reqwest",
        "axum",
        "hyper",
        "vaultrs",
        "aws-sdk-kms",
    ] {
        let ws = crates(vec![package(
            "coffer-ledger",
            Some("domain"),
            json!([dep(io, None, false)]),
            json!({}),
        )]);
        assert_eq!(rules(&layer_rules(&ws)), ["domain-io"], "{io}");
        let build = crates(vec![package(
            "coffer-ledger",
            Some("domain"),
            json!([dep(io, Some("build"), false)]),
            json!({}),
        )]);
        assert_eq!(
            rules(&layer_rules(&build)),
            ["domain-io"],
            "{io} as a build dependency"
        );
        let dev = crates(vec![package(
            "coffer-ledger",
            Some("domain"),
            json!([dep(io, Some("dev"), false)]),
            json!({}),
        )]);
        assert!(layer_rules(&dev).is_empty(), "{io} as a dev-dependency");
    }
}

#[test]
fn a_domain_crate_may_not_reach_an_adapter_through_a_feature() {
    // What coffer-rotation's testkit did: an optional adapter enabled by `testkit`.
    let ws = crates(vec![
        package(
            "coffer-rotation",
            Some("domain"),
            json!([
                dep("coffer-keys-local", None, true),
                dep("coffer-keys", None, false)
            ]),
            json!({ "testkit": ["dep:coffer-keys-local"], "default": [] }),
        ),
        package("coffer-keys-local", Some("adapter"), json!([]), json!({})),
        package("coffer-keys", Some("domain"), json!([]), json!({})),
    ]);
    let found = layer_rules(&ws);
    assert_eq!(rules(&found), ["domain-io"]);
    assert!(found[0].detail.contains("coffer-keys-local"));
    assert!(found[0].detail.contains("through the feature testkit"));
}

#[test]
fn an_adapter_may_not_depend_on_another_adapter() {
    // What coffer-http did with coffer-auth-oidc.
    let ws = crates(vec![
        package(
            "coffer-http",
            Some("adapter"),
            json!([
                dep("coffer-auth-oidc", None, false),
                dep("coffer-auth", None, false),
                dep("axum", None, false)
            ]),
            json!({}),
        ),
        package(
            "coffer-auth-oidc",
            Some("adapter"),
            json!([dep("reqwest", None, false)]),
            json!({}),
        ),
        package("coffer-auth", Some("domain"), json!([]), json!({})),
        package(
            "coffer-app",
            Some("root"),
            json!([
                dep("coffer-http", None, false),
                dep("coffer-auth-oidc", None, false)
            ]),
            json!({}),
        ),
    ]);
    let found = layer_rules(&ws);
    assert_eq!(rules(&found), ["adapter-adapter"]);
    assert!(
        found[0]
            .detail
            .contains("coffer-http depends on the adapter coffer-auth-oidc")
    );
}

#[test]
fn an_adapter_may_use_another_adapter_in_its_tests() {
    let ws = crates(vec![
        package(
            "coffer-store",
            Some("adapter"),
            json!([dep("coffer-keys-local", Some("dev"), false)]),
            json!({}),
        ),
        package("coffer-keys-local", Some("adapter"), json!([]), json!({})),
    ]);
    assert!(layer_rules(&ws).is_empty());
}

const TESTKIT: &str = r#"
#[macro_export]
macro_rules! thing_contract_tests {
    ($factory:expr) => {
        $crate::thing_contract_tests!(@cases $factory;
            listed_case,
            another_listed_case,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $( #[tokio::test] async fn $case() { $crate::testkit::$case(&($factory)().await).await; } )+
    };
}

/// A helper the cases share: it returns something, so it is no case.
pub async fn ledger(backend: &dyn Backend) -> Ledger {
    unreachable_helper()
}

pub async fn listed_case(backend: &dyn Backend) {
    let _ = backend;
}

pub async fn another_listed_case(
    backend: &dyn Backend,
) {
}
"#;

#[test]
fn a_contract_case_missing_from_its_macro_list_is_found() {
    let complete = [(PathBuf::from("src/testkit.rs"), TESTKIT.to_owned())];
    assert!(contract_cases("coffer-thing", &complete).is_empty());

    let with_forgotten = format!(
        "{TESTKIT}\npub async fn a_forgotten_case(backend: &dyn Backend) {{\n    let _ = backend;\n}}\n"
    );
    let found = contract_cases(
        "coffer-thing",
        &[(PathBuf::from("src/testkit.rs"), with_forgotten)],
    );
    assert_eq!(rules(&found), ["contract-case"]);
    assert!(found[0].detail.contains("a_forgotten_case"));
}

#[test]
fn a_case_in_a_testkit_folder_counts_against_the_macros_of_its_siblings() {
    let files = [
        (PathBuf::from("src/testkit/mod.rs"), TESTKIT.to_owned()),
        (
            PathBuf::from("src/testkit/accounts.rs"),
            "pub async fn listed_case_two(b: &dyn Backend) {}\n".to_owned(),
        ),
    ];
    let found = contract_cases("coffer-thing", &files);
    assert_eq!(rules(&found), ["contract-case"]);
    assert!(found[0].detail.contains("listed_case_two"));
}

#[test]
fn every_source_file_is_held_to_the_length_tests_and_testkits_too() {
    let files = [
        (PathBuf::from("crates/ledger/src/service.rs"), MAX_LINES + 1),
        (PathBuf::from("crates/ledger/src/domain.rs"), MAX_LINES),
        (
            PathBuf::from("crates/auth/src/testkit/accounts.rs"),
            MAX_LINES + 1,
        ),
        (PathBuf::from("apps/api/tests/e2e/main.rs"), MAX_LINES),
        (PathBuf::from("xtask/src/main.rs"), MAX_LINES + 100),
    ];
    let found = file_lengths(&files);
    assert_eq!(rules(&found), ["file-length", "file-length", "file-length"]);
    assert!(
        found[0]
            .detail
            .contains("crates/ledger/src/service.rs has 801 lines")
    );
    assert!(found[1].detail.contains("testkit/accounts.rs"));
    assert!(found[2].detail.contains("xtask/src/main.rs"));
}
