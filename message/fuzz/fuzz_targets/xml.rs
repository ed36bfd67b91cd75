//! Fuzzes the xml decoder: any input must decode or fail with an error, never
//! panic; whatever decodes must re-encode and decode to the same context.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_message::{Format, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(ctx) = decode(data, Format::Xml) {
        let again = encode(&ctx, Format::Xml);
        let back = decode(&again, Format::Xml).expect("own output decodes");
        assert_eq!(encode(&back, Format::Xml), again, "encoding is stable");
    }
});
