//! `/docs`: a browsable page over `/openapi.json`, rendered by Redoc. The script is vendored
//! (`crates/http/assets/redoc/`, whose README says where it comes from) and served from the
//! binary under a versioned path, so the page works offline and runs no script from elsewhere;
//! the page's Content-Security-Policy allows nothing but this server (and the inline styles and
//! the search worker Redoc makes for itself). The one thing Redoc asks for elsewhere, its logo in
//! the menu's footer, the policy refuses, and the footer shows its text link alone.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The vendored script's path.
const SCRIPT_PATH: &str = "/docs/redoc-2.5.4.standalone.js";

/// The vendored script.
const SCRIPT: &[u8] = include_bytes!("../../assets/redoc/redoc-2.5.4.standalone.js");

/// The page.
const PAGE: &str = r#"<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Coffer API</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/docs/redoc-2.5.4.standalone.js"></script>
  </body>
</html>
"#;

/// What the page may load: scripts, the document and images from this server only; Redoc
/// writes its styles inline and starts its search worker from a `blob:` URL.
const POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     img-src 'self' data:; font-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its script.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/docs",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_SECURITY_POLICY, POLICY),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    PAGE,
                )
                    .into_response()
            }),
        )
        .route(
            SCRIPT_PATH,
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    SCRIPT,
                )
                    .into_response()
            }),
        )
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// The served script is the vendored release, byte for byte (its README names the hash), and
    /// the page loads it from where it is served.
    #[test]
    fn the_page_loads_the_pinned_script_from_this_server() {
        let hash: String = Sha256::digest(SCRIPT)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hash,
            "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b"
        );
        assert!(PAGE.contains(&format!("<script src=\"{SCRIPT_PATH}\">")));
        assert!(!PAGE.contains("https://"));
    }
}
