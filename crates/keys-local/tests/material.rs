//! Bad master key material is refused at start-up with an error that names the problem and the
//! fix; good material in every accepted form loads; several processes share one key file.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use coffer_keys::{KeyContext, KeyError, KeyProvider, VersionState};
use coffer_keys_local::{
    DEFAULT_KEY_ID, LocalKeyError, LocalKeyProvider, LocalKeySource, create_key_file,
};
use zeroize::Zeroizing;

fn inline(value: &str) -> Result<LocalKeyProvider, LocalKeyError> {
    LocalKeyProvider::open(
        LocalKeySource::Inline(Zeroizing::new(value.to_owned())),
        DEFAULT_KEY_ID,
    )
}

fn file(path: &Path, create_if_missing: bool) -> Result<LocalKeyProvider, LocalKeyError> {
    LocalKeyProvider::open(
        LocalKeySource::File {
            path: path.to_owned(),
            create_if_missing,
        },
        DEFAULT_KEY_ID,
    )
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn key_file_json(versions: &[(u32, &str, String)]) -> String {
    let items: Vec<String> = versions
        .iter()
        .map(|(v, state, key)| {
            format!(r#"{{"version":{v},"state":"{state}","created_at":1700000000,"key":"{key}"}}"#)
        })
        .collect();
    format!(
        r#"{{"format":1,"key_id":"{DEFAULT_KEY_ID}","versions":[{}]}}"#,
        items.join(",")
    )
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[test]
fn inline_material_errors_are_exact() {
    let err = inline("not base64 at all!").unwrap_err();
    assert!(
        matches!(&err, LocalKeyError::NotBase64 { origin, version: 1 } if origin == "COFFER_MASTER_KEY"),
        "{err:?}"
    );
    let err = inline(&b64(&[7; 16])).unwrap_err();
    assert!(
        matches!(
            err,
            LocalKeyError::WrongLength {
                found: 16,
                version: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let err = inline(&b64(&[0; 32])).unwrap_err();
    assert!(
        matches!(err, LocalKeyError::AllZero { version: 1, .. }),
        "{err:?}"
    );
    let err = inline("   ").unwrap_err();
    assert!(matches!(err, LocalKeyError::Malformed { .. }), "{err:?}");
    let err = inline(&format!("1:{},1:{}", b64(&[1; 32]), b64(&[2; 32]))).unwrap_err();
    assert!(matches!(err, LocalKeyError::Malformed { .. }), "{err:?}");
    let err = inline(&format!("0:{}", b64(&[1; 32]))).unwrap_err();
    assert!(matches!(err, LocalKeyError::Malformed { .. }), "{err:?}");
    let err = inline(&format!("1:{},2:{}", b64(&[1; 32]), b64(&[0; 32]))).unwrap_err();
    assert!(
        matches!(err, LocalKeyError::AllZero { version: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn error_messages_say_how_to_fix_and_never_echo_material() {
    let secretish = b64(&[0xEE; 20]);
    let msg = inline(&secretish).unwrap_err().to_string();
    assert!(msg.contains("cargo xtask keygen"), "{msg}");
    assert!(!msg.contains(&secretish), "{msg}");
}

#[tokio::test]
async fn inline_material_in_every_accepted_form_loads() {
    let key = [9u8; 32];
    for value in [
        b64(&key),
        format!("  {}\n", b64(&key)),
        URL_SAFE_NO_PAD.encode(key),
    ] {
        let p = inline(&value).unwrap();
        assert_eq!(p.status().await.unwrap().active_version, 1);
    }
    let p = inline(&format!("1:{},3:{}", b64(&[1; 32]), b64(&[3; 32]))).unwrap();
    let status = p.status().await.unwrap();
    assert_eq!(status.active_version, 3);
    assert_eq!(status.versions[0].state, VersionState::DecryptOnly);
}

#[tokio::test]
async fn the_same_inline_key_unwraps_across_restarts_and_unknown_versions_are_named() {
    let v1 = b64(&[1; 32]);
    let both = format!("1:{v1},2:{}", b64(&[2; 32]));
    let newer = inline(&both).unwrap();
    let ctx = KeyContext::new().with("wallet_id", "w1");
    let g = newer.generate_data_key(&ctx).await.unwrap();
    assert_eq!(g.wrapped.version, 2);
    // A restart with the same value unwraps it.
    let restarted = inline(&both).unwrap();
    let k = restarted.unwrap_data_key(&g.wrapped, &ctx).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
    // A process that only knows version 1 names the missing version.
    let older = inline(&v1).unwrap();
    let err = older.unwrap_data_key(&g.wrapped, &ctx).await.unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NotFound {
                version: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn missing_file_is_an_error_unless_creation_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let err = file(&path, false).unwrap_err();
    assert!(
        matches!(&err, LocalKeyError::Missing { path: p } if *p == path),
        "{err:?}"
    );
    assert!(
        !path.exists(),
        "nothing may be generated when creation is not allowed"
    );

    file(&path, true).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_created_file_is_reused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let first = file(&path, true).unwrap();
    let ctx = KeyContext::new();
    let g = first.generate_data_key(&ctx).await.unwrap();
    let before = fs::read(&path).unwrap();
    let second = file(&path, true).unwrap();
    assert_eq!(fs::read(&path).unwrap(), before);
    let k = second.unwrap_data_key(&g.wrapped, &ctx).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
    // create_key_file never overwrites.
    let err = create_key_file(&path, DEFAULT_KEY_ID).unwrap_err();
    assert!(matches!(err, LocalKeyError::Io { .. }), "{err:?}");
}

#[test]
fn group_or_world_readable_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let json = key_file_json(&[(1, "active", b64(&[5; 32]))]);
    for mode in [0o640, 0o604, 0o660, 0o644] {
        write_mode(&path, &json, mode);
        let err = file(&path, false).unwrap_err();
        assert!(
            matches!(&err, LocalKeyError::InsecurePermissions { mode: m, .. } if *m == mode),
            "{mode:o}: {err:?}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    write_mode(&path, &json, 0o600);
    file(&path, false).unwrap();
    write_mode(&path, &json, 0o400);
    file(&path, false).unwrap();
}

#[test]
fn bad_material_in_a_file_is_refused_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let good = b64(&[5; 32]);
    type Expect = fn(&LocalKeyError) -> bool;
    let cases: Vec<(String, Expect)> = vec![
        (
            key_file_json(&[
                (1, "decrypt_only", good.clone()),
                (2, "active", "%%%".into()),
            ]),
            |e| matches!(e, LocalKeyError::NotBase64 { version: 2, .. }),
        ),
        (key_file_json(&[(1, "active", b64(&[5; 33]))]), |e| {
            matches!(
                e,
                LocalKeyError::WrongLength {
                    version: 1,
                    found: 33,
                    ..
                }
            )
        }),
        (key_file_json(&[(1, "active", b64(&[0; 32]))]), |e| {
            matches!(e, LocalKeyError::AllZero { version: 1, .. })
        }),
        (
            key_file_json(&[(1, "decrypt_only", good.clone())]),
            |e| matches!(e, LocalKeyError::Malformed { reason, .. } if reason.contains("no version is active")),
        ),
        (
            key_file_json(&[(1, "active", good.clone()), (2, "active", b64(&[6; 32]))]),
            |e| matches!(e, LocalKeyError::Malformed { reason, .. } if reason.contains("more than one")),
        ),
        (
            key_file_json(&[(1, "active", good.clone()), (1, "retired", b64(&[6; 32]))]),
            |e| matches!(e, LocalKeyError::Malformed { reason, .. } if reason.contains("twice")),
        ),
        ("{not json".into(), |e| {
            matches!(e, LocalKeyError::Malformed { .. })
        }),
        (
            key_file_json(&[(1, "active", good.clone())]).replace(DEFAULT_KEY_ID, "someone-else"),
            |e| matches!(e, LocalKeyError::Malformed { reason, .. } if reason.contains("someone-else")),
        ),
        (
            key_file_json(&[(1, "active", good.clone())]).replace("\"format\":1", "\"format\":9"),
            |e| matches!(e, LocalKeyError::Malformed { reason, .. } if reason.contains("format 9")),
        ),
    ];
    for (json, expected) in cases {
        write_mode(&path, &json, 0o600);
        let err = file(&path, true).unwrap_err();
        assert!(expected(&err), "{json}\n=> {err:?}");
        // Never replaced by a generated key.
        assert_eq!(fs::read_to_string(&path).unwrap(), json);
    }
}

fn shared_pair() -> (
    LocalKeyProvider,
    LocalKeyProvider,
    tempfile::TempDir,
    PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let worker = file(&path, true).unwrap();
    let api = file(&path, false).unwrap();
    (worker, api, dir, path)
}

#[tokio::test]
async fn a_rotation_by_one_process_is_seen_by_another() {
    let (worker, api, _dir, _) = shared_pair();
    let ctx = KeyContext::new().with("wallet_id", "w1");
    let v2 = worker.rotate().await.unwrap();
    assert_eq!(v2, 2);
    let g = api.generate_data_key(&ctx).await.unwrap();
    assert_eq!(
        g.wrapped.version, 2,
        "the API wraps under the worker's new version"
    );
    let k = worker.unwrap_data_key(&g.wrapped, &ctx).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
}

#[tokio::test]
async fn a_retirement_by_one_process_is_enforced_by_another() {
    let (worker, api, _dir, _) = shared_pair();
    let ctx = KeyContext::new();
    let old = api.generate_data_key(&ctx).await.unwrap();
    worker.rotate().await.unwrap();
    worker.retire_versions_below(2).await.unwrap();
    let err = api.unwrap_data_key(&old.wrapped, &ctx).await.unwrap_err();
    assert!(
        matches!(err, KeyError::Retired { version: 1, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_active_version_cannot_be_retired_and_the_file_is_unchanged() {
    let (worker, _api, _dir, path) = shared_pair();
    let before = fs::read(&path).unwrap();
    assert!(worker.retire_versions_below(2).await.is_err());
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn rotated_files_stay_private() {
    let (worker, _api, _dir, path) = shared_pair();
    worker.rotate().await.unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn concurrent_rotations_from_two_processes_do_not_lose_a_version() {
    let (worker, api, _dir, _) = shared_pair();
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            (0..5)
                .map(|_| rt.block_on(worker.rotate()).unwrap())
                .collect::<Vec<_>>()
        }),
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let v: Vec<_> = (0..5).map(|_| rt.block_on(api.rotate()).unwrap()).collect();
            (v, rt.block_on(api.status()).unwrap())
        }),
    );
    let mut all = a.unwrap();
    let (b, _) = b.unwrap();
    all.extend(b);
    all.sort_unstable();
    assert_eq!(
        all,
        (2..=11).collect::<Vec<_>>(),
        "each rotation got its own version"
    );
}

#[test]
fn debug_output_hides_inline_material() {
    let value = b64(&[0x42; 32]);
    let shown = format!(
        "{:?}",
        LocalKeySource::Inline(Zeroizing::new(value.clone()))
    );
    assert!(!shown.contains(&value), "{shown}");
    let p = inline(&value).unwrap();
    assert!(!format!("{p:?}").contains(&value));
}

#[test]
fn a_malformed_file_error_never_quotes_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.json");
    let secretish = b64(&[0x5c; 32]);
    for json in [
        key_file_json(&[(1, "active", b64(&[5; 32]))])
            .replace("\"active\"", &format!("\"{secretish}\"")),
        format!(
            r#"{{"format":1,"key_id":"{DEFAULT_KEY_ID}","versions":[{{"version":"{secretish}"}}]}}"#
        ),
    ] {
        write_mode(&path, &json, 0o600);
        let err = file(&path, false).unwrap_err();
        assert!(matches!(err, LocalKeyError::Malformed { .. }), "{err:?}");
        assert!(!err.to_string().contains(&secretish), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}

#[test]
fn processes_racing_to_create_the_key_file_end_up_with_one_key() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.json");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || file(&path, true).map(|_| fs::read(&path).unwrap()))
            })
            .collect();
        let contents: Vec<Vec<u8>> = handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("every racer opens the same file"))
            .collect();
        assert!(contents.windows(2).all(|w| w[0] == w[1]));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
