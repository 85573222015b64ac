//! The revocation port's contract suite on the in-memory adapter.
use std::sync::Arc;

use coffer_auth::{InMemoryRevocationList, RevocationList};

mod in_memory {
    use super::*;
    coffer_auth::revocation_list_contract_tests!(|| async {
        Arc::new(InMemoryRevocationList::new()) as Arc<dyn RevocationList>
    });
}
