//! Every parser a request URL meets, run as the handlers run them, without a runtime: for the fuzz target
//! (`host/fuzz`) and the property test below, which feed it arbitrary text and expect a clear 4xx error or
//! success, never a panic, a stack overflow or a 5xx.
//!
//! Owns only this composition; the parsers themselves are their modules' (`json`, `odata`, `expand`,
//! `paging`, `custom_api`, `system`, and weft-odata's for metadata paths). It must not run operations nor read the store.

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Uri};
use uuid::Uuid;
use weft_store::Schema;

use super::error::ApiError;
use super::paging::{Page, PageKey};
use super::{PREFIX, custom_api, expand, json, odata, split_call, system, valid_host};
use crate::registration::{Binding, CustomApiDecl};

/// Parses `target` (a request's path and query, e.g. `/api/data/v9.2/accounts?$filter=…`) as the API
/// would for a GET on `schema`'s tables, and `host` as a `Host` header: every segment, key, query option,
/// skip token and function argument. Ok when the URL would reach an operation.
pub fn parse_url(schema: &Schema, target: &str, host: &str) -> Result<(), ApiError> {
    if !valid_host(host) {
        return Err(ApiError::url("The Host header is not a valid host[:port]."));
    }
    let uri: Uri = target
        .parse()
        .map_err(|e| ApiError::url(format!("The URL is malformed: {e}.")))?;
    let mut pairs = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::url(format!("The query string is malformed: {e}.")))?
        .0;
    let rest = uri
        .path()
        .strip_prefix(PREFIX)
        .and_then(|p| p.strip_prefix('/'))
        .ok_or_else(|| ApiError::url("The path is not under /api/data/v9.2/."))?;
    if weft_odata::is_metadata_path(rest) {
        let model = weft_odata::Model {
            schema,
            operations: &[],
            filters: &[],
        };
        return weft_odata::get(model, "http://localhost/api/data/v9.2", rest, &pairs)
            .map(|_| ())
            .map_err(ApiError::from);
    }
    let segment = rest.split('/').next().unwrap_or_default();
    let (name, args) = split_call(segment);
    if args.is_some() && json::parse_key_segment(segment).is_none() {
        // A function call: its arguments, with aliases from the query.
        let api = CustomApiDecl {
            id: Uuid::nil(),
            unique_name: name.to_owned(),
            plugin_type: Uuid::nil(),
            binding: Binding::Global,
            is_function: true,
            request_parameters: Vec::new(),
            response_properties: Vec::new(),
        };
        return custom_api::function_arguments(&api, args, &pairs).map(|_| ());
    }
    let (set, id) = json::parse_key_segment(segment)
        .ok_or_else(|| ApiError::url(format!("'{segment}' is not an entity set or a key.")))?;
    let mut headers = HeaderMap::new();
    headers.insert("Prefer", HeaderValue::from_static("odata.maxpagesize=10"));
    if id.is_none() {
        Page::from_request(&PageKey::random(), set, &mut pairs, uri.query(), &headers)?;
    }
    if set == system::JOBS {
        return system::parse_job_query(&pairs);
    }
    let table = schema
        .table_by_entity_set(set)
        .ok_or_else(|| ApiError::url(format!("Resource not found for the segment '{set}'.")))?;
    let allowed = if id.is_some() {
        odata::Allowed::Record
    } else {
        odata::Allowed::Collection
    };
    let options = odata::parse_in(schema, table, &pairs, allowed)?;
    match &options.expand {
        Some(text) => expand::parse(schema, table, text).map(|_| ()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schema() -> Schema {
        Schema::from_toml_str("test", include_str!("testdata/url-tables.toml")).unwrap()
    }

    /// Pieces of URLs: query syntax, OData words, brackets and escapes that parsers trip on.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just(" ".to_owned()),
            Just("%20".to_owned()),
            Just("'".to_owned()),
            Just("''".to_owned()),
            Just(" and ".to_owned()),
            Just(" or ".to_owned()),
            Just(" eq ".to_owned()),
            Just(" ge ".to_owned()),
            Just("name".to_owned()),
            Just("numberofemployees".to_owned()),
            Just("lastonholdtime".to_owned()),
            Just("null".to_owned()),
            Just("5".to_owned()),
            Just("2024-01-01T00:00:00Z".to_owned()),
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just("$filter=".to_owned()),
            Just("$select=".to_owned()),
            Just("$orderby=".to_owned()),
            Just("$top=".to_owned()),
            Just("$expand=".to_owned()),
            Just("$count=".to_owned()),
            Just("primarycontactid".to_owned()),
            Just("OptionSet".to_owned()),
            Just("LogicalName".to_owned()),
            Just("sdkmessageid/name".to_owned()),
            Just(" not ".to_owned()),
            Just(";".to_owned()),
            Just("$skiptoken=".to_owned()),
            Just("@p=".to_owned()),
            Just(",".to_owned()),
            Just("{".to_owned()),
            Just("[".to_owned()),
            Just("%".to_owned()),
            Just("%FF".to_owned()),
            "[a-z0-9$@%'(),=&]{0,8}",
            any::<char>().prop_map(|c| c.to_string()),
        ]
    }

    fn target() -> impl Strategy<Value = String> {
        let path = prop_oneof![
            Just("accounts".to_owned()),
            Just("accounts(00000000-0000-0000-0000-000000000001)".to_owned()),
            Just("asyncoperations".to_owned()),
            Just("EntityDefinitions".to_owned()),
            Just("EntityDefinitions(LogicalName='account')/Attributes".to_owned()),
            Just("RelationshipDefinitions".to_owned()),
            Just("sdkmessagefilters".to_owned()),
            Just("weft_Fn(".to_owned()),
            "[a-z()0-9-]{0,12}",
        ];
        (path, prop::collection::vec(piece(), 0..40)).prop_map(|(path, pieces)| {
            let rest = pieces.concat();
            if path.ends_with('(') {
                format!("{PREFIX}/{path}{rest})")
            } else {
                format!("{PREFIX}/{path}?{rest}")
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Any URL is parsed or refused with a 4xx (never a panic, never a 5xx).
        #[test]
        fn any_url_parses_or_is_refused_cleanly(target in target(), host in "[a-z0-9.:\\[\\]@/ ]{0,12}") {
            let schema = schema();
            if let Err(e) = parse_url(&schema, &target, &host) {
                prop_assert!(e.status.is_client_error(), "{target}: {e:?}");
            }
        }
    }

    /// Deep nesting in every place that nests — a filter's parentheses, a function's JSON argument —
    /// is refused, not a stack overflow.
    #[test]
    fn deep_nesting_is_refused() {
        let schema = schema();
        let deep_filter = format!(
            "{PREFIX}/accounts?$filter={}name%20eq%20'a'{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        let e = parse_url(&schema, &deep_filter, "localhost").unwrap_err();
        assert!(e.message.contains("(the limit)"), "{}", e.message);
        let deep_json = format!(
            "{PREFIX}/weft_Fn(P=@p)?@p={}{}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(parse_url(&schema, &deep_json, "localhost").is_err());
        let deep_metadata = format!(
            "{PREFIX}/EntityDefinitions?$filter={}LogicalName%20eq%20'a'{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(parse_url(&schema, &deep_metadata, "localhost").is_err());
        let deep_expand = format!(
            "{PREFIX}/EntityDefinitions?$expand={}",
            "Attributes($expand=".repeat(1_000)
        );
        assert!(parse_url(&schema, &deep_expand, "localhost").is_err());
        assert!(
            parse_url(
                &schema,
                &format!("{PREFIX}/accounts?$filter=name%20eq%20'a'&$top=3"),
                "localhost:5380"
            )
            .is_ok()
        );
    }
}
