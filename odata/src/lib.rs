//! weft's Dataverse Web API metadata, derived from the declared tables and Custom APIs: the CSDL document
//! (`$metadata`), the `EntityDefinitions` set (with `Attributes`, `Keys` and the three relationship
//! collections of each table) and the `RelationshipDefinitions` set, with the `$select`, `$filter` and
//! `$expand` options Dataverse accepts on them.
//!
//! Owns the metadata's shapes, names and ids and the parsing of metadata URLs. It must not read rows, run
//! operations or speak HTTP: the host hands it the path after `/api/data/v9.2/` and the query pairs, and
//! turns the answer (JSON, XML or a [`MetadataError`]) into a response.
//!
//! Ids are name-based UUIDs (see `ids`), so a client caching a `MetadataId` finds the same table after a
//! restart. Tables and columns created through the Web API (`POST EntityDefinitions`, the `CreateEntities`
//! action, `POST EntityDefinitions(<key>)/Attributes`) are read into declarations here (`define`); the host
//! hands them to the store, which creates them and keeps them.

mod csdl;
mod define;
mod ids;
mod items;
mod path;
mod query;
pub mod relationships;

use weft_store::Schema;

pub use csdl::csdl;
pub use define::{BAD_BODY, attribute_from_json, table_from_json, tables_from_create_entities};
pub use ids::metadata_id;
pub use path::{MetadataWrite, is_metadata_path, write_target};

/// The Dataverse namespace every type lives in.
pub const NAMESPACE: &str = "Microsoft.Dynamics.CRM";

/// What a metadata request addresses, as the host knows it: the declared tables and the Custom APIs.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    /// The declared tables and relationships.
    pub schema: &'a Schema,
    /// The declared Custom APIs, as operations.
    pub operations: &'a [Operation],
    /// The messages weft runs on each table, as the `sdkmessagefilters` set lists them.
    pub filters: &'a [MessageFilter],
}

/// One message on one table (a row of Dataverse's `sdkmessagefilter`, with its `sdkmessage`). The host
/// gives the ids: they are the ones its registration rows point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFilter {
    /// `sdkmessagefilterid`.
    pub id: uuid::Uuid,
    /// The message's name, e.g. `Create`.
    pub message: String,
    /// `sdkmessageid`.
    pub message_id: uuid::Uuid,
    /// The table's logical name (`primaryobjecttypecode`), `none` for an unbound message.
    pub table: String,
}

/// A Custom API as an OData action (POST) or function (GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The unique name, e.g. `weft_Greet`.
    pub name: String,
    /// A function (GET) rather than an action (POST).
    pub is_function: bool,
    /// What it is bound to.
    pub binding: OperationBinding,
    /// The request parameters.
    pub parameters: Vec<Parameter>,
    /// The response properties (an empty list: the operation returns nothing).
    pub returns: Vec<Parameter>,
}

/// What an operation is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationBinding {
    /// Unbound: `/{name}`.
    Unbound,
    /// One row of this table: `{set}({id})/Microsoft.Dynamics.CRM.{name}`.
    Entity(String),
    /// This table's collection: `{set}/Microsoft.Dynamics.CRM.{name}`.
    Collection(String),
}

/// One parameter or response property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Its name.
    pub name: String,
    /// Its type, an EDM name (`Edm.String`, `Collection(Edm.String)`) or `mscrm.crmbaseentity`.
    pub edm_type: &'static str,
    /// Whether a request may leave it out.
    pub optional: bool,
}

/// A metadata request that cannot be answered, with the HTTP status and Dataverse's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MetadataError {
    /// 400, 404 or 405.
    pub status: u16,
    /// Dataverse's hexadecimal error code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Dataverse's code for a malformed URL or query option.
pub const BAD_URL: &str = "0x80060888";
/// Dataverse's code for a metadata item that does not exist (`ObjectDoesNotExist`).
pub const NOT_FOUND: &str = "0x80040217";

impl MetadataError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        MetadataError {
            status: 400,
            code: BAD_URL,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        MetadataError {
            status: 404,
            code: NOT_FOUND,
            message: message.into(),
        }
    }
}

/// Answers a GET on a metadata path (`rest` is what follows `/api/data/v9.2/`, still percent-encoded, e.g.
/// `EntityDefinitions(LogicalName='account')/Attributes`) with `pairs` as its query options; `base` is the
/// service root (`https://host/api/data/v9.2`) the `@odata.context` is built from.
pub fn get(
    model: Model<'_>,
    base: &str,
    rest: &str,
    pairs: &[(String, String)],
) -> Result<serde_json::Value, MetadataError> {
    path::get(model, base, rest, pairs)
}

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;

    use super::*;

    fn schema() -> Schema {
        Schema::from_toml_str("testdata/tables.toml", include_str!("testdata/tables.toml")).unwrap()
    }

    fn query(rest: &str, pairs: &[(&str, &str)]) -> Result<Json, MetadataError> {
        let schema = schema();
        let filters: Vec<MessageFilter> = ["Create", "CreateMultiple"]
            .iter()
            .flat_map(|m| {
                ["account", "contact"].map(|t| MessageFilter {
                    id: metadata_id("test-filter", &[m, t]),
                    message: (*m).to_owned(),
                    message_id: metadata_id("test-message", &[m]),
                    table: t.to_owned(),
                })
            })
            .collect();
        let model = Model {
            schema: &schema,
            operations: &[],
            filters: &filters,
        };
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        get(model, "https://h/api/data/v9.2", rest, &pairs)
    }

    #[test]
    fn entity_definitions_filter_and_select_as_the_python_sdk_asks() {
        let body = query(
            "EntityDefinitions",
            &[
                ("$select", "LogicalName,EntitySetName,PrimaryIdAttribute"),
                ("$filter", "LogicalName eq 'contact'"),
            ],
        )
        .unwrap();
        let value = body["value"].as_array().unwrap();
        assert_eq!(value.len(), 1);
        let one = value[0].as_object().unwrap();
        assert_eq!(one["EntitySetName"], "contacts");
        assert_eq!(one["PrimaryIdAttribute"], "contactid");
        let mut keys: Vec<&str> = one.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "EntitySetName",
                "LogicalName",
                "MetadataId",
                "PrimaryIdAttribute"
            ]
        );
    }

    #[test]
    fn an_entity_by_logical_name_and_by_its_stable_metadata_id() {
        let by_name = query("EntityDefinitions(LogicalName='account')", &[]).unwrap();
        let id = by_name["MetadataId"].as_str().unwrap().to_owned();
        assert_eq!(id, metadata_id("entity", &["account"]).to_string());
        let by_id = query(&format!("EntityDefinitions({id})"), &[]).unwrap();
        assert_eq!(by_id["LogicalName"], "account");
        let missing = query("EntityDefinitions(LogicalName='nope')", &[]).unwrap_err();
        assert_eq!(missing.status, 404);
        let encoded = query("EntityDefinitions(LogicalName=%27account%27)", &[]).unwrap();
        assert_eq!(encoded["EntitySetName"], "accounts");
    }

    #[test]
    fn picklist_cast_with_option_set_expanded() {
        let body = query(
            "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
            &[("$select", "LogicalName"), ("$expand", "OptionSet($select=Options)")],
        )
        .unwrap();
        let value = body["value"].as_array().unwrap();
        assert_eq!(value.len(), 1, "{value:?}");
        assert_eq!(value[0]["LogicalName"], "industrycode");
        let options = value[0]["OptionSet"]["Options"].as_array().unwrap();
        assert_eq!(options[1]["Value"], 2);
        assert_eq!(
            options[1]["Label"]["LocalizedLabels"][0]["Label"],
            "Agriculture"
        );
        // statecode and statuscode are enums but not picklists.
        let enums = query(
            "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.EnumAttributeMetadata",
            &[],
        )
        .unwrap();
        assert_eq!(enums["value"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn one_attribute_with_its_type_and_a_wrong_cast_refused() {
        let a = query(
            "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')",
            &[],
        )
        .unwrap();
        assert_eq!(
            a["@odata.type"],
            "#Microsoft.Dynamics.CRM.StringAttributeMetadata"
        );
        assert_eq!(a["MaxLength"], 160);
        assert_eq!(a["IsPrimaryName"], true);
        let wrong = query(
            "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
            &[],
        )
        .unwrap_err();
        assert_eq!(wrong.status, 400);
    }

    #[test]
    fn relationships_declared_and_implicit_with_navigation_names() {
        let one_to_many = query(
            "EntityDefinitions(LogicalName='account')/OneToManyRelationships",
            &[],
        )
        .unwrap();
        let rels = one_to_many["value"].as_array().unwrap();
        let declared = rels
            .iter()
            .find(|r| r["SchemaName"] == "contact_customer_accounts")
            .unwrap();
        assert_eq!(
            declared["ReferencingEntityNavigationPropertyName"],
            "parentcustomerid_account"
        );
        // account.primarycontactid has no declared relationship: contact's side shows an implicit one.
        let many_to_one = query(
            "EntityDefinitions(LogicalName='account')/ManyToOneRelationships",
            &[],
        )
        .unwrap();
        assert_eq!(
            many_to_one["value"][0]["ReferencingEntityNavigationPropertyName"],
            "primarycontactid"
        );
        let n_n = query(
            "RelationshipDefinitions/Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata",
            &[],
        )
        .unwrap();
        assert_eq!(n_n["value"].as_array().unwrap().len(), 1);
        let by_name = query(
            "RelationshipDefinitions(SchemaName='contact_customer_accounts')",
            &[],
        )
        .unwrap();
        assert_eq!(by_name["ReferencedEntity"], "account");
        let keys = query("EntityDefinitions(LogicalName='account')/Keys", &[]).unwrap();
        assert_eq!(keys["value"], Json::Array(Vec::new()));
    }

    #[test]
    fn bad_options_and_segments_are_refused_by_name() {
        let e = query("EntityDefinitions", &[("$select", "LogicalName,Nope")]).unwrap_err();
        assert!(e.message.contains("'Nope'"), "{}", e.message);
        let e = query("EntityDefinitions", &[("$orderby", "LogicalName")]).unwrap_err();
        assert!(e.message.contains("$orderby"), "{}", e.message);
        let e = query("EntityDefinitions(LogicalName='account')/Columns", &[]).unwrap_err();
        assert_eq!(e.status, 404);
        let e = query("EntityDefinitions", &[("$filter", "Nope eq 1")]).unwrap_err();
        assert!(e.message.contains("'Nope'"), "{}", e.message);
    }

    #[test]
    fn message_filters_filter_through_their_message() {
        // As dataverse-api asks whether a table supports CreateMultiple.
        let body = query(
            "sdkmessagefilters",
            &[
                ("$select", "sdkmessagefilterid"),
                ("$expand", "sdkmessageid($select=name)"),
                (
                    "$filter",
                    "(sdkmessageid/name eq 'CreateMultiple' or sdkmessageid/name eq 'UpdateMultiple') and primaryobjecttypecode eq 'account'",
                ),
            ],
        )
        .unwrap();
        let rows = body["value"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["sdkmessageid"]["name"], "CreateMultiple");
        assert!(rows[0].get("primaryobjecttypecode").is_none());
        let e = query(
            "sdkmessagefilters",
            &[("$filter", "sdkmessageid/nope eq 'x'")],
        )
        .unwrap_err();
        assert!(e.message.contains("'nope'"), "{}", e.message);
    }

    #[test]
    fn csdl_declares_types_keys_navigation_and_operations() {
        let schema = schema();
        let ops = [Operation {
            name: "weft_Greet".into(),
            is_function: false,
            binding: OperationBinding::Unbound,
            parameters: vec![Parameter {
                name: "Name".into(),
                edm_type: "Edm.String",
                optional: false,
            }],
            returns: vec![Parameter {
                name: "Greeting".into(),
                edm_type: "Edm.String",
                optional: false,
            }],
        }];
        let x = csdl(Model {
            schema: &schema,
            operations: &ops,
            filters: &[],
        });
        for needle in [
            r#"<EntityType Name="account" BaseType="mscrm.crmbaseentity">"#,
            r#"<Key><PropertyRef Name="accountid"/></Key>"#,
            r#"<Property Name="_primarycontactid_value" Type="Edm.Guid"/>"#,
            r#"<NavigationProperty Name="primarycontactid" Type="mscrm.contact"/>"#,
            r#"<NavigationProperty Name="contact_customer_accounts" Type="Collection(mscrm.contact)"/>"#,
            r#"<NavigationProperty Name="parentcustomerid_account" Type="mscrm.account"/>"#,
            r#"<EntitySet Name="accounts" EntityType="Microsoft.Dynamics.CRM.account">"#,
            r#"<Action Name="weft_Greet" IsBound="false">"#,
            r#"<ActionImport Name="weft_Greet" Action="Microsoft.Dynamics.CRM.weft_Greet"/>"#,
            r#"<FunctionImport Name="WhoAmI""#,
        ] {
            assert!(x.contains(needle), "missing {needle} in\n{x}");
        }
    }
}
