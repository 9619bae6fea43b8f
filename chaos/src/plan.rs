//! What a trial will do, drawn from its seed: the runbook, engine kill moments, an emulator
//! restart, pauses, group signals, competitors and fault rules.

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::runbooks::Runbook;

/// The kinds of emulator faults a trial may inject.
pub(crate) const FAULT_KINDS: &[&str] = &["429", "5xx", "latency", "drop", "apply_then_drop"];

/// Operations a fault rule may target (the emulator's operationIds; `*` matches all).
const OPERATIONS: &[&str] = &[
    "*",
    "ManagedInstances_Get",
    "ManagedInstances_CreateOrUpdate",
    "ManagedInstances_Update",
    "ManagedInstances_Delete",
    "ManagedDatabases_ListByInstance",
    "InstanceFailoverGroups_Get",
    "InstanceFailoverGroups_CreateOrUpdate",
    "InstanceFailoverGroups_Delete",
    "InstanceFailoverGroups_Failover",
    "InstanceFailoverGroups_Failover",
    "InstanceFailoverGroups_ForceFailoverAllowDataLoss",
    "VirtualNetworks_Get",
    "VirtualNetworkPeerings_CreateOrUpdate",
    "NetworkSecurityGroups_Get",
    "SecurityRules_CreateOrUpdate",
    "AzureAsyncOperation_Get",
    "AzureAsyncOperation_Get",
    "OperationResults_Get",
];

/// The operationId named `name`, if a fault rule may target it.
pub(crate) fn operation(name: &str) -> Option<&'static str> {
    OPERATIONS.iter().copied().find(|o| *o == name && *o != "*")
}

/// A fault rule the trial installs.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub(crate) kind: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) rule: Value,
}

/// An emulator restart: when (per mille of the uninterrupted run's duration, from the start
/// of the trial), for how long, with which signal.
#[derive(Clone, Debug)]
pub(crate) struct SimRestart {
    pub(crate) at_permille: u64,
    pub(crate) down_ms: u64,
    pub(crate) signal: Signal,
}

/// A pause: the driver is frozen (SIGSTOP, as a VM pause or a suspended laptop) for longer
/// than its lease, another process resumes the run, and the frozen one is thawed (SIGCONT)
/// while or after the other drives.
#[derive(Clone, Debug)]
pub(crate) struct Pause {
    /// When to freeze the driver (per mille of the uninterrupted run, from the trial's start).
    pub(crate) at_permille: u64,
    /// Freeze it instead as soon as the emulator has answered a mutation with an injected
    /// fault (429, 5xx or a dropped connection), so that the driver is frozen while it waits
    /// to retry that mutation (the moment of issue 20's repeated DELETE). `at_permille`
    /// still applies if no such answer comes.
    pub(crate) on_fault: bool,
    /// How long after the other driver starts to thaw the frozen one.
    pub(crate) thaw_permille: u64,
}

/// A signal to the engine's whole process group (Ctrl-C in a terminal, a systemd stop).
#[derive(Clone, Debug)]
pub(crate) struct GroupSignal {
    pub(crate) at_permille: u64,
    pub(crate) signal: Signal,
}

/// A competing process started while a driver drives: `resume` of the same run (promise 5:
/// one driver per run) or `run` of the same runbook on the same group (promise 6: one run per
/// group). Both must be refused (exit 4) and leave no trace in the emulator or the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompetitorKind {
    Resume,
    Run,
}

/// When to start a competitor, and which.
#[derive(Clone, Debug)]
pub(crate) struct Competitor {
    pub(crate) at_permille: u64,
    pub(crate) kind: CompetitorKind,
}

/// What a trial will do, drawn from its seed.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) index: usize,
    pub(crate) seed: u64,
    pub(crate) runbook: usize,
    /// For the n-th engine process: SIGKILL it after this many per mille of the
    /// uninterrupted run's duration (if still running). Relative, so that a replay draws the
    /// same plan on a faster or slower machine.
    pub(crate) kills: Vec<u64>,
    pub(crate) sim_restart: Option<SimRestart>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) pause: Option<Pause>,
    pub(crate) group_signal: Option<GroupSignal>,
    pub(crate) competitor: Option<Competitor>,
    /// With `--db postgres`: the workers and the faults of the database's side.
    pub(crate) pg: Option<PgPlan>,
}

/// How a PostgreSQL trial's run is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// A foreground `fogbook run` (killed at the plan's first kill moment, if any): the
    /// workers take the run over from it.
    Run,
    /// `fogbook run --detach`: the workers compete for the new run.
    Detach,
    /// A schedule that fires once, a few seconds after the workers start: the workers compete
    /// to fire it (exactly one fire) and to drive its run.
    Schedule,
}

/// A SIGKILL of a worker: when (per mille of the uninterrupted run, from the trial's start),
/// which one (the one driving the run, or any), and how long it stays down before the runner
/// starts it again.
#[derive(Clone, Debug)]
pub(crate) struct WorkerKill {
    pub(crate) at_permille: u64,
    pub(crate) driver: bool,
    pub(crate) victim: usize,
    pub(crate) down_ms: u64,
}

/// A worker cut off from the database (its proxy stops forwarding), then let back.
#[derive(Clone, Debug)]
pub(crate) struct BlackHole {
    pub(crate) at_permille: u64,
    /// How long past the lease (`LEASE_TTL`) the cut lasts: the others take over meanwhile.
    pub(crate) extra_ms: u64,
}

/// The PostgreSQL side of a trial.
#[derive(Clone, Debug)]
pub(crate) struct PgPlan {
    pub(crate) workers: usize,
    pub(crate) start: Start,
    pub(crate) worker_kills: Vec<WorkerKill>,
    /// `pg_ctl restart -m immediate` at this per mille.
    pub(crate) pg_restart: Option<u64>,
    pub(crate) black_hole: Option<BlackHole>,
}

/// splitmix64: independent per-trial seeds from the run's seed.
pub(crate) fn trial_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed.wrapping_add((index as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Plan {
    /// Draws trial `index` (1-based) of a run seeded with `seed`.
    pub(crate) fn draw(seed: u64, index: usize, runbooks: &[Runbook], postgres: bool) -> Plan {
        let tseed = trial_seed(seed, index);
        let mut rng = StdRng::seed_from_u64(tseed);
        let runbook = rng.random_range(0..runbooks.len());
        let span = 1000;
        let n_kills = match rng.random_range(0..100) {
            0..15 => 0,
            15..50 => 1,
            50..80 => 2,
            _ => 3,
        };
        let kills = (0..n_kills).map(|_| rng.random_range(0..span)).collect();
        let sim_restart = rng.random_bool(0.25).then(|| SimRestart {
            at_permille: rng.random_range(0..span),
            down_ms: rng.random_range(0..800),
            signal: if rng.random_bool(0.7) {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            },
        });
        let mut faults = Vec::new();
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..=3) {
                let operation = OPERATIONS[rng.random_range(0..OPERATIONS.len())];
                let kind = FAULT_KINDS[rng.random_range(0..FAULT_KINDS.len())];
                let rate = f64::from(rng.random_range(5_u32..=25)) / 100.0;
                let max_hits = rng.random_range(1_u64..=3);
                let mut rule = json!({ "operation": operation, "max_hits": max_hits });
                match kind {
                    "429" => {
                        rule["error_rate"] = json!(rate);
                        rule["error_status"] = json!(429);
                    }
                    "5xx" => {
                        rule["error_rate"] = json!(rate);
                        rule["error_status"] = json!([500, 502, 503, 504][rng.random_range(0..4)]);
                    }
                    "latency" => {
                        rule["latency_ms"] = json!(rng.random_range(20_u64..=300));
                        rule["max_hits"] = json!(max_hits * 5);
                    }
                    "drop" => rule["drop_rate"] = json!(rate),
                    _ => rule["apply_then_drop_rate"] = json!(rate),
                }
                faults.push(Fault { kind, operation, rule });
            }
        }
        // Drawn after the rest, so that the plans above stay what they were for a seed.
        let pause = rng.random_bool(0.15).then(|| Pause {
            at_permille: rng.random_range(0..span),
            on_fault: rng.random_bool(0.5),
            thaw_permille: rng.random_range(0..span),
        });
        let group_signal = rng.random_bool(0.15).then(|| GroupSignal {
            at_permille: rng.random_range(0..span),
            signal: if rng.random_bool(0.5) {
                Signal::SIGINT
            } else {
                Signal::SIGTERM
            },
        });
        let competitor = rng.random_bool(0.2).then(|| Competitor {
            at_permille: rng.random_range(0..span),
            kind: if rng.random_bool(0.5) {
                CompetitorKind::Resume
            } else {
                CompetitorKind::Run
            },
        });
        // Drawn last, so that the SQLite plans of a seed stay what they were.
        let pg = postgres.then(|| {
            let workers = rng.random_range(2..=3);
            let start = match rng.random_range(0..100) {
                0..45 => Start::Run,
                45..70 => Start::Detach,
                _ => Start::Schedule,
            };
            let n = match rng.random_range(0..100) {
                0..20 => 0,
                20..60 => 1,
                60..85 => 2,
                _ => 3,
            };
            let worker_kills = (0..n)
                .map(|_| WorkerKill {
                    at_permille: rng.random_range(0..span),
                    driver: rng.random_bool(0.7),
                    victim: rng.random_range(0..workers),
                    down_ms: rng.random_range(0..1500),
                })
                .collect();
            let pg_restart = rng.random_bool(0.4).then(|| rng.random_range(0..span));
            let black_hole = rng.random_bool(0.4).then(|| BlackHole {
                at_permille: rng.random_range(0..span),
                extra_ms: rng.random_range(300..2500),
            });
            PgPlan {
                workers,
                start,
                worker_kills,
                pg_restart,
                black_hole,
            }
        });
        Plan {
            pg,
            index,
            seed: tseed,
            runbook,
            kills,
            sim_restart,
            faults,
            pause,
            group_signal,
            competitor,
        }
    }

    /// Adds a 429 answered to the first request of `operation` and a pause of the driver
    /// while it waits to retry it (`--pause-on-fault`): the scenario of issue 20.
    pub(crate) fn focus_pause_on_fault(&mut self, operation: &'static str) {
        self.faults.push(Fault {
            kind: "429",
            operation,
            rule: json!({ "operation": operation, "max_hits": 1, "error_rate": 1.0, "error_status": 429 }),
        });
        let thaw = self.pause.as_ref().map_or(500, |p| p.thaw_permille);
        self.pause = Some(Pause {
            at_permille: 100_000,
            on_fault: true,
            thaw_permille: thaw,
        });
    }

    pub(crate) fn fault_config(&self) -> Value {
        json!({ "seed": self.seed, "rules": self.faults.iter().map(|f| f.rule.clone()).collect::<Vec<_>>() })
    }

    /// Whether a rule of one of `kinds` targets `operation` (or every operation).
    pub(crate) fn has_rule(&self, kinds: &[&str], operation: &str) -> bool {
        self.faults
            .iter()
            .any(|f| kinds.contains(&f.kind) && (f.operation == "*" || f.operation == operation))
    }

    /// One line describing the plan.
    pub(crate) fn describe(&self, runbooks: &[Runbook]) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|f| format!("{}@{}", f.kind, f.operation))
            .collect();
        let restart = self.sim_restart.as_ref().map_or("none".to_owned(), |r| {
            format!("{:?}@{}‰+{}ms", r.signal, r.at_permille, r.down_ms)
        });
        let mut text = format!(
            "{} kills@{:?}‰ sim-restart={} faults=[{}]",
            runbooks[self.runbook].name,
            self.kills,
            restart,
            faults.join(",")
        );
        if let Some(p) = &self.pause {
            let fault = if p.on_fault { "first-fault-or-" } else { "" };
            text.push_str(&format!(" pause@{fault}{}‰+thaw@{}‰", p.at_permille, p.thaw_permille));
        }
        if let Some(g) = &self.group_signal {
            text.push_str(&format!(" group-{:?}@{}‰", g.signal, g.at_permille));
        }
        if let Some(c) = &self.competitor {
            text.push_str(&format!(" competing-{:?}@{}‰", c.kind, c.at_permille));
        }
        if let Some(pg) = &self.pg {
            let kills: Vec<String> = pg
                .worker_kills
                .iter()
                .map(|k| {
                    let who = if k.driver {
                        "driver".to_owned()
                    } else {
                        format!("w{}", k.victim + 1)
                    };
                    format!("{who}@{}‰+{}ms", k.at_permille, k.down_ms)
                })
                .collect();
            text.push_str(&format!(
                " pg: workers={} start={:?} worker-kills=[{}]",
                pg.workers,
                pg.start,
                kills.join(",")
            ));
            if let Some(at) = pg.pg_restart {
                text.push_str(&format!(" pg-restart@{at}‰"));
            }
            if let Some(b) = &pg.black_hole {
                text.push_str(&format!(" black-hole@{}‰+lease+{}ms", b.at_permille, b.extra_ms));
            }
        }
        text
    }
}
