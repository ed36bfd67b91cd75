//! A throw-away PostgreSQL database for tests: created under a unique name on the server named by
//! `WEFT_TEST_POSTGRES`, dropped (connections and all) when the value is dropped, so tests that run at once
//! on one server never see each other's rows.
//!
//! Owns only the test database's life; it must not be used outside tests.

use ::postgres::Config;
use uuid::Uuid;

/// The variable naming the test server (`postgres://postgres@127.0.0.1:5432/postgres`).
pub const TEST_POSTGRES_VAR: &str = "WEFT_TEST_POSTGRES";
/// Set to `1` to make a test fail, rather than report itself skipped, when there is no test server.
pub const REQUIRE_POSTGRES_VAR: &str = "WEFT_REQUIRE_POSTGRES";

/// A database of its own for one test.
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a database named after `test` on the test server; None (having printed
    /// `SKIPPED <test>: …`) when `WEFT_TEST_POSTGRES` is not set. Panics when the server cannot be reached, or
    /// when the variable is missing but `WEFT_REQUIRE_POSTGRES=1`.
    pub fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin) = std::env::var(TEST_POSTGRES_VAR) else {
            if std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|v| v == "1") {
                panic!("{test}: {REQUIRE_POSTGRES_VAR}=1 but {TEST_POSTGRES_VAR} is not set");
            }
            eprintln!(
                "SKIPPED {test}: {TEST_POSTGRES_VAR} is not set (no PostgreSQL server to test on)"
            );
            return None;
        };
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!(
            "weft_t_{short}_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let mut client = connect(&admin, test);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("{test}: cannot create the test database {name}: {e}"));
        let url = with_database(&admin, &name);
        Some(TestDatabase { admin, name, url })
    }

    /// The test database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(config) = self.admin.parse::<Config>()
            && let Ok(mut client) = super::tls::connect_sync(&config)
            && let Err(e) = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
        {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

fn connect(url: &str, test: &str) -> ::postgres::Client {
    let config: Config = url
        .parse()
        .unwrap_or_else(|e| panic!("{test}: {TEST_POSTGRES_VAR} is not a PostgreSQL URL: {e}"));
    super::tls::connect_sync(&config).unwrap_or_else(|e| {
        panic!(
            "{test}: cannot reach the PostgreSQL server of {TEST_POSTGRES_VAR} ({}): {e}",
            super::redact_url(url)
        )
    })
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}
