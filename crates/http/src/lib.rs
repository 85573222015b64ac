//! Coffer's HTTP layer (axum). The only crate that knows status codes and response shapes.
//!
//! - [`api`]: the REST API: the router, its middleware (request ids, tracing, body limit,
//!   timeout, panics as problems), the principal and JSON extractors, every handler.
//! - [`problem`]: RFC 9457 `application/problem+json` errors with a stable `code`.
//! - [`client_ip`]: the client address from the socket, or from `X-Forwarded-For` only behind a
//!   configured trusted proxy.
//! - [`ratelimit`]: the rate-limit middleware (429 with `Retry-After`, `RateLimit-Policy` and
//!   `RateLimit`; 503 when the shared limiter is down and configured to fail closed) and the admin
//!   IP allowlist.

pub mod api;
pub mod client_ip;
pub mod problem;
pub mod ratelimit;
