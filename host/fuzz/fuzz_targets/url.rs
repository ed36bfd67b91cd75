//! Fuzzes the Web API's URL parsing (`weft_host::api::parse_url`: path, key, query options, `$filter`,
//! skip token, function arguments, Host header): any input must parse or be refused with a 4xx, never
//! panic, overflow the stack or answer a 5xx. The first line of the input is the Host header, the rest
//! the request target.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use weft_store::Schema;

/// The table the in-suite proptest uses too.
const TABLES: &str = include_str!("../../src/api/testdata/url-tables.toml");

fuzz_target!(|data: &[u8]| {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| Schema::from_toml_str("fuzz", TABLES).expect("schema"));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host, rest) = text.split_once('\n').unwrap_or(("localhost", text));
    let target = format!("/api/data/v9.2/{rest}");
    if let Err(e) = weft_host::api::parse_url(schema, &target, host) {
        assert!(e.status.is_client_error(), "{target}: {e:?}");
    }
});
