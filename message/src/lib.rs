//! weft-message: Dataverse's RemoteExecutionContext and its three wire formats
//! — `application/json` (DataContractJsonSerializer), `application/xml`
//! (DataContractSerializer) and `application/msbin1` (.NET Binary XML) — plus
//! the size rule applied before posting.
//!
//! Owns the model and the codecs. It does no I/O except in [`cli`], which the
//! host's `weft message …` command calls; it knows nothing of the pipeline,
//! buses or the host's WIT types (the host converts those to [`model`]).
//!
//! ```
//! use weft_message::{Format, RemoteExecutionContext, encode, parse, summary};
//!
//! let ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
//! let body = encode(&ctx, Format::Binary);
//! let back = parse(&body, Format::Binary.content_type()).unwrap();
//! assert_eq!(back, ctx);
//! assert!(summary(&back).contains("Create"));
//! // A listener parses whatever arrives, by content type:
//! let json = encode(&ctx, Format::Json);
//! assert_eq!(parse(&json, "application/json; charset=utf-8").unwrap(), ctx);
//! ```

pub mod bench;
pub mod calendar;
pub mod cli;
pub mod error;
mod infoset;
pub mod json;
pub mod model;
pub mod names;
pub mod nbfx;
pub mod size;
pub mod xml;

pub use error::{MessageError, Syntax};
pub use model::*;
pub use size::{Encoded, SERVICE_BUS_LIMIT, WEBHOOK_LIMIT, encode_limited};

/// The three Dataverse message formats (`messageformat` 1 = Binary, 2 = Json, 3 = Xml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/xml`.
    Xml,
    /// `application/msbin1` (Dataverse's default).
    Binary,
}

impl Format {
    /// The Content-Type Dataverse sends for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml",
            Format::Binary => "application/msbin1",
        }
    }

    /// The format for a Content-Type header; parameters (`; charset=…`) and case
    /// are ignored.
    pub fn from_content_type(content_type: &str) -> Result<Format, MessageError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json" => Ok(Format::Json),
            "application/xml" | "text/xml" => Ok(Format::Xml),
            "application/msbin1" => Ok(Format::Binary),
            _ => Err(MessageError::ContentType(content_type.to_string())),
        }
    }
}

/// Parses a message body given its Content-Type.
pub fn parse(bytes: &[u8], content_type: &str) -> Result<RemoteExecutionContext, MessageError> {
    decode(bytes, Format::from_content_type(content_type)?)
}

/// [`parse`] of the context's own members only (ids, names, stage, mode,
/// flags): its parameters, images, owning extension and parent are left
/// empty, checked only as well-formed in JSON (which reads them fastest);
/// other formats are decoded whole. For a caller that sends the body on as it
/// is and needs only the message's properties.
pub fn parse_head(
    bytes: &[u8],
    content_type: &str,
) -> Result<RemoteExecutionContext, MessageError> {
    decode_head(bytes, Format::from_content_type(content_type)?)
}

/// [`parse_head`] in a known format.
pub fn decode_head(bytes: &[u8], format: Format) -> Result<RemoteExecutionContext, MessageError> {
    match format {
        Format::Json => json::decode_head(bytes),
        format => decode(bytes, format),
    }
}

/// Decodes a message body in a known format.
pub fn decode(bytes: &[u8], format: Format) -> Result<RemoteExecutionContext, MessageError> {
    match format {
        Format::Json => json::decode(bytes),
        Format::Xml => xml::decode(bytes),
        Format::Binary => nbfx::decode(bytes),
    }
}

/// Encodes a context in a format, exactly as Dataverse would send it.
pub fn encode(ctx: &RemoteExecutionContext, format: Format) -> Vec<u8> {
    match format {
        Format::Json => json::encode(ctx),
        Format::Xml => xml::encode(ctx),
        Format::Binary => nbfx::encode(ctx),
    }
}

/// A readable multi-line summary: message, table, ids, stage, mode, depth,
/// parameters, images and the parent chain.
pub fn summary(ctx: &RemoteExecutionContext) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mut level = 0;
    let mut cur = Some(ctx);
    while let Some(c) = cur {
        let ind = "  ".repeat(level);
        if level > 0 {
            let _ = writeln!(s, "{ind}parent context:");
        }
        let stage = match c.stage {
            10 => "PreValidation",
            20 => "PreOperation",
            30 => "MainOperation",
            40 => "PostOperation",
            _ => "other",
        };
        let mode = match c.mode {
            0 => "synchronous",
            1 => "asynchronous",
            _ => "unknown",
        };
        let _ = writeln!(
            s,
            "{ind}message:      {} of {} ({})",
            c.message_name, c.primary_entity_name, c.primary_entity_id
        );
        let _ = writeln!(
            s,
            "{ind}stage:        {} {stage}, mode {} {mode}, depth {}",
            c.stage, c.mode, c.depth
        );
        let _ = writeln!(
            s,
            "{ind}organization: {} ({})",
            c.organization_name, c.organization_id
        );
        let _ = writeln!(
            s,
            "{ind}user:         {} (initiating {})",
            c.user_id, c.initiating_user_id
        );
        let _ = writeln!(
            s,
            "{ind}correlation:  {}  operation: {}  request: {}",
            c.correlation_id,
            c.operation_id,
            c.request_id
                .map_or_else(|| "null".to_string(), |r| r.to_string())
        );
        if let Some(step) = &c.owning_extension {
            let _ = writeln!(
                s,
                "{ind}step:         {} {}",
                step.id,
                step.name.as_deref().unwrap_or("(no name)")
            );
        }
        for (label, ps) in [
            ("input", &c.input_parameters),
            ("output", &c.output_parameters),
            ("shared", &c.shared_variables),
        ] {
            let _ = writeln!(s, "{ind}{label} parameters ({}):", ps.len());
            for (k, v) in ps {
                let _ = writeln!(s, "{ind}  {k} = {}", describe(v));
            }
        }
        for (label, imgs) in [
            ("pre", &c.pre_entity_images),
            ("post", &c.post_entity_images),
        ] {
            let _ = writeln!(s, "{ind}{label} images ({}):", imgs.len());
            for (k, e) in imgs {
                let _ = writeln!(
                    s,
                    "{ind}  {k}: {} {} ({} attributes)",
                    e.logical_name.as_deref().unwrap_or("?"),
                    e.id,
                    e.attributes.len()
                );
            }
        }
        cur = c.parent_context.as_deref();
        level += 1;
    }
    s
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Long(l) => format!("{l} (long)"),
        Value::Double(d) => format!("{} (double)", format_double(*d)),
        Value::Decimal(d) => format!("{d} (decimal)"),
        Value::Money(d) => format!("Money {d}"),
        Value::String(s) => format!("{s:?}"),
        Value::DateTime(d) => format!("DateTime {}", infoset_date(d)),
        Value::Guid(g) => g.to_string(),
        Value::EntityReference(r) => format!(
            "EntityReference {} {}",
            r.logical_name.as_deref().unwrap_or("?"),
            r.id
        ),
        Value::OptionSetValue(o) => format!("OptionSetValue {o}"),
        Value::OptionSetValueCollection(os) => format!("OptionSetValueCollection {os:?}"),
        Value::Entity(e) => format!(
            "Entity {} {} ({} attributes)",
            e.logical_name.as_deref().unwrap_or("?"),
            e.id,
            e.attributes.len()
        ),
        Value::EntityCollection(c) => format!("EntityCollection ({} entities)", c.entities.len()),
        Value::EntityReferenceCollection(rs) => {
            format!("EntityReferenceCollection ({} references)", rs.len())
        }
        Value::AliasedValue(a) => format!(
            "AliasedValue {}.{} = {}",
            a.entity_logical_name.as_deref().unwrap_or("?"),
            a.attribute_logical_name.as_deref().unwrap_or("?"),
            describe(&a.value)
        ),
        Value::ColumnSet(cs) => {
            if cs.all_columns {
                "ColumnSet (all columns)".into()
            } else {
                format!("ColumnSet {:?}", cs.columns)
            }
        }
        Value::Relationship(r) => {
            format!("Relationship {}", r.schema_name.as_deref().unwrap_or("?"))
        }
        Value::StringPairs(ps) => format!("{} string pairs", ps.len()),
    }
}

fn infoset_date(d: &DateTime) -> String {
    infoset::format_xml_date(d)
}
