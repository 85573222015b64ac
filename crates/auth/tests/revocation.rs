//! The revocation port's contract suite on the in-memory adapter, on a manual clock.
use std::sync::Arc;

use coffer_auth::testkit::ListUnderTest;
use coffer_auth::{InMemoryRevocationList, RevocationList};
use coffer_clock::ManualClock;

mod in_memory {
    use super::*;
    coffer_auth::revocation_list_contract_tests!(|| async {
        let clock = Arc::new(ManualClock::default());
        let list = InMemoryRevocationList::new().with_clock(clock.clone());
        ListUnderTest::with_clock(Arc::new(list) as Arc<dyn RevocationList>, clock)
    });
}
