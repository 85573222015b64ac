//! The key port on AWS KMS (`aws-kms`): the master key never leaves KMS.
//!
//! | port | KMS |
//! |---|---|
//! | generate | `GenerateDataKey` (AES_256) |
//! | unwrap | `Decrypt` (with the key id, so a blob of another key is refused) |
//! | rewrap | `ReEncrypt` per item, a few at a time, in order |
//! | rotate | `RotateKeyOnDemand` |
//! | retire | unsupported: KMS keeps every key material for decryption |
//! | status | `ListKeyRotations`: version n is the key material after n-1 rotations |
//!
//! The [`KeyContext`] is KMS's encryption context, so a blob only decrypts under the context
//! it was made for (and CloudTrail shows which wallet a call was for).
//!
//! KMS does not say which key material a ciphertext uses; the version recorded in a wrapped key
//! is the material that was current when it was made, as this process knew it (re-read every
//! `version_refresh` and after its own rotations). A rotation by another process is seen here
//! within that interval; a key wrapped meanwhile carries the older number and is simply
//! re-wrapped once more by the rotation worker.
//!
//! `connect` resolves the key id (which may be an alias) to the ARN that `ListKeyRotations` and
//! `RotateKeyOnDemand` need, and checks that the key is enabled, `SYMMETRIC_DEFAULT` and
//! `ENCRYPT_DECRYPT`. Credentials come from the AWS default chain or fixed keys; `endpoint_url`
//! serves moto, LocalStack or a VPC endpoint. The SDK's `BehaviorVersion` is pinned, with a
//! timeout per call (5 s by default) and at most two attempts, so an SDK upgrade does not change
//! retries unnoticed. Errors map by KMS error code (by HTTP status for a code it does not know):
//! a bad ciphertext is `Corrupt`; access, signature and disabled-key errors are `Denied`;
//! throttling and internal errors are `Unavailable`.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};
use coffer_crypto::DataKey;
use coffer_keys::{
    Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus, RewrapRequest,
    VersionInfo, VersionState, WrappedKey,
};
use futures_util::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroize as _;

/// The name recorded in every key this provider wraps.
pub const PROVIDER_NAME: &str = "aws-kms";

/// Where the credentials come from.
#[derive(Clone)]
pub enum KmsCredentials {
    /// The AWS default chain: environment, profile, web identity, ECS, instance metadata.
    DefaultChain,
    /// Fixed keys (moto or LocalStack locally; a CI user).
    Static {
        /// `AKIA…`.
        access_key_id: String,
        /// The secret key.
        secret_access_key: SecretString,
    },
}

impl fmt::Debug for KmsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultChain => f.write_str("DefaultChain"),
            Self::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .finish_non_exhaustive(),
        }
    }
}

/// Which key, where, and how.
#[derive(Debug, Clone)]
pub struct KmsSettings {
    /// The key id, ARN or alias (`alias/coffer-master`). Recorded in every wrapped key.
    pub key_id: String,
    /// The region, e.g. `eu-west-1`.
    pub region: String,
    /// Another endpoint than AWS's (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Where the credentials come from.
    pub credentials: KmsCredentials,
    /// Each call's whole time, retries included.
    pub timeout: Duration,
    /// `ReEncrypt` calls in flight during a batch re-wrap.
    pub rewrap_concurrency: usize,
    /// How long the current key material number is trusted before asking again.
    pub version_refresh: Duration,
}

impl KmsSettings {
    /// `key_id` in `region` through the default chain, 5 s per call, 8 re-wraps at a time.
    #[must_use]
    pub fn new(key_id: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            region: region.into(),
            endpoint_url: None,
            credentials: KmsCredentials::DefaultChain,
            timeout: Duration::from_secs(5),
            rewrap_concurrency: 8,
            version_refresh: Duration::from_secs(60),
        }
    }
}

/// See the [crate documentation](crate).
pub struct AwsKmsProvider {
    client: Client,
    settings: KmsSettings,
    /// The key's ARN (rotation calls take no alias).
    arn: String,
    /// The current material's number and when it was learned.
    active: Mutex<Option<(u32, Instant)>>,
}

coffer_macros::debug_non_exhaustive!(self => AwsKmsProvider { settings });

/// Names a KMS failure in the key port's terms.
fn key_error<E>(key_id: &str, e: SdkError<E, HttpResponse>) -> KeyError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let unavailable = |reason: String| KeyError::Unavailable {
        provider: PROVIDER_NAME.into(),
        reason,
    };
    let (service, status) = match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            (s.into_err(), status)
        }
        SdkError::TimeoutError(_) => return unavailable("timed out".into()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return unavailable(format!("no answer: {}", DisplayErrorContext(&e)));
        }
        other => {
            return KeyError::Other(
                format!("{PROVIDER_NAME}: {}", DisplayErrorContext(&other)).into(),
            );
        }
    };
    let code = service.code().unwrap_or("Unknown").to_owned();
    let reason = format!("{code}: {}", service.message().unwrap_or_default());
    match code.as_str() {
        "InvalidCiphertextException" | "IncorrectKeyException" => KeyError::Corrupt(reason),
        "NotFoundException" => KeyError::NotFound {
            key_id: key_id.into(),
            version: None,
        },
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "ExpiredTokenException"
        | "DisabledException"
        | "KMSInvalidStateException" => KeyError::Denied {
            provider: PROVIDER_NAME.into(),
            reason,
        },
        "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ThrottlingException"
        | "LimitExceededException"
        | "ServiceUnavailableException" => unavailable(reason),
        // An answer the SDK could not read a code from (a proxy's page, an XML error): its
        // status still says what kind of failure it is.
        _ if matches!(status, 401 | 403) => KeyError::Denied {
            provider: PROVIDER_NAME.into(),
            reason: format!("HTTP {status} {reason}"),
        },
        _ if status == 429 || status >= 500 => unavailable(format!("HTTP {status} {reason}")),
        _ => KeyError::Other(format!("{PROVIDER_NAME}: {reason}").into()),
    }
}

/// The data key in a KMS answer's plaintext, wiping the SDK's copy.
fn data_key_of(plaintext: Option<Blob>, operation: &str) -> Result<DataKey, KeyError> {
    let mut plain = plaintext
        .map(Blob::into_inner)
        .ok_or_else(|| KeyError::Other(format!("{operation} answered no plaintext").into()))?;
    let key = DataKey::from_slice(&plain).map_err(|e| KeyError::Corrupt(e.to_string()));
    plain.zeroize();
    key
}

fn encryption_context(context: &KeyContext) -> std::collections::HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl AwsKmsProvider {
    /// Builds the client and checks the key (enabled, symmetric, for encryption).
    ///
    /// # Errors
    /// `Unavailable`, `Denied`, `NotFound`, or `Other` for a key of the wrong kind.
    pub async fn connect(settings: KmsSettings) -> Result<Self, KeyError> {
        // Pinned, so an SDK upgrade does not change retry or timeout behaviour unnoticed.
        let mut loader = aws_config::defaults(BehaviorVersion::v2026_01_12())
            .region(aws_config::Region::new(settings.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(settings.timeout)
                    .operation_attempt_timeout(settings.timeout)
                    .operation_timeout(settings.timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let KmsCredentials::Static {
            access_key_id,
            secret_access_key,
        } = &settings.credentials
        {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key.expose_secret(),
                None,
                None,
                "coffer-config",
            ));
        }
        let client = Client::new(&loader.load().await);
        let arn = client
            .describe_key()
            .key_id(&settings.key_id)
            .send()
            .await
            .map_err(|e| key_error(&settings.key_id, e))?
            .key_metadata()
            .and_then(|m| m.arn())
            .unwrap_or(&settings.key_id)
            .to_owned();
        let provider = Self {
            client,
            settings,
            arn,
            active: Mutex::new(None),
        };
        provider.health().await?;
        Ok(provider)
    }

    fn err<E>(&self, e: SdkError<E, HttpResponse>) -> KeyError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        key_error(&self.settings.key_id, e)
    }

    fn check_ours(&self, wrapped: &WrappedKey) -> Result<(), KeyError> {
        wrapped.ensure_made_by(PROVIDER_NAME, &self.settings.key_id)
    }

    /// The key's rotations, oldest first (dates).
    async fn rotations(&self) -> Result<Vec<Option<SystemTime>>, KeyError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_key_rotations()
            .key_id(&self.arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err(e))?;
            out.extend(page.rotations().iter().map(|r| {
                r.rotation_date()
                    .and_then(|d| SystemTime::try_from(*d).ok())
            }));
        }
        out.sort();
        Ok(out)
    }

    async fn current_version(&self, fresh: bool) -> Result<u32, KeyError> {
        if !fresh
            && let Some((v, at)) = *self.active.lock().unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < self.settings.version_refresh
        {
            return Ok(v);
        }
        let n = u32::try_from(self.rotations().await?.len())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1);
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = Some((n, Instant::now()));
        Ok(n)
    }

    async fn reencrypt(&self, r: &RewrapRequest, version: u32) -> Result<WrappedKey, KeyError> {
        self.check_ours(&r.wrapped)?;
        let ctx = encryption_context(&r.context);
        let answer = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(r.wrapped.ciphertext.clone()))
            .source_key_id(&self.settings.key_id)
            .set_source_encryption_context(Some(ctx.clone()))
            .destination_key_id(&self.settings.key_id)
            .set_destination_encryption_context(Some(ctx))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let blob = answer
            .ciphertext_blob()
            .ok_or_else(|| KeyError::Other("ReEncrypt answered no ciphertext".into()))?;
        Ok(WrappedKey {
            provider: PROVIDER_NAME.into(),
            key_id: self.settings.key_id.clone(),
            version,
            ciphertext: blob.as_ref().to_vec(),
        })
    }
}

#[async_trait]
impl KeyProvider for AwsKmsProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn key_id(&self) -> &str {
        &self.settings.key_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rotate: true,
            retire: false,
        }
    }

    async fn generate_data_key(&self, context: &KeyContext) -> Result<GeneratedDataKey, KeyError> {
        let version = self.current_version(false).await?;
        let answer = self
            .client
            .generate_data_key()
            .key_id(&self.settings.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(encryption_context(context)))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let plaintext = data_key_of(answer.plaintext, "GenerateDataKey");
        let blob = answer
            .ciphertext_blob
            .ok_or_else(|| KeyError::Other("GenerateDataKey answered no ciphertext".into()))?;
        Ok(GeneratedDataKey {
            plaintext: plaintext?,
            wrapped: WrappedKey {
                provider: PROVIDER_NAME.into(),
                key_id: self.settings.key_id.clone(),
                version,
                ciphertext: blob.into_inner(),
            },
        })
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<DataKey, KeyError> {
        self.check_ours(wrapped)?;
        let answer = self
            .client
            .decrypt()
            .key_id(&self.settings.key_id)
            .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
            .set_encryption_context(Some(encryption_context(context)))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        data_key_of(answer.plaintext, "Decrypt")
    }

    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let version = self.current_version(false).await?;
        let calls: Vec<_> = batch
            .iter()
            .map(|r| Box::pin(self.reencrypt(r, version)))
            .collect();
        Ok(futures_util::stream::iter(calls)
            .buffered(self.settings.rewrap_concurrency.max(1))
            .collect()
            .await)
    }

    async fn status(&self) -> Result<KeyStatus, KeyError> {
        let rotations = self.rotations().await?;
        let created = self
            .client
            .describe_key()
            .key_id(&self.settings.key_id)
            .send()
            .await
            .map_err(|e| self.err(e))?
            .key_metadata()
            .and_then(|m| m.creation_date())
            .and_then(|d| SystemTime::try_from(*d).ok());
        let listed = u32::try_from(rotations.len())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1);
        // A rotation this process started may not be listed yet (see `rotate`).
        let latest = {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            let known = active
                .filter(|(_, at)| at.elapsed() < self.settings.version_refresh)
                .map_or(0, |(v, _)| v);
            let latest = listed.max(known);
            *active = Some((latest, Instant::now()));
            latest
        };
        let dates = std::iter::once(created).chain(rotations);
        Ok(KeyStatus {
            provider: PROVIDER_NAME.into(),
            key_id: self.settings.key_id.clone(),
            active_version: latest,
            versions: (1..=latest)
                .zip(dates)
                .map(|(version, created_at)| VersionInfo {
                    version,
                    state: if version == latest {
                        VersionState::Active
                    } else {
                        VersionState::DecryptOnly
                    },
                    created_at,
                })
                .collect(),
        })
    }

    async fn rotate(&self) -> Result<u32, KeyError> {
        let before = self.current_version(true).await?;
        self.client
            .rotate_key_on_demand()
            .key_id(&self.arn)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        // KMS may finish an on-demand rotation after answering, and lists it only then: the
        // new material is at least the next number.
        let v = self
            .current_version(true)
            .await?
            .max(before.saturating_add(1));
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = Some((v, Instant::now()));
        tracing::info!(key_id = %self.settings.key_id, version = v, "rotated the KMS key on demand");
        Ok(v)
    }

    async fn retire_versions_below(&self, _min_version: u32) -> Result<(), KeyError> {
        Err(KeyError::Unsupported {
            provider: PROVIDER_NAME.into(),
            operation: "retire",
            hint: "KMS keeps every key material of a key for decryption; to stop old data keys \
                   from opening, re-wrap them all and then disable or schedule the deletion of \
                   the whole key",
        })
    }

    async fn health(&self) -> Result<(), KeyError> {
        let described = self
            .client
            .describe_key()
            .key_id(&self.settings.key_id)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let meta = described
            .key_metadata()
            .ok_or_else(|| KeyError::Other("DescribeKey answered no metadata".into()))?;
        if meta.key_state() != Some(&KeyState::Enabled) {
            return Err(KeyError::Denied {
                provider: PROVIDER_NAME.into(),
                reason: format!(
                    "key {} is {:?}, not enabled",
                    self.settings.key_id,
                    meta.key_state()
                ),
            });
        }
        let symmetric = meta
            .key_spec()
            .is_some_and(|s| s.as_str() == "SYMMETRIC_DEFAULT");
        // KMS always says; moto leaves it out when the key was created without it.
        let for_encryption = meta
            .key_usage()
            .is_none_or(|u| u.as_str() == "ENCRYPT_DECRYPT");
        if !symmetric || !for_encryption {
            return Err(KeyError::Other(
                format!(
                    "key {} must be a SYMMETRIC_DEFAULT key for ENCRYPT_DECRYPT",
                    self.settings.key_id
                )
                .into(),
            ));
        }
        Ok(())
    }
}
