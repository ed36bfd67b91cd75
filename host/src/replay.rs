//! Recorded plug-in executions, for `weft plugin replay`: the context a step's plug-in ran with and every
//! host call it made **with the answer it got** (organization service, notification service), so the
//! same execution runs again on a laptop with the same inputs and the same answers — deterministically,
//! whatever the data or the endpoints look like now.
//!
//! Owns the recording format and the two [`HostServices`] wrappers: [`Recorder`] (in front of the real
//! services while a step runs) and [`Replayer`] (answers from a recording). Must not decide when to record
//! (the pipeline's `[pipeline] record_replays`) nor store anything (a recording travels in its trace-log
//! row). Never holds the secure configuration: a replay takes it from the current registration.

use crate::sandbox::HostServices;
use crate::sandbox::wit::context::{ContextChanges, ExecutionContext};
use crate::sandbox::wit::organization_service::Query;
use crate::sandbox::wit::types::{Entity, EntityCollection, Guid, ServiceError, ServiceErrorKind};
use serde::{Deserialize, Serialize};

/// The largest recording kept with a trace-log row (bytes of JSON); a larger one is dropped with a warning.
pub const MAX_RECORDING_BYTES: usize = 4 << 20;

/// The format's version, so an older weft refuses a newer recording by name.
const VERSION: u32 = 1;

/// One host call and its answer, in the order the plug-in made them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "call")]
pub enum Call {
    /// `notification-service.execute`.
    Notify {
        /// The endpoint.
        endpoint: Guid,
        /// The changes posted with the context.
        changes: ContextChanges,
        /// What the post answered.
        answer: Result<String, ServiceError>,
    },
    /// `organization-service.create`.
    Create {
        /// The row.
        entity: Entity,
        /// The new id, or why not.
        answer: Result<Guid, ServiceError>,
    },
    /// `organization-service.retrieve`.
    Retrieve {
        /// The table.
        entity_name: String,
        /// The row.
        id: Guid,
        /// The columns asked for.
        columns: Option<Vec<String>>,
        /// The row, or why not.
        answer: Result<Entity, ServiceError>,
    },
    /// `organization-service.retrieve-multiple`.
    RetrieveMultiple {
        /// The query.
        query: Query,
        /// The rows, or why not.
        answer: Result<EntityCollection, ServiceError>,
    },
    /// `organization-service.update`.
    Update {
        /// The change.
        entity: Entity,
        /// Done, or why not.
        answer: Result<(), ServiceError>,
    },
    /// `organization-service.delete`.
    Delete {
        /// The table.
        entity_name: String,
        /// The row.
        id: Guid,
        /// Done, or why not.
        answer: Result<(), ServiceError>,
    },
}

impl Call {
    /// The call without its answer, as one line for a human (`organization-service.retrieve account 6d81…`).
    pub fn describe(&self) -> String {
        let g = |id: &Guid| crate::context::format_guid(*id);
        match self {
            Call::Notify { endpoint, .. } => {
                format!("notification-service.execute {}", g(endpoint))
            }
            Call::Create { entity, .. } => {
                format!("organization-service.create {}", entity.logical_name)
            }
            Call::Retrieve {
                entity_name, id, ..
            } => format!("organization-service.retrieve {entity_name} {}", g(id)),
            Call::RetrieveMultiple { query, .. } => {
                format!(
                    "organization-service.retrieve-multiple {}",
                    query.entity_name
                )
            }
            Call::Update { entity, .. } => format!(
                "organization-service.update {} {}",
                entity.logical_name,
                entity.id.as_ref().map_or_else(|| "-".into(), g)
            ),
            Call::Delete {
                entity_name, id, ..
            } => format!("organization-service.delete {entity_name} {}", g(id)),
        }
    }

    /// Whether `other` is the same call with the same arguments (answers aside).
    fn same_request(&self, other: &Call) -> bool {
        match (self, other) {
            (
                Call::Notify {
                    endpoint: a,
                    changes: ca,
                    ..
                },
                Call::Notify {
                    endpoint: b,
                    changes: cb,
                    ..
                },
            ) => a == b && ca == cb,
            (Call::Create { entity: a, .. }, Call::Create { entity: b, .. })
            | (Call::Update { entity: a, .. }, Call::Update { entity: b, .. }) => a == b,
            (
                Call::Retrieve {
                    entity_name: ta,
                    id: ia,
                    columns: ca,
                    ..
                },
                Call::Retrieve {
                    entity_name: tb,
                    id: ib,
                    columns: cb,
                    ..
                },
            ) => ta == tb && ia == ib && ca == cb,
            (Call::RetrieveMultiple { query: a, .. }, Call::RetrieveMultiple { query: b, .. }) => {
                a == b
            }
            (
                Call::Delete {
                    entity_name: ta,
                    id: ia,
                    ..
                },
                Call::Delete {
                    entity_name: tb,
                    id: ib,
                    ..
                },
            ) => ta == tb && ia == ib,
            _ => false,
        }
    }
}

/// One execution as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Recording {
    /// The format's version ([`VERSION`]).
    pub version: u32,
    /// The plug-in assembly's name.
    pub plugin: String,
    /// The plug-in type that ran, for a component holding several (weft:plugin@0.2.0).
    #[serde(default)]
    pub plugin_type: Option<String>,
    /// sha256 of the component that ran.
    pub sha256: String,
    /// The step's unsecure configuration (the secure one is never recorded).
    pub unsecure_config: Option<String>,
    /// The context the plug-in was given.
    pub context: ExecutionContext,
    /// Its host calls with their answers, in order.
    pub calls: Vec<Call>,
    /// The failure's text when it failed (`None`: it succeeded).
    pub failure: Option<String>,
}

impl Recording {
    /// A recording of `context` and `calls`; the other fields are the caller's to fill.
    pub fn new(context: ExecutionContext, calls: Vec<Call>) -> Recording {
        Recording {
            version: VERSION,
            plugin: String::new(),
            plugin_type: None,
            sha256: String::new(),
            unsecure_config: None,
            context,
            calls,
            failure: None,
        }
    }

    /// A recording as stored: JSON, or `None` when larger than [`MAX_RECORDING_BYTES`].
    pub fn to_json(&self) -> Option<String> {
        let text = serde_json::to_string(self).ok()?;
        (text.len() <= MAX_RECORDING_BYTES).then_some(text)
    }

    /// Reads a stored recording, refusing another version by name.
    pub fn from_json(text: &str) -> anyhow::Result<Recording> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let Versioned { version } = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("not a weft execution recording: {e}"))?;
        anyhow::ensure!(
            version == VERSION,
            "this recording is format {version}; this weft reads format {VERSION}"
        );
        serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("a damaged execution recording: {e}"))
    }
}

/// Serves a plug-in through `inner` and, when `enabled`, records each call with its answer.
pub struct Recorder<'a> {
    inner: &'a mut dyn HostServices,
    /// Off: calls pass straight through, nothing is copied.
    enabled: bool,
    /// The calls so far.
    pub calls: Vec<Call>,
}

impl<'a> Recorder<'a> {
    /// Records in front of `inner` (or only passes calls through when not `enabled`).
    pub fn new(inner: &'a mut dyn HostServices, enabled: bool) -> Self {
        Recorder {
            inner,
            enabled,
            calls: Vec::new(),
        }
    }

    /// Serves one call through `inner`; when recording, keeps it (`args` and the answer) as `record` says.
    fn pass<A: Clone, R: Clone>(
        &mut self,
        args: A,
        serve: impl FnOnce(&mut dyn HostServices, A) -> R,
        record: impl FnOnce(A, R) -> Call,
    ) -> R {
        if !self.enabled {
            return serve(&mut *self.inner, args);
        }
        let answer = serve(&mut *self.inner, args.clone());
        self.calls.push(record(args, answer.clone()));
        answer
    }
}

impl HostServices for Recorder<'_> {
    fn notify(
        &mut self,
        endpoint: Guid,
        context: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<String, ServiceError> {
        self.pass(
            (),
            |s, ()| s.notify(endpoint, context, changes),
            |(), answer| Call::Notify {
                endpoint,
                changes: changes.clone(),
                answer,
            },
        )
    }

    fn create(&mut self, entity: Entity) -> Result<Guid, ServiceError> {
        self.pass(
            entity,
            |s, entity| s.create(entity),
            |entity, answer| Call::Create { entity, answer },
        )
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> Result<Entity, ServiceError> {
        self.pass(
            (entity_name, columns),
            |s, (entity_name, columns)| s.retrieve(entity_name, id, columns),
            |(entity_name, columns), answer| Call::Retrieve {
                entity_name,
                id,
                columns,
                answer,
            },
        )
    }

    fn retrieve_multiple(&mut self, query: Query) -> Result<EntityCollection, ServiceError> {
        self.pass(
            query,
            |s, query| s.retrieve_multiple(query),
            |query, answer| Call::RetrieveMultiple { query, answer },
        )
    }

    fn update(&mut self, entity: Entity) -> Result<(), ServiceError> {
        self.pass(
            entity,
            |s, entity| s.update(entity),
            |entity, answer| Call::Update { entity, answer },
        )
    }

    fn delete(&mut self, entity_name: String, id: Guid) -> Result<(), ServiceError> {
        self.pass(
            entity_name,
            |s, entity_name| s.delete(entity_name, id),
            |entity_name, answer| Call::Delete {
                entity_name,
                id,
                answer,
            },
        )
    }
}

/// Answers a plug-in's calls from a recording, in order. A call that differs from the recorded one (a
/// changed component may call differently) is answered with an error and remembered as the divergence.
pub struct Replayer {
    recorded: std::vec::IntoIter<Call>,
    /// Calls made so far.
    pub made: Vec<String>,
    /// The first call that did not match the recording: (its number from 1, what was made, what was
    /// recorded).
    pub divergence: Option<(usize, String, String)>,
}

impl Replayer {
    /// Answers from `calls`.
    pub fn new(calls: Vec<Call>) -> Self {
        Replayer {
            recorded: calls.into_iter(),
            made: Vec::new(),
            divergence: None,
        }
    }

    /// The recorded call for `request` (the same call with the same arguments), or the divergence error.
    fn answer(&mut self, request: Call) -> Result<Call, ServiceError> {
        self.made.push(request.describe());
        let n = self.made.len();
        let recorded = if self.divergence.is_none() {
            self.recorded.next()
        } else {
            None
        };
        match recorded {
            Some(call) if call.same_request(&request) => Ok(call),
            other => {
                let expected = other.map_or_else(|| "no further call".into(), |c| c.describe());
                self.divergence
                    .get_or_insert((n, request.describe(), expected.clone()));
                Err(ServiceError {
                    kind: ServiceErrorKind::Failed,
                    message: format!(
                        "replay: call {n} ({}) differs from the recording ({expected})",
                        request.describe()
                    ),
                    error_code: None,
                    status_code: None,
                })
            }
        }
    }
}

/// The recorded answer of a call of the matching kind (the kinds are checked by `same_request`).
macro_rules! replay_answer {
    ($self:ident, $request:expr, $kind:path) => {
        match $self.answer($request)? {
            $kind { answer, .. } => answer,
            _ => unreachable!("same_request matched the kind"),
        }
    };
}

impl HostServices for Replayer {
    fn notify(
        &mut self,
        endpoint: Guid,
        _context: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<String, ServiceError> {
        let request = Call::Notify {
            endpoint,
            changes: changes.clone(),
            answer: Ok(String::new()),
        };
        replay_answer!(self, request, Call::Notify)
    }

    fn create(&mut self, entity: Entity) -> Result<Guid, ServiceError> {
        let request = Call::Create {
            entity,
            answer: Err(placeholder()),
        };
        replay_answer!(self, request, Call::Create)
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> Result<Entity, ServiceError> {
        let request = Call::Retrieve {
            entity_name,
            id,
            columns,
            answer: Err(placeholder()),
        };
        replay_answer!(self, request, Call::Retrieve)
    }

    fn retrieve_multiple(&mut self, query: Query) -> Result<EntityCollection, ServiceError> {
        let request = Call::RetrieveMultiple {
            query,
            answer: Err(placeholder()),
        };
        replay_answer!(self, request, Call::RetrieveMultiple)
    }

    fn update(&mut self, entity: Entity) -> Result<(), ServiceError> {
        let request = Call::Update {
            entity,
            answer: Ok(()),
        };
        replay_answer!(self, request, Call::Update)
    }

    fn delete(&mut self, entity_name: String, id: Guid) -> Result<(), ServiceError> {
        let request = Call::Delete {
            entity_name,
            id,
            answer: Ok(()),
        };
        replay_answer!(self, request, Call::Delete)
    }
}

/// The answer slot of a request being matched (never returned: the recorded answer is).
fn placeholder() -> ServiceError {
    ServiceError {
        kind: ServiceErrorKind::Failed,
        message: String::new(),
        error_code: None,
        status_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::RecordingServices;

    fn account(name: &str) -> Entity {
        crate::context::entity_from_json("account", &serde_json::json!({ "name": name })).unwrap()
    }

    /// What the recorder saw is answered again by the replayer, through JSON; a different call diverges
    /// and is answered with an error naming both.
    #[test]
    fn recorded_answers_replay_and_divergence_is_named() {
        let mut real = RecordingServices::default();
        let mut recorder = Recorder::new(&mut real, true);
        let refused = recorder.create(account("A")).unwrap_err();
        let ctx = crate::context::build_context(crate::context::ContextSpec {
            message: "Create".into(),
            table: "account".into(),
            stage: crate::sandbox::wit::context::Stage::PostOperation,
            mode: crate::sandbox::wit::context::Mode::Synchronous,
            target: Some(account("A")),
            depth: 1,
            created_on_ms: 0,
        });
        let recording = Recording {
            plugin: "p".into(),
            sha256: "00".into(),
            failure: Some("boom".into()),
            ..Recording::new(ctx, recorder.calls)
        };
        let back = Recording::from_json(&recording.to_json().unwrap()).unwrap();
        assert_eq!(back, recording);

        let mut replayer = Replayer::new(back.calls.clone());
        assert_eq!(replayer.create(account("A")).unwrap_err(), refused);
        assert!(replayer.divergence.is_none());
        let extra = replayer.create(account("B")).unwrap_err();
        assert!(
            extra
                .message
                .contains("call 2 (organization-service.create account) differs"),
            "{}",
            extra.message
        );
        assert_eq!(
            replayer.divergence,
            Some((
                2,
                "organization-service.create account".into(),
                "no further call".into()
            ))
        );

        let mut replayer = Replayer::new(back.calls);
        assert!(replayer.create(account("other name")).is_err());
        assert!(replayer.divergence.is_some(), "same call, other arguments");

        let newer = recording
            .to_json()
            .unwrap()
            .replace("\"version\":1", "\"version\":9");
        assert!(
            Recording::from_json(&newer)
                .unwrap_err()
                .to_string()
                .contains("format 9")
        );
    }
}
