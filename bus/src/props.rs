//! Message properties on the wire: `BrokerProperties` JSON and custom (user) properties with Azure's typing
//! and quoting rules (azure-messaging.md §1.2, §1.3).
//!
//! Owns parsing what senders write and rendering what receivers read. It does not store or route messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest `MessageId` / `SessionId` Azure accepts.
const MAX_ID_CHARS: usize = 128;

/// A typed custom property value (Azure's inference: DateTime, String, Boolean, Int64, Double).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PropValue {
    /// Quoted text.
    String(String),
    /// Quoted RFC 2616 date, stored as Unix seconds.
    DateTime(i64),
    /// `true` / `false`.
    Bool(bool),
    /// Unquoted integer.
    Int(i64),
    /// Unquoted number with a fraction or exponent.
    Double(f64),
}

impl PropValue {
    /// Azure's header inference: `"…"` → DateTime if RFC 2616 else String; unquoted → bool, i64, f64, else error.
    pub fn from_header(raw: &str) -> Result<PropValue, String> {
        let raw = raw.trim();
        if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            let inner = &raw[1..raw.len() - 1];
            return Ok(match httpdate::parse_http_date(inner) {
                Ok(t) => PropValue::DateTime(unix_secs(t)),
                Err(_) => PropValue::String(inner.to_string()),
            });
        }
        match raw {
            "true" => Ok(PropValue::Bool(true)),
            "false" => Ok(PropValue::Bool(false)),
            _ => raw
                .parse::<i64>()
                .map(PropValue::Int)
                .or_else(|_| raw.parse::<f64>().ok().filter(|f| f.is_finite()).map(PropValue::Double).ok_or(()))
                .map_err(|_| {
                    format!("value '{raw}' is not quoted text, true/false, an integer or a number (quote strings)")
                }),
        }
    }

    /// Batch `UserProperties` values: JSON string (DateTime if RFC 2616), bool, integer or number.
    pub fn from_json(v: &Value) -> Result<PropValue, String> {
        match v {
            Value::String(s) => Ok(match httpdate::parse_http_date(s) {
                Ok(t) => PropValue::DateTime(unix_secs(t)),
                Err(_) => PropValue::String(s.clone()),
            }),
            Value::Bool(b) => Ok(PropValue::Bool(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(PropValue::Int)
                .or_else(|| n.as_f64().map(PropValue::Double))
                .ok_or_else(|| format!("number {n} is out of range")),
            other => Err(format!("value {other} must be a string, boolean or number")),
        }
    }

    /// Header form on receive: strings and dates quoted, the rest bare.
    pub fn to_header(&self) -> String {
        match self {
            PropValue::String(s) => format!("\"{s}\""),
            PropValue::DateTime(t) => format!("\"{}\"", http_date(*t)),
            PropValue::Bool(b) => b.to_string(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Double(d) => d.to_string(),
        }
    }

    /// JSON form (the `UserProperties` response header, batch shape): dates as RFC 2616 strings.
    pub fn to_json(&self) -> Value {
        match self {
            PropValue::String(s) => Value::String(s.clone()),
            PropValue::DateTime(t) => Value::String(http_date(*t)),
            PropValue::Bool(b) => Value::Bool(*b),
            PropValue::Int(i) => Value::from(*i),
            PropValue::Double(d) => Value::from(*d),
        }
    }

    /// Plain text for filters and summaries (no quotes).
    pub fn as_text(&self) -> String {
        match self {
            PropValue::String(s) => s.clone(),
            PropValue::DateTime(t) => http_date(*t),
            other => other.to_header(),
        }
    }
}

/// The settable BrokerProperties a sender controls, kept with the message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BrokerProps {
    /// `MessageId`; generated (32 hex digits) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `CorrelationId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// `SessionId` (stored and returned; sessions are not enforced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `Label`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `ReplyTo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// `To`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `ReplyToSessionId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_session_id: Option<String>,
    /// `PartitionKey`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// `TimeToLive` in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_live: Option<f64>,
    /// `ScheduledEnqueueTimeUtc` as Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_enqueue_time_utc: Option<i64>,
}

const STRING_FIELDS: [&str; 8] = [
    "MessageId",
    "CorrelationId",
    "SessionId",
    "Label",
    "ReplyTo",
    "To",
    "ReplyToSessionId",
    "PartitionKey",
];

impl BrokerProps {
    /// Parses a `BrokerProperties` value (header text or batch object). Unknown and receive-only fields are
    /// ignored; wrong types, over-long ids and SessionId ≠ PartitionKey are errors.
    pub fn parse(v: &Value) -> Result<BrokerProps, String> {
        let Value::Object(map) = v else {
            return Err(format!(
                "BrokerProperties must be a JSON object, got {}",
                kind(v)
            ));
        };
        let mut p = BrokerProps::default();
        for name in STRING_FIELDS {
            let Some(v) = map.get(name) else { continue };
            if v.is_null() {
                continue;
            }
            let Value::String(s) = v else {
                return Err(format!(
                    "BrokerProperties.{name} must be a string, got {}",
                    kind(v)
                ));
            };
            if matches!(name, "MessageId" | "SessionId") && s.chars().count() > MAX_ID_CHARS {
                return Err(format!(
                    "BrokerProperties.{name} is longer than {MAX_ID_CHARS} characters"
                ));
            }
            let slot = match name {
                "MessageId" => &mut p.message_id,
                "CorrelationId" => &mut p.correlation_id,
                "SessionId" => &mut p.session_id,
                "Label" => &mut p.label,
                "ReplyTo" => &mut p.reply_to,
                "To" => &mut p.to,
                "ReplyToSessionId" => &mut p.reply_to_session_id,
                _ => &mut p.partition_key,
            };
            *slot = Some(s.clone());
        }
        if let Some(v) = map.get("TimeToLive").filter(|v| !v.is_null()) {
            // Azure reads BrokerProperties with .NET's DataContractJsonSerializer, which takes a number in
            // a string for a numeric member: Microsoft's legacy Python library sends "TimeToLive": "120".
            let number = match v {
                Value::String(s) => s.trim().parse::<f64>().ok(),
                other => other.as_f64(),
            };
            match number {
                Some(t) if t > 0.0 && t.is_finite() => p.time_to_live = Some(t),
                _ => {
                    return Err(format!(
                        "BrokerProperties.TimeToLive must be a positive number of seconds, got {v}"
                    ));
                }
            }
        }
        if let Some(v) = map.get("ScheduledEnqueueTimeUtc").filter(|v| !v.is_null()) {
            let t = v.as_str().and_then(|s| httpdate::parse_http_date(s).ok()).ok_or_else(|| {
                format!("BrokerProperties.ScheduledEnqueueTimeUtc must be an RFC 2616 date like 'Sun, 06 Nov 1994 08:49:37 GMT', got {v}")
            })?;
            p.scheduled_enqueue_time_utc = Some(unix_secs(t));
        }
        if let (Some(s), Some(k)) = (&p.session_id, &p.partition_key)
            && s != k
        {
            return Err(
                "BrokerProperties.SessionId and PartitionKey are both set and differ".into(),
            );
        }
        Ok(p)
    }

    /// Parses the `BrokerProperties` header text.
    pub fn parse_header(text: &str) -> Result<BrokerProps, String> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| format!("BrokerProperties header is not valid JSON: {e}"))?;
        BrokerProps::parse(&v)
    }

    /// The settable fields as a JSON object, for building the received BrokerProperties.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if let Some(t) = self.scheduled_enqueue_time_utc {
            m.insert(
                "ScheduledEnqueueTimeUtc".into(),
                Value::String(http_date(t)),
            );
        }
        m
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a batch/JSON `UserProperties` object into typed properties.
pub fn user_props_from_json(v: &Value) -> Result<Vec<(String, PropValue)>, String> {
    let Value::Object(map) = v else {
        return Err(format!(
            "UserProperties must be a JSON object, got {}",
            kind(v)
        ));
    };
    map.iter()
        .map(|(k, v)| {
            PropValue::from_json(v)
                .map(|p| (k.clone(), p))
                .map_err(|e| format!("UserProperties.{k}: {e}"))
        })
        .collect()
}

/// Serialises JSON with every non-ASCII character escaped as `\uXXXX`, so it is a valid header value.
pub fn ascii_json(v: &Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// RFC 2616 date (`Sun, 06 Nov 1994 08:49:37 GMT`) for Unix seconds.
pub fn http_date(secs: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header typing follows Azure: quoted → String/DateTime, bare → bool/i64/f64, else rejected.
    #[test]
    fn header_typing() {
        assert_eq!(
            PropValue::from_header("\"High\"").unwrap(),
            PropValue::String("High".into())
        );
        assert_eq!(
            PropValue::from_header("\"Sun, 06 Nov 1994 08:49:37 GMT\"").unwrap(),
            PropValue::DateTime(784111777)
        );
        assert_eq!(
            PropValue::from_header("true").unwrap(),
            PropValue::Bool(true)
        );
        assert!(
            PropValue::from_header("True").is_err(),
            "booleans are case-sensitive"
        );
        assert_eq!(
            PropValue::from_header("12345").unwrap(),
            PropValue::Int(12345)
        );
        assert_eq!(
            PropValue::from_header("4.5").unwrap(),
            PropValue::Double(4.5)
        );
        assert!(PropValue::from_header("12345,ABC").is_err());
        assert_eq!(PropValue::String("High".into()).to_header(), "\"High\"");
        assert_eq!(
            PropValue::DateTime(784111777).to_header(),
            "\"Sun, 06 Nov 1994 08:49:37 GMT\""
        );
    }

    /// BrokerProperties: any order, unknown/receive-only ignored, bad types and SessionId≠PartitionKey rejected.
    #[test]
    fn broker_props() {
        let p = BrokerProps::parse_header(
            r#"{"Label":"M1","DeliveryCount":9,"Foo":1,"MessageId":"m","TimeToLive":4.444,"ScheduledEnqueueTimeUtc":"Sun, 06 Nov 1994 08:49:37 GMT"}"#,
        )
        .unwrap();
        assert_eq!(p.label.as_deref(), Some("M1"));
        assert_eq!(p.time_to_live, Some(4.444));
        assert_eq!(p.scheduled_enqueue_time_utc, Some(784111777));
        assert!(BrokerProps::parse_header(r#"{"Label":5}"#).is_err());
        assert!(BrokerProps::parse_header(r#"{"TimeToLive":"x"}"#).is_err());
        // A number in a string, as the legacy Python library sends it, is a number.
        let p = BrokerProps::parse_header(r#"{"TimeToLive":"120"}"#).unwrap();
        assert_eq!(p.time_to_live, Some(120.0));
        assert!(BrokerProps::parse_header(r#"{"TimeToLive":"-5"}"#).is_err());
        assert!(BrokerProps::parse_header(r#"{"TimeToLive":"NaN"}"#).is_err());
        assert!(BrokerProps::parse_header(r#"{"SessionId":"a","PartitionKey":"b"}"#).is_err());
        assert!(BrokerProps::parse_header(r#"[1]"#).is_err());
        assert!(BrokerProps::parse_header("{").is_err());
        let long = format!(r#"{{"MessageId":"{}"}}"#, "x".repeat(129));
        assert!(BrokerProps::parse_header(&long).is_err());
    }

    /// Non-ASCII JSON becomes a valid header value and parses back to the same JSON.
    #[test]
    fn ascii_json_round_trips() {
        let v = serde_json::json!({"ü": "名前 😀"});
        let s = ascii_json(&v);
        assert!(s.is_ascii());
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
    }
}
