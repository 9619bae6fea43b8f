//! The admin API under `/_sim/`: journal, state, faults, clock, throttling, request counts
//! and reset.
//!
//! It needs no token and is neither throttled nor faulted: it is the test's side channel.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::clock::parse_duration;
use crate::emulator::{Core, Emulator};
use crate::faults::{FaultConfig, Faults};
use crate::journal::Journal;
use crate::world::ThrottleLimits;

fn bad_request(code: &str, message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Completes due operations and saves if that changed anything.
fn tick(emu: &Emulator, core: &mut Core) {
    if core.tick() {
        emu.persist_or_log(core);
    }
}

pub(crate) async fn journal(State(emu): State<Arc<Emulator>>) -> Response {
    let core = emu.lock();
    Json(&core.journal).into_response()
}

#[derive(Serialize)]
struct StateOut<'a> {
    sim_time: String,
    world: &'a crate::world::World,
}

pub(crate) async fn state(State(emu): State<Arc<Emulator>>) -> Response {
    let mut core = emu.lock();
    tick(&emu, &mut core);
    let sim_time = core.now().rfc3339(core.world.epoch);
    Json(StateOut {
        sim_time,
        world: &core.world,
    })
    .into_response()
}

pub(crate) async fn faults(State(emu): State<Arc<Emulator>>) -> Response {
    let core = emu.lock();
    Json(core.faults.config()).into_response()
}

pub(crate) async fn put_faults(State(emu): State<Arc<Emulator>>, body: axum::body::Bytes) -> Response {
    let config: FaultConfig = match serde_json::from_slice(&body) {
        Ok(config) => config,
        Err(e) => return bad_request("InvalidFaults", e.to_string()),
    };
    if let Err(e) = config.validate() {
        return bad_request("InvalidFaults", e.to_string());
    }
    let mut core = emu.lock();
    core.faults = Faults::new(config);
    Json(core.faults.config()).into_response()
}

#[derive(Serialize)]
struct ClockOut {
    now: String,
    elapsed_seconds: f64,
    time_scale: f64,
}

fn clock_out(core: &Core) -> ClockOut {
    let now = core.now();
    ClockOut {
        now: now.rfc3339(core.world.epoch),
        elapsed_seconds: now.0 as f64 / 1000.0,
        time_scale: core.clock.scale(),
    }
}

pub(crate) async fn clock(State(emu): State<Arc<Emulator>>) -> Response {
    let core = emu.lock();
    Json(clock_out(&core)).into_response()
}

/// `{"duration": "2h"}` or `{"seconds": 7200}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    seconds: Option<f64>,
}

pub(crate) async fn advance(State(emu): State<Arc<Emulator>>, body: axum::body::Bytes) -> Response {
    let request: Advance = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request("InvalidAdvance", e.to_string()),
    };
    let secs = match (request.duration.as_deref(), request.seconds) {
        (Some(text), None) => match parse_duration(text) {
            Some(secs) => secs,
            None => {
                return bad_request(
                    "InvalidAdvance",
                    format!("'{text}' is not a duration such as '2h' or '90m'"),
                );
            }
        },
        (None, Some(secs)) if secs.is_finite() && secs >= 0.0 => secs,
        _ => {
            return bad_request(
                "InvalidAdvance",
                "give exactly one of 'duration' or 'seconds' (non-negative)".into(),
            );
        }
    };
    let mut core = emu.lock();
    core.clock.advance(secs);
    core.tick();
    emu.persist_or_log(&core);
    Json(clock_out(&core)).into_response()
}

pub(crate) async fn throttling(State(emu): State<Arc<Emulator>>) -> Response {
    let core = emu.lock();
    Json(core.world.throttling).into_response()
}

pub(crate) async fn put_throttling(State(emu): State<Arc<Emulator>>, body: axum::body::Bytes) -> Response {
    let limits: ThrottleLimits = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => return bad_request("InvalidThrottling", e.to_string()),
    };
    let mut core = emu.lock();
    core.world.throttling = limits;
    core.throttle.clear();
    emu.persist_or_log(&core);
    Json(core.world.throttling).into_response()
}

pub(crate) async fn reset(State(emu): State<Arc<Emulator>>) -> Response {
    let mut core = emu.lock();
    core.world = core.initial.clone();
    core.journal = Journal::default();
    core.throttle.clear();
    let config = core.faults.config().clone();
    core.faults = Faults::new(config);
    emu.persist_or_log(&core);
    emu.requests.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// The ARM requests received so far, counted per operation and status.
pub(crate) async fn requests(State(emu): State<Arc<Emulator>>) -> Response {
    Json(emu.requests.counts()).into_response()
}
