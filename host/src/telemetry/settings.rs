//! `[telemetry]` in `weft.toml` and the standard `OTEL_*` environment variables, resolved into the one
//! [`Config`] the exporter is built from — or none, when nothing asks for traces.
//!
//! Owns the precedence rules and the validation of the endpoint; must not build the exporter (see
//! `export`) nor print a URL's path, query or credentials (a collector URL may carry a token).
//!
//! # Precedence
//! A key set in `weft.toml` wins over its environment variable (the OpenTelemetry convention: explicit
//! configuration over the environment); the environment fills in what the file leaves out.
//! `OTEL_SDK_DISABLED=true` (or `OTEL_TRACES_EXPORTER=none`) turns traces off whatever the file says: it is
//! the operator's switch. Without an endpoint from either, nothing is exported and nothing runs.

use serde::Deserialize;

/// The OTLP/HTTP path of traces under a base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `otlp_endpoint`).
const TRACES_PATH: &str = "v1/traces";
/// The `service.name` when neither the file nor `OTEL_SERVICE_NAME` names one.
pub const DEFAULT_SERVICE_NAME: &str = "weft";

/// `[telemetry]`: OpenTelemetry traces exported by OTLP over HTTP (protobuf).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; traces go to `<it>/v1/traces`.
    /// Overrides `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute (default `OTEL_SERVICE_NAME`, else `weft`).
    pub service_name: Option<String>,
    /// The fraction of traces kept, in [0, 1], decided by trace id (so by CorrelationId: an operation's
    /// system jobs are kept with it). Default 1.
    pub sample_ratio: Option<f64>,
    /// `false` turns traces off even when the environment configures them. Default true.
    pub enabled: Option<bool>,
}

/// What the exporter is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The full URL traces are posted to.
    pub traces_url: String,
    /// `service.name`.
    pub service_name: String,
    /// Fraction of traces kept.
    pub sample_ratio: f64,
}

impl Config {
    /// `scheme://host:port` of the collector: what may be printed (never the path, query or credentials).
    pub fn origin(&self) -> String {
        origin(&self.traces_url)
    }
}

fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            _ => format!("{}://…", u.scheme()),
        },
        Err(_) => "…".into(),
    }
}

impl TelemetrySettings {
    /// Checks what can be checked without the environment (`weft.toml` validation).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(r) = self.sample_ratio
            && !(0.0..=1.0).contains(&r)
        {
            return Err(format!("sample_ratio = {r}: must be in [0, 1]"));
        }
        if let Some(e) = &self.otlp_endpoint {
            check_url(e).map_err(|why| format!("otlp_endpoint: {why}"))?;
        }
        if self.service_name.as_deref().is_some_and(str::is_empty) {
            return Err("service_name must not be empty".into());
        }
        Ok(())
    }

    /// The exporter's configuration from these settings and the environment `env` reads (the process's
    /// in `weft up`); `Ok(None)` when traces are off or no endpoint is configured. Errors name the key or
    /// variable, never the URL.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<Config>, String> {
        self.validate()?;
        let env = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
            || self.enabled == Some(false)
        {
            return Ok(None);
        }
        let traces_url = match (
            &self.otlp_endpoint,
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ) {
            (Some(base), _) => under(base),
            // The signal's own variable is the full URL, used as it is (the OTLP specification).
            (None, Some(full)) => {
                check_url(&full)
                    .map_err(|why| format!("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {why}"))?;
                full
            }
            (None, None) => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => {
                    check_url(&base)
                        .map_err(|why| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {why}"))?;
                    under(&base)
                }
                None => return Ok(None),
            },
        };
        let sample_ratio = match self.sample_ratio {
            Some(r) => r,
            None => sampler_ratio_from_env(&env)?,
        };
        let service_name = self
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        Ok(Some(Config {
            traces_url,
            service_name,
            sample_ratio,
        }))
    }
}

/// `OTEL_TRACES_SAMPLER=traceidratio|parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG`; `always_off`
/// keeps nothing; anything else (or nothing) keeps every trace.
fn sampler_ratio_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<f64, String> {
    let sampler = env("OTEL_TRACES_SAMPLER").unwrap_or_default();
    match sampler.to_ascii_lowercase().as_str() {
        "always_off" | "parentbased_always_off" => Ok(0.0),
        "traceidratio" | "parentbased_traceidratio" => {
            let arg = env("OTEL_TRACES_SAMPLER_ARG").unwrap_or_else(|| "1".into());
            match arg.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(format!(
                    "OTEL_TRACES_SAMPLER_ARG = {arg:?}: must be a number in [0, 1]"
                )),
            }
        }
        _ => Ok(1.0),
    }
}

/// `base` + `/v1/traces`, as the OTLP specification builds a signal's URL from the base endpoint.
/// (A query string, a collector's token perhaps, stays after the path.)
fn under(base: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            let path = format!("{}/{TRACES_PATH}", url.path().trim_end_matches('/'));
            url.set_path(&path);
            url.to_string()
        }
        Err(_) => format!("{}/{TRACES_PATH}", base.trim_end_matches('/')),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none() {
        return Err("the URL names no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn nothing_configured_exports_nothing() {
        let s = TelemetrySettings::default();
        assert_eq!(s.resolve(env(&[])).unwrap(), None);
        assert_eq!(s.resolve(env(&[("OTEL_SERVICE_NAME", "x")])).unwrap(), None);
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let s = TelemetrySettings {
            otlp_endpoint: Some("http://collector:4318/".into()),
            service_name: Some("orders".into()),
            sample_ratio: Some(0.5),
            enabled: None,
        };
        let c = s
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:4318/x"),
                ("OTEL_SERVICE_NAME", "other"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(c.service_name, "orders");
        assert_eq!(c.sample_ratio, 0.5);
        assert_eq!(c.origin(), "http://collector:4318");
    }

    #[test]
    fn the_environment_fills_in() {
        let s = TelemetrySettings::default();
        let c = s
            .resolve(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "https://c.example/v1/traces");
        assert_eq!(c.service_name, "weft");
        assert_eq!(c.sample_ratio, 1.0);
        // The signal's own variable is used as it is, and wins over the base one.
        let c = s
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://127.0.0.1:9/custom",
                ),
                ("OTEL_SERVICE_NAME", "svc"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "http://127.0.0.1:9/custom");
        assert_eq!(c.service_name, "svc");
        assert_eq!(c.sample_ratio, 0.25);
    }

    #[test]
    fn switched_off() {
        let s = TelemetrySettings {
            otlp_endpoint: Some("http://collector:4318".into()),
            ..TelemetrySettings::default()
        };
        assert_eq!(
            s.resolve(env(&[("OTEL_SDK_DISABLED", "TRUE")])).unwrap(),
            None
        );
        assert_eq!(
            s.resolve(env(&[("OTEL_TRACES_EXPORTER", "none")])).unwrap(),
            None
        );
        let off = TelemetrySettings {
            enabled: Some(false),
            ..s
        };
        assert_eq!(
            off.resolve(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]))
                .unwrap(),
            None
        );
    }

    #[test]
    fn bad_values_are_named_without_the_url() {
        let s = TelemetrySettings {
            sample_ratio: Some(1.5),
            ..TelemetrySettings::default()
        };
        assert!(s.validate().unwrap_err().contains("sample_ratio"));
        let s = TelemetrySettings {
            otlp_endpoint: Some("ftp://user:secret@host/".into()),
            ..TelemetrySettings::default()
        };
        let e = s.validate().unwrap_err();
        assert!(e.contains("otlp_endpoint") && !e.contains("secret"), "{e}");
        let e = TelemetrySettings::default()
            .resolve(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "gopher://token@h",
            )]))
            .unwrap_err();
        assert!(!e.contains("token"), "{e}");
        assert!(
            TelemetrySettings::default()
                .resolve(env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ]))
                .is_err()
        );
        // Credentials in the URL are never part of what is printed.
        let c = TelemetrySettings {
            otlp_endpoint: Some("https://user:pw@collector:4318/?token=abc".into()),
            ..TelemetrySettings::default()
        }
        .resolve(env(&[]))
        .unwrap()
        .unwrap();
        assert_eq!(c.origin(), "https://collector:4318");
        assert_eq!(
            c.traces_url,
            "https://user:pw@collector:4318/v1/traces?token=abc"
        );
    }
}
