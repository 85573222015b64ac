//! `[events.nats]` makes the stream a sink of the outbox: a process starting with it creates
//! the sink (its id the stream's name hashed, so every process names the same one), takes a
//! changed subject prefix, and enables a stream that was disabled for failing. Nothing here
//! connects to NATS: publishing connects on first use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use coffer_app::{App, NatsSettings};
use coffer_outbox::{Sink, SubjectPrefix, Target};

async fn stream_sink(app: &App) -> Sink {
    let sinks = app.outbox_store.sinks().await.unwrap();
    let mut streams = sinks
        .into_iter()
        .filter(|s| matches!(s.target, Target::Stream(_)));
    let sink = streams.next().expect("the stream's sink");
    assert!(streams.next().is_none(), "one sink per stream");
    sink
}

#[tokio::test]
async fn a_process_with_a_stream_configured_keeps_its_sink_enabled_and_current() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::embedded(dir.path());
    config.events.nats = Some(NatsSettings {
        url: "nats://127.0.0.1:1".to_owned(),
        stream: "COFFER_T".to_owned(),
        subject_prefix: "coffer-t.one".to_owned(),
        ..NatsSettings::default()
    });
    let app = App::build(config.clone(), "coffer-worker").await.unwrap();
    let sink = stream_sink(&app).await;
    let expect = Sink::stream("COFFER_T", SubjectPrefix::parse("coffer-t.one").unwrap(), 0);
    assert_eq!((sink.id, &sink.target), (expect.id, &expect.target));
    assert!(sink.enabled);
    assert!(app.outbox_store.disable_sink(sink.id, 1).await.unwrap());
    app.shutdown().await;

    // Another start: enabled again.
    let app = App::build(config.clone(), "coffer-api").await.unwrap();
    let again = stream_sink(&app).await;
    assert_eq!((again.id, &again.target), (sink.id, &sink.target));
    assert!(again.enabled && again.disabled_at.is_none() && again.failures == 0);
    app.shutdown().await;

    // A new prefix: taken, on the same sink.
    config.events.nats.as_mut().unwrap().subject_prefix = "coffer-t.two".to_owned();
    let app = App::build(config, "coffer-api").await.unwrap();
    let moved = stream_sink(&app).await;
    assert_eq!(moved.id, sink.id);
    assert_eq!(
        moved.target,
        Target::Stream(SubjectPrefix::parse("coffer-t.two").unwrap())
    );
    app.shutdown().await;
}
