//! The JSON shape of `serviceendpoints` rows, both ways: a stored endpoint as Dataverse's columns (option
//! sets as numbers, secrets only as `is…set` flags) and a POST/PATCH body into the declaration the
//! registration validates.
//!
//! Owns the mapping between Dataverse's column names and `weft.toml`'s `[[service_endpoint]]` keys, so
//! the API and the file are read by one parser ([`crate::registration::endpoint_decl`]) and checked by one
//! rule ([`crate::registration::check_endpoint`], applied by the pipeline). It must not write the store.
//!
//! Secrets (`saskey`, `sastoken`, `authvalue`) are write-only: a body sets them (a string) or clears
//! them (`null`); a PATCH that leaves one out keeps it. They are never returned.

use serde_json::{Map, Value as Json, json};
use weft_store::system::{SecretUpdate, ServiceEndpoint};

use super::error::ApiError;
use crate::registration::{EndpointDecl, RawEndpoint, endpoint_decl};

/// Dataverse column → `weft.toml` key, for every writable column.
const COLUMNS: &[(&str, &str)] = &[
    ("serviceendpointid", "id"),
    ("name", "name"),
    ("description", "description"),
    ("contract", "contract"),
    ("messageformat", "message_format"),
    ("authtype", "auth_type"),
    ("connectionmode", "connection_mode"),
    ("namespaceformat", "namespace_format"),
    ("userclaim", "user_claim"),
    ("messagecharset", "message_charset"),
    ("namespaceaddress", "namespace_address"),
    ("path", "path"),
    ("url", "url"),
    ("saskeyname", "sas_key_name"),
    ("solutionnamespace", "solution_namespace"),
    ("saskey", "sas_key"),
    ("sastoken", "sas_token"),
    ("authvalue", "auth_value"),
];

/// The write-only columns.
const SECRETS: [&str; 3] = ["saskey", "sastoken", "authvalue"];

/// The read-only flags a client may echo back from a GET but cannot write.
const FLAGS: [&str; 3] = ["issaskeyset", "issastokenset", "isauthvalueset"];

/// An endpoint's row: option sets as numbers, secrets only as `is…set` flags.
pub(super) fn endpoint_json(e: &ServiceEndpoint) -> Json {
    let d = &e.def;
    json!({
        "serviceendpointid": d.id,
        "name": d.name,
        "description": d.description,
        "contract": d.contract.value(),
        "messageformat": d.message_format.value(),
        "authtype": d.auth_type.value(),
        "connectionmode": d.connection_mode.value(),
        "namespaceformat": d.namespace_format.map(|v| v.value()),
        "userclaim": d.user_claim.value(),
        "messagecharset": d.message_charset.map(|v| v.value()),
        "namespaceaddress": d.namespace_address,
        "path": d.path,
        "url": d.url,
        "saskeyname": d.sas_key_name,
        "solutionnamespace": d.solution_namespace,
        "issaskeyset": e.is_sas_key_set,
        "issastokenset": e.is_sas_token_set,
        "isauthvalueset": e.is_auth_value_set,
    })
}

/// Reads a POST body (`stored` None: a new endpoint, its id given or made) or a PATCH body over the
/// `stored` row (the columns left out keep their values, secrets included). Refuses unknown and
/// read-only columns and ill-typed values, naming the column.
pub(super) fn endpoint_from_body(
    body: &[u8],
    stored: Option<&ServiceEndpoint>,
) -> Result<EndpointDecl, ApiError> {
    let given = match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(o)) => o,
        Ok(_) => return Err(ApiError::payload("The body must be a JSON object.")),
        Err(e) => {
            return Err(ApiError::payload(format!(
                "The body is not valid JSON: {e}."
            )));
        }
    };
    if let Some(k) = given.keys().find(|k| FLAGS.contains(&k.as_str())) {
        return Err(ApiError::payload(format!(
            "'{k}' is read-only: write the secret itself ({}) to set it, or null to clear it.",
            SECRETS.join(", ")
        )));
    }
    // Checked before serde, whose messages quote the offending value.
    if let Some(k) = SECRETS.iter().find(|k| {
        given
            .get(**k)
            .is_some_and(|v| !v.is_string() && !v.is_null())
    }) {
        return Err(ApiError::payload(format!(
            "'{k}' must be a string (the secret) or null (to clear it)."
        )));
    }
    if let Some(k) = given
        .keys()
        .find(|k| !COLUMNS.iter().any(|(column, _)| column == k))
    {
        return Err(ApiError::payload(format!(
            "'{k}' is not a writable column of serviceendpoint (writable: {}).",
            COLUMNS
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut columns: Map<String, Json> = match stored {
        Some(row) => {
            if let Some(id) = given.get("serviceendpointid")
                && id != &json!(row.def.id)
            {
                return Err(ApiError::payload(
                    "'serviceendpointid' cannot be changed.".to_owned(),
                ));
            }
            match endpoint_json(row) {
                Json::Object(o) => o,
                _ => Map::new(),
            }
        }
        None => Map::new(),
    };
    columns.extend(given.clone());
    let mut keys = Map::new();
    for (column, key) in COLUMNS {
        match columns.get(*column) {
            None | Some(Json::Null) => {}
            Some(v) => {
                keys.insert((*key).to_owned(), v.clone());
            }
        }
    }
    // No id given: derived from the name, as weft.toml does, so a later file entry of the same name is
    // the same endpoint rather than a second one.
    let raw: RawEndpoint = serde_json::from_value(Json::Object(keys)).map_err(|e| {
        // serde names weft.toml's keys: name the columns the caller wrote instead.
        let mut message = e.to_string();
        for (column, key) in COLUMNS {
            message = message.replace(&format!("`{key}`"), &format!("'{column}'"));
        }
        ApiError::payload(format!("The service endpoint is not valid: {message}."))
    })?;
    let mut decl = endpoint_decl(raw);
    if stored.is_some() {
        // Left out of a PATCH: kept as stored.
        let keep = |column: &str, update: &mut SecretUpdate| {
            if !given.contains_key(column) {
                *update = SecretUpdate::Keep;
            }
        };
        keep("saskey", &mut decl.secrets.sas_key);
        keep("sastoken", &mut decl.secrets.sas_token);
        keep("authvalue", &mut decl.secrets.auth_value);
    }
    Ok(decl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// A body naming an unknown or read-only column, or an ill-typed value, is refused naming the column.
    #[test]
    fn bad_bodies_name_the_column() {
        let e = endpoint_from_body(br#"{"name":"x","colour":1}"#, None).unwrap_err();
        assert!(
            e.message.contains("'colour' is not a writable column"),
            "{}",
            e.message
        );
        let e = endpoint_from_body(br#"{"issaskeyset":true}"#, None).unwrap_err();
        assert!(
            e.message.contains("'issaskeyset' is read-only"),
            "{}",
            e.message
        );
        let e = endpoint_from_body(
            br#"{"name":"q","contract":99,"messageformat":2,"authtype":2}"#,
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("99"), "{}", e.message);
        let e = endpoint_from_body(br#"{"name":"q","messageformat":2,"authtype":2}"#, None)
            .unwrap_err();
        assert!(e.message.contains("'contract'"), "{}", e.message);
        assert!(endpoint_from_body(b"[1]", None).is_err());
    }

    /// A PATCH keeps the secrets it leaves out, sets the ones it gives and clears the ones it nulls.
    #[test]
    fn patch_keeps_sets_and_clears_secrets() {
        let created = endpoint_from_body(
            br#"{"name":"q","contract":2,"messageformat":2,"authtype":2,"saskeyname":"k","saskey":"s"}"#,
            None,
        )
        .unwrap();
        let row = ServiceEndpoint {
            def: created.def.clone(),
            is_sas_key_set: true,
            is_sas_token_set: false,
            is_auth_value_set: false,
        };
        let patched = endpoint_from_body(
            br#"{"path":"p2","sastoken":null,"authvalue":"v"}"#,
            Some(&row),
        )
        .unwrap();
        assert_eq!(patched.def.id, created.def.id);
        assert_eq!(patched.def.path.as_deref(), Some("p2"));
        assert_eq!(patched.def.sas_key_name.as_deref(), Some("k"));
        assert_eq!(patched.secrets.sas_key, SecretUpdate::Keep);
        assert_eq!(patched.secrets.sas_token, SecretUpdate::Clear);
        assert_eq!(patched.secrets.auth_value, SecretUpdate::Set("v".into()));
        let e = endpoint_from_body(
            format!(r#"{{"serviceendpointid":"{}"}}"#, Uuid::new_v4()).as_bytes(),
            Some(&row),
        )
        .unwrap_err();
        assert!(e.message.contains("cannot be changed"), "{}", e.message);
    }
}
