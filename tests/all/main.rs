//! weft's integration tests, as one binary (a `mod` per area). Plug-in
//! fixtures are built from source, once per run, by the same builder
//! `weft build` uses; they need the wasm32-wasip2 target
//! (`rustup target add wasm32-wasip2`).

mod api;
mod cli;
mod clients;
mod console;
mod contract;
mod delivery;
mod docs;
mod durability;
mod fixtures;
mod hardening_api;
mod hardening_core;
mod outbound;
mod pipeline;
mod postgres;
mod registration_api;
mod sandbox;
mod system_api;
mod telemetry;
mod web_api;
mod workflows;
mod workflows_api;
