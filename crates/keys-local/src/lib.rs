//! The embedded-default [`KeyProvider`]: versioned master keys held in process memory, read from
//! a key file (mode 0600, created on first run when allowed) or from inline material such as the
//! `COFFER_MASTER_KEY` environment variable.
//!
//! Data keys are wrapped locally as [`coffer_crypto::Envelope`]s whose key reference is the
//! master key id and version, bound to the [`KeyContext`].
//!
//! Several processes may share one key file (API replicas and the worker on one host): each
//! operation checks whether the file changed (one `stat`) and reloads it, so a rotation or
//! retirement made by the worker is seen by the API at its next call. Rotation and retirement
//! take an exclusive lock on `<file>.lock` and replace the file atomically.
//!
//! The key file is JSON: `format`, `key_id`, and `versions` of `{version, state, created_at,
//! key}`, the state `active`, `decrypt_only` or `retired`, the key base64 of 32 bytes. Inline
//! material is one base64 key (version 1) or `1:<b64>,2:<b64>,…` (the highest active); it is
//! read-only. A change to the file is validated before it is written, then written to a
//! temporary file (mode 0600), synced, renamed over the old one, and the directory synced.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use coffer_crypto::{DataKey, KeyRef, MasterKey};
use coffer_keys::keyring::{Keyring, RingVersion};
use coffer_keys::{
    Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus, RewrapRequest,
    VersionState, WrappedKey,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The name recorded in every key this provider wraps.
pub const PROVIDER_NAME: &str = "local";
/// The master key id used unless configured otherwise.
pub const DEFAULT_KEY_ID: &str = "coffer-master";
/// The origin name used in errors about inline material.
pub const ENV_ORIGIN: &str = "COFFER_MASTER_KEY";

const FILE_FORMAT: u32 = 1;

/// Where the master keys come from.
pub enum LocalKeySource {
    /// A key file. With `create_if_missing`, an absent file is created with one fresh version
    /// (and a warning to back it up); without it, an absent file is an error.
    File {
        /// Path of the key file.
        path: PathBuf,
        /// Create the file when absent.
        create_if_missing: bool,
    },
    /// Inline material: one base64 key (version 1), or `1:<base64>,2:<base64>,…` with the
    /// highest version active. Read-only: rotation means changing the value and restarting.
    Inline(Zeroizing<String>),
}

impl fmt::Debug for LocalKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File {
                path,
                create_if_missing,
            } => f
                .debug_struct("File")
                .field("path", path)
                .field("create_if_missing", create_if_missing)
                .finish(),
            Self::Inline(_) => f.write_str("Inline([REDACTED])"),
        }
    }
}

/// Why the master keys could not be loaded. Each message says what is wrong and how to fix it,
/// and never contains key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalKeyError {
    /// The configured key file does not exist and may not be created.
    #[error(
        "master key file {path} does not exist: restore it from backup, or create a new one with \
         `cargo xtask keygen --out {path}` (only for a new installation: existing data needs the \
         old key)"
    )]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The key file may be read by group or others.
    #[error(
        "master key file {path} is readable by group or others (mode {mode:03o}): run `chmod 600 \
         {path}` and check who could have copied it"
    )]
    InsecurePermissions {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Material is not base64.
    #[error(
        "master key version {version} from {origin} is not valid base64: generate one with `cargo xtask keygen`"
    )]
    NotBase64 {
        /// File path or variable name.
        origin: String,
        /// Which version.
        version: u32,
    },
    /// Material is not 32 bytes.
    #[error(
        "master key version {version} from {origin} decodes to {found} bytes, not 32: generate one with `cargo xtask keygen`"
    )]
    WrongLength {
        /// File path or variable name.
        origin: String,
        /// Which version.
        version: u32,
        /// How many bytes it decodes to.
        found: usize,
    },
    /// Material is 32 zero bytes.
    #[error(
        "master key version {version} from {origin} is all zero bytes, which is never a real key: generate one with `cargo xtask keygen`"
    )]
    AllZero {
        /// File path or variable name.
        origin: String,
        /// Which version.
        version: u32,
    },
    /// The file or value has the wrong structure.
    #[error("master keys from {origin} are malformed: {reason}")]
    Malformed {
        /// File path or variable name.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be read or written.
    #[error("master key file {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The key file on disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: u32,
    key_id: String,
    versions: Vec<StoredVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredVersion {
    version: u32,
    state: StoredState,
    /// Unix seconds.
    created_at: u64,
    /// Base64 of 32 bytes.
    key: String,
}

impl Drop for StoredVersion {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredState {
    Active,
    DecryptOnly,
    Retired,
}

impl From<StoredState> for VersionState {
    fn from(s: StoredState) -> Self {
        match s {
            StoredState::Active => Self::Active,
            StoredState::DecryptOnly => Self::DecryptOnly,
            StoredState::Retired => Self::Retired,
        }
    }
}

/// What identifies one content of the key file, to notice when another process changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    ino: u64,
}

struct Loaded {
    ring: Keyring,
    stamp: Option<FileStamp>,
}

/// See the [crate documentation](crate).
pub struct LocalKeyProvider {
    key_id: String,
    /// The key file, or `None` for inline material.
    path: Option<PathBuf>,
    loaded: RwLock<Loaded>,
}

coffer_macros::debug_non_exhaustive!(self => LocalKeyProvider { key_id, path });

fn decode_material(text: &str, origin: &str, version: u32) -> Result<MasterKey, LocalKeyError> {
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
        .ok_or_else(|| LocalKeyError::NotBase64 {
            origin: origin.to_owned(),
            version,
        })?;
    MasterKey::from_configured(&bytes).map_err(|e| match e {
        coffer_crypto::KeyMaterialError::AllZero => LocalKeyError::AllZero {
            origin: origin.to_owned(),
            version,
        },
        coffer_crypto::KeyMaterialError::WrongLength { found } => LocalKeyError::WrongLength {
            origin: origin.to_owned(),
            version,
            found,
        },
    })
}

fn malformed(origin: &str, reason: impl Into<String>) -> LocalKeyError {
    LocalKeyError::Malformed {
        origin: origin.to_owned(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LocalKeyError + '_ {
    move |source| LocalKeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn build(file: &KeyFile, origin: &str) -> Result<Loaded, LocalKeyError> {
    if file.format != FILE_FORMAT {
        return Err(malformed(
            origin,
            format!(
                "unknown format {} (this build reads {FILE_FORMAT})",
                file.format
            ),
        ));
    }
    let mut versions = BTreeMap::new();
    for v in &file.versions {
        if v.version == 0 {
            return Err(malformed(origin, "versions start at 1"));
        }
        let version = RingVersion {
            key: decode_material(&v.key, origin, v.version)?,
            state: v.state.into(),
            created_at: Some(UNIX_EPOCH + Duration::from_secs(v.created_at)),
        };
        if versions.insert(v.version, version).is_some() {
            return Err(malformed(
                origin,
                format!("version {} appears twice", v.version),
            ));
        }
    }
    let ring = Keyring::new(PROVIDER_NAME, &file.key_id, versions)
        .map_err(|e| malformed(origin, e.to_string()))?;
    Ok(Loaded { ring, stamp: None })
}

fn check_key_id(key_id: &str) -> Result<(), LocalKeyError> {
    if key_id.is_empty() || KeyRef::new(key_id, 0).is_err() {
        return Err(malformed(
            key_id,
            "key id must be 1-64 characters of [A-Za-z0-9._:/-]",
        ));
    }
    Ok(())
}

fn stamp(path: &Path) -> Result<FileStamp, LocalKeyError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        ino: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), LocalKeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(LocalKeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), LocalKeyError> {
    Ok(())
}

fn read_file(path: &Path) -> Result<(KeyFile, FileStamp), LocalKeyError> {
    check_permissions(path)?;
    let before = stamp(path)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err(path))?);
    let origin = path.display().to_string();
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
        // Only the category and position: serde_json's own message can quote the offending
        // value, which may be key material.
        malformed(
            &origin,
            format!(
                "not a Coffer key file ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
    Ok((file, before))
}

/// Writes `text` to a new private (0600) temporary file beside `path`, synced; returns its path.
/// The name is unique to this process and call (`create_new`), so it is always a fresh file
/// with a fresh mode, never shared with a concurrent writer.
fn write_private_temp(path: &Path, text: &str) -> Result<PathBuf, LocalKeyError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{n}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp).map_err(io_err(&tmp))?;
    out.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    out.write_all(b"\n").map_err(io_err(&tmp))?;
    out.sync_all().map_err(io_err(&tmp))?;
    Ok(tmp)
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn sync_dir(path: &Path) {
    if let Ok(d) = fs::File::open(parent_dir(path)) {
        // Makes a rename or link durable; failure here does not undo it.
        let _ = d.sync_all();
    }
}

fn to_json(path: &Path, file: &KeyFile) -> Result<Zeroizing<String>, LocalKeyError> {
    serde_json::to_string_pretty(file)
        .map(Zeroizing::new)
        .map_err(|e| malformed(&path.display().to_string(), e.to_string()))
}

/// Replaces `path` with `file` atomically: a complete new file is renamed over the old one.
fn write_file(path: &Path, file: &KeyFile) -> Result<(), LocalKeyError> {
    let tmp = write_private_temp(path, &to_json(path, file)?)?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path);
    Ok(())
}

/// A new key file document with one fresh active version.
fn fresh_file(key_id: &str) -> KeyFile {
    KeyFile {
        format: FILE_FORMAT,
        key_id: key_id.to_owned(),
        versions: vec![StoredVersion {
            version: 1,
            state: StoredState::Active,
            created_at: unix_now(),
            key: STANDARD.encode(MasterKey::generate().expose_secret()),
        }],
    }
}

/// Creates a new key file with one fresh version, refusing to overwrite an existing one.
///
/// # Errors
/// [`LocalKeyError::Io`] (including when the file already exists) or a bad key id.
pub fn create_key_file(path: &Path, key_id: &str) -> Result<(), LocalKeyError> {
    check_key_id(key_id)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io_err(dir))?;
    }
    // Written completely elsewhere, then linked into place: the link fails if the file exists,
    // and whoever reads the path sees either nothing or a whole file.
    let tmp = write_private_temp(path, &to_json(path, &fresh_file(key_id))?)?;
    let linked = fs::hard_link(&tmp, path).map_err(io_err(path));
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_dir(path);
    Ok(())
}

/// Fresh key material in base64, as `COFFER_MASTER_KEY` takes it.
#[must_use]
pub fn generate_inline_key() -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(MasterKey::generate().expose_secret()))
}

fn parse_inline(value: &str, key_id: &str) -> Result<Loaded, LocalKeyError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(malformed(ENV_ORIGIN, "it is empty"));
    }
    let mut versions = BTreeMap::new();
    if !value.contains(':') {
        versions.insert(
            1,
            RingVersion {
                key: decode_material(value, ENV_ORIGIN, 1)?,
                state: VersionState::Active,
                created_at: None,
            },
        );
    } else {
        for item in value.split(',') {
            let (v, material) = item.split_once(':').ok_or_else(|| {
                malformed(
                    ENV_ORIGIN,
                    "expected `<version>:<base64>` items separated by commas",
                )
            })?;
            let v: u32 = v
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| malformed(ENV_ORIGIN, "versions are whole numbers from 1"))?;
            let version = RingVersion {
                key: decode_material(material, ENV_ORIGIN, v)?,
                state: VersionState::DecryptOnly,
                created_at: None,
            };
            if versions.insert(v, version).is_some() {
                return Err(malformed(ENV_ORIGIN, format!("version {v} appears twice")));
            }
        }
    }
    let active = versions.keys().next_back().copied().unwrap_or(1);
    if let Some(v) = versions.get_mut(&active) {
        v.state = VersionState::Active;
    }
    let ring = Keyring::new(PROVIDER_NAME, key_id, versions)
        .map_err(|e| malformed(ENV_ORIGIN, e.to_string()))?;
    Ok(Loaded { ring, stamp: None })
}

impl LocalKeyProvider {
    /// Loads the master keys, refusing bad material with an error that says how to fix it.
    /// Never falls back to a generated key when material was configured.
    ///
    /// # Errors
    /// Any [`LocalKeyError`].
    pub fn open(source: LocalKeySource, key_id: &str) -> Result<Self, LocalKeyError> {
        check_key_id(key_id)?;
        match source {
            LocalKeySource::Inline(value) => Ok(Self {
                key_id: key_id.to_owned(),
                path: None,
                loaded: RwLock::new(parse_inline(&value, key_id)?),
            }),
            LocalKeySource::File {
                path,
                create_if_missing,
            } => {
                if !path.exists() {
                    if !create_if_missing {
                        return Err(LocalKeyError::Missing { path });
                    }
                    match create_key_file(&path, key_id) {
                        Ok(()) => tracing::warn!(
                            path = %path.display(),
                            "created a new master key file: back it up now and keep it apart \
                             from database backups; without it no wallet can be decrypted"
                        ),
                        // Another process created it first: use theirs.
                        Err(LocalKeyError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
                let loaded = Self::load_file(&path, key_id)?;
                Ok(Self {
                    key_id: key_id.to_owned(),
                    path: Some(path),
                    loaded: RwLock::new(loaded),
                })
            }
        }
    }

    fn load_file(path: &Path, key_id: &str) -> Result<Loaded, LocalKeyError> {
        let (file, stamp) = read_file(path)?;
        if file.key_id != key_id {
            return Err(malformed(
                &path.display().to_string(),
                format!(
                    "it holds master key {:?}, but {key_id:?} is configured",
                    file.key_id
                ),
            ));
        }
        let mut loaded = build(&file, &path.display().to_string())?;
        loaded.stamp = Some(stamp);
        Ok(loaded)
    }

    fn unavailable(reason: impl fmt::Display) -> KeyError {
        KeyError::Unavailable {
            provider: PROVIDER_NAME.into(),
            reason: reason.to_string(),
        }
    }

    /// Reloads the key file when another process changed it. A file that vanished or broke
    /// after start-up is reported; the keys already loaded stay in use.
    fn refresh(&self) -> Result<(), KeyError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let current = stamp(path).map_err(Self::unavailable)?;
        let known = self
            .loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stamp
            .clone();
        if known.as_ref() == Some(&current) {
            return Ok(());
        }
        let fresh = Self::load_file(path, &self.key_id).map_err(Self::unavailable)?;
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn refresh_or_warn(&self) {
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "master key file could not be re-read; using the keys loaded before");
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_only(&self, operation: &'static str) -> KeyError {
        KeyError::Unsupported {
            provider: PROVIDER_NAME.into(),
            operation,
            hint: "inline master keys (COFFER_MASTER_KEY) are read-only: add a version to the \
                   value (`1:<old>,2:<new>`) and restart, or use a key file",
        }
    }

    /// Read-modify-write of the key file under an exclusive lock on `<file>.lock`.
    fn update_file(
        &self,
        change: impl FnOnce(&mut KeyFile) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        let Some(path) = &self.path else {
            return Err(self.read_only("changing master keys"));
        };
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock_path = PathBuf::from(lock_name);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Self::unavailable)?;
        lock.lock().map_err(Self::unavailable)?;
        let result = (|| {
            let (mut file, _) = read_file(path).map_err(Self::unavailable)?;
            change(&mut file)?;
            // Validate before writing: never replace a good file with a bad one.
            build(&file, &path.display().to_string()).map_err(|e| KeyError::Other(Box::new(e)))?;
            write_file(path, &file).map_err(Self::unavailable)
        })();
        // Dropping the handle releases the lock as well; unlock explicitly to be prompt.
        let _ = lock.unlock();
        result?;
        self.refresh()
    }
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn capabilities(&self) -> Capabilities {
        let writable = self.path.is_some();
        Capabilities {
            rotate: writable,
            retire: writable,
        }
    }

    async fn generate_data_key(&self, context: &KeyContext) -> Result<GeneratedDataKey, KeyError> {
        self.refresh_or_warn();
        let plaintext = DataKey::generate();
        let wrapped = self.read().ring.wrap(&plaintext, context)?;
        Ok(GeneratedDataKey { plaintext, wrapped })
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<DataKey, KeyError> {
        self.refresh_or_warn();
        self.read().ring.unwrap(wrapped, context)
    }

    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        self.refresh_or_warn();
        Ok(self.read().ring.rewrap(batch))
    }

    async fn status(&self) -> Result<KeyStatus, KeyError> {
        self.refresh_or_warn();
        Ok(self.read().ring.status())
    }

    async fn rotate(&self) -> Result<u32, KeyError> {
        if self.path.is_none() {
            return Err(self.read_only("rotate"));
        }
        let mut new_version = 0;
        self.update_file(|file| {
            new_version = file
                .versions
                .iter()
                .map(|v| v.version)
                .max()
                .unwrap_or(0)
                .saturating_add(1);
            for v in &mut file.versions {
                if v.state == StoredState::Active {
                    v.state = StoredState::DecryptOnly;
                }
            }
            file.versions.push(StoredVersion {
                version: new_version,
                state: StoredState::Active,
                created_at: unix_now(),
                key: STANDARD.encode(MasterKey::generate().expose_secret()),
            });
            Ok(())
        })?;
        tracing::info!(key_id = %self.key_id, version = new_version, "rotated the master key");
        Ok(new_version)
    }

    async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError> {
        if self.path.is_none() {
            return Err(self.read_only("retire"));
        }
        self.update_file(|file| {
            let active = file
                .versions
                .iter()
                .find(|v| v.state == StoredState::Active)
                .map_or(0, |v| v.version);
            if min_version > active {
                return Err(KeyError::Other(
                    format!("refusing to retire the active version {active} (asked to retire below {min_version})").into(),
                ));
            }
            for v in &mut file.versions {
                if v.version < min_version {
                    v.state = StoredState::Retired;
                }
            }
            Ok(())
        })?;
        tracing::info!(key_id = %self.key_id, below = min_version, "retired master key versions");
        Ok(())
    }

    async fn health(&self) -> Result<(), KeyError> {
        // The keyring always has its active version; what can fail is re-reading the file.
        self.refresh()
    }
}
