//! The RemoteExecutionContext data model: plain public types mirroring the
//! Microsoft.Xrm.Sdk data contracts that Dataverse serializes.
//!
//! Owns only the shapes and small value helpers (decimal text, `\/Date()\/`
//! dates). It knows nothing about any wire format; the codecs in `json`, `xml`
//! and `nbfx` map these types to bytes.
//!
//! Dictionary-like members (parameter collections, attributes, formatted values,
//! images) are ordered `Vec`s of pairs, never maps: Dataverse preserves insertion
//! order and the wire formats must reproduce it.

use uuid::Uuid;

/// An ordered string → object collection (ParameterCollection, AttributeCollection,
/// KeyAttributeCollection).
pub type Params = Vec<(String, Value)>;

/// The context Dataverse posts to Service Bus, Event Hubs, Relay and webhooks.
///
/// Field order follows the serialized (alphabetical) member order. Members that
/// older payloads lack are `Option`s whose `None` means "absent from the
/// message", so re-writing a 2017 payload does not invent them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteExecutionContext {
    /// `BusinessUnitId`: business unit of the calling user.
    pub business_unit_id: Uuid,
    /// `CorrelationId`: shared by parent and child contexts.
    pub correlation_id: Uuid,
    /// `Depth`: pipeline depth (1 for a direct call).
    pub depth: i32,
    /// `InitiatingUserAgent` (2023+ payloads); `None` = member absent.
    pub initiating_user_agent: Option<String>,
    /// `InitiatingUserAzureActiveDirectoryObjectId` (newer payloads); `None` = absent.
    pub initiating_user_azure_active_directory_object_id: Option<Uuid>,
    /// `InitiatingUserId`: the real caller.
    pub initiating_user_id: Uuid,
    /// `InputParameters`: the request's parameters, in order.
    pub input_parameters: Params,
    /// `IsExecutingOffline`.
    pub is_executing_offline: bool,
    /// `IsInTransaction`.
    pub is_in_transaction: bool,
    /// `IsOfflinePlayback`.
    pub is_offline_playback: bool,
    /// `IsolationMode`: 1 none, 2 sandbox.
    pub isolation_mode: i32,
    /// `MessageName`, e.g. `Create`.
    pub message_name: String,
    /// `Mode`: 0 synchronous, 1 asynchronous.
    pub mode: i32,
    /// `OperationCreatedOn`.
    pub operation_created_on: DateTime,
    /// `OperationId`.
    pub operation_id: Uuid,
    /// `OrganizationId`.
    pub organization_id: Uuid,
    /// `OrganizationName`: the organization's unique name.
    pub organization_name: String,
    /// `OutputParameters`.
    pub output_parameters: Params,
    /// `OwningExtension`: reference to the `sdkmessageprocessingstep`; `None` = `null`.
    pub owning_extension: Option<EntityReference>,
    /// `ParentContext`; `None` = `null`.
    pub parent_context: Option<Box<RemoteExecutionContext>>,
    /// `PostEntityImages`: image name → entity, in order.
    pub post_entity_images: Vec<(String, Entity)>,
    /// `PreEntityImages`: image name → entity, in order.
    pub pre_entity_images: Vec<(String, Entity)>,
    /// `PrimaryEntityId`.
    pub primary_entity_id: Uuid,
    /// `PrimaryEntityName`: logical name of the primary table.
    pub primary_entity_name: String,
    /// `RequestId`; `None` = `null`.
    pub request_id: Option<Uuid>,
    /// `SecondaryEntityName`: `"none"` in practice.
    pub secondary_entity_name: String,
    /// `SharedVariables`.
    pub shared_variables: Params,
    /// `Stage`: 10, 20, 30 (core) or 40.
    pub stage: i32,
    /// `UserAzureActiveDirectoryObjectId` (newer payloads); `None` = absent.
    pub user_azure_active_directory_object_id: Option<Uuid>,
    /// `UserId`: the effective (possibly impersonated) user.
    pub user_id: Uuid,
}

impl RemoteExecutionContext {
    /// A context with the given message, table and stage, everything else at the
    /// values Dataverse uses for a plain call: depth 1, isolation mode 1,
    /// `SecondaryEntityName` `"none"`, empty collections, no parent, and the
    /// three newer members present (`""` and nil GUIDs).
    pub fn new_minimal(message_name: &str, primary_entity_name: &str, stage: i32) -> Self {
        RemoteExecutionContext {
            depth: 1,
            isolation_mode: 1,
            message_name: message_name.to_string(),
            primary_entity_name: primary_entity_name.to_string(),
            secondary_entity_name: "none".to_string(),
            stage,
            initiating_user_agent: Some(String::new()),
            initiating_user_azure_active_directory_object_id: Some(Uuid::nil()),
            user_azure_active_directory_object_id: Some(Uuid::nil()),
            ..Default::default()
        }
    }

    /// The parent chain, nearest parent first.
    pub fn parents(&self) -> impl Iterator<Item = &RemoteExecutionContext> {
        std::iter::successors(self.parent_context.as_deref(), |c| {
            c.parent_context.as_deref()
        })
    }
}

/// A value in an object-typed slot (parameter, attribute, shared variable).
///
/// JSON drops most .NET type information (a Guid becomes a plain string, a
/// decimal a plain number), so a value read from JSON may come back as a
/// different variant than was written; XML and binary keep the exact variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null` / `i:nil="true"`.
    Null,
    /// `boolean`.
    Boolean(bool),
    /// `int` (Int32).
    Int(i32),
    /// `long` (Int64).
    Long(i64),
    /// `double`.
    Double(f64),
    /// `decimal`, kept as exact text.
    Decimal(Decimal),
    /// `Money`.
    Money(Decimal),
    /// `string`.
    String(String),
    /// `dateTime`.
    DateTime(DateTime),
    /// `guid`.
    Guid(Uuid),
    /// `EntityReference` (lookup).
    EntityReference(EntityReference),
    /// `OptionSetValue` (choice).
    OptionSetValue(i32),
    /// `OptionSetValueCollection` (multi-select choice).
    OptionSetValueCollection(Vec<i32>),
    /// `Entity` (e.g. `Target` of Create/Update).
    Entity(Box<Entity>),
    /// `EntityCollection` (e.g. `BusinessEntityCollection`).
    EntityCollection(EntityCollection),
    /// `EntityReferenceCollection` (e.g. `RelatedEntities` of Associate).
    EntityReferenceCollection(Vec<EntityReference>),
    /// `AliasedValue` (linked-entity columns in query results).
    AliasedValue(Box<AliasedValue>),
    /// `ColumnSet` (e.g. Retrieve's `ColumnSet`).
    ColumnSet(ColumnSet),
    /// `Relationship` (e.g. Associate's `Relationship`).
    Relationship(Relationship),
    /// An array of `KeyValuePairOfstringstring` (e.g. `ChangedEntityTypes`).
    StringPairs(Vec<(String, String)>),
}

/// `Entity`: a table row or a partial row (Target, images).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    /// `Attributes`: column values in order.
    pub attributes: Params,
    /// `EntityState`: 0 Unchanged, 1 Created, 2 Changed; `None` = `null`.
    pub entity_state: Option<i32>,
    /// `FormattedValues`: display strings in order.
    pub formatted_values: Vec<(String, String)>,
    /// `Id`.
    pub id: Uuid,
    /// `KeyAttributes`: alternate key values.
    pub key_attributes: Params,
    /// `LogicalName`; `None` = `null`.
    pub logical_name: Option<String>,
    /// `RelatedEntities`.
    pub related_entities: Vec<(Relationship, EntityCollection)>,
    /// `RowVersion` (numeric string); `None` = `null`.
    pub row_version: Option<String>,
}

impl Entity {
    /// An entity with a logical name and id and nothing else.
    pub fn new(logical_name: &str, id: Uuid) -> Self {
        Entity {
            logical_name: Some(logical_name.to_string()),
            id,
            ..Default::default()
        }
    }
}

/// `EntityReference`: a lookup to a row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityReference {
    /// `Id`.
    pub id: Uuid,
    /// `KeyAttributes`.
    pub key_attributes: Params,
    /// `LogicalName`; `None` = `null`.
    pub logical_name: Option<String>,
    /// `Name` (primary name, often `null`).
    pub name: Option<String>,
    /// `RowVersion`; `None` = `null`.
    pub row_version: Option<String>,
}

impl EntityReference {
    /// A reference with a logical name and id.
    pub fn new(logical_name: &str, id: Uuid) -> Self {
        EntityReference {
            id,
            logical_name: Some(logical_name.to_string()),
            ..Default::default()
        }
    }
}

/// `EntityCollection`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityCollection {
    /// `Entities`.
    pub entities: Vec<Entity>,
    /// `EntityName`; `None` = `null`.
    pub entity_name: Option<String>,
    /// `MinActiveRowVersion`; `None` = `null`.
    pub min_active_row_version: Option<String>,
    /// `MoreRecords`.
    pub more_records: bool,
    /// `PagingCookie`; `None` = `null`.
    pub paging_cookie: Option<String>,
    /// `TotalRecordCount`.
    pub total_record_count: i32,
    /// `TotalRecordCountLimitExceeded`.
    pub total_record_count_limit_exceeded: bool,
}

/// `AliasedValue`.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasedValue {
    /// `AttributeLogicalName`; `None` = `null`.
    pub attribute_logical_name: Option<String>,
    /// `EntityLogicalName`; `None` = `null`.
    pub entity_logical_name: Option<String>,
    /// `Value`.
    pub value: Value,
}

/// `ColumnSet`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnSet {
    /// `AllColumns`.
    pub all_columns: bool,
    /// `Columns`.
    pub columns: Vec<String>,
}

/// `Relationship`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Relationship {
    /// `PrimaryEntityRole`: 0 Referencing, 1 Referenced; `None` = `null`.
    pub primary_entity_role: Option<i32>,
    /// `SchemaName`; `None` = `null`.
    pub schema_name: Option<String>,
}

/// A .NET `decimal` kept as its exact text (`-?digits(.digits)?`), so `10.120`
/// stays `10.120` and nothing ever passes through `f64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    /// Accepts `-?(0|[1-9][0-9]*)(\.[0-9]+)?` (how .NET prints a decimal, and a
    /// valid JSON number); anything else is `None`.
    pub fn parse(text: &str) -> Option<Decimal> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = int.len() > 1 && int.starts_with('0');
        if all_digits(int) && !leading_zero && frac.is_none_or(all_digits) {
            Some(Decimal(text.to_string()))
        } else {
            None
        }
    }

    /// The exact text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Decimal {
    fn default() -> Self {
        Decimal("0".into())
    }
}

impl From<i64> for Decimal {
    fn from(v: i64) -> Self {
        Decimal(v.to_string())
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A .NET `DateTime` with its kind: UTC (`\/Date(ms)\/`, `…Z`), Local with
/// its offset (`\/Date(ms±hhmm)\/`, `…±hh:mm`) or Unspecified (XML without a
/// zone; binary `DateTimeText` kind 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DateTime {
    /// Milliseconds since 1970-01-01T00:00:00Z (the instant); for an
    /// unspecified kind, the wall-clock time counted as if it were UTC.
    pub ms: i64,
    /// Local kind's offset in minutes (`-0700` → -420); `None` = UTC or unspecified.
    pub offset_minutes: Option<i16>,
    /// `DateTimeKind.Unspecified` (then `offset_minutes` is `None`).
    pub unspecified: bool,
}

impl DateTime {
    /// A UTC instant.
    pub fn utc(ms: i64) -> Self {
        DateTime {
            ms,
            ..DateTime::default()
        }
    }

    /// A local-kind instant with its UTC offset in minutes.
    pub fn local(ms: i64, offset_minutes: i16) -> Self {
        DateTime {
            ms,
            offset_minutes: Some(offset_minutes),
            unspecified: false,
        }
    }

    /// An unspecified-kind wall-clock time (`ms` counted as if UTC).
    pub fn unspecified(ms: i64) -> Self {
        DateTime {
            ms,
            offset_minutes: None,
            unspecified: true,
        }
    }

    /// Parses the inside of `/Date(...)/`: `ms`, `ms+hhmm` or `ms-hhmm`.
    pub fn parse_json_body(body: &str) -> Option<DateTime> {
        let bytes = body.as_bytes();
        // The offset sign is the first +/- after the (optionally signed) number.
        let start = usize::from(bytes.first() == Some(&b'-'));
        let split = bytes[start..]
            .iter()
            .position(|&b| b == b'+' || b == b'-')
            .map(|p| p + start);
        let (num, off) = match split {
            Some(p) => (&body[..p], Some(&body[p..])),
            None => (body, None),
        };
        if num.len() <= start || !num[start..].bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ms: i64 = num.parse().ok()?;
        let offset_minutes = match off {
            None => None,
            Some(o) => {
                let ob = o.as_bytes();
                if ob.len() != 5 || !ob[1..].iter().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let hh = i16::from(ob[1] - b'0') * 10 + i16::from(ob[2] - b'0');
                let mm = i16::from(ob[3] - b'0') * 10 + i16::from(ob[4] - b'0');
                if mm > 59 {
                    return None;
                }
                let m = hh * 60 + mm;
                Some(if ob[0] == b'-' { -m } else { m })
            }
        };
        Some(DateTime {
            ms,
            offset_minutes,
            unspecified: false,
        })
    }

    /// Writes the inside of `/Date(...)/`. An unspecified kind is written as
    /// DataContractJsonSerializer does on a UTC server: as local time, `+0000`.
    pub fn write_json_body(&self, out: &mut Vec<u8>) {
        push_i64(out, self.ms);
        let offset = if self.unspecified {
            Some(0)
        } else {
            self.offset_minutes
        };
        if let Some(m) = offset {
            out.push(if m < 0 { b'-' } else { b'+' });
            let a = m.unsigned_abs();
            let (hh, mm) = (a / 60, a % 60);
            out.extend_from_slice(&[
                b'0' + (hh / 10 % 10) as u8,
                b'0' + (hh % 10) as u8,
                b'0' + (mm / 10) as u8,
                b'0' + (mm % 10) as u8,
            ]);
        }
    }
}

/// Appends a decimal integer without allocating.
pub(crate) fn push_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a GUID in lower-case hyphenated form without allocating.
pub(crate) fn push_guid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = [0u8; 36];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
}

/// Formats a double the way .NET Core's round-trip formatting does: shortest
/// digits that round-trip, scientific (`1E+15`, `1E-05`) outside 1e-5..1e15.
pub(crate) fn format_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{v:e}"); // e.g. "-1.2345e-7"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..15).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        out.push(if exp < 0 { '-' } else { '+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push('0');
        }
        out.push_str(&a.to_string());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles print like .NET Core's shortest round-trip format.
    #[test]
    fn doubles_print_like_dotnet() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(100.0), "100");
        assert_eq!(format_double(1e15), "1E+15");
        assert_eq!(format_double(123456789012345.0), "123456789012345");
        assert_eq!(format_double(0.0001), "0.0001");
        assert_eq!(format_double(0.00001), "1E-05");
        assert_eq!(format_double(-1.25e-7), "-1.25E-07");
        assert_eq!(format_double(f64::MAX), "1.7976931348623157E+308");
        assert_eq!(format_double(-0.0), "-0");
    }

    /// `\/Date()\/` bodies parse and print back identically, offsets included.
    #[test]
    fn date_bodies_round_trip() {
        for s in [
            "1506409448000-0700",
            "0",
            "-62135596800000",
            "1697398446012+0000",
            "5+0530",
        ] {
            let d = DateTime::parse_json_body(s).expect(s);
            let mut out = Vec::new();
            d.write_json_body(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), s);
        }
        for bad in ["", "-", "12a", "1+07", "1+0760", "+0100"] {
            assert!(DateTime::parse_json_body(bad).is_none(), "{bad}");
        }
    }

    /// Decimal text is validated and kept exactly.
    #[test]
    fn decimal_text_is_exact() {
        assert_eq!(Decimal::parse("10.120").unwrap().as_str(), "10.120");
        assert!(Decimal::parse("-0.5").is_some());
        for bad in ["", "1.", ".5", "1e5", "+1", "1.2.3", "--1", "007"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }
}
