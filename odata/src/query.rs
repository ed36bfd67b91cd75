//! The query options metadata requests accept, as Dataverse does: `$select`, `$filter` (comparisons `eq`
//! and `ne` of a property with a literal, `and`, `or`, `not` and parentheses) and `$expand` (with nested
//! `$select` and `$filter`, separated by `;`). Every other option answers 400 naming it: Dataverse's
//! metadata sets do not page, count, sort or skip either.
//!
//! Owns the parsing of these options and their application to [`Item`]s. It must not know which
//! properties an item type has (`items` does).

use serde_json::{Map, Value as Json};
use weft_store::Schema;

use crate::MetadataError;
use crate::items::{Item, Nav};

/// The most `$filter` comparisons and `$expand` levels a request may hold: bounds the work one URL asks.
const MAX_TERMS: usize = 64;

/// The query options of one level.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Options {
    select: Option<Vec<String>>,
    filter: Option<Expr>,
    expand: Vec<(String, Options)>,
}

/// A `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Compare {
        property: String,
        equal: bool,
        value: Json,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

impl Options {
    /// The options of a request's query pairs.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, MetadataError> {
        let mut o = Options::default();
        for (k, v) in pairs {
            o.set(k, v, 0)?;
        }
        Ok(o)
    }

    /// The options inside `$expand=Nav(...)`: `$select=a,b;$filter=…`.
    fn nested(text: &str, depth: usize) -> Result<Self, MetadataError> {
        let mut o = Options::default();
        for part in split_top(text, ';')? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').ok_or_else(|| {
                MetadataError::bad(format!("The expand option '{part}' is not name=value."))
            })?;
            o.set(k.trim(), v, depth)?;
        }
        Ok(o)
    }

    fn set(&mut self, key: &str, value: &str, depth: usize) -> Result<(), MetadataError> {
        match key {
            "$select" => {
                self.select = Some(
                    value
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect(),
                );
            }
            "$filter" => self.filter = Some(parse_filter(value)?),
            "$expand" => {
                if depth >= 3 {
                    return Err(MetadataError::bad("$expand nests more than 3 levels."));
                }
                for part in split_top(value, ',')? {
                    let part = part.trim();
                    let (name, inner) = match part.split_once('(') {
                        Some((name, rest)) => {
                            let inner = rest.strip_suffix(')').ok_or_else(|| {
                                MetadataError::bad(format!(
                                    "The $expand item '{part}' has unbalanced parentheses."
                                ))
                            })?;
                            (name.trim(), Options::nested(inner, depth + 1)?)
                        }
                        None => (part, Options::default()),
                    };
                    if name.is_empty() {
                        return Err(MetadataError::bad("$expand names an empty property."));
                    }
                    self.expand.push((name.to_owned(), inner));
                }
                if self.expand.len() > MAX_TERMS {
                    return Err(MetadataError::bad("$expand names too many properties."));
                }
            }
            other => {
                return Err(MetadataError::bad(format!(
                    "The query option '{other}' is not supported on metadata (EntityDefinitions and \
                     RelationshipDefinitions take $select, $filter and $expand)."
                )));
            }
        }
        Ok(())
    }

    /// Whether `item` passes the `$filter` (every item when there is none).
    pub fn keeps(&self, schema: &Schema, item: &Item<'_>) -> Result<bool, MetadataError> {
        match &self.filter {
            None => Ok(true),
            Some(f) => eval(f, schema, item, &item.properties()),
        }
    }

    /// The items that pass the `$filter`, rendered.
    pub fn collection(
        &self,
        schema: &Schema,
        items: Vec<Item<'_>>,
    ) -> Result<Vec<Json>, MetadataError> {
        let mut out = Vec::new();
        for item in items {
            if self.keeps(schema, &item)? {
                out.push(Json::Object(self.render(schema, &item)?));
            }
        }
        Ok(out)
    }

    /// `item` with only the `$select`ed properties (and `MetadataId`, `@odata.type`) and the `$expand`ed
    /// navigation properties. A property the type does not have is a 400, as in Dataverse.
    pub fn render(
        &self,
        schema: &Schema,
        item: &Item<'_>,
    ) -> Result<Map<String, Json>, MetadataError> {
        let mut props = item.properties();
        if let Some(select) = &self.select {
            for name in select {
                if !props.contains_key(name) {
                    return Err(no_property(item, name));
                }
            }
            let key = item.key_property();
            props.retain(|k, _| {
                k == key || k.starts_with("@odata.") || select.iter().any(|s| s == k)
            });
        }
        for (name, inner) in &self.expand {
            let nav = item
                .navigation(schema, name)
                .ok_or_else(|| no_property(item, name))?;
            let value = match nav {
                Nav::Many(items) => Json::Array(inner.collection(schema, items)?),
                Nav::One(_) if inner.filter.is_some() => {
                    return Err(MetadataError::bad(format!(
                        "$filter cannot apply to the single-valued navigation property '{name}'."
                    )));
                }
                Nav::One(Some(one)) => Json::Object(inner.render(schema, &one)?),
                Nav::One(None) => Json::Null,
            };
            props.insert(name.clone(), value);
        }
        Ok(props)
    }
}

fn no_property(item: &Item<'_>, name: &str) -> MetadataError {
    MetadataError::bad(format!(
        "Could not find a property named '{name}' on type '{}.{}'.",
        crate::NAMESPACE,
        item.type_name()
    ))
}

fn eval(
    e: &Expr,
    schema: &Schema,
    item: &Item<'_>,
    props: &Map<String, Json>,
) -> Result<bool, MetadataError> {
    Ok(match e {
        Expr::Compare {
            property,
            equal,
            value,
        } => {
            // `nav/property`: the property of the single-valued navigation property's item.
            if let Some((nav, rest)) = property.split_once('/') {
                return match item.navigation(schema, nav) {
                    Some(Nav::One(Some(related))) => {
                        let inner = Expr::Compare {
                            property: rest.to_owned(),
                            equal: *equal,
                            value: value.clone(),
                        };
                        eval(&inner, schema, &related, &related.properties())
                    }
                    Some(Nav::One(None)) => Ok(value.is_null() == *equal),
                    _ => Err(no_property(item, nav)),
                };
            }
            let actual = props
                .get(property)
                .ok_or_else(|| no_property(item, property))?;
            if actual.is_object() || actual.is_array() {
                return Err(MetadataError::bad(format!(
                    "$filter: '{property}' is not a primitive property; compare primitive properties \
                     only."
                )));
            }
            (actual == value) == *equal
        }
        Expr::And(a, b) => eval(a, schema, item, props)? && eval(b, schema, item, props)?,
        Expr::Or(a, b) => eval(a, schema, item, props)? || eval(b, schema, item, props)?,
        Expr::Not(a) => !eval(a, schema, item, props)?,
    })
}

/// Splits `text` at `sep` outside parentheses and quoted strings.
fn split_top(text: &str, sep: char) -> Result<Vec<&str>, MetadataError> {
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| MetadataError::bad(format!("Unbalanced ')' in '{text}'.")))?;
            }
            c if c == sep && !quoted && depth == 0 => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 || quoted {
        return Err(MetadataError::bad(format!(
            "Unbalanced parentheses or quotes in '{text}'."
        )));
    }
    out.push(&text[start..]);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    Text(String),
}

fn tokens(text: &str) -> Result<Vec<Token>, MetadataError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => {
                chars.next();
                out.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => s.push(c),
                        None => {
                            return Err(MetadataError::bad(
                                "$filter: a string literal is not closed.",
                            ));
                        }
                    }
                }
                out.push(Token::Text(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '\'' {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
        if out.len() > MAX_TERMS * 4 {
            return Err(MetadataError::bad("$filter is too long."));
        }
    }
    Ok(out)
}

fn parse_filter(text: &str) -> Result<Expr, MetadataError> {
    let toks = tokens(text)?;
    let mut p = Parser { toks, at: 0 };
    let e = p.or(0)?;
    if p.at != p.toks.len() {
        return Err(MetadataError::bad(format!(
            "$filter: unexpected '{}' in '{text}'.",
            p.describe()
        )));
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
}

impl Parser {
    fn describe(&self) -> String {
        match self.toks.get(self.at) {
            Some(Token::Open) => "(".into(),
            Some(Token::Close) => ")".into(),
            Some(Token::Word(w)) => w.clone(),
            Some(Token::Text(t)) => format!("'{t}'"),
            None => "end of text".into(),
        }
    }

    fn word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Token::Word(x)) if x == w)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, MetadataError> {
        let mut e = self.and(depth)?;
        while self.word("or") {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and(depth)?));
        }
        Ok(e)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, MetadataError> {
        let mut e = self.unary(depth)?;
        while self.word("and") {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary(depth)?));
        }
        Ok(e)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, MetadataError> {
        if depth > 16 {
            return Err(MetadataError::bad("$filter nests too deeply."));
        }
        if self.word("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.toks.get(self.at) == Some(&Token::Open) {
            self.at += 1;
            let e = self.or(depth + 1)?;
            if self.toks.get(self.at) != Some(&Token::Close) {
                return Err(MetadataError::bad(format!(
                    "$filter: expected ')' but found '{}'.",
                    self.describe()
                )));
            }
            self.at += 1;
            return Ok(e);
        }
        let Some(Token::Word(property)) = self.toks.get(self.at).cloned() else {
            return Err(MetadataError::bad(format!(
                "$filter: expected a property name but found '{}'.",
                self.describe()
            )));
        };
        self.at += 1;
        let equal = match self.toks.get(self.at) {
            Some(Token::Word(op)) if op == "eq" => true,
            Some(Token::Word(op)) if op == "ne" => false,
            _ => {
                return Err(MetadataError::bad(format!(
                    "$filter: '{}' after '{property}' is not supported on metadata (eq and ne are).",
                    self.describe()
                )));
            }
        };
        self.at += 1;
        let value = match self.toks.get(self.at) {
            Some(Token::Text(t)) => Json::String(t.clone()),
            Some(Token::Word(w)) if w == "true" => Json::Bool(true),
            Some(Token::Word(w)) if w == "false" => Json::Bool(false),
            Some(Token::Word(w)) if w == "null" => Json::Null,
            Some(Token::Word(w)) => match w.parse::<i64>() {
                Ok(n) => Json::from(n),
                // A GUID literal (MetadataId eq 00000000-…) compares as its text.
                Err(_) if uuid::Uuid::parse_str(w).is_ok() => Json::String(w.to_lowercase()),
                Err(_) => {
                    return Err(MetadataError::bad(format!(
                        "$filter: '{w}' is not a literal (a quoted string, a number, true, false, null \
                         or a GUID)."
                    )));
                }
            },
            _ => {
                return Err(MetadataError::bad(format!(
                    "$filter: expected a literal after '{property}' but found '{}'.",
                    self.describe()
                )));
            }
        };
        self.at += 1;
        Ok(Expr::Compare {
            property,
            equal,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_precedence_and_refuse_what_they_do_not_know() {
        let e =
            parse_filter("LogicalName eq 'a''b' or not (IsPrivate eq true and X ne 3)").unwrap();
        assert!(matches!(e, Expr::Or(..)));
        for bad in [
            "LogicalName gt 'a'",
            "contains(LogicalName,'a')",
            "LogicalName eq",
            "(LogicalName eq 'a'",
            "LogicalName eq 'a",
            "LogicalName eq abc",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_options_are_named() {
        let e = Options::from_pairs(&[("$top".into(), "1".into())]).unwrap_err();
        assert!(e.message.contains("'$top'"), "{}", e.message);
        let o = Options::from_pairs(&[(
            "$expand".into(),
            "Attributes($select=LogicalName;$filter=LogicalName eq 'a,b'),Keys".into(),
        )])
        .unwrap();
        assert_eq!(o.expand.len(), 2);
        assert_eq!(o.expand[0].1.select, Some(vec!["LogicalName".to_owned()]));
    }
}
