//! Profiling loop: `cargo run --release --example profile -- binary|json|xml encode|decode`.
use weft_message::{Format, bench::realistic_context, decode, encode};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let format = match args.get(1).map(String::as_str) {
        Some("json") => Format::Json,
        Some("xml") => Format::Xml,
        _ => Format::Binary,
    };
    let ctx = realistic_context(64 * 1024);
    let body = encode(&ctx, format);
    let dec = args.get(2).map(String::as_str) == Some("decode");
    for _ in 0..3000 {
        if dec {
            std::hint::black_box(decode(&body, format).ok());
        } else {
            std::hint::black_box(encode(&ctx, format));
        }
    }
}
