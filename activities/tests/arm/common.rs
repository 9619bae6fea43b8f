//! Test helpers: the emulator on loopback with a frozen clock, a pacer that advances the
//! emulator's clock instead of sleeping, and an in-memory step host that can "crash" right
//! after a save was made durable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fogbook_activities::arm::{ArmClient, ArmConfig, Pacer, PauseReason, Secret};
use fogbook_activities::{ActivityCtx, ActivityError, ApprovalRecord, BoxFuture, Env, StepHost};
use fogbook_sim::{Estate, SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub(crate) const TOKEN: &str = "sim-token-7c1e9a0f3b5d";
pub(crate) const SUB: &str = "6f1c2b3a-4d5e-4f60-8a71-92b3c4d5e6f7";
pub(crate) const DEMO: &str = include_str!("../../../examples/estate.yaml");
/// Simulated seconds per second the client asks to wait.
pub(crate) const SIM_SECONDS_PER_SECOND: f64 = 60.0;

pub(crate) struct Sim {
    pub(crate) handle: SimHandle,
    pub(crate) admin: reqwest::Client,
    pub(crate) pacer: Arc<SimPacer>,
    pub(crate) env: Env,
}

impl Sim {
    pub(crate) async fn start(estate: &str) -> Sim {
        let mut cfg = SimConfig::new(Estate::from_yaml_str(estate).expect("estate"));
        cfg.time_scale = 0.0;
        cfg.token = Some(TOKEN.to_owned());
        let handle = fogbook_sim::start(cfg).await.expect("sim starts");
        let admin = reqwest::Client::new();
        let pacer = Arc::new(SimPacer {
            base: handle.base_url(),
            http: admin.clone(),
            pauses: Mutex::new(Vec::new()),
        });
        let client = client_for(&handle.base_url(), TOKEN).await.with_pacer(pacer.clone());
        Sim {
            env: Env::with_arm(client),
            handle,
            admin,
            pacer,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    pub(crate) async fn admin_get(&self, path: &str) -> Value {
        self.admin
            .get(self.url(path))
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("json")
    }

    pub(crate) async fn admin_put(&self, path: &str, body: Value) {
        let r = self.admin.put(self.url(path)).json(&body).send().await.expect("admin");
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// The journal entries whose method is `method` and path contains `fragment`.
    pub(crate) async fn journal(&self, method: &str, fragment: &str) -> Vec<Value> {
        let journal = self.admin_get("/_sim/journal").await;
        journal["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["method"] == method && e["path"].as_str().is_some_and(|p| p.contains(fragment)))
            .cloned()
            .collect()
    }

    pub(crate) async fn faults(&self, rules: Value) {
        self.admin_put("/_sim/faults", json!({ "seed": 1, "rules": rules }))
            .await;
    }

    pub(crate) async fn sim_seconds(&self) -> f64 {
        self.admin_get("/_sim/clock").await["elapsed_seconds"]
            .as_f64()
            .expect("seconds")
    }

    pub(crate) fn pauses(&self, reason: PauseReason) -> Vec<Duration> {
        self.pacer
            .pauses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, d)| *d)
            .collect()
    }
}

pub(crate) async fn client_for(base: &str, token: &str) -> ArmClient {
    let cfg = ArmConfig::with_token(base.parse().expect("url"), Secret::new(token));
    ArmClient::new(cfg).await.expect("client")
}

/// Advances the emulator's clock by each requested pause (times [`SIM_SECONDS_PER_SECOND`])
/// and records it; never sleeps.
#[derive(Debug)]
pub(crate) struct SimPacer {
    base: String,
    http: reqwest::Client,
    pub(crate) pauses: Mutex<Vec<(PauseReason, Duration)>>,
}

impl Pacer for SimPacer {
    fn pause(&self, reason: PauseReason, delay: Duration) -> BoxFuture<'_, ()> {
        self.pauses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((reason, delay));
        Box::pin(async move {
            let seconds = delay.as_secs_f64() * SIM_SECONDS_PER_SECOND;
            let r = self
                .http
                .post(format!("{}/_sim/clock/advance", self.base))
                .json(&json!({ "seconds": seconds }))
                .send()
                .await
                .expect("advance");
            assert!(r.status().is_success());
        })
    }
}

/// An in-memory step host. With `crash_at_save = Some(n)`, the n-th save (from 1) is made
/// durable and then answered with an error, as if the process died right after the commit:
/// the attempt is cancelled (`cancel`), and every later save fails unsaved. With
/// `lose_ack_at = Some(n)`, the n-th save is made durable and answered with an error (a
/// connection lost during its COMMIT), and the store answers again from the next save on.
#[derive(Debug, Default)]
pub(crate) struct TestHost {
    pub(crate) saved: Mutex<Vec<Value>>,
    pub(crate) crash_at_save: Option<usize>,
    pub(crate) lose_ack_at: Option<usize>,
    pub(crate) cancel: CancellationToken,
}

impl TestHost {
    pub(crate) fn crashing_at(n: usize) -> Arc<TestHost> {
        Arc::new(TestHost {
            crash_at_save: Some(n),
            ..TestHost::default()
        })
    }

    pub(crate) fn losing_ack_at(n: usize) -> Arc<TestHost> {
        Arc::new(TestHost {
            lose_ack_at: Some(n),
            ..TestHost::default()
        })
    }

    pub(crate) fn last(&self) -> Option<Value> {
        self.saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<Value> {
        self.saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl StepHost for TestHost {
    fn save_progress(&self, progress: Value) -> BoxFuture<'_, Result<(), ActivityError>> {
        let mut saved = self.saved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let crashed = self.crash_at_save.is_some_and(|n| saved.len() >= n);
        if !crashed {
            saved.push(progress);
        }
        let n = saved.len();
        let fail = if crashed {
            Some("the process is gone")
        } else if self.crash_at_save == Some(n) {
            self.cancel.cancel();
            Some("simulated crash after commit")
        } else if self.lose_ack_at == Some(n) {
            Some("connection lost during the COMMIT")
        } else {
            None
        };
        Box::pin(async move {
            match fail {
                Some(why) => Err(ActivityError::store(std::io::Error::other(why))),
                None => Ok(()),
            }
        })
    }

    fn approval(&self) -> BoxFuture<'_, Result<Option<ApprovalRecord>, ActivityError>> {
        Box::pin(async { Ok(None) })
    }

    fn auto_approve(&self) -> BoxFuture<'_, Result<ApprovalRecord, ActivityError>> {
        Box::pin(async { Err(ActivityError::invalid("no approvals in these tests")) })
    }

    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

pub(crate) fn ctx(host: Arc<TestHost>, progress: Option<Value>) -> ActivityCtx {
    let cancel = host.cancel.clone();
    ActivityCtx::new("run-1", "step-1", 1, progress, host, cancel)
}

/// Runs activity `uses` once with a fresh host (no crash).
pub(crate) async fn run(sim: &Sim, uses: &str, input: Value) -> Result<Value, ActivityError> {
    let host = Arc::new(TestHost::default());
    fogbook_activities::execute(uses, input, &ctx(host, None), &sim.env).await
}

/// Runs `uses` with a host that crashes at save `n`, then again with the saved progress.
/// Returns the first error and the second result.
pub(crate) async fn crash_and_resume(
    sim: &Sim,
    uses: &str,
    input: Value,
    n: usize,
) -> (ActivityError, Result<Value, ActivityError>, Value) {
    let host = TestHost::crashing_at(n);
    let first = fogbook_activities::execute(uses, input.clone(), &ctx(host.clone(), None), &sim.env).await;
    let err = first.expect_err("the first run crashes");
    let progress = host.last().expect("progress was saved before the crash");
    let host2 = Arc::new(TestHost::default());
    let second = fogbook_activities::execute(uses, input, &ctx(host2, Some(progress.clone())), &sim.env).await;
    (err, second, progress)
}

pub(crate) fn mi(rg: &str, name: &str) -> Value {
    json!({ "subscription": SUB, "resource_group": rg, "name": name })
}

pub(crate) fn subnet(rg: &str, vnet: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/snet-mi"
    )
}

pub(crate) const EAST: &str = "rg-sql-eastus";
pub(crate) const WEST: &str = "rg-sql-westus";
pub(crate) const NORTH: &str = "rg-sql-northeurope";
