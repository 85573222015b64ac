//! The in-process rate limiter's memory follows the clients of the last minutes: the app's
//! background tasks forget every client whose budgets are full again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
mod common;

use coffer_app::App;
use coffer_clock::ManualClock;
use tower::ServiceExt as _;

#[tokio::test]
async fn the_app_forgets_clients_whose_budgets_are_full_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::embedded(dir.path());
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let app = App::build_with_clock(c, "coffer-api", clock.clone())
        .await
        .unwrap();
    let background = app.spawn_background();
    let router = app.router();
    // A thousand clients, one request each.
    for i in 0..1_000u32 {
        let mut req = Request::get("/healthz").body(Body::empty()).unwrap();
        let ip = IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i)); // 198.51.100.0 onwards
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert!(
        app.rate_limited_clients() >= 1_000,
        "{}",
        app.rate_limited_clients()
    );
    // An hour later every budget is full again; the next eviction round forgets them all.
    clock.advance(Duration::from_secs(3_600));
    tokio::time::pause();
    for _ in 0..100 {
        if app.rate_limited_clients() == 0 {
            break;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(app.rate_limited_clients(), 0);
    for task in background {
        task.abort();
    }
    app.shutdown().await;
}
