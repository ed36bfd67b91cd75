//! Bus configuration: the `[bus]` section of weft.toml and what the `weft bus` flags build.
//!
//! Owns the shape, defaults and validation of entity definitions. It does not start anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sas::SasPolicy;

/// Default bind address for users (`weft bus`).
pub const DEFAULT_BIND: &str = "127.0.0.1:7480";

/// The whole bus configuration. Unknown fields are errors so typos do not pass silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Address to listen on.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Directory holding `bus.sqlite`.
    #[serde(default = "default_data")]
    pub data: PathBuf,
    /// Service Bus queues.
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    /// Service Bus topics with their subscriptions.
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
    /// Event Hubs.
    #[serde(default)]
    pub event_hubs: Vec<EventHubConfig>,
    /// Relay Hybrid Connections.
    #[serde(default)]
    pub relays: Vec<RelayConfig>,
    /// SAS policies. With none, the bus only starts on a loopback address and then accepts anonymous requests.
    #[serde(default)]
    pub sas_policies: Vec<SasPolicy>,
    /// Largest message (body + properties) accepted; Azure Standard is 256 KB. Larger → 403.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Seconds a relay sender waits for the listener's answer before 504 (Azure: 60).
    #[serde(default = "default_relay_timeout")]
    pub relay_timeout_secs: f64,
    /// Serve `POST /$weft/echo` (no auth, returns the body): the benchmark floor. Off by default.
    #[serde(default)]
    pub echo_route: bool,
    /// Seconds a client has to send a request's head, counted from when the connection is ready for it —
    /// so it is also the idle timeout of a keep-alive connection. The connection is closed after it.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_secs: f64,
    /// Seconds a client has to send a request's body once its head arrived; later → 408.
    #[serde(default = "default_body_timeout")]
    pub body_read_timeout_secs: f64,
    /// Open connections served at once; further clients wait in the listen backlog until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body relayed to a hybrid connection listener, and largest answer a listener may
    /// send back; larger → 413 to the sender, or the listener's channel is closed.
    #[serde(default = "default_max_relay_body")]
    pub max_relay_body_bytes: usize,
    /// Where AMQP 1.0 is served (weft-amqp, for the official Azure SDKs). None: 5672 on the `bind` address
    /// when that port is free, else a free port (the chosen address is printed).
    #[serde(default)]
    pub amqp_bind: Option<SocketAddr>,
    /// Serve HTTPS (not HTTP) with a development certificate made in `<data>/tls/` (its CA in
    /// `<data>/tls/ca.pem`, for `NODE_EXTRA_CA_CERTS` / `REQUESTS_CA_BUNDLE`), unless `tls_cert`/`tls_key`
    /// name one. For clients that turn `sb://` into `https://` (azure-sb, the administration clients).
    #[serde(default)]
    pub tls: bool,
    /// Serve HTTPS with this certificate chain (PEM, server certificate first); needs `tls_key`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Queues and topics the management API may bring the bus to (Azure Standard: 10,000 per namespace);
    /// beyond → 403 QuotaExceeded. Configured entities count; nothing else caps entities.
    #[serde(default = "default_max_entities")]
    pub max_entities: usize,
    /// Subscriptions per topic, and rules per subscription, through the management API (Azure: 2,000
    /// each); beyond → 403 QuotaExceeded.
    #[serde(default = "default_max_per_parent")]
    pub max_subscriptions_per_topic: usize,
}

/// Per-entity message settings shared by queues and subscriptions (Azure defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Entity path, e.g. `orders`.
    pub name: String,
    /// Peek-lock duration (Azure default 60 s).
    #[serde(default = "default_lock")]
    pub lock_duration_secs: f64,
    /// Default message time-to-live; a message's own TimeToLive can only shorten it. None = forever.
    #[serde(default)]
    pub default_ttl_secs: Option<f64>,
    /// Deliveries before a message moves to `$DeadLetterQueue` (Azure default 10).
    #[serde(default = "default_max_delivery")]
    pub max_delivery_count: u32,
    /// Duplicate detection window on MessageId; None = off (Azure default off; 600 s when on).
    #[serde(default)]
    pub duplicate_detection_window_secs: Option<f64>,
    /// Move expired messages to `$DeadLetterQueue` instead of dropping them.
    #[serde(default)]
    pub dead_letter_on_expiration: bool,
    /// Entity size quota; sends beyond it get 403 (Azure default 1024 MB).
    #[serde(default = "default_max_size")]
    pub max_size_mb: u64,
}

/// A topic: duplicate detection and TTL apply at the topic; each subscription gets its own copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic path.
    pub name: String,
    /// Subscriptions.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Default message TTL for the topic.
    #[serde(default)]
    pub default_ttl_secs: Option<f64>,
    /// Duplicate detection window on MessageId; None = off.
    #[serde(default)]
    pub duplicate_detection_window_secs: Option<f64>,
    /// Quota per subscription, MB.
    #[serde(default = "default_max_size")]
    pub max_size_mb: u64,
}

/// A subscription with an optional correlation filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Subscription name.
    pub name: String,
    /// Correlation filter: every entry must equal the message's property (as text). Keys are system
    /// properties (`Label`, `CorrelationId`, `MessageId`, `To`, `ReplyTo`, `SessionId`, `ContentType`) or
    /// user properties; a key that is not a property name also matches the Dataverse claim
    /// `http://schemas.microsoft.com/xrm/2011/Claims/<key>`, so `EntityLogicalName = "account"` works.
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// A SQL filter in the subset `name = value [AND name = value …]`: names bare, `"quoted"` or `[bracketed]`
    /// (plain names are custom properties, `sys.Label` etc. system ones), values `'text'`, numbers or
    /// TRUE/FALSE. Dataverse's documented example works as written:
    /// `"http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName" = 'account'`. Combined with `filter`.
    #[serde(default)]
    pub sql_filter: Option<String>,
    /// Peek-lock duration.
    #[serde(default = "default_lock")]
    pub lock_duration_secs: f64,
    /// Subscription default TTL (the shorter of topic's and this applies).
    #[serde(default)]
    pub default_ttl_secs: Option<f64>,
    /// Deliveries before dead-lettering.
    #[serde(default = "default_max_delivery")]
    pub max_delivery_count: u32,
    /// Dead-letter expired messages.
    #[serde(default)]
    pub dead_letter_on_expiration: bool,
    /// Named rules (Azure: a message is copied when any rule matches; no rule: nothing). When given,
    /// `filter` and `sql_filter` must be empty; when absent, the subscription has one rule `$Default` made
    /// of `filter` and `sql_filter` (both empty: everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleConfig>>,
}

/// A subscription rule: a correlation filter, a SQL filter in weft's subset, or both (AND-ed).
/// `sql_filter = "1=1"` is Azure's TrueFilter, `"1=0"` its FalseFilter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Rule name (≤ 50 characters).
    pub name: String,
    /// Correlation filter entries, as `SubscriptionConfig::filter` (`sys.Label`, `user.Name` or bare).
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// SQL filter.
    #[serde(default)]
    pub sql_filter: Option<String>,
}

/// What a rule's SQL filter means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlFilter {
    /// `1=1` (TrueFilter).
    True,
    /// `1=0` (FalseFilter).
    False,
    /// AND-ed equalities.
    Equal(BTreeMap<String, String>),
}

/// Parses a rule's SQL filter: `1=1`, `1=0`, or the subset [`parse_sql_filter`] reads.
pub fn parse_rule_sql(sql: &str) -> anyhow::Result<SqlFilter> {
    let compact: String = sql.chars().filter(|c| !c.is_whitespace()).collect();
    Ok(match compact.as_str() {
        "1=1" | "(1=1)" => SqlFilter::True,
        "1=0" | "(1=0)" | "0=1" => SqlFilter::False,
        _ => SqlFilter::Equal(parse_sql_filter(sql)?),
    })
}

impl RuleConfig {
    /// The rule as the broker applies it: None = matches nothing, Some(map) = every entry must equal.
    pub fn compile(&self) -> anyhow::Result<Option<BTreeMap<String, String>>> {
        let mut f = self.filter.clone();
        let sql = self.sql_filter.as_deref();
        match sql
            .map(|s| parse_rule_sql(s).map_err(|e| anyhow::anyhow!("sql_filter: {e}")))
            .transpose()?
        {
            None | Some(SqlFilter::True) => {}
            Some(SqlFilter::False) => return Ok(None),
            Some(SqlFilter::Equal(m)) => f.extend(m),
        }
        Ok(Some(f))
    }
}

/// Checks a queue, topic, event hub or relay path: letters, digits, `-`, `_`, `.`, `/` inside, ≤ 260,
/// no reserved operation segment.
pub fn check_entity_name(kind: &str, n: &str) -> anyhow::Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 260
        && !n.starts_with('/')
        && !n.ends_with('/')
        && !n.starts_with('$')
        && n.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    anyhow::ensure!(
        ok,
        "{kind} name '{n}' is invalid: use letters, digits, '-', '_', '.', '/' (not at the ends)"
    );
    // These segments are operation paths (`…/messages/head`, `…/subscriptions/…`, `…/partitions/…`).
    let reserved = [
        "messages",
        "subscriptions",
        "partitions",
        "publishers",
        "publisher",
        "rules",
    ];
    anyhow::ensure!(
        !n.split('/')
            .any(|seg| reserved.iter().any(|r| seg.eq_ignore_ascii_case(r))),
        "{kind} name '{n}' contains a reserved path segment ({})",
        reserved.join(", ")
    );
    Ok(())
}

/// Checks a subscription or rule name: ≤ 50 of letters, digits, `-`, `_`, `.` (a rule may start with `$`,
/// as `$Default`).
pub fn check_short_name(kind: &str, n: &str) -> anyhow::Result<()> {
    let body = if kind == "rule" {
        n.strip_prefix('$').unwrap_or(n)
    } else {
        n
    };
    anyhow::ensure!(
        !body.is_empty()
            && n.len() <= 50
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
        "{kind} name '{n}' is invalid (≤50 of letters, digits, '-', '_', '.')"
    );
    Ok(())
}

/// An Event Hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHubConfig {
    /// Hub name.
    pub name: String,
    /// Partition count (1–32), partitions are `0..n`.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Hours events are kept (Azure: 1–168 on Standard); older events are purged about once a minute.
    #[serde(default = "default_retention")]
    pub retention_hours: f64,
}

impl EventHubConfig {
    /// A hub with `partitions` partitions and 7 days of retention.
    pub fn new(name: impl Into<String>, partitions: u32) -> EventHubConfig {
        EventHubConfig {
            name: name.into(),
            partitions,
            retention_hours: default_retention(),
        }
    }
}

/// A Relay Hybrid Connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Hybrid connection path.
    pub name: String,
}

fn default_bind() -> SocketAddr {
    DEFAULT_BIND.parse().expect("constant address parses")
}
fn default_data() -> PathBuf {
    PathBuf::from(".weft/bus")
}
fn default_max_message() -> usize {
    256 * 1024
}
fn default_relay_timeout() -> f64 {
    60.0
}
fn default_lock() -> f64 {
    60.0
}
fn default_max_delivery() -> u32 {
    10
}
fn default_max_size() -> u64 {
    1024
}
fn default_header_timeout() -> f64 {
    30.0
}
fn default_body_timeout() -> f64 {
    60.0
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_relay_body() -> usize {
    4 << 20
}
fn default_max_entities() -> usize {
    10_000
}
fn default_max_per_parent() -> usize {
    2_000
}
fn default_retention() -> f64 {
    168.0
}
fn default_partitions() -> u32 {
    4
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            bind: default_bind(),
            data: default_data(),
            queues: vec![],
            topics: vec![],
            event_hubs: vec![],
            relays: vec![],
            sas_policies: vec![],
            max_message_bytes: default_max_message(),
            relay_timeout_secs: default_relay_timeout(),
            echo_route: false,
            header_read_timeout_secs: default_header_timeout(),
            body_read_timeout_secs: default_body_timeout(),
            max_connections: default_max_connections(),
            max_relay_body_bytes: default_max_relay_body(),
            amqp_bind: None,
            tls: false,
            tls_cert: None,
            tls_key: None,
            max_entities: default_max_entities(),
            max_subscriptions_per_topic: default_max_per_parent(),
        }
    }
}

impl QueueConfig {
    /// A queue with Azure's defaults.
    pub fn new(name: impl Into<String>) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            lock_duration_secs: default_lock(),
            default_ttl_secs: None,
            max_delivery_count: default_max_delivery(),
            duplicate_detection_window_secs: None,
            dead_letter_on_expiration: false,
            max_size_mb: default_max_size(),
        }
    }
}

impl SubscriptionConfig {
    /// A subscription with Azure's defaults and the given filter.
    pub fn new(name: impl Into<String>, filter: BTreeMap<String, String>) -> SubscriptionConfig {
        SubscriptionConfig {
            name: name.into(),
            filter,
            sql_filter: None,
            lock_duration_secs: default_lock(),
            default_ttl_secs: None,
            max_delivery_count: default_max_delivery(),
            dead_letter_on_expiration: false,
            rules: None,
        }
    }
}

impl TopicConfig {
    /// A topic with Azure's defaults.
    pub fn new(name: impl Into<String>, subscriptions: Vec<SubscriptionConfig>) -> TopicConfig {
        TopicConfig {
            name: name.into(),
            subscriptions,
            default_ttl_secs: None,
            duplicate_detection_window_secs: None,
            max_size_mb: default_max_size(),
        }
    }
}

/// A file holding a `[bus]` section (weft.toml); other sections are ignored here.
#[derive(Deserialize)]
struct FileWithBus {
    bus: Option<BusConfig>,
}

impl BusConfig {
    /// Reads the `[bus]` section of a TOML file (a missing section gives the defaults).
    pub fn from_toml_file(path: &std::path::Path) -> anyhow::Result<BusConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read bus config {}: {e}", path.display()))?;
        BusConfig::from_toml_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses TOML text with a `[bus]` section and validates it.
    pub fn from_toml_str(text: &str) -> anyhow::Result<BusConfig> {
        // The toml crate's own text quotes the offending line, which may hold a SAS key: say where
        // and what only.
        let file: FileWithBus = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|s| text.get(..s.start))
                .map_or(1, |before| before.lines().count().max(1));
            anyhow::anyhow!("invalid [bus] section (line {line}): {}", e.message())
        })?;
        let cfg = file.bus.unwrap_or_default();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks names, numbers and uniqueness; errors name the offending entity.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        let mut name = |kind: &str, n: &str| -> anyhow::Result<()> {
            check_entity_name(kind, n)?;
            anyhow::ensure!(
                seen.insert(n.to_ascii_lowercase()),
                "entity name '{n}' is used twice"
            );
            Ok(())
        };
        for q in &self.queues {
            name("queue", &q.name)?;
            check_settings(
                &q.name,
                q.lock_duration_secs,
                q.default_ttl_secs,
                q.max_delivery_count,
            )?;
            check_window(&q.name, q.duplicate_detection_window_secs)?;
        }
        for t in &self.topics {
            name("topic", &t.name)?;
            check_settings(&t.name, 1.0, t.default_ttl_secs, 1)?;
            check_window(&t.name, t.duplicate_detection_window_secs)?;
            let mut subs = std::collections::HashSet::new();
            for s in &t.subscriptions {
                check_short_name("subscription", &s.name)
                    .map_err(|e| anyhow::anyhow!("{e} on topic '{}'", t.name))?;
                s.filters().map_err(|e| {
                    anyhow::anyhow!("subscription '{}' on topic '{}': {e}", s.name, t.name)
                })?;
                anyhow::ensure!(
                    subs.insert(s.name.to_ascii_lowercase()),
                    "subscription '{}' on topic '{}' is defined twice",
                    s.name,
                    t.name
                );
                check_settings(
                    &format!("{}/{}", t.name, s.name),
                    s.lock_duration_secs,
                    s.default_ttl_secs,
                    s.max_delivery_count,
                )?;
            }
        }
        for h in &self.event_hubs {
            name("event hub", &h.name)?;
            anyhow::ensure!(
                (1..=32).contains(&h.partitions),
                "event hub '{}' needs 1 to 32 partitions, got {}",
                h.name,
                h.partitions
            );
            anyhow::ensure!(
                h.retention_hours > 0.0 && h.retention_hours.is_finite(),
                "event hub '{}': retention_hours must be positive, got {}",
                h.name,
                h.retention_hours
            );
        }
        for r in &self.relays {
            name("relay", &r.name)?;
        }
        for p in &self.sas_policies {
            anyhow::ensure!(
                !p.name.is_empty() && p.name.len() <= 256,
                "SAS policy name must be 1 to 256 characters"
            );
            anyhow::ensure!(
                !p.key.is_empty() && p.key.len() <= 256,
                "SAS policy '{}': key must be 1 to 256 characters",
                p.name
            );
            anyhow::ensure!(
                !p.rights.is_empty(),
                "SAS policy '{}' grants no rights",
                p.name
            );
        }
        anyhow::ensure!(
            self.max_message_bytes >= 1024,
            "max_message_bytes must be at least 1024"
        );
        for (name, v) in [
            ("relay_timeout_secs", self.relay_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
        ] {
            anyhow::ensure!(
                v > 0.0 && v.is_finite() && v <= 86_400.0,
                "{name} must be positive and at most 86400 seconds"
            );
        }
        anyhow::ensure!(
            self.max_connections >= 1,
            "max_connections must be at least 1"
        );
        anyhow::ensure!(
            self.max_relay_body_bytes >= 1024,
            "max_relay_body_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert and tls_key go together"
        );
        Ok(())
    }
}

impl SubscriptionConfig {
    /// The rules as the broker applies them (see [`RuleConfig::compile`]): `rules`, or one `$Default` rule
    /// made of `filter` and `sql_filter`.
    pub fn filters(&self) -> anyhow::Result<Vec<Option<BTreeMap<String, String>>>> {
        let Some(rules) = &self.rules else {
            return Ok(vec![self.default_rule().compile()?]);
        };
        anyhow::ensure!(
            self.filter.is_empty() && self.sql_filter.is_none(),
            "give either rules or filter/sql_filter, not both"
        );
        let mut names = std::collections::HashSet::new();
        rules
            .iter()
            .map(|r| {
                check_short_name("rule", &r.name)?;
                anyhow::ensure!(
                    names.insert(r.name.to_ascii_lowercase()),
                    "rule '{}' is defined twice",
                    r.name
                );
                r.compile()
                    .map_err(|e| anyhow::anyhow!("rule '{}': {e}", r.name))
            })
            .collect()
    }

    /// The rules as named rules: `rules`, or `$Default` made of `filter` and `sql_filter`.
    pub fn named_rules(&self) -> Vec<RuleConfig> {
        match &self.rules {
            None => vec![self.default_rule()],
            Some(r) => r.clone(),
        }
    }

    fn default_rule(&self) -> RuleConfig {
        RuleConfig {
            name: "$Default".into(),
            filter: self.filter.clone(),
            sql_filter: self.sql_filter.clone(),
        }
    }

    /// The effective correlation map: `filter` plus the parsed `sql_filter` (validated at load).
    pub fn effective_filter(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut f = self.filter.clone();
        if let Some(sql) = &self.sql_filter {
            f.extend(parse_sql_filter(sql)?);
        }
        Ok(f)
    }
}

/// Parses the SQL-filter subset `name = value [AND name = value …]` into property → text.
pub fn parse_sql_filter(sql: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = sql.trim();
    anyhow::ensure!(!rest.is_empty(), "empty filter");
    loop {
        let (name, after) = sql_name(rest)?;
        let after = after.trim_start();
        let after = after
            .strip_prefix('=')
            .ok_or_else(|| {
                anyhow::anyhow!("expected '=' after {name} (only equality is supported)")
            })?
            .trim_start();
        let (value, after) = sql_value(after)?;
        out.insert(name, value);
        rest = after.trim_start();
        if rest.is_empty() {
            return Ok(out);
        }
        let kw = rest.get(..3).unwrap_or_default();
        anyhow::ensure!(
            kw.eq_ignore_ascii_case("and") && rest[3..].starts_with(char::is_whitespace),
            "expected AND before '{rest}' (only AND-ed equalities are supported)"
        );
        rest = rest[3..].trim_start();
    }
}

fn sql_name(s: &str) -> anyhow::Result<(String, &str)> {
    let scoped = |n: &str| {
        if n.starts_with("sys.") || n.starts_with("user.") {
            n.to_string()
        } else {
            format!("user.{n}")
        }
    };
    if let Some(r) = s.strip_prefix('"') {
        let end = r
            .find('"')
            .ok_or_else(|| anyhow::anyhow!("unterminated \"name\""))?;
        return Ok((scoped(&r[..end]), &r[end + 1..]));
    }
    if let Some(r) = s.strip_prefix('[') {
        let end = r
            .find(']')
            .ok_or_else(|| anyhow::anyhow!("unterminated [name]"))?;
        return Ok((scoped(&r[..end]), &r[end + 1..]));
    }
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(s.len());
    anyhow::ensure!(end > 0, "expected a property name at '{s}'");
    Ok((scoped(&s[..end]), &s[end..]))
}

fn sql_value(s: &str) -> anyhow::Result<(String, &str)> {
    if let Some(mut r) = s.strip_prefix('\'') {
        let mut v = String::new();
        loop {
            let end = r
                .find('\'')
                .ok_or_else(|| anyhow::anyhow!("unterminated 'string'"))?;
            v.push_str(&r[..end]);
            r = &r[end + 1..];
            match r.strip_prefix('\'') {
                Some(more) => {
                    v.push('\'');
                    r = more;
                }
                None => return Ok((v, r)),
            }
        }
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    let tok = &s[..end];
    let v = if tok.eq_ignore_ascii_case("true") || tok.eq_ignore_ascii_case("false") {
        tok.to_ascii_lowercase()
    } else if tok.parse::<f64>().is_ok() {
        tok.to_string()
    } else {
        anyhow::bail!("value '{tok}' is not a 'string', a number, TRUE or FALSE");
    };
    Ok((v, &s[end..]))
}

fn check_settings(
    entity: &str,
    lock: f64,
    ttl: Option<f64>,
    max_delivery: u32,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        lock > 0.0 && lock <= 300.0,
        "'{entity}': lock_duration_secs must be in (0, 300], got {lock}"
    );
    if let Some(t) = ttl {
        anyhow::ensure!(
            t > 0.0 && t.is_finite(),
            "'{entity}': default_ttl_secs must be positive, got {t}"
        );
    }
    anyhow::ensure!(
        max_delivery >= 1,
        "'{entity}': max_delivery_count must be at least 1"
    );
    Ok(())
}

fn check_window(entity: &str, w: Option<f64>) -> anyhow::Result<()> {
    if let Some(w) = w {
        anyhow::ensure!(
            w > 0.0 && w <= 7.0 * 86400.0,
            "'{entity}': duplicate_detection_window_secs must be in (0, 7 days], got {w}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mistake on a line holding a SAS key is reported by line, never by quoting the key.
    #[test]
    fn errors_do_not_quote_a_key() {
        let text = "[bus]\nsas_policies = [{ name = \"k\", key = \"S3cr3t-Value\", rights = [\"Bogus\"] }]\n";
        let err = BusConfig::from_toml_str(text).unwrap_err().to_string();
        assert!(!err.contains("S3cr3t"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    /// A full [bus] section parses; unknown fields are rejected with the field's name.
    #[test]
    fn toml_section() {
        let cfg = BusConfig::from_toml_str(
            r#"
            [other]
            x = 1
            [bus]
            bind = "127.0.0.1:9000"
            [[bus.queues]]
            name = "orders"
            lock_duration_secs = 1
            duplicate_detection_window_secs = 600
            [[bus.topics]]
            name = "events"
            [[bus.topics.subscriptions]]
            name = "accounts"
            filter = { EntityLogicalName = "account" }
            sql_filter = "\"http://schemas.microsoft.com/xrm/2011/Claims/RequestName\" = 'Create'"
            [[bus.event_hubs]]
            name = "hub"
            partitions = 2
            [[bus.relays]]
            name = "hc"
            [[bus.sas_policies]]
            name = "root"
            key = "k"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.bind.port(), 9000);
        assert_eq!(cfg.queues[0].lock_duration_secs, 1.0);
        assert_eq!(
            cfg.topics[0].subscriptions[0].filter["EntityLogicalName"],
            "account"
        );
        let err = BusConfig::from_toml_str("[bus]\nqueus = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("queus"), "{err}");
        let err = BusConfig::from_toml_str("[bus]\n[[bus.queues]]\nname = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a b'"), "{err}");
        let err = BusConfig::from_toml_str("[bus]\n[[bus.queues]]\nname = \"a/messages\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved"), "{err}");
        let err = BusConfig::from_toml_str(
            "[bus]\n[[bus.queues]]\nname = \"q\"\n[[bus.relays]]\nname = \"Q\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("used twice"), "{err}");
        let err = BusConfig::from_toml_str(
            "[bus]\n[[bus.topics]]\nname = \"t\"\n[[bus.topics.subscriptions]]\nname = \"s\"\nsql_filter = \"a > 1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sql_filter") && err.contains("only equality"),
            "{err}"
        );
    }

    /// Named rules in TOML (as bus/README.md shows them): any rule matches; rules and filter exclude each
    /// other; `1=0` matches nothing.
    #[test]
    fn rules_in_toml() {
        let cfg = BusConfig::from_toml_str(
            r#"
            [bus]
            [[bus.topics]]
            name = "t"
            [[bus.topics.subscriptions]]
            name = "named-rules"
            rules = [{ name = "creates", sql_filter = "sys.Label = 'Create'" }, { name = "ids", filter = { "sys.CorrelationId" = "c-1" } }, { name = "never", sql_filter = "1=0" }]
            "#,
        )
        .unwrap();
        let f = cfg.topics[0].subscriptions[0].filters().unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].as_ref().unwrap()["sys.Label"], "Create");
        assert_eq!(f[1].as_ref().unwrap()["sys.CorrelationId"], "c-1");
        assert!(f[2].is_none());
        let err = BusConfig::from_toml_str(
            "[bus]\n[[bus.topics]]\nname = \"t\"\n[[bus.topics.subscriptions]]\nname = \"s\"\nfilter = { a = \"b\" }\nrules = []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("either rules or filter"), "{err}");
    }

    /// The SQL subset parses Dataverse's documented filter, scopes, quoting, numbers and booleans.
    #[test]
    fn sql_filter_subset() {
        let f = parse_sql_filter(
            r#""http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName" = 'account' AND sys.Label='it''s' and [n]=5 AND Flag = TRUE"#,
        )
        .unwrap();
        assert_eq!(
            f["user.http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName"],
            "account"
        );
        assert_eq!(f["sys.Label"], "it's");
        assert_eq!(f["user.n"], "5");
        assert_eq!(f["user.Flag"], "true");
        for bad in [
            "",
            "a",
            "a = ",
            "a = 'x",
            "a = x",
            "a = 1 OR b = 2",
            "\"a = 1",
        ] {
            assert!(parse_sql_filter(bad).is_err(), "{bad}");
        }
    }
}
