//! The optional TLS listener: TLS 1.3 answers, a client limited to TLS 1.2 is refused, plain
//! HTTP to the TLS port gets nothing, and a configuration naming a certificate without its key
//! is refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use coffer_app::{App, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_13_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();

    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", dir.path().join("coffer.db").display());
    config.keys.key_file = dir.path().join("master.json");
    config.rate_limit.enabled = false;
    config.server.tls_cert_file = Some(cert.clone());
    let e = App::build(config.clone(), "coffer-api").await.unwrap_err();
    assert!(e.to_string().contains("server.tls_cert_file"), "{e}");
    config.server.tls_key_file = Some(key.clone());
    let app = App::build(config, "coffer-api").await.unwrap();

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let tls = coffer_app::tls::server_config(&cert, &key).unwrap();
    let listener = coffer_app::tls::TlsListener::new(tcp, tls).unwrap();
    let router = app.router();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(coffer_app::serve_tls(router, listener, async {
        let _ = stopped.await;
    }));

    let root = reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert!(resp.headers().contains_key("x-request-id"));

    let old = reqwest::Client::builder()
        .add_root_certificate(root)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(
        old.get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .is_err(),
        "TLS 1.2 is refused"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{port}/healthz"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP is not served on the TLS port");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    app.shutdown().await;
}
