//! What a principal may do: its roles' permissions, narrowed by its API key when it presented
//! one.
#![allow(clippy::unwrap_used)]

use coffer_auth::api_key::{ApiKeyGrant, ApiKeyId, ApiKeyName, parse_permissions};
use coffer_auth::testkit::principal;
use coffer_auth::{Permission::*, Principal, Rbac};

fn with_key(roles: &[&str], permissions: &[&str]) -> Principal {
    let mut p = principal(roles, &[]);
    p.api_key = Some(ApiKeyGrant {
        id: ApiKeyId::new(),
        name: ApiKeyName::parse("k").unwrap(),
        permissions: parse_permissions(permissions).unwrap(),
        rate_per_minute: None,
        expires_at: u64::MAX,
    });
    p
}

/// A key narrows its owner's roles and never widens them.
#[test]
fn a_key_allows_what_both_it_and_the_roles_allow() {
    let rbac = Rbac::default();
    assert!(principal(&["user"], &[]).allows(&rbac, WalletTransfer));
    let key = with_key(&["user"], &["wallet:read", "system:metrics"]);
    assert!(key.allows(&rbac, WalletRead));
    assert!(!key.allows(&rbac, WalletTransfer), "not named by the key");
    assert!(
        !key.allows(&rbac, SystemMetrics),
        "not granted by the roles"
    );
    assert_eq!(key.permissions(&rbac), [WalletRead].into_iter().collect());
    let scraper = with_key(&["admin"], &["system:metrics"]);
    assert_eq!(
        scraper.permissions(&rbac),
        [SystemMetrics].into_iter().collect()
    );
    assert!(!scraper.allows(&rbac, UserAdmin));
}
