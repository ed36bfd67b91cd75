//! OData query options of the Web API: `$select`, `$filter` (eq, ne, gt, lt, ge, le, and, or, not,
//! parentheses; `contains`, `startswith`, `endswith` on text columns; the `Microsoft.Dynamics.CRM.*` query
//! functions of `QUERY_FUNCTIONS`; the lambda operators `any`/`all` over collection-valued navigation
//! properties, `nav/any(c:c/name eq 'x')`, `nav/any()`, nested up to [`MAX_RELATED_DEPTH`]; string literals in single quotes with `''` escaping, numbers,
//! true/false/null, GUIDs, date-times),
//! `$top`, `$orderby` (asc/desc), `$count`, `$expand` (kept as text for the `expand` module) and weft's
//! `tag` (the request's `tag` parameter).
//!
//! Owns the parsing into weft-store's query model, its error messages and the limits on a `$filter`'s size
//! ([`MAX_FILTER_DEPTH`], [`MAX_FILTER_CONDITIONS`]): the parser is recursive and the store turns the tree
//! into one SQL expression, so both are bounded before either can overflow (a stack, or SQLite's expression
//! depth). It must not run queries; value rules (ranges, orderable types) are checked by the store when the
//! query runs.

use uuid::Uuid;
use weft_store::query::{Condition, Link, MAX_RELATED_DEPTH, Order};
use weft_store::{AttributeDef, AttributeKind, Schema, TableDef, Value};

use super::error::ApiError;
use super::json::{lookup_behind_value_name, parse_datetime};
use super::navigation::{Navigation, resolve};

/// How deep parentheses may nest in a `$filter`. The parser recurses once per level, so this bounds its
/// stack; real filters rarely nest more than a few levels.
pub const MAX_FILTER_DEPTH: usize = 32;

/// How many comparisons one `$filter` may hold. SQLite refuses an expression deeper than 1,000 nodes and a
/// flat chain of `or` is that deep, so the limit stays well under it (a `ge`/`le` adds one level more).
pub const MAX_FILTER_CONDITIONS: usize = 500;

/// The query options of one request.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    /// `$select`, as attribute logical names.
    pub select: Option<Vec<String>>,
    /// `$filter`.
    pub filter: Option<Condition>,
    /// `$top`.
    pub top: Option<u32>,
    /// `$orderby`.
    pub orders: Vec<Order>,
    /// `tag`.
    pub tag: Option<String>,
    /// `$count=true`: the answer carries `@odata.count`.
    pub count: bool,
    /// `$expand`, as written (the `expand` module reads it: it needs the other tables).
    pub expand: Option<String>,
}

/// Which options a request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// A collection GET: all of them.
    Collection,
    /// A single record (GET, or a write returning a representation): `$select` and `tag`.
    Record,
}

fn property_not_found(table: &TableDef, name: &str) -> ApiError {
    ApiError::url(format!(
        "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{}'.",
        table.logical_name
    ))
}

/// The attribute a query names: its logical name, or `_x_value` for lookup `x`.
fn attribute<'t>(table: &'t TableDef, name: &str) -> Result<&'t AttributeDef, ApiError> {
    let logical = lookup_behind_value_name(table, name).unwrap_or(name);
    match table.attribute(logical) {
        Some(a) if !matches!(a.kind, AttributeKind::Lookup { .. }) || logical != name => Ok(a),
        _ => Err(property_not_found(table, name)),
    }
}

/// Splits `text` at `sep` outside single-quoted OData literals (`''` inside a literal toggles twice, so it
/// stays inside).
pub fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// Parses the decoded query pairs of a request on `table`, where a `$filter` may not hold a lambda
/// operator (`any`/`all`: alternate keys, `$apply`'s `filter`).
pub fn parse(
    table: &TableDef,
    pairs: &[(String, String)],
    allowed: Allowed,
) -> Result<Options, ApiError> {
    parse_options(None, table, pairs, allowed)
}

/// [`parse`] where `$filter` may hold lambda operators over `schema`'s relationships.
pub fn parse_in(
    schema: &Schema,
    table: &TableDef,
    pairs: &[(String, String)],
    allowed: Allowed,
) -> Result<Options, ApiError> {
    parse_options(Some(schema), table, pairs, allowed)
}

fn parse_options(
    schema: Option<&Schema>,
    table: &TableDef,
    pairs: &[(String, String)],
    allowed: Allowed,
) -> Result<Options, ApiError> {
    let mut o = Options::default();
    for (key, value) in pairs {
        let collection_only = |o: &str| {
            ApiError::url(format!(
                "The query option '{o}' applies to a collection, not to a single record."
            ))
        };
        match key.as_str() {
            "$select" => {
                let names = value
                    .split(',')
                    .map(str::trim)
                    .map(|n| attribute(table, n).map(|a| a.logical_name.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                o.select = Some(names);
            }
            "$filter" if allowed == Allowed::Collection => {
                o.filter = Some(Filter::new(schema, table, value)?.parse()?)
            }
            "$top" if allowed == Allowed::Collection => {
                o.top = Some(value.trim().parse().map_err(|_| {
                    ApiError::url(format!(
                        "Invalid value '{value}' for $top query option found. The $top query option \
                         requires a non-negative integer value."
                    ))
                })?)
            }
            "$orderby" if allowed == Allowed::Collection => {
                for part in value.split(',') {
                    let mut words = part.split_whitespace();
                    let name = words.next().unwrap_or_default();
                    let a = attribute(table, name)?;
                    let descending = match words.next() {
                        None | Some("asc") => false,
                        Some("desc") => true,
                        Some(other) => {
                            return Err(ApiError::url(format!(
                                "$orderby: '{other}' after '{name}' is not asc or desc."
                            )));
                        }
                    };
                    if let Some(extra) = words.next() {
                        return Err(ApiError::url(format!(
                            "$orderby: unexpected '{extra}' after '{part}'."
                        )));
                    }
                    o.orders.push(Order {
                        attribute: a.logical_name.clone(),
                        descending,
                    });
                }
            }
            "$expand" => o.expand = Some(value.clone()),
            "$count" if allowed == Allowed::Collection => {
                o.count = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ApiError::url(format!(
                            "Invalid value '{other}' for $count query option found. Valid values are \
                             'true' and 'false'."
                        )));
                    }
                }
            }
            "$filter" | "$top" | "$orderby" | "$count" => return Err(collection_only(key)),
            "tag" => o.tag = Some(value.clone()),
            other => {
                return Err(ApiError::url(format!(
                    "The query parameter '{other}' is not supported (supported: $select, $filter, $top, \
                     $orderby, $count, $expand, tag)."
                )));
            }
        }
    }
    Ok(o)
}

/// A token of a `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    /// `,`, `=`, `[` or `]`: the punctuation of function arguments.
    Punct(char),
    /// A quoted string literal, unescaped.
    Quoted(String),
    /// Anything else: a name, an operator, a keyword or an unquoted literal.
    Word(String),
}

/// A recursive-descent parser over the tokens of one `$filter`.
struct Filter<'t> {
    /// The tables lambda operators lead to (None: lambdas are refused).
    schema: Option<&'t Schema>,
    /// The table the current (innermost lambda's) conditions are on.
    table: &'t TableDef,
    /// The innermost lambda's variable (`c` of `any(c:c/name eq 'x')`): its conditions name `c/name`.
    variable: Option<String>,
    /// Lambdas open at the current position (bounded by [`MAX_RELATED_DEPTH`]).
    lambdas: usize,
    tokens: Vec<Token>,
    pos: usize,
    /// Parentheses open at the current position (bounded by [`MAX_FILTER_DEPTH`]).
    depth: usize,
    /// Comparisons read so far (bounded by [`MAX_FILTER_CONDITIONS`]).
    conditions: usize,
}

fn syntax(why: impl std::fmt::Display) -> ApiError {
    ApiError::url(format!("$filter: {why}"))
}

impl<'t> Filter<'t> {
    fn new(schema: Option<&'t Schema>, table: &'t TableDef, text: &str) -> Result<Self, ApiError> {
        let mut tokens = Vec::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c.is_whitespace() => {}
                '(' => tokens.push(Token::Open),
                ')' => tokens.push(Token::Close),
                ',' | '=' | '[' | ']' => tokens.push(Token::Punct(c)),
                // A query function's PropertyValues may be written ["5","2000"], as Dataverse's examples do.
                '"' => {
                    let mut s = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '"')) => break,
                            Some((_, c)) => s.push(c),
                            None => {
                                return Err(syntax(format!(
                                    "the string literal starting at position {i} is not closed"
                                )));
                            }
                        }
                    }
                    tokens.push(Token::Quoted(s));
                }
                '\'' => {
                    let mut s = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '\'')) if chars.peek().is_some_and(|(_, c)| *c == '\'') => {
                                chars.next();
                                s.push('\'');
                            }
                            Some((_, '\'')) => break,
                            Some((_, c)) => s.push(c),
                            None => {
                                return Err(syntax(format!(
                                    "the string literal starting at position {i} is not closed"
                                )));
                            }
                        }
                    }
                    tokens.push(Token::Quoted(s));
                }
                c => {
                    let mut w = String::from(c);
                    while let Some((_, c)) =
                        chars.next_if(|(_, c)| !c.is_whitespace() && !"()',=[]\"".contains(*c))
                    {
                        w.push(c);
                    }
                    tokens.push(Token::Word(w));
                }
            }
        }
        Ok(Filter {
            schema,
            table,
            variable: None,
            lambdas: 0,
            tokens,
            pos: 0,
            depth: 0,
            conditions: 0,
        })
    }

    fn parse(mut self) -> Result<Condition, ApiError> {
        let c = self.or()?;
        match self.tokens.get(self.pos) {
            None => Ok(c),
            Some(t) => Err(syntax(format!(
                "unexpected {} after a complete condition",
                show(t)
            ))),
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Condition, ApiError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Condition, ApiError> {
        let mut parts = vec![self.primary()?];
        while self.keyword("and") {
            parts.push(self.primary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::And(parts)
        })
    }

    fn primary(&mut self) -> Result<Condition, ApiError> {
        match self.next() {
            Some(Token::Open) => {
                // Checked before recursing: the depth is what bounds this parser's stack.
                if self.depth == MAX_FILTER_DEPTH {
                    return Err(syntax(format!(
                        "parentheses nest more than {MAX_FILTER_DEPTH} levels deep (the limit)"
                    )));
                }
                self.depth += 1;
                let c = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Token::Close) => Ok(c),
                    _ => Err(syntax("a '(' is not closed")),
                }
            }
            Some(Token::Word(name)) => {
                self.conditions += 1;
                if self.conditions > MAX_FILTER_CONDITIONS {
                    return Err(syntax(format!(
                        "more than {MAX_FILTER_CONDITIONS} conditions (the limit); split the query"
                    )));
                }
                if name == "not" {
                    // Recursion: counted against the same depth as parentheses.
                    if self.depth == MAX_FILTER_DEPTH {
                        return Err(syntax(format!(
                            "'not' and parentheses nest more than {MAX_FILTER_DEPTH} levels deep (the limit)"
                        )));
                    }
                    self.conditions -= 1;
                    self.depth += 1;
                    let inner = self.primary()?;
                    self.depth -= 1;
                    return Ok(Condition::Not(Box::new(inner)));
                }
                if matches!(self.tokens.get(self.pos), Some(Token::Open)) {
                    return self.function(&name);
                }
                let name = self.scoped(&name)?.to_owned();
                let attr = attribute(self.table, &name)?;
                let op = match self.next() {
                    Some(Token::Word(op)) => op,
                    other => {
                        return Err(syntax(format!(
                            "expected an operator after '{name}', found {}",
                            other.as_ref().map_or("the end".into(), show)
                        )));
                    }
                };
                let literal = self
                    .next()
                    .ok_or_else(|| syntax(format!("expected a value after '{name} {op}'")))?;
                self.comparison(attr, &name, &op, literal)
            }
            Some(t) => Err(syntax(format!("expected a condition, found {}", show(&t)))),
            None => Err(syntax("expected a condition, found the end")),
        }
    }

    /// Expects `t` next.
    fn expect(&mut self, t: Token, after: &str) -> Result<(), ApiError> {
        match self.next() {
            Some(found) if found == t => Ok(()),
            other => Err(syntax(format!(
                "expected {} in {after}, found {}",
                show(&t),
                other.as_ref().map_or("the end".into(), show)
            ))),
        }
    }

    /// A function call: `contains(name,'x')`, `startswith`, `endswith`, or a `Microsoft.Dynamics.CRM.*`
    /// query function. Anything else is refused, naming it.
    fn function(&mut self, name: &str) -> Result<Condition, ApiError> {
        if let Some(nav) = name.strip_suffix("/any") {
            return self.lambda(name, nav, false);
        }
        if let Some(nav) = name.strip_suffix("/all") {
            return self.lambda(name, nav, true);
        }
        if let Some(function) = name.strip_prefix(CRM_PREFIX) {
            return self.query_function(name, function);
        }
        if !matches!(name, "contains" | "startswith" | "endswith") {
            return Err(unsupported_function(name));
        }
        self.expect(Token::Open, name)?;
        let column = match self.next() {
            Some(Token::Word(w)) => w,
            other => {
                return Err(syntax(format!(
                    "{name}: expected a column name first, found {}",
                    other.as_ref().map_or("the end".into(), show)
                )));
            }
        };
        let column = self.scoped(&column)?.to_owned();
        let attr = self.text_attribute(name, &column)?;
        self.expect(Token::Punct(','), name)?;
        let text = match self.next() {
            Some(Token::Quoted(s)) => s,
            other => {
                return Err(syntax(format!(
                    "{name}: expected a string in single quotes after '{column},', found {}",
                    other.as_ref().map_or("the end".into(), show)
                )));
            }
        };
        self.expect(Token::Close, name)?;
        let a = attr.logical_name.clone();
        Ok(match name {
            "contains" => Condition::Contains(a, text),
            "startswith" => Condition::BeginsWith(a, text),
            _ => Condition::EndsWith(a, text),
        })
    }

    /// A property name as the current scope writes it: inside a lambda `c/name` (its variable's), else
    /// `name`.
    fn scoped<'n>(&self, name: &'n str) -> Result<&'n str, ApiError> {
        match &self.variable {
            None => Ok(name),
            Some(v) => name
                .strip_prefix(v.as_str())
                .and_then(|n| n.strip_prefix('/'))
                .ok_or_else(|| {
                    syntax(format!(
                        "'{name}' inside the lambda over '{v}': name the related rows' properties \
                         '{v}/<property>' (the innermost lambda's variable)"
                    ))
                }),
        }
    }

    /// `nav/any(c:<condition>)`, `nav/any()` or `nav/all(c:<condition>)` over the collection-valued
    /// navigation property `nav` (a 1:N relationship from its "one" side, or an N:N one).
    fn lambda(&mut self, name: &str, nav: &str, all: bool) -> Result<Condition, ApiError> {
        let Some(schema) = self.schema else {
            return Err(syntax(format!(
                "the lambda operator in '{name}' is not supported here"
            )));
        };
        let nav = self.scoped(nav)?;
        let (link, related) = match resolve(schema, self.table, nav) {
            Some(Navigation::OneToMany { related, attribute }) => (
                Link::Lookup {
                    table: related.logical_name.clone(),
                    attribute: attribute.to_owned(),
                },
                related,
            ),
            Some(Navigation::ManyToMany {
                relationship,
                related,
            }) => (Link::ManyToMany(relationship.to_owned()), related),
            Some(Navigation::Lookup { .. }) => {
                return Err(syntax(format!(
                    "'{nav}' is a single-valued navigation property: any/all take a collection-valued \
                     one (filter on '_{nav}_value' or expand it instead)"
                )));
            }
            None => return Err(property_not_found(self.table, nav)),
        };
        if self.lambdas == MAX_RELATED_DEPTH || self.depth == MAX_FILTER_DEPTH {
            return Err(syntax(format!(
                "any/all nest more than {MAX_RELATED_DEPTH} levels deep (the limit)"
            )));
        }
        self.expect(Token::Open, name)?;
        if matches!(self.tokens.get(self.pos), Some(Token::Close)) {
            self.pos += 1;
            if all {
                return Err(syntax(format!(
                    "{name}: all needs a condition, such as {nav}/all(c:c/statecode eq 0)"
                )));
            }
            return Ok(Condition::Related {
                link,
                all,
                condition: None,
            });
        }
        let word = match self.next() {
            Some(Token::Word(w)) => w,
            other => {
                return Err(syntax(format!(
                    "{name}: expected a lambda variable such as 'c:', found {}",
                    other.as_ref().map_or("the end".into(), show)
                )));
            }
        };
        let (variable, rest) = word
            .split_once(':')
            .filter(|(v, _)| {
                v.starts_with(|c: char| c.is_ascii_alphabetic())
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .ok_or_else(|| {
                syntax(format!(
                    "{name}: expected a lambda variable such as 'c:', found '{word}'"
                ))
            })?;
        if !rest.is_empty() {
            // `c:c/name` is one word: what follows the colon starts the condition.
            self.pos -= 1;
            self.tokens[self.pos] = Token::Word(rest.to_owned());
        }
        let outer = (self.table, self.variable.replace(variable.to_owned()));
        self.table = related;
        self.lambdas += 1;
        self.depth += 1;
        let condition = self.or();
        self.depth -= 1;
        self.lambdas -= 1;
        (self.table, self.variable) = outer;
        let condition = condition?;
        self.expect(Token::Close, name)?;
        Ok(Condition::Related {
            link,
            all,
            condition: Some(Box::new(condition)),
        })
    }

    /// A text column, for the string functions.
    fn text_attribute(&self, function: &str, column: &str) -> Result<&'t AttributeDef, ApiError> {
        let attr = attribute(self.table, column)?;
        if !matches!(
            attr.kind,
            AttributeKind::String { .. } | AttributeKind::Memo { .. }
        ) {
            return Err(syntax(format!(
                "{function} applies to text columns; '{column}' is {} {}",
                article(attr.kind.name()),
                attr.kind.name()
            )));
        }
        Ok(attr)
    }

    /// `Microsoft.Dynamics.CRM.<function>(PropertyName='x'[,PropertyValue=v|PropertyValues=[v,…]])`.
    fn query_function(&mut self, name: &str, function: &str) -> Result<Condition, ApiError> {
        let Some(spec) = QUERY_FUNCTIONS.iter().find(|f| f.0 == function) else {
            return Err(unsupported_function(name));
        };
        self.expect(Token::Open, name)?;
        let mut property: Option<String> = None;
        let mut values: Option<Vec<Token>> = None;
        loop {
            let key = match self.next() {
                Some(Token::Word(w)) => w,
                Some(Token::Close) if property.is_some() => break,
                other => {
                    return Err(syntax(format!(
                        "{name}: expected a parameter (PropertyName, PropertyValue or PropertyValues), \
                         found {}",
                        other.as_ref().map_or("the end".into(), show)
                    )));
                }
            };
            self.expect(Token::Punct('='), name)?;
            match key.as_str() {
                "PropertyName" => match self.next() {
                    Some(Token::Quoted(p)) => property = Some(p),
                    other => {
                        return Err(syntax(format!(
                            "{name}: PropertyName must be a column name in single quotes, found {}",
                            other.as_ref().map_or("the end".into(), show)
                        )));
                    }
                },
                "PropertyValue" => match self.next() {
                    Some(t @ (Token::Quoted(_) | Token::Word(_))) => values = Some(vec![t]),
                    other => {
                        return Err(syntax(format!(
                            "{name}: expected a value after PropertyValue=, found {}",
                            other.as_ref().map_or("the end".into(), show)
                        )));
                    }
                },
                "PropertyValues" => {
                    self.expect(Token::Punct('['), name)?;
                    let mut list = Vec::new();
                    loop {
                        match self.next() {
                            Some(Token::Punct(']')) if list.is_empty() => break,
                            Some(t @ (Token::Quoted(_) | Token::Word(_))) => list.push(t),
                            other => {
                                return Err(syntax(format!(
                                    "{name}: expected a value in PropertyValues, found {}",
                                    other.as_ref().map_or("the end".into(), show)
                                )));
                            }
                        }
                        match self.next() {
                            Some(Token::Punct(',')) => {}
                            Some(Token::Punct(']')) => break,
                            other => {
                                return Err(syntax(format!(
                                    "{name}: expected ',' or ']' in PropertyValues, found {}",
                                    other.as_ref().map_or("the end".into(), show)
                                )));
                            }
                        }
                    }
                    values = Some(list);
                }
                other => {
                    return Err(syntax(format!(
                        "{name}: unknown parameter '{other}' (PropertyName, PropertyValue or PropertyValues)"
                    )));
                }
            }
            match self.next() {
                Some(Token::Punct(',')) => {}
                Some(Token::Close) => break,
                other => {
                    return Err(syntax(format!(
                        "{name}: expected ',' or ')' after a parameter, found {}",
                        other.as_ref().map_or("the end".into(), show)
                    )));
                }
            }
        }
        let Some(column) = property else {
            return Err(syntax(format!("{name}: PropertyName is required")));
        };
        // Leniently scoped: a bare property name inside a lambda is taken as it is.
        let column = self.scoped(&column).unwrap_or(&column).to_owned();
        let attr = attribute(self.table, &column)?;
        let values = values.unwrap_or_default();
        let arity_error = |want: &str| {
            syntax(format!(
                "{name}: expects {want}, found {} value{}",
                values.len(),
                if values.len() == 1 { "" } else { "s" }
            ))
        };
        let count = match spec.1 {
            Arity::None if !values.is_empty() => return Err(arity_error("no PropertyValue")),
            Arity::One if values.len() != 1 => return Err(arity_error("one PropertyValue")),
            Arity::Two if values.len() != 2 => {
                return Err(arity_error("PropertyValues with two values"));
            }
            Arity::Many if values.is_empty() => {
                return Err(arity_error("PropertyValues with at least one value"));
            }
            _ => values.len(),
        };
        // Each value is one more comparison against the limit (In expands to one per value).
        self.conditions += count.saturating_sub(1);
        if self.conditions > MAX_FILTER_CONDITIONS {
            return Err(syntax(format!(
                "more than {MAX_FILTER_CONDITIONS} conditions (the limit); split the query"
            )));
        }
        let a = attr.logical_name.clone();
        let typed = |t: &Token| function_value(self.table, attr, &column, t);
        let ge = |a: &str, v: Value| {
            Condition::Or(vec![
                Condition::Gt(a.into(), v.clone()),
                Condition::Eq(a.into(), v),
            ])
        };
        let le = |a: &str, v: Value| {
            Condition::Or(vec![
                Condition::Lt(a.into(), v.clone()),
                Condition::Eq(a.into(), v),
            ])
        };
        Ok(match function {
            "Null" => Condition::Null(a),
            "NotNull" => Condition::NotNull(a),
            "In" => Condition::Or(
                values
                    .iter()
                    .map(|t| Ok(Condition::Eq(a.clone(), typed(t)?)))
                    .collect::<Result<_, ApiError>>()?,
            ),
            "NotIn" => Condition::And(
                values
                    .iter()
                    .map(|t| Ok(Condition::Ne(a.clone(), typed(t)?)))
                    .collect::<Result<_, ApiError>>()?,
            ),
            "Between" => {
                Condition::And(vec![ge(&a, typed(&values[0])?), le(&a, typed(&values[1])?)])
            }
            "NotBetween" => Condition::Or(vec![
                Condition::Lt(a.clone(), typed(&values[0])?),
                Condition::Gt(a, typed(&values[1])?),
            ]),
            // The date functions: days are UTC days (weft keeps no user time zone).
            date => {
                if !matches!(attr.kind, AttributeKind::DateTime) {
                    return Err(syntax(format!(
                        "{name} applies to date and time columns; '{column}' is {} {}",
                        article(attr.kind.name()),
                        attr.kind.name()
                    )));
                }
                let now = now_ms();
                let today = day_start(now);
                let at = |ms: i64| Value::DateTime(ms);
                let day_of = |t: &Token| -> Result<i64, ApiError> {
                    let text = match t {
                        Token::Quoted(s) | Token::Word(s) => s.as_str(),
                        _ => "",
                    };
                    parse_datetime(text)
                        .map(day_start)
                        .map_err(|why| syntax(format!("{name}: {why}")))
                };
                let days = |t: &Token| -> Result<i64, ApiError> {
                    let text = match t {
                        Token::Quoted(s) | Token::Word(s) => s.as_str(),
                        _ => "",
                    };
                    text.parse::<i64>()
                        .ok()
                        .filter(|n| (0..=36_500).contains(n))
                        .ok_or_else(|| {
                            syntax(format!(
                                "{name}: PropertyValue must be a whole number of days (0 to 36500), \
                                 found '{text}'"
                            ))
                        })
                };
                // [from, to): at or after `from`, before `to`.
                let range = |from: i64, to: i64| {
                    Condition::And(vec![ge(&a, at(from)), Condition::Lt(a.clone(), at(to))])
                };
                match date {
                    "On" => {
                        let d = day_of(&values[0])?;
                        range(d, d + DAY_MS)
                    }
                    "OnOrAfter" => ge(&a, at(day_of(&values[0])?)),
                    "OnOrBefore" => Condition::Lt(a.clone(), at(day_of(&values[0])? + DAY_MS)),
                    "Today" => range(today, today + DAY_MS),
                    "Yesterday" => range(today - DAY_MS, today),
                    "Tomorrow" => range(today + DAY_MS, today + 2 * DAY_MS),
                    // Dataverse: from the start of the day X days ago up to now.
                    "LastXDays" => Condition::And(vec![
                        ge(&a, at(today - days(&values[0])? * DAY_MS)),
                        le(&a, at(now)),
                    ]),
                    // From now to the end of the day X days ahead.
                    _ => Condition::And(vec![
                        ge(&a, at(now)),
                        Condition::Lt(a.clone(), at(today + (days(&values[0])? + 1) * DAY_MS)),
                    ]),
                }
            }
        })
    }

    fn comparison(
        &self,
        attr: &AttributeDef,
        name: &str,
        op: &str,
        literal: Token,
    ) -> Result<Condition, ApiError> {
        let a = attr.logical_name.clone();
        if literal == Token::Word("null".into()) {
            return match op {
                "eq" => Ok(Condition::Null(a)),
                "ne" => Ok(Condition::NotNull(a)),
                _ => Err(syntax(format!(
                    "'{name} {op} null': only eq and ne compare with null"
                ))),
            };
        }
        let v = value(self.table, attr, name, &literal)?;
        Ok(match op {
            "eq" => Condition::Eq(a, v),
            "ne" => Condition::Ne(a, v),
            "gt" => Condition::Gt(a, v),
            "lt" => Condition::Lt(a, v),
            "ge" => Condition::Or(vec![
                Condition::Gt(a.clone(), v.clone()),
                Condition::Eq(a, v),
            ]),
            "le" => Condition::Or(vec![
                Condition::Lt(a.clone(), v.clone()),
                Condition::Eq(a, v),
            ]),
            other => {
                return Err(syntax(format!(
                    "'{other}' after '{name}' is not an operator (supported: eq, ne, gt, lt, ge, le)"
                )));
            }
        })
    }
}

/// The namespace of Dataverse's query functions.
const CRM_PREFIX: &str = "Microsoft.Dynamics.CRM.";

/// How many values a query function takes.
#[derive(Clone, Copy)]
enum Arity {
    None,
    One,
    Two,
    Many,
}

/// The `Microsoft.Dynamics.CRM.*` query functions `$filter` supports, with the values each takes.
const QUERY_FUNCTIONS: &[(&str, Arity)] = &[
    ("In", Arity::Many),
    ("NotIn", Arity::Many),
    ("Between", Arity::Two),
    ("NotBetween", Arity::Two),
    ("Null", Arity::None),
    ("NotNull", Arity::None),
    ("On", Arity::One),
    ("OnOrAfter", Arity::One),
    ("OnOrBefore", Arity::One),
    ("Today", Arity::None),
    ("Yesterday", Arity::None),
    ("Tomorrow", Arity::None),
    ("LastXDays", Arity::One),
    ("NextXDays", Arity::One),
];

const DAY_MS: i64 = 86_400_000;

fn day_start(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn unsupported_function(name: &str) -> ApiError {
    let crm: Vec<String> = QUERY_FUNCTIONS
        .iter()
        .map(|f| format!("{CRM_PREFIX}{}", f.0))
        .collect();
    syntax(format!(
        "the function '{name}' is not supported (supported: contains, startswith, endswith, {})",
        crm.join(", ")
    ))
}

/// A query function's value as a value of `attr`'s type: Dataverse passes every value as a string
/// (`PropertyValues=['1','2']`), so a quoted value of a non-text column is read as its text.
fn function_value(
    table: &TableDef,
    attr: &AttributeDef,
    name: &str,
    t: &Token,
) -> Result<Value, ApiError> {
    let text = matches!(
        attr.kind,
        AttributeKind::String { .. } | AttributeKind::Memo { .. }
    );
    match t {
        Token::Quoted(s) if !text => value(table, attr, name, &Token::Word(s.clone())),
        Token::Word(w) if text => value(table, attr, name, &Token::Quoted(w.clone())),
        t => value(table, attr, name, t),
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::Punct(c) => format!("'{c}'"),
        Token::Quoted(s) => format!("the string '{s}'"),
        Token::Word(w) => format!("'{w}'"),
    }
}

/// A `$filter` literal as a value of `attr`'s type.
fn value(table: &TableDef, attr: &AttributeDef, name: &str, t: &Token) -> Result<Value, ApiError> {
    let wrong = |expected: &str| {
        syntax(format!(
            "'{name}' is {} {}: expected {expected}, found {}",
            article(attr.kind.name()),
            attr.kind.name(),
            show(t)
        ))
    };
    let word = match t {
        Token::Word(w) => Some(w.as_str()),
        _ => None,
    };
    let text = match t {
        Token::Word(w) | Token::Quoted(w) => Some(w.as_str()),
        _ => None,
    };
    let guid = || text.and_then(|s| Uuid::parse_str(s).ok());
    Ok(match &attr.kind {
        AttributeKind::String { .. } | AttributeKind::Memo { .. } => match t {
            Token::Quoted(s) => Value::String(s.clone()),
            _ => return Err(wrong("a string in single quotes")),
        },
        AttributeKind::Integer { .. } => Value::Integer(
            word.and_then(|w| w.parse().ok())
                .ok_or_else(|| wrong("a whole number"))?,
        ),
        AttributeKind::BigInt => Value::BigInt(
            word.and_then(|w| w.parse().ok())
                .ok_or_else(|| wrong("a whole number"))?,
        ),
        AttributeKind::Double => Value::Double(
            word.and_then(|w| w.parse().ok())
                .ok_or_else(|| wrong("a number"))?,
        ),
        AttributeKind::Decimal { .. } => {
            Value::Decimal(word.ok_or_else(|| wrong("a number"))?.to_owned())
        }
        AttributeKind::Money => Value::Money(word.ok_or_else(|| wrong("a number"))?.to_owned()),
        AttributeKind::Boolean => match word {
            Some("true") => Value::Boolean(true),
            Some("false") => Value::Boolean(false),
            _ => return Err(wrong("true or false")),
        },
        AttributeKind::DateTime => Value::DateTime(
            parse_datetime(text.ok_or_else(|| wrong("a date-time"))?)
                .map_err(|why| syntax(format!("'{name}': {why}")))?,
        ),
        AttributeKind::Uniqueidentifier => Value::Guid(guid().ok_or_else(|| wrong("a GUID"))?),
        AttributeKind::Lookup { targets } => Value::EntityReference {
            logical_name: targets.first().cloned().unwrap_or_default(),
            id: guid().ok_or_else(|| wrong("a GUID"))?,
        },
        AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => Value::OptionSetValue(
            word.and_then(|w| w.parse().ok())
                .ok_or_else(|| wrong("an option value (a whole number)"))?,
        ),
        AttributeKind::MultiSelectPicklist { .. } => {
            return Err(syntax(format!(
                "'{name}' of table '{}' is a MultiSelectPicklist: comparing it is not supported",
                table.logical_name
            )));
        }
    })
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_store::Schema;

    fn table() -> TableDef {
        let schema = Schema::from_toml_str(
            "test",
            r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"
  [[table.attribute]]
  logical_name = "numberofemployees"
  type = "Integer"
  [[table.attribute]]
  logical_name = "primarycontactid"
  type = "Lookup"
  targets = ["contact"]
[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
"#,
        )
        .unwrap();
        schema.table("account").unwrap().clone()
    }

    fn filter(text: &str) -> Result<Condition, ApiError> {
        Filter::new(None, &table(), text)?.parse()
    }

    /// A `$filter` on account in a schema where contact's rows relate to it (`contact_customer_accounts`).
    fn lambda_filter(text: &str) -> Result<Condition, ApiError> {
        let schema = Schema::from_toml_str(
            "test",
            r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"
[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
  [[table.attribute]]
  logical_name = "parentcustomerid"
  type = "Lookup"
  targets = ["account"]
[[relationship]]
name = "contact_customer_accounts"
type = "OneToMany"
referenced_entity = "account"
referencing_entity = "contact"
referencing_attribute = "parentcustomerid"
"#,
        )
        .unwrap();
        let account = schema.table("account").unwrap();
        Filter::new(Some(&schema), account, text)?.parse()
    }

    /// `any`/`all` read into the store's lambda condition, with the variable's prefix taken off and the
    /// related table's columns checked; `any()` needs no variable, `all` needs a condition.
    #[test]
    fn lambda_operators() {
        let link = Link::Lookup {
            table: "contact".into(),
            attribute: "parentcustomerid".into(),
        };
        let any = |condition: Option<Condition>, all: bool| Condition::Related {
            link: link.clone(),
            all,
            condition: condition.map(Box::new),
        };
        let kim = Condition::Eq("lastname".into(), Value::String("Kim".into()));
        assert_eq!(
            lambda_filter("contact_customer_accounts/any(c:c/lastname eq 'Kim')").unwrap(),
            any(Some(kim.clone()), false)
        );
        assert_eq!(
            lambda_filter("contact_customer_accounts/all(x: x/lastname eq 'Kim')").unwrap(),
            any(Some(kim.clone()), true)
        );
        assert_eq!(
            lambda_filter("name eq 'A' and not contact_customer_accounts/any()").unwrap(),
            Condition::And(vec![
                Condition::Eq("name".into(), Value::String("A".into())),
                Condition::Not(Box::new(any(None, false))),
            ])
        );
        // The lambda's scope ends at its parenthesis: `name` is account's again.
        assert_eq!(
            lambda_filter(
                "contact_customer_accounts/any(c:startswith(c/lastname,'K')) or name eq 'B'"
            )
            .unwrap(),
            Condition::Or(vec![
                any(
                    Some(Condition::BeginsWith("lastname".into(), "K".into())),
                    false
                ),
                Condition::Eq("name".into(), Value::String("B".into())),
            ])
        );
        for (text, why) in [
            ("contact_customer_accounts/all()", "all needs a condition"),
            (
                "contact_customer_accounts/any(c:lastname eq 'a')",
                "'c/<property>'",
            ),
            (
                "contact_customer_accounts/any(c:c/name eq 'a')",
                "property named 'name'",
            ),
            ("nope/any(c:c/lastname eq 'a')", "property named 'nope'"),
            (
                "contact_customer_accounts/any(c/lastname eq 'a')",
                "lambda variable",
            ),
        ] {
            let e = lambda_filter(text).unwrap_err();
            assert!(e.message.contains(why), "{text}: {}", e.message);
        }
    }

    /// `and` binds tighter than `or`, parentheses group, `''` escapes a quote, null becomes (not-)null.
    #[test]
    fn filter_grammar() {
        let s = |v: &str| Value::String(v.into());
        assert_eq!(
            filter("name eq 'O''Neil' or numberofemployees gt 5 and (name ne 'x' or name eq null)")
                .unwrap(),
            Condition::Or(vec![
                Condition::Eq("name".into(), s("O'Neil")),
                Condition::And(vec![
                    Condition::Gt("numberofemployees".into(), Value::Integer(5)),
                    Condition::Or(vec![
                        Condition::Ne("name".into(), s("x")),
                        Condition::Null("name".into()),
                    ]),
                ]),
            ])
        );
        let id = Uuid::from_u128(7);
        assert_eq!(
            filter(&format!("_primarycontactid_value eq {id}")).unwrap(),
            Condition::Eq(
                "primarycontactid".into(),
                Value::EntityReference {
                    logical_name: "contact".into(),
                    id
                }
            )
        );
    }

    /// The string functions, `not` and the query functions parse into the store's conditions: In and NotIn
    /// into one comparison per value (values given as strings, as Dataverse sends them), Between into an
    /// inclusive range, the date functions into UTC day ranges.
    #[test]
    fn filter_functions() {
        let s = |v: &str| Value::String(v.into());
        let n = |v: i32| Value::Integer(v);
        assert_eq!(
            filter("contains(name,'50%') and not startswith(name,'A') or endswith(name,'''x''')")
                .unwrap(),
            Condition::Or(vec![
                Condition::And(vec![
                    Condition::Contains("name".into(), "50%".into()),
                    Condition::Not(Box::new(Condition::BeginsWith("name".into(), "A".into()))),
                ]),
                Condition::EndsWith("name".into(), "'x'".into()),
            ])
        );
        assert_eq!(
            filter("not (name eq 'a' or numberofemployees gt 3)").unwrap(),
            Condition::Not(Box::new(Condition::Or(vec![
                Condition::Eq("name".into(), s("a")),
                Condition::Gt("numberofemployees".into(), n(3)),
            ])))
        );
        assert_eq!(
            filter(
                "Microsoft.Dynamics.CRM.In(PropertyName='numberofemployees',PropertyValues=['1',\"2\",3])"
            )
            .unwrap(),
            Condition::Or(vec![
                Condition::Eq("numberofemployees".into(), n(1)),
                Condition::Eq("numberofemployees".into(), n(2)),
                Condition::Eq("numberofemployees".into(), n(3)),
            ])
        );
        assert_eq!(
            filter("Microsoft.Dynamics.CRM.NotIn(PropertyName='name',PropertyValues=['a, b'])")
                .unwrap(),
            Condition::And(vec![Condition::Ne("name".into(), s("a, b"))])
        );
        let ge = |v: i32| {
            Condition::Or(vec![
                Condition::Gt("numberofemployees".into(), n(v)),
                Condition::Eq("numberofemployees".into(), n(v)),
            ])
        };
        let le = |v: i32| {
            Condition::Or(vec![
                Condition::Lt("numberofemployees".into(), n(v)),
                Condition::Eq("numberofemployees".into(), n(v)),
            ])
        };
        assert_eq!(
            filter(
                "Microsoft.Dynamics.CRM.Between(PropertyName='numberofemployees',PropertyValues=[\"5\",\"2000\"])"
            )
            .unwrap(),
            Condition::And(vec![ge(5), le(2000)])
        );
        assert_eq!(
            filter("Microsoft.Dynamics.CRM.NotNull(PropertyName='name')").unwrap(),
            Condition::NotNull("name".into())
        );
        let on = filter(
            "Microsoft.Dynamics.CRM.On(PropertyName='createdon',PropertyValue='2024-02-29')",
        )
        .unwrap();
        let day = parse_datetime("2024-02-29").unwrap();
        let created = |v: i64| Value::DateTime(v);
        assert_eq!(
            on,
            Condition::And(vec![
                Condition::Or(vec![
                    Condition::Gt("createdon".into(), created(day)),
                    Condition::Eq("createdon".into(), created(day)),
                ]),
                Condition::Lt("createdon".into(), created(day + DAY_MS)),
            ])
        );
        let Condition::And(today) =
            filter("Microsoft.Dynamics.CRM.Today(PropertyName='createdon')").unwrap()
        else {
            panic!("Today is a range")
        };
        let Condition::Lt(_, Value::DateTime(end)) = &today[1] else {
            panic!("{today:?}")
        };
        assert_eq!(*end, day_start(now_ms()) + DAY_MS);
    }

    /// A filter just inside both limits parses; one over (deeper, or longer) is refused above.
    #[test]
    fn filter_limits_are_inclusive() {
        let deep = format!("{}name eq 'a'{}", "(".repeat(32), ")".repeat(32));
        assert!(filter(&deep).is_ok());
        let long = vec!["name eq 'a'"; 500].join(" or ");
        assert!(matches!(filter(&long).unwrap(), Condition::Or(v) if v.len() == 500));
    }

    /// Every malformed filter is refused with a message that says what is wrong.
    #[test]
    fn filter_errors_are_precise() {
        for (text, expected) in [
            ("name eq 'abc", "not closed"),
            ("name eq abc", "expected a string in single quotes"),
            ("numberofemployees eq 'five'", "expected a whole number"),
            ("nope eq 1", "Could not find a property named 'nope'"),
            (
                "primarycontactid eq 1",
                "Could not find a property named 'primarycontactid'",
            ),
            (
                "tolower(name) eq 'a'",
                "function 'tolower' is not supported (supported: contains",
            ),
            (
                "Microsoft.Dynamics.CRM.Above(PropertyName='name',PropertyValue='a')",
                "function 'Microsoft.Dynamics.CRM.Above' is not supported",
            ),
            (
                "contact_customer_accounts/any(c:c/lastname eq 'a')",
                "lambda operator in 'contact_customer_accounts/any' is not supported",
            ),
            (
                "contains(numberofemployees,'1')",
                "contains applies to text columns; 'numberofemployees' is an Integer",
            ),
            (
                "contains(name,5)",
                "expected a string in single quotes after 'name,'",
            ),
            (
                "Microsoft.Dynamics.CRM.Between(PropertyName='numberofemployees',PropertyValues=['1'])",
                "expects PropertyValues with two values, found 1 value",
            ),
            (
                "Microsoft.Dynamics.CRM.Today(PropertyName='name')",
                "Today applies to date and time columns",
            ),
            (
                "Microsoft.Dynamics.CRM.In(PropertyValues=['a'])",
                "PropertyName is required",
            ),
            ("name like 'a'", "'like' after 'name' is not an operator"),
            ("name eq 'a' name", "unexpected 'name'"),
            ("(name eq 'a'", "not closed"),
            ("name gt null", "only eq and ne"),
            ("", "found the end"),
            (
                format!("{}name eq 'a'{}", "(".repeat(33), ")".repeat(33)).as_str(),
                "more than 32 levels deep (the limit)",
            ),
            (
                vec!["name eq 'a'"; 501].join(" or ").as_str(),
                "more than 500 conditions (the limit)",
            ),
        ] {
            let e = filter(text).unwrap_err();
            assert!(e.message.contains(expected), "{text}: {}", e.message);
            assert_eq!(e.code, super::super::error::BAD_URL);
        }
    }
}
