//! HTTPS for the API: the certificate loading, development certificate and rustls configuration shared
//! with the bus live in `weft_bus::tls` (the lower crate); this module re-exports them under the names
//! the API has always used.

pub use weft_bus::tls::{DEV_DIR, TlsFiles, acceptor, development};
