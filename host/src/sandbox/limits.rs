//! [`Limits`]: every bound the sandbox puts on a plug-in, with safe defaults.
//! Engine-wide limits (memory ceiling, stack, pool sizes, fuel on/off, epoch
//! tick) are fixed when the [`super::Sandbox`] is built; per-invocation ones
//! (deadline, fuel amount, host-call quotas) apply to each fresh store.

use serde::Deserialize;
use std::time::Duration;

/// The sandbox's limits. Deserializes from a `[sandbox]` table with
/// `deny_unknown_fields`; absent keys keep their defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock deadline of one invocation, in milliseconds, precise to one
    /// epoch tick. Default 120 000:
    /// Dataverse's 2-minute operation limit.
    pub deadline_ms: u64,
    /// How often the engine's epoch advances, in milliseconds. A runaway plug-in
    /// is stopped within one tick after its deadline; a shorter tick costs a
    /// little more background CPU. Default 10.
    pub epoch_tick_ms: u64,
    /// Fuel (roughly, wasm instructions) per invocation; `None` turns fuel
    /// metering off, which is faster. Default off.
    pub fuel: Option<u64>,
    /// Linear memory ceiling per plug-in instance, in bytes. Default 64 MiB.
    pub memory_bytes: usize,
    /// Table elements per table. Default 20 000.
    pub table_elements: usize,
    /// Maximum concurrently live plug-in instances (pool size). Default 64.
    /// Three quarters of them serve invocations that wait for an instance; a
    /// quarter is kept for plug-ins run by a running plug-in's calls.
    pub max_instances: u32,
    /// How long an invocation waits for a free instance before it fails with a
    /// capacity error (the Web API answers 503 with `Retry-After`), in
    /// milliseconds. Default 5 000.
    pub instance_wait_ms: u64,
    /// WebAssembly stack, in bytes. Default 512 KiB.
    pub wasm_stack_bytes: usize,
    /// `tracing.trace` calls per invocation. Default 1 000.
    pub trace_calls: u32,
    /// Bytes of trace text per invocation. Default 256 KiB.
    pub trace_bytes: usize,
    /// `notification-service.execute` calls per invocation. Default 16.
    pub execute_calls: u32,
    /// Bytes of context changes sent through `execute` per invocation.
    /// Default 4 MiB.
    pub execute_bytes: usize,
    /// Organization-service calls per invocation. Default 1 000.
    pub organization_calls: u32,
    /// Bytes of captured stdout and of captured stderr kept (the tail).
    /// Default 16 KiB each.
    pub output_bytes: usize,
    /// Bytes the plug-in may return as context changes. Default 4 MiB.
    pub return_bytes: usize,
    /// Outbound HTTP calls (`wasi:http/outgoing-handler.handle`) per invocation, refused ones
    /// included. Default 64: a plug-in calling an API a few times fits; one hammering an endpoint in a
    /// loop is stopped (quota) long before it becomes a flood from the host's address.
    pub http_calls: u32,
    /// Time of one outbound call, from the lookup to the answer's last byte, in milliseconds. Default
    /// 30 000: well inside the 2-minute operation limit, so a plug-in facing a dead endpoint still has
    /// time to report it. A call never outlives the invocation's own deadline, whichever comes first;
    /// the plug-in's own request options can shorten it, never lengthen it.
    pub http_timeout_ms: u64,
    /// Request body bytes all outbound calls of one invocation may send. Default 4 MiB, the
    /// `execute_bytes` of a notification-service post.
    pub http_request_bytes: usize,
    /// Answer body bytes all outbound calls of one invocation may receive. Default 16 MiB: the answers
    /// land in the plug-in's 64 MiB memory.
    pub http_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline_ms: 120_000,
            epoch_tick_ms: 10,
            fuel: None,
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            max_instances: 64,
            instance_wait_ms: 5_000,
            wasm_stack_bytes: 512 << 10,
            trace_calls: 1_000,
            trace_bytes: 256 << 10,
            execute_calls: 16,
            execute_bytes: 4 << 20,
            organization_calls: 1_000,
            output_bytes: 16 << 10,
            return_bytes: 4 << 20,
            http_calls: 64,
            http_timeout_ms: 30_000,
            http_request_bytes: 4 << 20,
            http_response_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// The deadline as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The epoch tick as a duration.
    pub fn epoch_tick(&self) -> Duration {
        Duration::from_millis(self.epoch_tick_ms)
    }

    /// The time of one outbound call as a duration.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }

    /// The wait for a free instance as a duration.
    pub fn instance_wait(&self) -> Duration {
        Duration::from_millis(self.instance_wait_ms)
    }

    /// Epoch ticks until the deadline (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        self.deadline_ms.div_ceil(self.epoch_tick_ms.max(1)).max(1)
    }

    /// Checks the limits make sense, naming the first that does not.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 7] = [
            (self.deadline_ms > 0, "deadline_ms must be above 0"),
            (self.http_timeout_ms > 0, "http_timeout_ms must be above 0"),
            (self.epoch_tick_ms > 0, "epoch_tick_ms must be above 0"),
            (
                self.memory_bytes >= 1 << 16,
                "memory_bytes must be at least one 64 KiB page",
            ),
            (self.max_instances > 0, "max_instances must be above 0"),
            (
                self.wasm_stack_bytes >= 16 << 10,
                "wasm_stack_bytes must be at least 16 KiB",
            ),
            (
                self.fuel != Some(0),
                "fuel must be above 0 (or absent to turn it off)",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err((*why).to_owned()),
            None => Ok(()),
        }
    }
}
