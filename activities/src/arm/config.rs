//! What the CLI gives the client: endpoint, cloud and how to authenticate.

use std::str::FromStr;

use url::Url;

use super::Secret;

/// A named Azure cloud: its ARM endpoint and token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// The public cloud, `https://management.azure.com`.
    Public,
    /// Azure operated by 21Vianet (China), `https://management.chinacloudapi.cn`.
    China,
    /// Azure Government (US), `https://management.usgovcloudapi.net`.
    UsGovernment,
}

impl Cloud {
    /// The ARM endpoint of this cloud.
    pub fn endpoint(self) -> Url {
        let text = match self {
            Cloud::Public => "https://management.azure.com",
            Cloud::China => "https://management.chinacloudapi.cn",
            Cloud::UsGovernment => "https://management.usgovcloudapi.net",
        };
        Url::parse(text).unwrap_or_else(|_| unreachable!("constant URL"))
    }

    /// The token scope for ARM in this cloud.
    pub fn scope(self) -> &'static str {
        match self {
            Cloud::Public => "https://management.azure.com/.default",
            Cloud::China => "https://management.chinacloudapi.cn/.default",
            Cloud::UsGovernment => "https://management.core.usgovcloudapi.net/.default",
        }
    }

    /// The cloud whose endpoint is `endpoint`, if it is a known one.
    pub fn of_endpoint(endpoint: &Url) -> Option<Cloud> {
        [Cloud::Public, Cloud::China, Cloud::UsGovernment]
            .into_iter()
            .find(|c| c.endpoint().host_str() == endpoint.host_str())
    }
}

impl FromStr for Cloud {
    type Err = ArmSetupError;

    /// `public` (or `AzureCloud`), `china` (`AzureChinaCloud`), `usgov` (`AzureUSGovernment`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "public" | "azurecloud" => Ok(Cloud::Public),
            "china" | "azurechinacloud" => Ok(Cloud::China),
            "usgov" | "usgovernment" | "azureusgovernment" => Ok(Cloud::UsGovernment),
            _ => Err(ArmSetupError::UnknownCloud { name: s.to_owned() }),
        }
    }
}

/// How the client gets its bearer token (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthChoice {
    /// Pick from the environment: a static token (`FOGBOOK_ARM_TOKEN`) first, then workload
    /// identity (`AZURE_FEDERATED_TOKEN_FILE`), a client secret (`AZURE_CLIENT_SECRET`),
    /// managed identity (`IDENTITY_ENDPOINT` or `MSI_ENDPOINT`), and developer tools last.
    #[default]
    Auto,
    /// A static bearer token ([`ArmConfig::static_token`]); meant for the emulator.
    Token,
    /// Azure CLI, then Azure Developer CLI (`DeveloperToolsCredential`).
    DeveloperTools,
    /// Managed identity (App Service or IMDS).
    ManagedIdentity,
    /// Workload identity federation (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity,
    /// A service principal secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ClientSecret,
}

impl AuthChoice {
    /// The names `--auth` accepts.
    pub const NAMES: &[&str] = &[
        "auto",
        "token",
        "developer-tools",
        "managed-identity",
        "workload-identity",
        "client-secret",
    ];

    /// The name of this choice, as written in the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            AuthChoice::Auto => "auto",
            AuthChoice::Token => "token",
            AuthChoice::DeveloperTools => "developer-tools",
            AuthChoice::ManagedIdentity => "managed-identity",
            AuthChoice::WorkloadIdentity => "workload-identity",
            AuthChoice::ClientSecret => "client-secret",
        }
    }
}

impl FromStr for AuthChoice {
    type Err = ArmSetupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AuthChoice::Auto),
            "token" | "static-token" => Ok(AuthChoice::Token),
            "developer-tools" | "cli" | "azure-cli" => Ok(AuthChoice::DeveloperTools),
            "managed-identity" | "msi" => Ok(AuthChoice::ManagedIdentity),
            "workload-identity" => Ok(AuthChoice::WorkloadIdentity),
            "client-secret" => Ok(AuthChoice::ClientSecret),
            _ => Err(ArmSetupError::UnknownAuth { name: s.to_owned() }),
        }
    }
}

/// Everything [`crate::arm::ArmClient::new`] needs.
#[derive(Clone, Debug)]
pub struct ArmConfig {
    /// The ARM endpoint (`--arm-endpoint` / `FOGBOOK_ARM_ENDPOINT`); the emulator's base URL
    /// in tests and `--sim` runs.
    pub endpoint: Url,
    /// How to authenticate (`--auth`).
    pub auth: AuthChoice,
    /// A static bearer token (`FOGBOOK_ARM_TOKEN`), used by [`AuthChoice::Token`] and
    /// preferred by [`AuthChoice::Auto`].
    pub static_token: Option<Secret>,
    /// Per-request timeout.
    pub request_timeout: std::time::Duration,
    /// How many times a transient fault is retried within one call before the step fails
    /// with a retryable error (and the step's own retry policy takes over).
    pub max_retries: usize,
    /// The client's own request schedule per subscription (below ARM's limits by default).
    pub rates: super::limiter::Rates,
    /// A file in which that schedule is shared with every process that names the same file
    /// (the CLI: `<db>-arm-schedule`, beside the state database); `None`: this client alone.
    pub shared_schedule: Option<std::path::PathBuf>,
}

impl ArmConfig {
    /// A configuration for `endpoint` with `auth`, no static token, and default timeouts.
    pub fn new(endpoint: Url, auth: AuthChoice) -> Self {
        Self {
            endpoint,
            auth,
            static_token: None,
            request_timeout: std::time::Duration::from_secs(60),
            max_retries: 8,
            rates: super::limiter::Rates::default(),
            shared_schedule: None,
        }
    }

    /// The emulator (or any endpoint) with a static token.
    pub fn with_token(endpoint: Url, token: Secret) -> Self {
        let mut cfg = Self::new(endpoint, AuthChoice::Token);
        cfg.static_token = Some(token);
        cfg
    }

    /// What the CLI has: `--arm-endpoint` / `FOGBOOK_ARM_ENDPOINT` (a URL, or a cloud name
    /// `public`, `china`, `usgov`; `None` = the public cloud), `--auth` (`None` = `auto`) and
    /// `FOGBOOK_ARM_TOKEN`.
    pub fn from_parts(
        endpoint: Option<&str>,
        auth: Option<&str>,
        token: Option<String>,
    ) -> Result<Self, ArmSetupError> {
        let endpoint = match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            None => Cloud::Public.endpoint(),
            Some(text) if !text.contains("://") => text.parse::<Cloud>()?.endpoint(),
            Some(text) => Url::parse(text).map_err(|e| ArmSetupError::InvalidEndpoint {
                endpoint: text.to_owned(),
                reason: e.to_string(),
            })?,
        };
        let auth = auth.map(str::parse).transpose()?.unwrap_or_default();
        let mut cfg = Self::new(endpoint, auth);
        cfg.static_token = token.filter(|t| !t.is_empty()).map(Secret::new);
        if cfg.auth == AuthChoice::Token && cfg.static_token.is_none() {
            return Err(ArmSetupError::MissingToken);
        }
        Ok(cfg)
    }

    /// The token scope: the scope of the cloud of `endpoint`, or `{endpoint}/.default` for an
    /// unknown endpoint.
    pub fn effective_scope(&self) -> String {
        match Cloud::of_endpoint(&self.endpoint) {
            Some(cloud) => cloud.scope().to_owned(),
            None => format!("{}/.default", self.endpoint.origin().ascii_serialization()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_clouds_and_auth_names_resolve() {
        let cfg = ArmConfig::from_parts(None, None, None).unwrap();
        assert_eq!(cfg.endpoint.as_str(), "https://management.azure.com/");
        assert_eq!(cfg.auth, AuthChoice::Auto);
        assert_eq!(cfg.effective_scope(), "https://management.azure.com/.default");
        let cfg = ArmConfig::from_parts(Some("china"), Some("client-secret"), None).unwrap();
        assert_eq!(cfg.effective_scope(), "https://management.chinacloudapi.cn/.default");
        let cfg = ArmConfig::from_parts(Some("http://127.0.0.1:8080"), Some("token"), Some("t".into())).unwrap();
        assert_eq!(cfg.effective_scope(), "http://127.0.0.1:8080/.default");
        assert!(format!("{cfg:?}").contains("***") && !format!("{cfg:?}").contains("\"t\""));
        assert!(matches!(
            ArmConfig::from_parts(None, Some("token"), None),
            Err(ArmSetupError::MissingToken)
        ));
        assert!(matches!(
            ArmConfig::from_parts(None, Some("kerberos"), None),
            Err(ArmSetupError::UnknownAuth { .. })
        ));
        assert!(matches!(
            ArmConfig::from_parts(Some("mars"), None, None),
            Err(ArmSetupError::UnknownCloud { .. })
        ));
        for name in AuthChoice::NAMES {
            assert_eq!(name.parse::<AuthChoice>().unwrap().name(), *name);
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArmSetupError {
    /// `--auth` named no known credential.
    #[error(
        "unknown auth `{name}` (expected one of: auto, token, developer-tools, managed-identity, workload-identity, client-secret)"
    )]
    UnknownAuth {
        /// The name given.
        name: String,
    },
    /// An unknown cloud name.
    #[error("unknown cloud `{name}` (expected public, china or usgov)")]
    UnknownCloud {
        /// The name given.
        name: String,
    },
    /// The endpoint is not an http(s) URL without query or fragment.
    #[error("invalid ARM endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint given.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// `--auth token` without a token.
    #[error("--auth token needs a token in FOGBOOK_ARM_TOKEN")]
    MissingToken,
    /// An environment variable the credential needs is missing.
    #[error("--auth {auth} needs the environment variable {variable}")]
    MissingVariable {
        /// The credential.
        auth: &'static str,
        /// The variable.
        variable: &'static str,
    },
    /// `azure_identity` refused to build the credential.
    #[error("could not set up the {auth} credential")]
    Credential {
        /// The credential.
        auth: &'static str,
        /// The cause (never contains a secret).
        #[source]
        source: azure_core::Error,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
}
