//! What a resource handler works with: the locked core, the time of the request, and the
//! means to start or re-attach to a long-running operation.

use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::response::{ArmResponse, accepted};
use crate::arm_error::ArmError;
use crate::clock::SimTime;
use crate::emulator::Core;
use crate::lro::{self, OpKind, OpStatus, Operation, PollKind};
use crate::world::World;

/// One request's view of the emulator.
pub(crate) struct Ctx<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) now: SimTime,
    pub(crate) base_url: &'a str,
    pub(crate) api_version: &'a str,
    /// Hash of method, path and canonical body.
    pub(crate) fingerprint: String,
    /// A fault asked that an operation started by this request end `Failed`.
    pub(crate) fail_operation: bool,
}

/// An operation to start.
pub(crate) struct NewOp {
    pub(crate) kind: OpKind,
    pub(crate) poll: PollKind,
    pub(crate) subscription: String,
    pub(crate) location: String,
    pub(crate) resource_id: String,
    pub(crate) locks: Vec<String>,
    pub(crate) duration: f64,
}

impl Ctx<'_> {
    /// The world.
    pub(crate) fn world(&self) -> &World {
        &self.core.world
    }

    /// The world, for changing.
    pub(crate) fn world_mut(&mut self) -> &mut World {
        &mut self.core.world
    }

    /// Starts an operation and answers `202 Accepted` for it.
    pub(crate) fn start(&mut self, new: NewOp) -> ArmResponse {
        let op = self.operation(new);
        let response = accepted(self.base_url, &op, self.now, &self.core.clock);
        self.core.world.operations.insert(op.id.clone(), op);
        response
    }

    /// Records a network write that completed at once; returns its `Azure-AsyncOperation` URL.
    pub(crate) fn network_done(&mut self, subscription: &str, location: &str, resource_id: &str) -> String {
        let mut op = self.operation(NewOp {
            kind: OpKind::Network,
            poll: PollKind::Network,
            subscription: subscription.to_owned(),
            location: location.to_owned(),
            resource_id: resource_id.to_owned(),
            locks: Vec::new(),
            duration: 0.0,
        });
        op.status = OpStatus::Succeeded;
        op.finished = Some(self.now);
        op.planned_failure = None;
        let (status_url, _) = super::response::polling_urls(self.base_url, &op);
        self.core.world.operations.insert(op.id.clone(), op);
        status_url
    }

    fn operation(&self, new: NewOp) -> Operation {
        let planned_failure = self.fail_operation.then(|| lro::planned_failure(&new.kind));
        Operation {
            id: uuid::Uuid::now_v7().to_string(),
            kind: new.kind,
            poll: new.poll,
            subscription: new.subscription,
            location: new.location,
            resource_id: new.resource_id,
            locks: new.locks,
            fingerprint: self.fingerprint.clone(),
            api_version: self.api_version.to_owned(),
            started: self.now,
            ends: self.now.plus_secs(new.duration),
            status: OpStatus::InProgress,
            finished: None,
            error: None,
            planned_failure,
        }
    }

    /// When an identical request started the operation now running on `lock`, the same
    /// `202 Accepted` again: the operation is not restarted.
    pub(crate) fn reattach(&self, lock: &str) -> Option<ArmResponse> {
        let op = self.core.world.running_operation_on(lock)?;
        (op.fingerprint == self.fingerprint).then(|| accepted(self.base_url, op, self.now, &self.core.clock))
    }
}

/// Parses a JSON request body; an empty body is the type's default.
pub(crate) fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ArmError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {e}"),
        )
    })
}

/// The lock key of a failover group.
pub(crate) fn group_lock(name: &str) -> String {
    format!("instancefailovergroup:{}", name.to_ascii_lowercase())
}
