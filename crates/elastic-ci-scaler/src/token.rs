//! The Buildkite agent token: in clear from `BUILDKITE_AGENT_TOKEN`, or read with
//! decryption from the SSM parameter (name or full ARN) in
//! `BUILDKITE_AGENT_TOKEN_SSM_KEY`. Both have surrounding whitespace removed by
//! [`elastic_ci_core::secret::agent_token`], the rule the instance boot also follows.

use elastic_ci_aws::error::AwsError;
use elastic_ci_aws::ssm::ParameterStore;
use elastic_ci_core::scaling::config::TokenSource;
use elastic_ci_core::secret::{BlankTokenError, Secret, agent_token as trimmed_token};

/// The token could not be read. Names the parameter, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("failed to read the agent token from BUILDKITE_AGENT_TOKEN_SSM_KEY {name:?}: {source}")]
    Ssm {
        name: String,
        #[source]
        source: AwsError,
    },
    #[error("{0} (BUILDKITE_AGENT_TOKEN_SSM_KEY)")]
    Blank(#[from] BlankTokenError),
}

/// Resolves the agent token.
pub(crate) async fn agent_token(
    source: &TokenSource,
    parameters: &dyn ParameterStore,
) -> Result<Secret, TokenError> {
    match source {
        TokenSource::Plain(token) => Ok(token.clone()),
        TokenSource::Ssm(name) => {
            let parameter = parameters
                .get(name)
                .await
                .map_err(|source| TokenError::Ssm { name: name.clone(), source })?;
            Ok(trimmed_token(&parameter.value, &format!("SSM parameter {name:?}"))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use elastic_ci_aws::error::AwsErrorKind;
    use elastic_ci_aws::fake::FakeParameterStore;

    use super::*;

    #[tokio::test]
    async fn reads_the_token_by_name_or_arn() {
        let store = FakeParameterStore::default();
        store.put("/buildkite/agent-token", "tok\n");
        let by_name = TokenSource::Ssm("/buildkite/agent-token".into());
        assert_eq!(agent_token(&by_name, &store).await.unwrap().expose(), "tok");
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/buildkite/agent-token";
        let by_arn = agent_token(&TokenSource::Ssm(arn.into()), &store).await.unwrap();
        assert_eq!(by_arn.expose(), "tok");
        let plain = agent_token(&TokenSource::Plain(Secret::new("clear")), &store).await;
        assert_eq!(plain.unwrap().expose(), "clear");
    }

    #[tokio::test]
    async fn failures_name_the_parameter_but_not_the_value() {
        let store = FakeParameterStore::default();
        let missing = agent_token(&TokenSource::Ssm("/nope".into()), &store).await.unwrap_err();
        assert!(
            matches!(&missing, TokenError::Ssm { source, .. } if source.kind == AwsErrorKind::NotFound),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("\"/nope\""), "{missing}");
        store.put("/blank", "  ");
        let empty = agent_token(&TokenSource::Ssm("/blank".into()), &store).await.unwrap_err();
        assert_eq!(
            empty.to_string(),
            "the agent token in SSM parameter \"/blank\" is empty or only whitespace (BUILDKITE_AGENT_TOKEN_SSM_KEY)"
        );
        store.put("/throttled", "secret-value");
        store.faults.fail_next("GetParameter", AwsErrorKind::Throttled, 1);
        let throttled =
            agent_token(&TokenSource::Ssm("/throttled".into()), &store).await.unwrap_err();
        assert!(!throttled.to_string().contains("secret-value"));
        assert!(
            matches!(&throttled, TokenError::Ssm { source, .. } if source.kind == AwsErrorKind::Throttled),
            "{throttled:?}"
        );
    }
}
