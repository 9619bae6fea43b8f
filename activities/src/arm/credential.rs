//! Where the bearer token comes from: a static token, or an `azure_identity` credential.

use std::sync::Arc;

use azure_core::cloud::CloudConfiguration;
use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};

use super::Secret;
use super::config::{ArmConfig, ArmSetupError, AuthChoice, Cloud};
use crate::ActivityError;

/// A source of bearer tokens. `azure_identity` credentials cache tokens and refresh them
/// before they expire, so asking for every request is cheap.
#[derive(Clone)]
pub(crate) enum TokenSource {
    Static(Secret),
    Azure {
        credential: Arc<dyn TokenCredential>,
        scope: String,
        kind: AuthChoice,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSource({})", self.kind().name())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn need(auth: AuthChoice, variable: &'static str) -> Result<String, ArmSetupError> {
    let value = env(variable).ok_or(ArmSetupError::MissingVariable {
        auth: auth.name(),
        variable,
    })?;
    if crate::secrets::SECRET_VARIABLES.contains(&variable) {
        crate::secrets::register(&value);
    }
    Ok(value)
}

/// Registers the federated token file's current content (the file is rotated while the
/// process runs; the credential reads it again for each new token).
fn register_federated_token() {
    if let Some(content) = crate::secrets::federated_token_file_content() {
        crate::secrets::register(&content);
    }
}

impl TokenSource {
    pub(crate) fn from_config(cfg: &ArmConfig) -> Result<Self, ArmSetupError> {
        let choice = match cfg.auth {
            AuthChoice::Auto => resolve_auto(cfg),
            other => other,
        };
        let scope = cfg.effective_scope();
        let wrap = |credential: Arc<dyn TokenCredential>| TokenSource::Azure {
            credential,
            scope: scope.clone(),
            kind: choice,
        };
        let fail = |source| ArmSetupError::Credential {
            auth: choice.name(),
            source,
        };
        // The Entra ID authority of the cloud the endpoint belongs to (sovereign clouds).
        let client_options = || ClientOptions {
            cloud: match Cloud::of_endpoint(&cfg.endpoint) {
                Some(Cloud::China) => Some(Arc::new(CloudConfiguration::AzureChina)),
                Some(Cloud::UsGovernment) => Some(Arc::new(CloudConfiguration::AzureGovernment)),
                _ => None,
            },
            ..Default::default()
        };
        match choice {
            AuthChoice::Token | AuthChoice::Auto => {
                let token = cfg.static_token.clone().ok_or(ArmSetupError::MissingToken)?;
                crate::secrets::register(token.expose());
                Ok(TokenSource::Static(token))
            }
            AuthChoice::DeveloperTools => Ok(wrap(DeveloperToolsCredential::new(None).map_err(fail)?)),
            AuthChoice::ManagedIdentity => {
                // A user-assigned identity is chosen by its client id, as the Azure SDKs do.
                let id = env("AZURE_CLIENT_ID");
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: id.map(UserAssignedId::ClientId),
                    ..Default::default()
                };
                Ok(wrap(ManagedIdentityCredential::new(Some(options)).map_err(fail)?))
            }
            AuthChoice::WorkloadIdentity => {
                need(choice, "AZURE_TENANT_ID")?;
                need(choice, "AZURE_CLIENT_ID")?;
                need(choice, "AZURE_FEDERATED_TOKEN_FILE")?;
                register_federated_token();
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    ..Default::default()
                };
                Ok(wrap(WorkloadIdentityCredential::new(Some(options)).map_err(fail)?))
            }
            AuthChoice::ClientSecret => {
                let tenant = need(choice, "AZURE_TENANT_ID")?;
                let client = need(choice, "AZURE_CLIENT_ID")?;
                let secret = need(choice, "AZURE_CLIENT_SECRET")?;
                let credential = ClientSecretCredential::new(
                    &tenant,
                    client,
                    azure_core::credentials::Secret::new(secret),
                    Some(ClientSecretCredentialOptions {
                        client_options: client_options(),
                    }),
                )
                .map_err(fail)?;
                Ok(wrap(credential))
            }
        }
    }

    /// The credential kind, for the audit trail.
    pub(crate) fn kind(&self) -> AuthChoice {
        match self {
            TokenSource::Static(_) => AuthChoice::Token,
            TokenSource::Azure { kind, .. } => *kind,
        }
    }

    /// A token for the next request.
    pub(crate) async fn token(&self) -> Result<Secret, ActivityError> {
        match self {
            TokenSource::Static(secret) => Ok(secret.clone()),
            TokenSource::Azure {
                credential,
                scope,
                kind,
            } => {
                let token = credential.get_token(&[scope.as_str()], None).await.map_err(|e| {
                    // azure_core errors describe the failing step, never the token itself.
                    ActivityError::failed(
                        "CredentialUnavailable",
                        format!("the {} credential gave no token: {e}", kind.name()),
                    )
                })?;
                if *kind == AuthChoice::WorkloadIdentity {
                    register_federated_token();
                }
                // Every token handed out is masked in whatever is saved from now on.
                crate::secrets::register(token.token.secret());
                Ok(Secret::new(token.token.secret()))
            }
        }
    }
}

fn resolve_auto(cfg: &ArmConfig) -> AuthChoice {
    if cfg.static_token.is_some() {
        AuthChoice::Token
    } else if env("AZURE_FEDERATED_TOKEN_FILE").is_some() && env("AZURE_CLIENT_ID").is_some() {
        AuthChoice::WorkloadIdentity
    } else if env("AZURE_CLIENT_SECRET").is_some()
        && env("AZURE_CLIENT_ID").is_some()
        && env("AZURE_TENANT_ID").is_some()
    {
        AuthChoice::ClientSecret
    } else if env("IDENTITY_ENDPOINT").is_some() || env("MSI_ENDPOINT").is_some() {
        AuthChoice::ManagedIdentity
    } else {
        AuthChoice::DeveloperTools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_token_is_registered_as_a_secret() {
        let endpoint = url::Url::parse("http://127.0.0.1:1").unwrap();
        let cfg = ArmConfig::with_token(endpoint, Secret::new("static-token-7d1e0c93"));
        assert_eq!(
            crate::secrets::redact_str("x static-token-7d1e0c93"),
            "x static-token-7d1e0c93"
        );
        TokenSource::from_config(&cfg).unwrap();
        assert_eq!(crate::secrets::redact_str("x static-token-7d1e0c93"), "x ***");
    }
}
