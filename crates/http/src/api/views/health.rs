//! The `health` tag's bodies: liveness and readiness.

use serde::Serialize;

/// Liveness: the process answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

impl Health {
    /// The only answer.
    pub const OK: Self = Self { status: "ok" };
}

// A failing check's cause is logged, not answered.
/// Readiness: each dependency's check, by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready` when every check passed, else `not_ready`.
    status: &'static str,
    /// Each check's outcome: `ok` or `failing`.
    checks: std::collections::BTreeMap<String, &'static str>,
}

impl Ready {
    /// The outcome of `checks`, by name.
    #[must_use]
    pub fn new<E>(checks: &[(&str, Result<(), E>)]) -> Self {
        let ready = checks.iter().all(|(_, r)| r.is_ok());
        Self {
            status: if ready { "ready" } else { "not_ready" },
            checks: checks
                .iter()
                .map(|(name, r)| ((*name).to_owned(), if r.is_ok() { "ok" } else { "failing" }))
                .collect(),
        }
    }

    /// Whether every check passed.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}
