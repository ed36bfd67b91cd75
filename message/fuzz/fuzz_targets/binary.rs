//! Fuzzes the binary decoder: any input must decode or fail with an error, never
//! panic; whatever decodes must re-encode and decode to the same context.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_message::{Format, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(ctx) = decode(data, Format::Binary) {
        let again = encode(&ctx, Format::Binary);
        let back = decode(&again, Format::Binary).expect("own output decodes");
        assert_eq!(encode(&back, Format::Binary), again, "encoding is stable");
    }
});
