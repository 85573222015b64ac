//! The key port's contract suite against a real OpenBao (started by `cargo xtask test`), in both
//! modes, each case with a key of its own, as the rotation worker's user (it may rotate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use coffer_keys::testkit::Subject;
use coffer_keys_vault::{VaultKvProvider, VaultTransitProvider};

mod transit {
    use super::*;

    coffer_keys::key_provider_contract_tests!(|| async {
        let (_admin, plan) = common::provisioned().await;
        let worker = common::userpass(&plan.users[1]);
        let p = VaultTransitProvider::connect(worker, plan.transit.clone())
            .await
            .unwrap();
        Subject::new(Arc::new(p), ())
    });
}

mod kv {
    use super::*;

    coffer_keys::key_provider_contract_tests!(|| async {
        let (_admin, plan) = common::provisioned().await;
        let worker = common::userpass(&plan.users[1]);
        let p = VaultKvProvider::connect(worker, plan.kv.clone())
            .await
            .unwrap();
        Subject::new(Arc::new(p), ())
    });
}
