//! The roles table is a setting (`auth.roles`): the app's use cases follow it, and a table that
//! lets an administrator move money, leaves no one able to assign roles or names an unknown
//! permission stops the start, naming the setting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use coffer_app::{App, AppError, Config};
use coffer_auth::Principal;
use coffer_ledger::{Currency, parse_pin};
use coffer_usecases::UseCaseError;

fn principal(roles: &[&str]) -> Principal {
    coffer_auth::testkit::principal(roles, &["pwd"])
}

fn roles(table: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    table
        .iter()
        .map(|(role, ps)| {
            (
                (*role).to_owned(),
                ps.iter().map(|p| (*p).to_owned()).collect(),
            )
        })
        .collect()
}

async fn refused(config: &Config) -> String {
    match App::build(config.clone(), "coffer-api").await {
        Err(AppError::Config(e)) => e.setting,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a bad roles table was accepted"),
    }
}

#[tokio::test]
async fn the_roles_table_is_a_setting_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::embedded(dir.path());
    config.auth.roles = roles(&[
        ("user", &["wallet:read"]),
        ("admin", &["user:admin"]),
        ("metrics", &["system:metrics"]),
    ]);
    let app = App::build(config.clone(), "coffer-api").await.unwrap();
    let admin = &app.state.admin;
    admin.read_metrics(&principal(&["metrics"])).unwrap();
    assert!(matches!(
        admin.read_metrics(&principal(&["admin"])),
        Err(UseCaseError::Forbidden(_))
    ));
    // `user` may read but no longer open wallets.
    app.state
        .wallets
        .wallets(&principal(&["user"]), None, 50)
        .await
        .unwrap();
    let pin = parse_pin("493817").unwrap();
    let currency = Currency::parse("USD").unwrap();
    assert!(matches!(
        app.state
            .wallets
            .open_wallet(&principal(&["user"]), currency, &pin)
            .await,
        Err(UseCaseError::Forbidden(_))
    ));
    app.shutdown().await;

    let mut bad = config.clone();
    bad.auth.roles.insert(
        "ops".into(),
        vec!["wallet:freeze".into(), "wallet:transfer".into()],
    );
    assert_eq!(
        refused(&bad).await,
        "auth.roles.ops",
        "an administrator moving money"
    );
    let mut bad = config.clone();
    bad.auth.roles.remove("admin");
    assert_eq!(refused(&bad).await, "auth.roles", "no one can assign roles");
    let mut bad = config.clone();
    bad.auth
        .roles
        .insert("user".into(), vec!["wallet:fly".into()]);
    assert_eq!(
        refused(&bad).await,
        "auth.roles.user",
        "an unknown permission"
    );
    let mut bad = config;
    bad.auth.roles.remove("user");
    assert_eq!(
        refused(&bad).await,
        "auth.roles",
        "no role for new accounts"
    );
}
