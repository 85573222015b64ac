//! The master key provider as configured (local key file, Vault KV or Transit, AWS KMS),
//! connected and checked, then metered and cached as the services use it.

use std::sync::Arc;
use std::time::Duration;

use coffer_clock::Clock;
use coffer_keys::{CacheConfig, CachingKeyProvider, KeyProvider, MeteredKeyProvider};
use coffer_keys_aws::{AwsKmsProvider, KmsCredentials, KmsSettings};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource};
use coffer_keys_vault::{
    KvSettings, TransitSettings, VaultAuth, VaultConnection, VaultKvProvider, VaultTransitProvider,
};
use coffer_ledger::error::context;

use crate::AppError;
use crate::config::{Config, KeyProviderKind, VaultAuthMethod};
use crate::stores::create_parent;

/// The master key provider as the services use it: the configured provider, metered, behind
/// the unwrap cache (so the meter counts what reaches the key manager).
pub(crate) struct Keys {
    pub(crate) provider: Arc<dyn KeyProvider>,
    pub(crate) metered: Arc<MeteredKeyProvider>,
    pub(crate) cache: Arc<CachingKeyProvider>,
}

/// The configured master key provider, connected and checked.
pub(crate) async fn open_provider(config: &Config) -> Result<Arc<dyn KeyProvider>, AppError> {
    let keys = &config.keys;
    let failed = |e: coffer_keys::KeyError| {
        AppError::Keys(context(format!("key provider {}", keys.provider), e))
    };
    match keys.provider {
        KeyProviderKind::VaultKv | KeyProviderKind::VaultTransit => {
            let v = &config.vault;
            let mount = |default: &str| {
                if v.auth_mount.is_empty() {
                    default.to_owned()
                } else {
                    v.auth_mount.clone()
                }
            };
            // validate() made sure the method's settings are there.
            let secret = |s: &Option<crate::config::SecretSetting>| {
                s.as_ref()
                    .map(crate::config::SecretSetting::secret)
                    .unwrap_or_default()
            };
            let auth = match v.auth {
                VaultAuthMethod::Token => VaultAuth::Token(secret(&v.token)),
                VaultAuthMethod::Userpass => VaultAuth::Userpass {
                    mount: mount("userpass"),
                    username: v.username.clone().unwrap_or_default(),
                    password: secret(&v.password),
                },
                VaultAuthMethod::Approle => VaultAuth::AppRole {
                    mount: mount("approle"),
                    role_id: v.role_id.clone().unwrap_or_default(),
                    secret_id: secret(&v.secret_id),
                },
            };
            let mut conn = VaultConnection::new(v.address.clone(), auth);
            conn.namespace.clone_from(&v.namespace);
            conn.ca_file.clone_from(&v.ca_file);
            conn.timeout = Duration::from_millis(v.timeout_ms);
            if keys.provider == KeyProviderKind::VaultKv {
                let mut s = KvSettings::new(&keys.key_id);
                s.mount.clone_from(&v.kv_mount);
                s.prefix.clone_from(&v.kv_prefix);
                s.create_if_missing = v.create_key;
                s.refresh = Duration::from_secs(v.kv_refresh_secs);
                Ok(Arc::new(
                    VaultKvProvider::connect(conn, s).await.map_err(failed)?,
                ))
            } else {
                let mut s = TransitSettings::new(&keys.key_id);
                s.mount.clone_from(&v.transit_mount);
                s.create_if_missing = v.create_key;
                Ok(Arc::new(
                    VaultTransitProvider::connect(conn, s)
                        .await
                        .map_err(failed)?,
                ))
            }
        }
        KeyProviderKind::AwsKms => {
            let k = &config.aws_kms;
            let mut s = KmsSettings::new(&keys.key_id, &k.region);
            s.endpoint_url.clone_from(&k.endpoint_url);
            s.timeout = Duration::from_millis(k.timeout_ms);
            if let (Some(id), Some(secret)) = (&k.access_key_id, &k.secret_access_key) {
                s.credentials = KmsCredentials::Static {
                    access_key_id: id.clone(),
                    secret_access_key: secret.secret(),
                };
            }
            Ok(Arc::new(AwsKmsProvider::connect(s).await.map_err(failed)?))
        }
        KeyProviderKind::Local => {
            let source = match std::env::var("COFFER_MASTER_KEY") {
                Ok(inline) => LocalKeySource::Inline(zeroize::Zeroizing::new(inline)),
                Err(_) => {
                    create_parent(&keys.key_file).map_err(AppError::Keys)?;
                    LocalKeySource::File {
                        path: keys.key_file.clone(),
                        create_if_missing: keys.create_key_file,
                    }
                }
            };
            let local = LocalKeyProvider::open(source, &keys.key_id)
                .map_err(|e| AppError::Keys(Box::new(e)))?;
            Ok(Arc::new(local))
        }
    }
}

pub(crate) async fn open_keys(config: &Config, clock: &Arc<dyn Clock>) -> Result<Keys, AppError> {
    let provider = open_provider(config).await?;
    let metered = Arc::new(MeteredKeyProvider::new(provider));
    let cache = CacheConfig {
        max_entries: std::num::NonZeroUsize::new(config.keys.cache_entries)
            .unwrap_or(std::num::NonZeroUsize::MIN),
        max_age: Duration::from_secs(config.keys.cache_ttl_secs),
    };
    let cache = Arc::new(CachingKeyProvider::with_clock(
        metered.clone(),
        cache,
        clock.clone(),
    ));
    Ok(Keys {
        provider: cache.clone(),
        metered,
        cache,
    })
}
