//! Reads the Azure Service Bus emulator's configuration file (`Config.json`) into the bus's queues and
//! topics, so a user's emulator set-up moves over unchanged: `UserConfig.Namespaces[].Queues[]` and
//! `Topics[]` (with `Subscriptions[]` and their `Rules[]`), each with the emulator's `Properties`.
//!
//! Owns only the file's shape. The properties mean what they mean in the management API, so they are
//! turned into the same description elements and read by the same code (`server::manage`); rules become
//! [`RuleConfig`]s. Other sections (`Logging`) are ignored, as are unknown properties (the emulator
//! ignores them too).

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Map, Value};

use crate::config::{QueueConfig, RuleConfig, SubscriptionConfig, TopicConfig};
use crate::server::manage::{El, queue_from, sub_from, topic_from};

/// Reads `path`; errors name the file and the entity.
pub fn from_file(path: &Path) -> anyhow::Result<(Vec<QueueConfig>, Vec<TopicConfig>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read emulator config {}", path.display()))?;
    from_str(&text).with_context(|| format!("emulator config {}", path.display()))
}

/// Parses the emulator's JSON.
pub fn from_str(text: &str) -> anyhow::Result<(Vec<QueueConfig>, Vec<TopicConfig>)> {
    let v: Value = serde_json::from_str(text).context("not valid JSON")?;
    let namespaces = v
        .get("UserConfig")
        .and_then(|u| u.get("Namespaces"))
        .and_then(Value::as_array)
        .context("expected UserConfig.Namespaces to be an array")?;
    let mut queues = Vec::new();
    let mut topics = Vec::new();
    for ns in namespaces {
        for q in array(ns, "Queues")? {
            let name = name_of(q, "queue")?;
            let d = properties(q).with_context(|| format!("queue '{name}'"))?;
            queues.push(
                queue_from(&d, QueueConfig::new(name))
                    .map_err(|e| anyhow::anyhow!("queue '{name}': {e}"))?,
            );
        }
        for t in array(ns, "Topics")? {
            let name = name_of(t, "topic")?;
            let d = properties(t).with_context(|| format!("topic '{name}'"))?;
            let mut topic = topic_from(&d, TopicConfig::new(name, vec![]))
                .map_err(|e| anyhow::anyhow!("topic '{name}': {e}"))?;
            for s in array(t, "Subscriptions")? {
                let sname = name_of(s, "subscription")?;
                let what = format!("subscription '{sname}' of topic '{name}'");
                let d = properties(s).with_context(|| what.clone())?;
                let mut sub = sub_from(
                    &d,
                    SubscriptionConfig::new(sname, Default::default()),
                    false,
                )
                .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
                let rules = array(s, "Rules")?;
                // No Rules: the emulator, like Azure, gives the subscription the `$Default` TrueFilter.
                if !rules.is_empty() {
                    sub.rules = Some(
                        rules
                            .iter()
                            .map(rule)
                            .collect::<anyhow::Result<Vec<_>>>()
                            .with_context(|| what.clone())?,
                    );
                }
                topic.subscriptions.push(sub);
            }
            topics.push(topic);
        }
    }
    Ok((queues, topics))
}

fn array<'a>(v: &'a Value, field: &str) -> anyhow::Result<&'a [Value]> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => anyhow::bail!("{field} must be an array"),
    }
}

fn name_of<'a>(v: &'a Value, kind: &str) -> anyhow::Result<&'a str> {
    v.get("Name")
        .and_then(Value::as_str)
        .with_context(|| format!("a {kind} has no \"Name\" string"))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Properties` as the description elements the management API reads (`"LockDuration": "PT1M"` →
/// `<LockDuration>PT1M</LockDuration>`); empty strings (`"ForwardTo": ""`) mean "not set".
fn properties(v: &Value) -> anyhow::Result<El> {
    let mut d = El::default();
    let props = match v.get("Properties") {
        None | Some(Value::Null) => return Ok(d),
        Some(Value::Object(m)) => m,
        Some(_) => anyhow::bail!("Properties must be an object"),
    };
    for (k, val) in props {
        let t = text(val)
            .with_context(|| format!("property {k} must be a string, number or boolean"))?;
        if t.is_empty() {
            continue;
        }
        d.children.push(El {
            name: k.clone(),
            text: t,
            ..El::default()
        });
    }
    Ok(d)
}

/// A rule: `Properties.FilterType` `Correlation` (with `CorrelationFilter`) or `Sql` (with
/// `SqlFilter.SqlExpression`); an `Action` with a SQL expression is refused (weft copies messages
/// unchanged).
fn rule(r: &Value) -> anyhow::Result<RuleConfig> {
    let name = name_of(r, "rule")?;
    let empty = Map::new();
    let p = r
        .get("Properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let ctx = |e: String| anyhow::anyhow!("rule '{name}': {e}");
    if let Some(a) = p
        .get("Action")
        .and_then(|a| a.get("SqlExpression"))
        .and_then(Value::as_str)
        && !a.trim().is_empty()
    {
        return Err(ctx(format!(
            "Action '{a}': rule actions are not supported by weft's bus (messages are copied unchanged); remove the Action"
        )));
    }
    let mut out = RuleConfig {
        name: name.to_string(),
        filter: Default::default(),
        sql_filter: None,
    };
    match p.get("FilterType").and_then(Value::as_str).unwrap_or("Sql") {
        t if t.eq_ignore_ascii_case("Sql") => {
            let sql = p
                .get("SqlFilter")
                .and_then(|f| f.get("SqlExpression"))
                .and_then(Value::as_str)
                .ok_or_else(|| ctx("a Sql rule needs SqlFilter.SqlExpression".into()))?;
            crate::config::parse_rule_sql(sql)
                .map_err(|e| ctx(format!("SqlExpression '{sql}': {e}")))?;
            out.sql_filter = Some(sql.to_string());
        }
        t if t.eq_ignore_ascii_case("Correlation") => {
            let f = p
                .get("CorrelationFilter")
                .and_then(Value::as_object)
                .ok_or_else(|| ctx("a Correlation rule needs a CorrelationFilter object".into()))?;
            for (k, v) in f {
                if k == "Properties" {
                    let props = v.as_object().ok_or_else(|| {
                        ctx("CorrelationFilter.Properties must be an object".into())
                    })?;
                    for (pk, pv) in props {
                        let t = text(pv).ok_or_else(|| {
                            ctx(format!(
                                "property '{pk}' must be a string, number or boolean"
                            ))
                        })?;
                        out.filter.insert(format!("user.{pk}"), t);
                    }
                    continue;
                }
                let sys = match k.as_str() {
                    "CorrelationId" | "MessageId" | "To" | "ReplyTo" | "Label" | "SessionId"
                    | "ReplyToSessionId" | "ContentType" => k.as_str(),
                    // The current SDKs' name for Label.
                    "Subject" => "Label",
                    other => {
                        return Err(ctx(format!(
                            "CorrelationFilter has an unknown property '{other}'"
                        )));
                    }
                };
                if let Some(t) = text(v).filter(|t| !t.is_empty()) {
                    out.filter.insert(format!("sys.{sys}"), t);
                }
            }
        }
        other => {
            return Err(ctx(format!(
                "FilterType '{other}' is not Sql or Correlation"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the emulator's documented Config.json, properties mapped to weft's settings.
    #[test]
    fn emulator_shape() {
        let (q, t) = from_str(
            r#"{"UserConfig":{"Namespaces":[{"Name":"sbemulatorns",
              "Queues":[{"Name":"queue.1","Properties":{"DeadLetteringOnMessageExpiration":false,
                 "DefaultMessageTimeToLive":"PT1H","DuplicateDetectionHistoryTimeWindow":"PT20S",
                 "ForwardDeadLetteredMessagesTo":"","ForwardTo":"","LockDuration":"PT1M","MaxDeliveryCount":3,
                 "RequiresDuplicateDetection":true,"RequiresSession":false}}],
              "Topics":[{"Name":"topic.1","Properties":{"DefaultMessageTimeToLive":"PT1H",
                 "DuplicateDetectionHistoryTimeWindow":"PT20S","RequiresDuplicateDetection":false},
                 "Subscriptions":[{"Name":"subscription.1","Properties":{"LockDuration":"PT30S","MaxDeliveryCount":5},
                    "Rules":[{"Name":"app-prop-filter-1","Properties":{"FilterType":"Correlation",
                       "CorrelationFilter":{"ContentType":"application/text","Label":"subject1","Properties":{"prop1":"value1"}}}},
                      {"Name":"sql-1","Properties":{"FilterType":"Sql","SqlFilter":{"SqlExpression":"sys.MessageId = '123456'"}}}]},
                   {"Name":"subscription.2"}]}]}],
              "Logging":{"Type":"File"}}}"#,
        )
        .unwrap();
        assert_eq!(q[0].name, "queue.1");
        assert_eq!(q[0].max_delivery_count, 3);
        assert_eq!(q[0].default_ttl_secs, Some(3600.0));
        assert_eq!(q[0].duplicate_detection_window_secs, Some(20.0));
        assert_eq!(t[0].duplicate_detection_window_secs, None);
        let s = &t[0].subscriptions[0];
        assert_eq!(s.lock_duration_secs, 30.0);
        let rules = s.rules.as_ref().unwrap();
        assert_eq!(rules[0].filter["sys.Label"], "subject1");
        assert_eq!(rules[0].filter["user.prop1"], "value1");
        assert_eq!(
            rules[1].sql_filter.as_deref(),
            Some("sys.MessageId = '123456'")
        );
        assert!(t[0].subscriptions[1].rules.is_none());
        for (bad, want) in [
            (r#"{}"#, "UserConfig.Namespaces"),
            (
                r#"{"UserConfig":{"Namespaces":[{"Queues":[{"Name":"q","Properties":{"RequiresSession":true}}]}]}}"#,
                "sessions",
            ),
            (
                r#"{"UserConfig":{"Namespaces":[{"Queues":[{"Name":"q","Properties":{"LockDuration":"soon"}}]}]}}"#,
                "LockDuration",
            ),
            (
                r#"{"UserConfig":{"Namespaces":[{"Topics":[{"Name":"t","Subscriptions":[{"Name":"s","Rules":[{"Name":"r","Properties":{"FilterType":"Sql","SqlFilter":{"SqlExpression":"a > 1"}}}]}]}]}]}}"#,
                "only equality",
            ),
            (
                r#"{"UserConfig":{"Namespaces":[{"Topics":[{"Name":"t","Subscriptions":[{"Name":"s","Rules":[{"Name":"r","Properties":{"FilterType":"Sql","SqlFilter":{"SqlExpression":"1=1"},"Action":{"SqlExpression":"SET sys.To = 'x'"}}}]}]}]}]}}"#,
                "actions are not supported",
            ),
        ] {
            let err = format!("{:#}", from_str(bad).unwrap_err());
            assert!(err.contains(want), "{err}");
        }
    }
}
