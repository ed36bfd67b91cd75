//! `application/json`: the RemoteExecutionContext as DataContractJsonSerializer
//! writes it (compact, members alphabetical, `__type` first for object-typed
//! slots, `/` escaped as `\/`, dates as `\/Date(ms[±hhmm])\/`).
//!
//! Owns the JSON encoder (writes straight into a `Vec<u8>`) and a hand-written
//! pull parser that decodes straight into the model. Unknown members are
//! skipped (not preserved); missing members keep their `Default` value, and the
//! three newer members stay `None` (absent). No I/O here.

use crate::error::{MessageError, Seg, Syntax, render_path};
use crate::model::*;
use std::borrow::Cow;
use uuid::Uuid;

const CONTRACTS: &str = ":http:\\/\\/schemas.microsoft.com\\/xrm\\/2011\\/Contracts";

// ---------------------------------------------------------------- encoder

/// Encodes a context as compact DataContractJsonSerializer JSON.
pub fn encode(ctx: &RemoteExecutionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write_context(&mut out, ctx);
    out
}

fn key(out: &mut Vec<u8>, first: bool, name: &str) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn write_context(out: &mut Vec<u8>, c: &RemoteExecutionContext) {
    out.push(b'{');
    key(out, true, "BusinessUnitId");
    guid(out, &c.business_unit_id);
    key(out, false, "CorrelationId");
    guid(out, &c.correlation_id);
    key(out, false, "Depth");
    push_i64(out, c.depth.into());
    if let Some(a) = &c.initiating_user_agent {
        key(out, false, "InitiatingUserAgent");
        string(out, a);
    }
    if let Some(g) = &c.initiating_user_azure_active_directory_object_id {
        key(out, false, "InitiatingUserAzureActiveDirectoryObjectId");
        guid(out, g);
    }
    key(out, false, "InitiatingUserId");
    guid(out, &c.initiating_user_id);
    key(out, false, "InputParameters");
    params(out, &c.input_parameters);
    key(out, false, "IsExecutingOffline");
    boolean(out, c.is_executing_offline);
    key(out, false, "IsInTransaction");
    boolean(out, c.is_in_transaction);
    key(out, false, "IsOfflinePlayback");
    boolean(out, c.is_offline_playback);
    key(out, false, "IsolationMode");
    push_i64(out, c.isolation_mode.into());
    key(out, false, "MessageName");
    string(out, &c.message_name);
    key(out, false, "Mode");
    push_i64(out, c.mode.into());
    key(out, false, "OperationCreatedOn");
    date(out, &c.operation_created_on);
    key(out, false, "OperationId");
    guid(out, &c.operation_id);
    key(out, false, "OrganizationId");
    guid(out, &c.organization_id);
    key(out, false, "OrganizationName");
    string(out, &c.organization_name);
    key(out, false, "OutputParameters");
    params(out, &c.output_parameters);
    key(out, false, "OwningExtension");
    match &c.owning_extension {
        Some(r) => entity_reference(out, r, false),
        None => out.extend_from_slice(b"null"),
    }
    key(out, false, "ParentContext");
    match &c.parent_context {
        Some(p) => write_context(out, p),
        None => out.extend_from_slice(b"null"),
    }
    key(out, false, "PostEntityImages");
    images(out, &c.post_entity_images);
    key(out, false, "PreEntityImages");
    images(out, &c.pre_entity_images);
    key(out, false, "PrimaryEntityId");
    guid(out, &c.primary_entity_id);
    key(out, false, "PrimaryEntityName");
    string(out, &c.primary_entity_name);
    key(out, false, "RequestId");
    match &c.request_id {
        Some(g) => guid(out, g),
        None => out.extend_from_slice(b"null"),
    }
    key(out, false, "SecondaryEntityName");
    string(out, &c.secondary_entity_name);
    key(out, false, "SharedVariables");
    params(out, &c.shared_variables);
    key(out, false, "Stage");
    push_i64(out, c.stage.into());
    if let Some(g) = &c.user_azure_active_directory_object_id {
        key(out, false, "UserAzureActiveDirectoryObjectId");
        guid(out, g);
    }
    key(out, false, "UserId");
    guid(out, &c.user_id);
    out.push(b'}');
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn guid(out: &mut Vec<u8>, g: &Uuid) {
    out.push(b'"');
    push_guid(out, g);
    out.push(b'"');
}

fn date(out: &mut Vec<u8>, d: &DateTime) {
    out.extend_from_slice(b"\"\\/Date(");
    d.write_json_body(out);
    out.extend_from_slice(b")\\/\"");
}

/// Per byte: 0 = copy, 1 = `\u00xx`, 2 = UTF-8 lead byte of a character that
/// may need escaping (checked by decoding), else the letter after `\`.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 1;
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    // U+0085 (C2), U+2028/2029 (E2), U+FFFE/FFFF (EF), astral characters (F0–F4).
    t[0xC2] = 2;
    t[0xE2] = 2;
    t[0xEF] = 2;
    let mut l = 0xF0;
    while l <= 0xF4 {
        t[l] = 2;
        l += 1;
    }
    t
};

fn hex_escape(out: &mut Vec<u8>, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((unit >> shift) & 15)]);
    }
}

/// Writes a JSON string exactly as .NET's DataContractJsonSerializer
/// (`XmlJsonWriter.WriteEscapedJsonString`) does: `"`, `\` and `/` get a
/// backslash; control characters use `\b \t \n \f \r` or `\u00xx`; every UTF-16
/// surrogate (so each half of an astral character), U+FFFE, U+FFFF, U+0085,
/// U+2028 and U+2029 become lower-case `\uxxxx`; everything else is raw UTF-8.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let e = ESCAPE[b as usize];
        if e == 0 {
            i += 1;
            continue;
        }
        if e == 2 {
            let c = s[i..].chars().next().unwrap_or('\0');
            let escape = matches!(
                c,
                '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{FFFE}' | '\u{FFFF}'
            ) || u32::from(c) > 0xFFFF;
            if !escape {
                i += c.len_utf8();
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                hex_escape(out, *unit);
            }
            i += c.len_utf8();
            start = i;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if e == 1 {
            hex_escape(out, u16::from(b));
        } else {
            out.push(b'\\');
            out.push(e);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn opt_string(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_int(out: &mut Vec<u8>, v: Option<i32>) {
    match v {
        Some(v) => push_i64(out, v.into()),
        None => out.extend_from_slice(b"null"),
    }
}

fn type_tag(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"{\"__type\":\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(CONTRACTS.as_bytes());
    out.push(b'"');
}

fn params(out: &mut Vec<u8>, ps: &[(String, Value)]) {
    out.push(b'[');
    for (i, (k, v)) in ps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        string(out, k);
        out.extend_from_slice(b",\"value\":");
        value(out, v);
        out.push(b'}');
    }
    out.push(b']');
}

fn images(out: &mut Vec<u8>, imgs: &[(String, Entity)]) {
    out.push(b'[');
    for (i, (k, e)) in imgs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        string(out, k);
        out.extend_from_slice(b",\"value\":");
        entity(out, e, false);
        out.push(b'}');
    }
    out.push(b']');
}

fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => boolean(out, *b),
        Value::Int(i) => push_i64(out, (*i).into()),
        Value::Long(l) => push_i64(out, *l),
        Value::Double(d) => {
            // Non-finite doubles have no JSON number form; written as strings.
            let text = format_double(*d);
            if d.is_finite() {
                out.extend_from_slice(text.as_bytes());
            } else {
                string(out, &text);
            }
        }
        Value::Decimal(d) => out.extend_from_slice(d.as_str().as_bytes()),
        Value::Money(d) => {
            type_tag(out, "Money");
            out.extend_from_slice(b",\"Value\":");
            out.extend_from_slice(d.as_str().as_bytes());
            out.push(b'}');
        }
        Value::String(s) => string(out, s),
        Value::DateTime(d) => date(out, d),
        Value::Guid(g) => guid(out, g),
        Value::EntityReference(r) => entity_reference(out, r, true),
        Value::OptionSetValue(o) => option_set(out, *o),
        Value::OptionSetValueCollection(os) => {
            out.push(b'[');
            for (i, o) in os.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                option_set(out, *o);
            }
            out.push(b']');
        }
        Value::Entity(e) => entity(out, e, true),
        Value::EntityCollection(c) => entity_collection(out, c, true),
        Value::EntityReferenceCollection(rs) => {
            out.push(b'[');
            for (i, r) in rs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                entity_reference(out, r, true);
            }
            out.push(b']');
        }
        Value::AliasedValue(a) => {
            type_tag(out, "AliasedValue");
            out.extend_from_slice(b",\"AttributeLogicalName\":");
            opt_string(out, &a.attribute_logical_name);
            out.extend_from_slice(b",\"EntityLogicalName\":");
            opt_string(out, &a.entity_logical_name);
            out.extend_from_slice(b",\"Value\":");
            value(out, &a.value);
            out.push(b'}');
        }
        Value::ColumnSet(cs) => {
            type_tag(out, "ColumnSet");
            out.extend_from_slice(b",\"AllColumns\":");
            boolean(out, cs.all_columns);
            out.extend_from_slice(b",\"Columns\":[");
            for (i, c) in cs.columns.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, c);
            }
            out.extend_from_slice(b"]}");
        }
        Value::Relationship(r) => relationship(out, r, true),
        Value::StringPairs(ps) => {
            out.push(b'[');
            for (i, (k, v)) in ps.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    b"{\"__type\":\"KeyValuePairOfstringstring:#System.Collections.Generic\",\"key\":",
                );
                string(out, k);
                out.extend_from_slice(b",\"value\":");
                string(out, v);
                out.push(b'}');
            }
            out.push(b']');
        }
    }
}

fn option_set(out: &mut Vec<u8>, o: i32) {
    type_tag(out, "OptionSetValue");
    out.extend_from_slice(b",\"Value\":");
    push_i64(out, o.into());
    out.push(b'}');
}

fn open(out: &mut Vec<u8>, typed: bool, name: &str) {
    if typed {
        type_tag(out, name);
        out.push(b',');
    } else {
        out.push(b'{');
    }
}

fn entity_reference(out: &mut Vec<u8>, r: &EntityReference, typed: bool) {
    open(out, typed, "EntityReference");
    out.extend_from_slice(b"\"Id\":");
    guid(out, &r.id);
    out.extend_from_slice(b",\"KeyAttributes\":");
    params(out, &r.key_attributes);
    out.extend_from_slice(b",\"LogicalName\":");
    opt_string(out, &r.logical_name);
    out.extend_from_slice(b",\"Name\":");
    opt_string(out, &r.name);
    out.extend_from_slice(b",\"RowVersion\":");
    opt_string(out, &r.row_version);
    out.push(b'}');
}

fn entity(out: &mut Vec<u8>, e: &Entity, typed: bool) {
    open(out, typed, "Entity");
    out.extend_from_slice(b"\"Attributes\":");
    params(out, &e.attributes);
    out.extend_from_slice(b",\"EntityState\":");
    opt_int(out, e.entity_state);
    out.extend_from_slice(b",\"FormattedValues\":[");
    for (i, (k, v)) in e.formatted_values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        string(out, k);
        out.extend_from_slice(b",\"value\":");
        string(out, v);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"Id\":");
    guid(out, &e.id);
    out.extend_from_slice(b",\"KeyAttributes\":");
    params(out, &e.key_attributes);
    out.extend_from_slice(b",\"LogicalName\":");
    opt_string(out, &e.logical_name);
    out.extend_from_slice(b",\"RelatedEntities\":[");
    for (i, (r, c)) in e.related_entities.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        relationship(out, r, false);
        out.extend_from_slice(b",\"value\":");
        entity_collection(out, c, false);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"RowVersion\":");
    opt_string(out, &e.row_version);
    out.push(b'}');
}

fn entity_collection(out: &mut Vec<u8>, c: &EntityCollection, typed: bool) {
    open(out, typed, "EntityCollection");
    out.extend_from_slice(b"\"Entities\":[");
    for (i, e) in c.entities.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        entity(out, e, false);
    }
    out.extend_from_slice(b"],\"EntityName\":");
    opt_string(out, &c.entity_name);
    out.extend_from_slice(b",\"MinActiveRowVersion\":");
    opt_string(out, &c.min_active_row_version);
    out.extend_from_slice(b",\"MoreRecords\":");
    boolean(out, c.more_records);
    out.extend_from_slice(b",\"PagingCookie\":");
    opt_string(out, &c.paging_cookie);
    out.extend_from_slice(b",\"TotalRecordCount\":");
    push_i64(out, c.total_record_count.into());
    out.extend_from_slice(b",\"TotalRecordCountLimitExceeded\":");
    boolean(out, c.total_record_count_limit_exceeded);
    out.push(b'}');
}

fn relationship(out: &mut Vec<u8>, r: &Relationship, typed: bool) {
    open(out, typed, "Relationship");
    out.extend_from_slice(b"\"PrimaryEntityRole\":");
    opt_int(out, r.primary_entity_role);
    out.extend_from_slice(b",\"SchemaName\":");
    opt_string(out, &r.schema_name);
    out.push(b'}');
}

// ---------------------------------------------------------------- decoder

/// Decodes DataContractJsonSerializer JSON into a context. Accepts `/` and
/// `\/`, any whitespace, members in any order; skips unknown members.
pub fn decode(bytes: &[u8]) -> Result<RemoteExecutionContext, MessageError> {
    decode_with(bytes, false)
}

/// [`decode`] of the context's own members only: `InputParameters`,
/// `OutputParameters`, `SharedVariables`, the images, `OwningExtension` and
/// `ParentContext` are checked as JSON but left empty. For a caller that sends
/// the bytes on as they are and needs just the message's properties (a
/// system job's post): building the whole model was most of the decoding.
pub fn decode_head(bytes: &[u8]) -> Result<RemoteExecutionContext, MessageError> {
    decode_with(bytes, true)
}

fn decode_with(bytes: &[u8], head: bool) -> Result<RemoteExecutionContext, MessageError> {
    let text = std::str::from_utf8(bytes).map_err(|e| MessageError::Malformed {
        syntax: Syntax::Json,
        offset: e.valid_up_to(),
        path: String::new(),
        message: "expected UTF-8 text, found an invalid byte sequence".into(),
    })?;
    let mut p = Parser {
        s: text,
        b: bytes,
        // A UTF-8 byte order mark is not JSON, but some tools add one.
        pos: if text.starts_with('\u{feff}') { 3 } else { 0 },
        path: Vec::with_capacity(16),
        first: false,
        head,
    };
    let ctx = p.context(0)?;
    p.ws();
    if p.pos != p.b.len() {
        return Err(p.err("end of input after the context object"));
    }
    Ok(ctx)
}

/// Deepest ParentContext / Entity nesting accepted, so hostile input cannot
/// overflow the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
    /// Inside an object, whether the next member is the first one.
    first: bool,
    /// Skip the context's collections and nested objects ([`decode_head`]).
    head: bool,
}

type R<T> = Result<T, MessageError>;

impl<'a> Parser<'a> {
    fn err(&self, expected: &str) -> MessageError {
        let found = match self.b.get(self.pos) {
            None => "end of input".to_string(),
            Some(&b) => match self.s.get(self.pos..).and_then(|r| r.chars().next()) {
                Some(c) => format!("{c:?}"),
                None => format!("byte 0x{b:02X}"),
            },
        };
        self.err_msg(format!("expected {expected}, found {found}"))
    }

    fn err_msg(&self, message: String) -> MessageError {
        MessageError::Malformed {
            syntax: Syntax::Json,
            offset: self.pos,
            path: render_path(&self.path),
            message,
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8, what: &str) -> R<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn lit(&mut self, word: &[u8]) -> bool {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// Consumes `null` if it is next.
    fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.lit(b"null")
    }

    fn obj_begin(&mut self) -> R<()> {
        self.eat(b'{', "'{'")?;
        self.first = true;
        Ok(())
    }

    /// The next member name of the current object, or `None` at `}`.
    fn next_key(&mut self) -> R<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.first = false;
                return Ok(None);
            }
            Some(b',') if !self.first => self.pos += 1,
            _ if self.first => {}
            _ => return Err(self.err("',' or '}'")),
        }
        self.first = false;
        if self.peek() != Some(b'"') {
            return Err(self.err("a member name"));
        }
        let k = self.string()?;
        self.eat(b':', "':'")?;
        Ok(Some(k))
    }

    /// Iterates an array: returns false at `]`.
    fn arr_next(&mut self, index: usize) -> R<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b',') if index > 0 => {
                self.pos += 1;
                Ok(true)
            }
            _ if index == 0 => Ok(true),
            _ => Err(self.err("',' or ']'")),
        }
    }

    fn string(&mut self) -> R<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.err("a string"));
        }
        self.pos += 1;
        let start = self.pos;
        // Fast path: no escapes.
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(Cow::Borrowed(&self.s[start..self.pos - 1]));
                }
                b'\\' => break,
                0..=0x1f => return Err(self.err("an escaped control character")),
                _ => self.pos += 1,
            }
        }
        let mut out = String::from(&self.s[start..self.pos]);
        loop {
            let run = self.pos;
            while let Some(&c) = self.b.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.s[run..self.pos]);
            match self.b.get(self.pos) {
                None => return Err(self.err("'\"' closing the string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let e = self.b.get(self.pos).copied();
                    self.pos += 1;
                    match e {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => out.push(self.unicode_escape()?),
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("an escape: one of \"\\/bfnrtu"));
                        }
                    }
                }
                Some(_) => return Err(self.err("an escaped control character")),
            }
        }
    }

    /// The character a `\u` escape stands for (its `u` just read), a surrogate pair read whole.
    fn unicode_escape(&mut self) -> R<char> {
        let hi = self.hex4()?;
        let cp = if (0xD800..0xDC00).contains(&hi) {
            if !self.lit(b"\\u") {
                return Err(self.err("a low surrogate '\\uDC00'..'\\uDFFF'"));
            }
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                self.pos -= 4;
                return Err(self.err("a low surrogate '\\uDC00'..'\\uDFFF'"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        match char::from_u32(cp) {
            Some(c) => Ok(c),
            None => {
                self.pos -= 4;
                Err(self.err("a character, not a lone surrogate"))
            }
        }
    }

    /// Passes over a string accepting exactly what [`Parser::string`] accepts, without building it: skipped
    /// members (a head decode skips most of a context) hold many escaped strings (`\/Date(…)\/`, type
    /// names with `\/`), each of which `string` would copy out.
    fn skip_string(&mut self) -> R<()> {
        if self.peek() != Some(b'"') {
            return Err(self.err("a string"));
        }
        self.pos += 1;
        loop {
            match self.b.get(self.pos) {
                None => return Err(self.err("'\"' closing the string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let e = self.b.get(self.pos).copied();
                    self.pos += 1;
                    match e {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            self.unicode_escape()?;
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("an escape: one of \"\\/bfnrtu"));
                        }
                    }
                }
                Some(0..=0x1f) => return Err(self.err("an escaped control character")),
                Some(_) => self.pos += 1,
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.b.get(self.pos) {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("a hex digit")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    fn owned(&mut self) -> R<String> {
        Ok(self.string()?.into_owned())
    }

    fn opt_string(&mut self) -> R<Option<String>> {
        if self.null() {
            Ok(None)
        } else {
            Ok(Some(self.owned()?))
        }
    }

    /// A JSON number token (validated), as text.
    fn number(&mut self) -> R<&'a str> {
        self.ws();
        let start = self.pos;
        let b = self.b;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == int_start || (b[int_start] == b'0' && i - int_start > 1) {
            self.pos = int_start.min(b.len());
            return Err(self.err("a number"));
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let f = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                self.pos = i;
                return Err(self.err("a digit after '.'"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let f = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                self.pos = i;
                return Err(self.err("an exponent digit"));
            }
        }
        self.pos = i;
        Ok(&self.s[start..i])
    }

    fn int(&mut self) -> R<i32> {
        self.ws();
        let start = self.pos;
        let t = self.number()?;
        t.parse().map_err(|_| {
            self.pos = start;
            self.err("a 32-bit integer")
        })
    }

    fn opt_int(&mut self) -> R<Option<i32>> {
        if self.null() {
            Ok(None)
        } else {
            Ok(Some(self.int()?))
        }
    }

    fn boolean(&mut self) -> R<bool> {
        match self.peek() {
            Some(b't') if self.lit(b"true") => Ok(true),
            Some(b'f') if self.lit(b"false") => Ok(false),
            _ => Err(self.err("true or false")),
        }
    }

    fn guid(&mut self) -> R<Uuid> {
        self.ws();
        let at = self.pos;
        let s = self.string()?;
        Uuid::try_parse(&s).map_err(|_| {
            self.pos = at;
            self.err("a GUID string")
        })
    }

    fn opt_guid(&mut self) -> R<Option<Uuid>> {
        if self.null() {
            Ok(None)
        } else {
            Ok(Some(self.guid()?))
        }
    }

    fn date(&mut self) -> R<DateTime> {
        self.ws();
        let at = self.pos;
        let s = self.string()?;
        parse_date(&s).ok_or_else(|| {
            self.pos = at;
            self.err("a \"\\/Date(ms)\\/\" string")
        })
    }

    fn skip(&mut self, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(self.err_msg(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        match self.peek() {
            Some(b'"') => self.skip_string()?,
            Some(b'{') => {
                self.obj_begin()?;
                while self.next_key()?.is_some() {
                    self.skip(depth + 1)?;
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut i = 0;
                while self.arr_next(i)? {
                    self.skip(depth + 1)?;
                    i += 1;
                }
            }
            Some(b't' | b'f') => {
                self.boolean()?;
            }
            Some(b'n') if self.lit(b"null") => {}
            _ => {
                self.number()?;
            }
        }
        Ok(())
    }

    fn with<T>(&mut self, seg: Seg, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        self.path.push(seg);
        let r = f(self)?;
        self.path.pop();
        Ok(r)
    }

    fn context(&mut self, depth: usize) -> R<RemoteExecutionContext> {
        if depth > MAX_DEPTH {
            return Err(self.err_msg(format!("ParentContext nested deeper than {MAX_DEPTH}")));
        }
        let mut c = RemoteExecutionContext::default();
        self.obj_begin()?;
        while let Some(k) = self.next_key()? {
            macro_rules! m {
                ($name:literal, $e:expr) => {{
                    self.path.push(Seg::Name($name));
                    let v = $e;
                    self.path.pop();
                    v
                }};
            }
            match &*k {
                "InputParameters" | "OutputParameters" | "SharedVariables" | "PreEntityImages"
                | "PostEntityImages" | "OwningExtension" | "ParentContext"
                    if self.head =>
                {
                    self.skip(depth)?
                }
                "BusinessUnitId" => c.business_unit_id = m!("BusinessUnitId", self.guid()?),
                "CorrelationId" => c.correlation_id = m!("CorrelationId", self.guid()?),
                "Depth" => c.depth = m!("Depth", self.int()?),
                "InitiatingUserAgent" => {
                    c.initiating_user_agent = m!("InitiatingUserAgent", self.opt_string()?)
                }
                "InitiatingUserAzureActiveDirectoryObjectId" => {
                    c.initiating_user_azure_active_directory_object_id = m!(
                        "InitiatingUserAzureActiveDirectoryObjectId",
                        self.opt_guid()?
                    )
                }
                "InitiatingUserId" => c.initiating_user_id = m!("InitiatingUserId", self.guid()?),
                "InputParameters" => {
                    c.input_parameters = m!("InputParameters", self.params(depth)?)
                }
                "IsExecutingOffline" => {
                    c.is_executing_offline = m!("IsExecutingOffline", self.boolean()?)
                }
                "IsInTransaction" => c.is_in_transaction = m!("IsInTransaction", self.boolean()?),
                "IsOfflinePlayback" => {
                    c.is_offline_playback = m!("IsOfflinePlayback", self.boolean()?)
                }
                "IsolationMode" => c.isolation_mode = m!("IsolationMode", self.int()?),
                "MessageName" => c.message_name = m!("MessageName", self.owned()?),
                "Mode" => c.mode = m!("Mode", self.int()?),
                "OperationCreatedOn" => {
                    c.operation_created_on = m!("OperationCreatedOn", self.date()?)
                }
                "OperationId" => c.operation_id = m!("OperationId", self.guid()?),
                "OrganizationId" => c.organization_id = m!("OrganizationId", self.guid()?),
                "OrganizationName" => c.organization_name = m!("OrganizationName", self.owned()?),
                "OutputParameters" => {
                    c.output_parameters = m!("OutputParameters", self.params(depth)?)
                }
                "OwningExtension" => {
                    c.owning_extension = m!("OwningExtension", {
                        if self.null() {
                            None
                        } else {
                            self.obj_begin()?;
                            Some(self.entity_reference_members(depth)?)
                        }
                    })
                }
                "ParentContext" => {
                    c.parent_context = m!("ParentContext", {
                        if self.null() {
                            None
                        } else {
                            Some(Box::new(self.context(depth + 1)?))
                        }
                    })
                }
                "PostEntityImages" => {
                    c.post_entity_images = m!("PostEntityImages", self.images(depth)?)
                }
                "PreEntityImages" => {
                    c.pre_entity_images = m!("PreEntityImages", self.images(depth)?)
                }
                "PrimaryEntityId" => c.primary_entity_id = m!("PrimaryEntityId", self.guid()?),
                "PrimaryEntityName" => {
                    c.primary_entity_name = m!("PrimaryEntityName", self.owned()?)
                }
                "RequestId" => c.request_id = m!("RequestId", self.opt_guid()?),
                "SecondaryEntityName" => {
                    c.secondary_entity_name = m!("SecondaryEntityName", self.owned()?)
                }
                "SharedVariables" => {
                    c.shared_variables = m!("SharedVariables", self.params(depth)?)
                }
                "Stage" => c.stage = m!("Stage", self.int()?),
                "UserAzureActiveDirectoryObjectId" => {
                    c.user_azure_active_directory_object_id =
                        m!("UserAzureActiveDirectoryObjectId", self.opt_guid()?)
                }
                "UserId" => c.user_id = m!("UserId", self.guid()?),
                _ => self.skip(depth)?,
            }
        }
        Ok(c)
    }

    /// `[{"key":…,"value":…},…]`, values read with `item`.
    fn pairs<T>(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> R<T>,
    ) -> R<Vec<(String, T)>> {
        let mut out = Vec::new();
        // Other serializers write an empty collection as null; read it as empty.
        if self.null() {
            return Ok(out);
        }
        self.eat(b'[', "'[' or null")?;
        let mut i = 0;
        while self.arr_next(i)? {
            self.path.push(Seg::Index(i));
            self.obj_begin()?;
            let mut k = None;
            let mut v = None;
            while let Some(name) = self.next_key()? {
                match &*name {
                    "key" => k = Some(self.with(Seg::Name("key"), |p| p.owned())?),
                    "value" => v = Some(self.with(Seg::Name("value"), |p| item(p, depth))?),
                    _ => self.skip(depth)?,
                }
            }
            let Some(k) = k else {
                return Err(self.err_msg("expected a \"key\" member in the pair".into()));
            };
            let Some(v) = v else {
                return Err(self.err_msg("expected a \"value\" member in the pair".into()));
            };
            out.push((k, v));
            self.path.pop();
            i += 1;
        }
        Ok(out)
    }

    fn params(&mut self, depth: usize) -> R<Params> {
        self.pairs(depth, |p, d| p.value(d + 1))
    }

    fn images(&mut self, depth: usize) -> R<Vec<(String, Entity)>> {
        self.pairs(depth, |p, d| {
            p.obj_begin()?;
            p.entity_members(d + 1)
        })
    }

    fn value(&mut self, depth: usize) -> R<Value> {
        if depth > MAX_DEPTH {
            return Err(self.err_msg(format!("values nested deeper than {MAX_DEPTH}")));
        }
        match self.peek() {
            Some(b'n') if self.lit(b"null") => Ok(Value::Null),
            Some(b't' | b'f') => Ok(Value::Boolean(self.boolean()?)),
            Some(b'"') => {
                let s = self.string()?;
                Ok(match parse_date(&s) {
                    Some(d) => Value::DateTime(d),
                    None => Value::String(s.into_owned()),
                })
            }
            Some(b'-' | b'0'..=b'9') => {
                let t = self.number()?;
                Ok(number_value(t))
            }
            Some(b'{') => {
                self.obj_begin()?;
                let ty = self.type_tag()?;
                self.typed_object(&ty, depth)
            }
            Some(b'[') => {
                self.pos += 1;
                self.typed_array(depth)
            }
            _ => Err(self.err("a value")),
        }
    }

    /// Reads the mandatory first member `"__type":"Name:namespace"`; returns Name.
    fn type_tag(&mut self) -> R<String> {
        let at = self.pos;
        match self.next_key()? {
            Some(k) if k == "__type" => {}
            _ => {
                self.pos = at;
                return Err(self.err("\"__type\" as the first member of an object value"));
            }
        }
        let t = self.with(Seg::Name("__type"), |p| p.string())?;
        Ok(t.split(':').next().unwrap_or("").to_string())
    }

    fn typed_object(&mut self, ty: &str, depth: usize) -> R<Value> {
        Ok(match ty {
            "Entity" => Value::Entity(Box::new(self.entity_members(depth)?)),
            "EntityReference" => Value::EntityReference(self.entity_reference_members(depth)?),
            "OptionSetValue" => Value::OptionSetValue(self.value_member(|p| p.int())?),
            "Money" => Value::Money(self.value_member(|p| p.decimal())?),
            "EntityCollection" => Value::EntityCollection(self.entity_collection_members(depth)?),
            "Relationship" => Value::Relationship(self.relationship_members()?),
            "ColumnSet" => {
                let mut cs = ColumnSet::default();
                while let Some(k) = self.next_key()? {
                    match &*k {
                        "AllColumns" => {
                            cs.all_columns = self.with(Seg::Name("AllColumns"), |p| p.boolean())?
                        }
                        "Columns" => {
                            cs.columns = self.with(Seg::Name("Columns"), |p| {
                                let mut v = Vec::new();
                                if p.null() {
                                    return Ok(v);
                                }
                                p.eat(b'[', "'['")?;
                                let mut i = 0;
                                while p.arr_next(i)? {
                                    v.push(p.with(Seg::Index(i), |p| p.owned())?);
                                    i += 1;
                                }
                                Ok(v)
                            })?
                        }
                        _ => self.skip(depth)?,
                    }
                }
                Value::ColumnSet(cs)
            }
            "AliasedValue" => {
                let mut a = AliasedValue {
                    attribute_logical_name: None,
                    entity_logical_name: None,
                    value: Value::Null,
                };
                while let Some(k) = self.next_key()? {
                    match &*k {
                        "AttributeLogicalName" => {
                            a.attribute_logical_name =
                                self.with(Seg::Name("AttributeLogicalName"), |p| p.opt_string())?
                        }
                        "EntityLogicalName" => {
                            a.entity_logical_name =
                                self.with(Seg::Name("EntityLogicalName"), |p| p.opt_string())?
                        }
                        "Value" => {
                            a.value = self.with(Seg::Name("Value"), |p| p.value(depth + 1))?
                        }
                        _ => self.skip(depth)?,
                    }
                }
                Value::AliasedValue(Box::new(a))
            }
            other => {
                return Err(self.err_msg(format!(
                    "expected a known __type (Entity, EntityReference, OptionSetValue, Money, \
                     EntityCollection, AliasedValue, ColumnSet, Relationship), found {other:?}"
                )));
            }
        })
    }

    fn typed_array(&mut self, depth: usize) -> R<Value> {
        if self.peek() == Some(b']') {
            self.pos += 1;
            // An empty array carries no item type; read as a multi-select choice.
            return Ok(Value::OptionSetValueCollection(Vec::new()));
        }
        let mut kind: Option<String> = None;
        let mut opts = Vec::new();
        let mut refs = Vec::new();
        let mut pairs = Vec::new();
        let mut i = 0;
        while self.arr_next(i)? {
            self.path.push(Seg::Index(i));
            self.obj_begin()?;
            let ty = self.type_tag()?;
            match kind.as_deref() {
                None => kind = Some(ty.clone()),
                Some(k) if k == ty => {}
                Some(k) => {
                    return Err(
                        self.err_msg(format!("expected every item to be {k}, found {ty:?}"))
                    );
                }
            }
            match ty.as_str() {
                "OptionSetValue" => opts.push(self.value_member(|p| p.int())?),
                "EntityReference" => refs.push(self.entity_reference_members(depth)?),
                "KeyValuePairOfstringstring" => {
                    let (mut k, mut v) = (None, None);
                    while let Some(name) = self.next_key()? {
                        match &*name {
                            "key" => k = Some(self.with(Seg::Name("key"), |p| p.owned())?),
                            "value" => v = Some(self.with(Seg::Name("value"), |p| p.owned())?),
                            _ => self.skip(depth)?,
                        }
                    }
                    match (k, v) {
                        (Some(k), Some(v)) => pairs.push((k, v)),
                        _ => {
                            return Err(
                                self.err_msg("expected \"key\" and \"value\" members".into())
                            );
                        }
                    }
                }
                other => {
                    return Err(self.err_msg(format!(
                        "expected array items of type OptionSetValue, EntityReference or \
                         KeyValuePairOfstringstring, found {other:?}"
                    )));
                }
            }
            self.path.pop();
            i += 1;
        }
        Ok(match kind.as_deref() {
            Some("EntityReference") => Value::EntityReferenceCollection(refs),
            Some("KeyValuePairOfstringstring") => Value::StringPairs(pairs),
            _ => Value::OptionSetValueCollection(opts),
        })
    }

    /// Remaining members of an object with a single `Value` member.
    fn value_member<T: Default>(&mut self, f: impl Fn(&mut Self) -> R<T>) -> R<T> {
        let mut v = T::default();
        while let Some(k) = self.next_key()? {
            if k == "Value" {
                v = self.with(Seg::Name("Value"), &f)?;
            } else {
                self.skip(0)?;
            }
        }
        Ok(v)
    }

    fn decimal(&mut self) -> R<Decimal> {
        self.ws();
        let at = self.pos;
        let t = self.number()?;
        Decimal::parse(t).ok_or_else(|| {
            self.pos = at;
            self.err("a decimal number without exponent")
        })
    }

    fn entity_members(&mut self, depth: usize) -> R<Entity> {
        if depth > MAX_DEPTH {
            return Err(self.err_msg(format!("entities nested deeper than {MAX_DEPTH}")));
        }
        let mut e = Entity::default();
        while let Some(k) = self.next_key()? {
            match &*k {
                "Attributes" => {
                    e.attributes = self.with(Seg::Name("Attributes"), |p| p.params(depth))?
                }
                "EntityState" => {
                    e.entity_state = self.with(Seg::Name("EntityState"), |p| p.opt_int())?
                }
                "FormattedValues" => {
                    e.formatted_values = self.with(Seg::Name("FormattedValues"), |p| {
                        p.pairs(depth, |p, _| p.owned())
                    })?
                }
                "Id" => e.id = self.with(Seg::Name("Id"), |p| p.guid())?,
                "KeyAttributes" => {
                    e.key_attributes = self.with(Seg::Name("KeyAttributes"), |p| p.params(depth))?
                }
                "LogicalName" => {
                    e.logical_name = self.with(Seg::Name("LogicalName"), |p| p.opt_string())?
                }
                "RelatedEntities" => {
                    e.related_entities = self.with(Seg::Name("RelatedEntities"), |p| {
                        let mut out = Vec::new();
                        p.eat(b'[', "'['")?;
                        let mut i = 0;
                        while p.arr_next(i)? {
                            p.path.push(Seg::Index(i));
                            p.obj_begin()?;
                            let (mut rk, mut rv) = (None, None);
                            while let Some(name) = p.next_key()? {
                                match &*name {
                                    "key" => {
                                        rk = Some(p.with(Seg::Name("key"), |p| {
                                            p.obj_begin()?;
                                            p.relationship_members()
                                        })?)
                                    }
                                    "value" => {
                                        rv = Some(p.with(Seg::Name("value"), |p| {
                                            p.obj_begin()?;
                                            p.entity_collection_members(depth + 1)
                                        })?)
                                    }
                                    _ => p.skip(depth)?,
                                }
                            }
                            match (rk, rv) {
                                (Some(k), Some(v)) => out.push((k, v)),
                                _ => {
                                    return Err(
                                        p.err_msg("expected \"key\" and \"value\" members".into())
                                    );
                                }
                            }
                            p.path.pop();
                            i += 1;
                        }
                        Ok(out)
                    })?
                }
                "RowVersion" => {
                    e.row_version = self.with(Seg::Name("RowVersion"), |p| p.opt_string())?
                }
                _ => self.skip(depth)?,
            }
        }
        Ok(e)
    }

    fn entity_reference_members(&mut self, depth: usize) -> R<EntityReference> {
        let mut r = EntityReference::default();
        while let Some(k) = self.next_key()? {
            match &*k {
                "Id" => r.id = self.with(Seg::Name("Id"), |p| p.guid())?,
                "KeyAttributes" => {
                    r.key_attributes = self.with(Seg::Name("KeyAttributes"), |p| p.params(depth))?
                }
                "LogicalName" => {
                    r.logical_name = self.with(Seg::Name("LogicalName"), |p| p.opt_string())?
                }
                "Name" => r.name = self.with(Seg::Name("Name"), |p| p.opt_string())?,
                "RowVersion" => {
                    r.row_version = self.with(Seg::Name("RowVersion"), |p| p.opt_string())?
                }
                _ => self.skip(depth)?,
            }
        }
        Ok(r)
    }

    fn entity_collection_members(&mut self, depth: usize) -> R<EntityCollection> {
        let mut c = EntityCollection::default();
        while let Some(k) = self.next_key()? {
            match &*k {
                "Entities" => {
                    c.entities = self.with(Seg::Name("Entities"), |p| {
                        let mut v = Vec::new();
                        p.eat(b'[', "'['")?;
                        let mut i = 0;
                        while p.arr_next(i)? {
                            v.push(p.with(Seg::Index(i), |p| {
                                p.obj_begin()?;
                                p.entity_members(depth + 1)
                            })?);
                            i += 1;
                        }
                        Ok(v)
                    })?
                }
                "EntityName" => {
                    c.entity_name = self.with(Seg::Name("EntityName"), |p| p.opt_string())?
                }
                "MinActiveRowVersion" => {
                    c.min_active_row_version =
                        self.with(Seg::Name("MinActiveRowVersion"), |p| p.opt_string())?
                }
                "MoreRecords" => {
                    c.more_records = self.with(Seg::Name("MoreRecords"), |p| p.boolean())?
                }
                "PagingCookie" => {
                    c.paging_cookie = self.with(Seg::Name("PagingCookie"), |p| p.opt_string())?
                }
                "TotalRecordCount" => {
                    c.total_record_count = self.with(Seg::Name("TotalRecordCount"), |p| p.int())?
                }
                "TotalRecordCountLimitExceeded" => {
                    c.total_record_count_limit_exceeded =
                        self.with(Seg::Name("TotalRecordCountLimitExceeded"), |p| p.boolean())?
                }
                _ => self.skip(depth)?,
            }
        }
        Ok(c)
    }

    fn relationship_members(&mut self) -> R<Relationship> {
        let mut r = Relationship::default();
        while let Some(k) = self.next_key()? {
            match &*k {
                "PrimaryEntityRole" => {
                    r.primary_entity_role =
                        self.with(Seg::Name("PrimaryEntityRole"), |p| p.opt_int())?
                }
                "SchemaName" => {
                    r.schema_name = self.with(Seg::Name("SchemaName"), |p| p.opt_string())?
                }
                _ => self.skip(0)?,
            }
        }
        Ok(r)
    }
}

/// `/Date(…)/` (after unescaping) → DateTime.
fn parse_date(s: &str) -> Option<DateTime> {
    let body = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
    DateTime::parse_json_body(body)
}

/// A number in an object-typed slot: integers become Int/Long (Decimal when
/// larger), fractions without exponent keep exact Decimal text, exponents Double.
fn number_value(t: &str) -> Value {
    if t.bytes().any(|b| b == b'e' || b == b'E') {
        return Value::Double(t.parse().unwrap_or(f64::NAN));
    }
    if t == "-0" {
        // .NET prints negative zero doubles as -0; an integer would lose the sign.
        return Value::Double(-0.0);
    }
    if !t.contains('.') {
        if let Ok(i) = t.parse::<i32>() {
            return Value::Int(i);
        }
        if let Ok(l) = t.parse::<i64>() {
            return Value::Long(l);
        }
    }
    match Decimal::parse(t) {
        Some(d) => Value::Decimal(d),
        None => Value::Double(t.parse().unwrap_or(f64::NAN)),
    }
}

#[cfg(test)]
mod tests {
    use super::Parser;

    /// Skipping a string accepts and rejects exactly what reading it does, at the same place.
    #[test]
    fn skip_string_agrees_with_string() {
        for input in [
            r#""plain""#,
            r#""\/Date(1700000000000)\/""#,
            r#""a\"b\\c\n\t\b\f\r\u00e9\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ud83d\u0041""#,
            r#""\ude00""#,
            r#""\x""#,
            r#""\u12g4""#,
            "\"tab\there\"",
            r#""open"#,
            r#""\"#,
            r#"x"#,
        ] {
            let parser = || Parser {
                s: input,
                b: input.as_bytes(),
                pos: 0,
                path: Vec::new(),
                first: false,
                head: true,
            };
            let (mut read, mut skipped) = (parser(), parser());
            let read_result = read.string().map(drop).map_err(|e| e.to_string());
            let skip_result = skipped.skip_string().map_err(|e| e.to_string());
            assert_eq!(skip_result, read_result, "{input}");
            assert_eq!(skipped.pos, read.pos, "{input}");
        }
    }

    /// Strings are escaped character for character like .NET's XmlJsonWriter.
    #[test]
    fn strings_escape_like_dotnet() {
        let mut out = Vec::new();
        super::string(
            &mut out,
            "a/b\"c\\\n\r\t\u{8}\u{c}\u{1}\u{1f}é€\u{85}\u{2028}\u{FFFF}😀",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\/b\\\"c\\\\\\n\\r\\t\\b\\f\\u0001\\u001fé€\\u0085\\u2028\\uffff\\ud83d\\ude00\""
        );
    }
}
