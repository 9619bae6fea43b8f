//! Back-off arithmetic for step retries. The computed deadline is stored, so a restart
//! waits only for what remains.

use std::time::Duration;

use crate::runbook::RetryPolicy;

/// The delay before attempt `failed_attempt + 1`, given that `failed_attempt` (from 1) just
/// failed. `retry_after` (a server's request) is a floor. `unit` in `-1.0..=1.0` spreads
/// the delay by the policy's jitter.
pub(crate) fn delay(policy: &RetryPolicy, failed_attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
    let exp = i32::try_from(failed_attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let base = policy.initial_interval.as_secs_f64() * policy.multiplier.powi(exp);
    let capped = base.min(policy.max_interval.as_secs_f64());
    let jittered = capped * (1.0 + policy.jitter * unit.clamp(-1.0, 1.0));
    let d = Duration::from_secs_f64(jittered.clamp(0.0, policy.max_interval.as_secs_f64().max(0.0)));
    match retry_after {
        Some(floor) if floor > d => floor,
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            on: vec![],
        }
    }

    #[test]
    fn grows_then_caps() {
        let p = policy();
        let got: Vec<u64> = (1..=7).map(|a| delay(&p, a, None, 0.0).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let p = policy();
        assert_eq!(delay(&p, 2, None, 1.0), Duration::from_secs(3));
        assert_eq!(delay(&p, 2, None, -1.0), Duration::from_secs(1));
        assert_eq!(
            delay(&p, 9, None, 1.0),
            Duration::from_secs(30),
            "never above max_interval"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = policy();
        assert_eq!(delay(&p, 1, Some(Duration::from_secs(7)), 0.0), Duration::from_secs(7));
        assert_eq!(delay(&p, 4, Some(Duration::from_secs(2)), 0.0), Duration::from_secs(8));
    }
}
