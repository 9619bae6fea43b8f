//! Fault injection, deterministic under a seed.
//!
//! Each rule matches requests by ARM operationId (`ManagedInstances_Update`, or `*`) and, for
//! each matching request, draws independent numbers from a hash of (seed, rule index, hit
//! number, fault kind). The same seed and the same request sequence therefore give the same
//! faults, whatever else runs. The first matching rule that has hits left applies.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SimError;

/// The fault configuration: a seed and rules, from a YAML or JSON file or `PUT /_sim/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of every random draw.
    #[serde(default)]
    pub seed: u64,
    /// Rules, tried in order.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// ARM operationId the rule applies to (for example `InstanceFailoverGroups_Failover`), or `*`.
    pub operation: String,
    /// Probability (0..=1) that the request is answered with `error_status` and not processed.
    #[serde(default)]
    pub error_rate: f64,
    /// The injected status: 500, 502, 503, 504 or 429.
    #[serde(default = "default_status")]
    pub error_status: u16,
    /// Real milliseconds added before the request is processed.
    #[serde(default)]
    pub latency_ms: u64,
    /// Probability that the connection is closed before the request is processed.
    #[serde(default)]
    pub drop_rate: f64,
    /// Probability that the request is processed (and journaled) but the connection is closed
    /// before the response is sent.
    #[serde(default)]
    pub apply_then_drop_rate: f64,
    /// Probability that a long-running operation started by the request ends `Failed`.
    #[serde(default)]
    pub fail_rate: f64,
    /// The rule stops matching after this many requests.
    #[serde(default)]
    pub max_hits: Option<u64>,
}

fn default_status() -> u16 {
    500
}

impl FaultConfig {
    /// Reads a YAML (or JSON, a subset of YAML) faults file.
    pub fn load(path: &Path) -> Result<FaultConfig, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        FaultConfig::from_yaml_str(&text)
    }

    /// Parses YAML or JSON text.
    pub fn from_yaml_str(text: &str) -> Result<FaultConfig, SimError> {
        let config: FaultConfig = serde_saphyr::from_str(text).map_err(SimError::ParseFaults)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks rates and statuses.
    pub fn validate(&self) -> Result<(), SimError> {
        for (i, rule) in self.rules.iter().enumerate() {
            for (name, rate) in [
                ("error_rate", rule.error_rate),
                ("drop_rate", rule.drop_rate),
                ("apply_then_drop_rate", rule.apply_then_drop_rate),
                ("fail_rate", rule.fail_rate),
            ] {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(SimError::InvalidFaults(format!(
                        "rules[{i}].{name} = {rate} is not within 0..=1"
                    )));
                }
            }
            if ![429, 500, 502, 503, 504].contains(&rule.error_status) {
                return Err(SimError::InvalidFaults(format!(
                    "rules[{i}].error_status = {} is not one of 429, 500, 502, 503, 504",
                    rule.error_status
                )));
            }
        }
        Ok(())
    }
}

/// What the faults decided for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FaultDecision {
    pub(crate) latency_ms: u64,
    pub(crate) error_status: Option<u16>,
    pub(crate) drop_before: bool,
    pub(crate) apply_then_drop: bool,
    pub(crate) fail_operation: bool,
}

/// The configuration and how often each rule has matched.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    config: FaultConfig,
    hits: Vec<u64>,
}

impl Faults {
    /// Faults from `config`, with no hits yet.
    pub(crate) fn new(config: FaultConfig) -> Faults {
        let hits = vec![0; config.rules.len()];
        Faults { config, hits }
    }

    /// The configuration in force.
    pub(crate) fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Decides the faults for a request to `operation`.
    pub(crate) fn decide(&mut self, operation: &str) -> FaultDecision {
        let seed = self.config.seed;
        for (index, rule) in self.config.rules.iter().enumerate() {
            if rule.operation != "*" && !rule.operation.eq_ignore_ascii_case(operation) {
                continue;
            }
            let Some(hits) = self.hits.get_mut(index) else { continue };
            if rule.max_hits.is_some_and(|max| *hits >= max) {
                continue;
            }
            let hit = *hits;
            *hits += 1;
            let draw = |kind: u8, rate: f64| rate > 0.0 && uniform(seed, index, hit, kind) < rate;
            return FaultDecision {
                latency_ms: rule.latency_ms,
                error_status: draw(1, rule.error_rate).then_some(rule.error_status),
                drop_before: draw(2, rule.drop_rate),
                apply_then_drop: draw(3, rule.apply_then_drop_rate),
                fail_operation: draw(4, rule.fail_rate),
            };
        }
        FaultDecision::default()
    }
}

/// A number in `[0, 1)` determined by its inputs only.
fn uniform(seed: u64, rule: usize, hit: u64, kind: u8) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update((rule as u64).to_le_bytes());
    hasher.update(hit.to_le_bytes());
    hasher.update([kind]);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rate: f64) -> FaultRule {
        FaultRule {
            operation: "ManagedInstances_Get".into(),
            error_rate: rate,
            error_status: 503,
            latency_ms: 0,
            drop_rate: 0.0,
            apply_then_drop_rate: 0.0,
            fail_rate: 0.0,
            max_hits: None,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let config = FaultConfig {
            seed: 7,
            rules: vec![rule(0.5)],
        };
        let run = |config: &FaultConfig| {
            let mut faults = Faults::new(config.clone());
            (0..64)
                .map(|_| faults.decide("ManagedInstances_Get").error_status.is_some())
                .collect::<Vec<_>>()
        };
        let first = run(&config);
        assert_eq!(first, run(&config));
        let errors = first.iter().filter(|e| **e).count();
        assert!((16..=48).contains(&errors), "{errors} errors out of 64 at rate 0.5");
        let other = run(&FaultConfig { seed: 8, ..config });
        assert_ne!(first, other);
    }

    #[test]
    fn rules_match_by_operation_and_stop_after_max_hits() {
        let mut r = rule(1.0);
        r.max_hits = Some(1);
        let mut faults = Faults::new(FaultConfig {
            seed: 1,
            rules: vec![r],
        });
        assert_eq!(faults.decide("ManagedInstances_Delete"), FaultDecision::default());
        assert_eq!(faults.decide("managedinstances_get").error_status, Some(503));
        assert_eq!(faults.decide("ManagedInstances_Get").error_status, None);
    }

    #[test]
    fn files_are_validated() {
        let bad = "rules:\n  - operation: '*'\n    error_rate: 2\n";
        assert!(matches!(
            FaultConfig::from_yaml_str(bad),
            Err(SimError::InvalidFaults(_))
        ));
        let json = r#"{"seed": 3, "rules": [{"operation": "*", "latency_ms": 5}]}"#;
        let config = FaultConfig::from_yaml_str(json).expect("json is yaml");
        assert_eq!(config.seed, 3);
        assert_eq!(config.rules[0].latency_ms, 5);
        assert_eq!(config.rules[0].error_status, 500);
    }
}
