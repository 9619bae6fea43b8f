//! The process's HTTP clients, each built once, at its first use: building a reqwest client
//! builds its TLS configuration and loads the trust store (milliseconds each time), which a
//! process used to do two or three times at start (the engine's environment, the command's
//! own, the ARM client), whether or not it sent a request. Timeouts are set per request, so
//! one client serves every configuration.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How many clients this process built (the test of "once" counts them).
static BUILT: AtomicUsize = AtomicUsize::new(0);

fn build(redirects: reqwest::redirect::Policy) -> reqwest::Client {
    BUILT.fetch_add(1, Ordering::SeqCst);
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(redirects)
        // A run waiting on an operation sends one poll per interval; keeping every
        // connection open between polls cost ~25 KiB per waiting run. A few idle ones per
        // host are enough to reuse.
        .pool_max_idle_per_host(8)
        .user_agent(concat!("fogbook/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The ARM client's HTTP client: no redirects (a token is never sent where ARM did not
/// answer from).
pub(crate) fn arm() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| build(reqwest::redirect::Policy::none()))
}

/// The webhooks' HTTP client (redirects followed, as before).
pub(crate) fn webhooks() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| build(reqwest::redirect::Policy::default()))
}

/// How many HTTP clients this process has built so far.
pub fn clients_built() -> usize {
    BUILT.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::{ArmClient, ArmConfig, Secret};

    /// Issue 18: environments and ARM clients are made several times per process (the
    /// engine's, the command's, a rehearsal's); none builds an HTTP client until a request
    /// needs one, and then each kind is built once.
    #[tokio::test]
    async fn http_clients_are_built_once_and_only_when_used() {
        let before = clients_built();
        for _ in 0..3 {
            let _env = crate::Env::new();
            let cfg = ArmConfig::with_token("http://127.0.0.1:1".parse().unwrap(), Secret::new("t"));
            let _arm = ArmClient::new(cfg).await.unwrap();
        }
        assert_eq!(clients_built(), before, "nothing built before a request");
        for _ in 0..3 {
            let _ = arm();
            let _ = webhooks();
        }
        assert!(
            clients_built() - before <= 2,
            "one of each kind: {}",
            clients_built() - before
        );
    }
}
