//! Registry auth: ECR.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::SdkConfig;
use base64::Engine;
use elastic_ci_core::secret::Secret;
use tracing::instrument;

use crate::error::{AwsError, AwsErrorKind};

/// Credentials for one registry, decoded from an ECR authorization token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The registry URL, such as `https://123456789012.dkr.ecr.us-east-1.amazonaws.com`.
    pub endpoint: String,
    pub username: String,
    pub password: Secret,
    pub expires_at: Option<SystemTime>,
}

/// What the stack needs from ECR.
#[async_trait]
pub trait RegistryAuth: Send + Sync {
    /// Login credentials for the given registries (account ids), or for the caller's own
    /// account's registry when `registry_ids` is empty.
    async fn authorization(
        &self,
        registry_ids: &[String],
    ) -> Result<Vec<RegistryCredentials>, AwsError>;
}

/// [`RegistryAuth`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct EcrRegistryAuth {
    client: aws_sdk_ecr::Client,
}

impl EcrRegistryAuth {
    pub fn new(sdk_config: &SdkConfig) -> EcrRegistryAuth {
        EcrRegistryAuth { client: aws_sdk_ecr::Client::new(sdk_config) }
    }
}

/// Decodes an ECR authorization token: base64 of `user:password`.
pub fn decode_authorization_token(token: &str) -> Option<(String, Secret)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), Secret::new(password)))
}

#[async_trait]
impl RegistryAuth for EcrRegistryAuth {
    #[instrument(skip_all, fields(?registry_ids))]
    async fn authorization(
        &self,
        registry_ids: &[String],
    ) -> Result<Vec<RegistryCredentials>, AwsError> {
        const OPERATION: &str = "GetAuthorizationToken";
        let resource = if registry_ids.is_empty() {
            "default registry".to_owned()
        } else {
            registry_ids.join(",")
        };
        #[allow(
            deprecated,
            reason = "registryIds is deprecated by ECR but still the only way to reach other accounts"
        )]
        let output = self
            .client
            .get_authorization_token()
            .set_registry_ids((!registry_ids.is_empty()).then(|| registry_ids.to_vec()))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(OPERATION, &resource, error))?;
        output
            .authorization_data
            .unwrap_or_default()
            .into_iter()
            .map(|data| {
                let (username, password) = data
                    .authorization_token
                    .as_deref()
                    .and_then(decode_authorization_token)
                    .ok_or_else(|| {
                        AwsError::new(
                            AwsErrorKind::Service,
                            OPERATION,
                            &resource,
                            "the authorization token is malformed",
                        )
                    })?;
                Ok(RegistryCredentials {
                    endpoint: data.proxy_endpoint.unwrap_or_default(),
                    username,
                    password,
                    expires_at: data.expires_at.and_then(|time| SystemTime::try_from(time).ok()),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_user_and_password() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pa:ss");
        let (user, password) = decode_authorization_token(&token).unwrap();
        assert_eq!(user, "AWS");
        assert_eq!(password.expose(), "pa:ss");
        assert!(decode_authorization_token("not base64!").is_none());
        assert!(
            decode_authorization_token(
                &base64::engine::general_purpose::STANDARD.encode("nocolon")
            )
            .is_none()
        );
    }
}
