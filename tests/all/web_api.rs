//! The Web API's service-level resources and query options over real HTTP (and HTTPS) on loopback, with a
//! real runtime: `$metadata`, `EntityDefinitions`, `WhoAmI`, `$count`, `/$count`, `$expand` of lookups,
//! and `weft up`'s development certificate. No plug-ins: these are the API's own behaviours.

use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use std::net::SocketAddr;
use std::sync::Arc;
use weft_host::api::{self, ApiLimits, ApiServer};
use weft_host::pipeline::DEFAULT_USER_ID;
use weft_host::runtime::Runtime;

const TABLES: &str = r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"
  [[table.attribute]]
  logical_name = "industrycode"
  type = "Picklist"
  options = [{ value = 1, label = "Accounting" }, { value = 2, label = "Agriculture" }]
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
  [[table.attribute]]
  logical_name = "firstname"
  type = "String"
"#;

struct Env {
    dir: tempfile::TempDir,
    _server: ApiServer,
    base: String,
    client: reqwest::Client,
}

async fn start(tls: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, TABLES).unwrap();
    let data = dir.path().join("data");
    let opened = data.clone();
    let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &opened).unwrap())
        .await
        .map(Arc::new)
        .unwrap();
    let files = tls.then(|| api::development_certificate(&data).unwrap());
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, server) = api::serve_on(runtime, bind, None, ApiLimits::default(), files.as_ref())
        .await
        .unwrap();
    let mut client = reqwest::Client::builder();
    let scheme = match &files {
        Some(f) => {
            let ca = std::fs::read(f.trust.as_ref().unwrap()).unwrap();
            client = client.add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
            "https"
        }
        None => "http",
    };
    Env {
        dir,
        _server: server,
        base: format!("{scheme}://{addr}/api/data/v9.2"),
        client: client.build().unwrap(),
    }
}

impl Env {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut r = self.client.get(format!("{}/{path}", self.base));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Json {
        let (status, text) = self.get(path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn create(&self, set: &str, body: Json) -> String {
        let r = self
            .client
            .post(format!("{}/{set}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let location = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
        location[location.len() - 37..location.len() - 1].to_owned()
    }
}

fn error_code(text: &str) -> String {
    let body: Json = serde_json::from_str(text).unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn metadata_describes_the_declared_tables() {
    let env = start(false).await;
    let found = env
        .json("EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName%20eq%20'contact'")
        .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    assert_eq!(found["value"][0]["EntitySetName"], "contacts");
    let id = found["value"][0]["MetadataId"].as_str().unwrap().to_owned();
    let again = env
        .json(&format!("EntityDefinitions({id})?$select=LogicalName"))
        .await;
    assert_eq!(again["LogicalName"], "contact");
    let picklists = env
        .json("EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .await;
    assert_eq!(picklists["value"][0]["OptionSet"]["Options"][0]["Value"], 1);
    let rels = env
        .json("EntityDefinitions(LogicalName='contact')/OneToManyRelationships")
        .await;
    assert_eq!(
        rels["value"][0]["ReferencingEntityNavigationPropertyName"],
        "primarycontactid"
    );

    let (status, csdl) = env.get("$metadata", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        csdl.contains(r#"<EntityType Name="account" BaseType="mscrm.crmbaseentity">"#),
        "{csdl}"
    );
    assert!(csdl.contains(r#"<NavigationProperty Name="primarycontactid" Type="mscrm.contact"/>"#));

    let (status, text) = env.get("EntityDefinitions?$top=1", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("$top"), "{text}");
    let (status, _) = env.get("EntityDefinitions(LogicalName='nope')", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A table is created from its SchemaName (and a primary name column): without one, Dataverse's 400.
    let r = env
        .client
        .post(format!("{}/EntityDefinitions", env.base))
        .json(&json!({"LogicalName": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("0x80048d19") && text.contains("SchemaName"),
        "{text}"
    );
    let r = env
        .client
        .patch(format!(
            "{}/EntityDefinitions(LogicalName='account')",
            env.base
        ))
        .json(&json!({"DisplayName": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    let service = env.json("").await;
    assert!(
        service["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "accounts")
    );
}

#[tokio::test]
async fn whoami_names_the_caller() {
    let env = start(false).await;
    let me = env.json("WhoAmI").await;
    assert_eq!(me["UserId"], DEFAULT_USER_ID.to_string());
    assert!(me["BusinessUnitId"].as_str().is_some_and(|s| s.len() == 36));
    assert!(me["OrganizationId"].as_str().is_some_and(|s| s.len() == 36));
    let other = "00000000-0000-0000-0000-0000000000aa";
    let (status, text) = env.get("WhoAmI()", &[("MSCRMCallerID", other)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Json>(&text).unwrap()["UserId"],
        other
    );
}

#[tokio::test]
async fn count_pages_and_the_count_segment() {
    let env = start(false).await;
    for i in 0..7 {
        env.create(
            "accounts",
            json!({"name": format!("A{i}"), "industrycode": 1 + i % 2}),
        )
        .await;
    }
    let (status, text) = env
        .get(
            "accounts?$select=name&$count=true",
            &[("Prefer", "odata.maxpagesize=3")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let page: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(page["@odata.count"], 7);
    assert_eq!(page["value"].as_array().unwrap().len(), 3);
    let next = page["@odata.nextLink"].as_str().unwrap();
    let second: Json = env
        .client
        .get(next)
        .header("Prefer", "odata.maxpagesize=3")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["@odata.count"], 7);
    assert_eq!(second["value"].as_array().unwrap().len(), 3);

    let (status, n) = env.get("accounts/$count", &[]).await;
    assert_eq!((status, n.as_str()), (StatusCode::OK, "7"));
    let (_, n) = env
        .get("accounts/$count?$filter=industrycode%20eq%202", &[])
        .await;
    assert_eq!(n, "3");
    let (status, text) = env.get("accounts?$count=maybe", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&text), "0x80060888");
    let (status, _) = env.get("accounts/$count?$top=1", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn expand_follows_lookups_with_a_nested_select() {
    let env = start(false).await;
    let contact = env
        .create("contacts", json!({"lastname": "Cook", "firstname": "Ana"}))
        .await;
    let with = env
        .create(
            "accounts",
            json!({"name": "With", "primarycontactid@odata.bind": format!("/contacts({contact})")}),
        )
        .await;
    env.create("accounts", json!({"name": "Without"})).await;
    let rows = env
        .json("accounts?$select=name&$expand=primarycontactid($select=lastname)&$orderby=name")
        .await;
    let rows = rows["value"].as_array().unwrap();
    assert_eq!(rows[0]["name"], "With");
    assert_eq!(rows[0]["primarycontactid"]["lastname"], "Cook");
    assert_eq!(rows[0]["primarycontactid"]["contactid"], contact);
    assert!(rows[0]["primarycontactid"].get("firstname").is_none());
    // The lookup is read to follow it but written only when selected.
    assert!(rows[0].get("_primarycontactid_value").is_none());
    assert_eq!(rows[1]["primarycontactid"], Json::Null);
    let one = env
        .json(&format!("accounts({with})?$expand=primarycontactid"))
        .await;
    assert_eq!(one["primarycontactid"]["firstname"], "Ana");

    for bad in [
        "accounts?$expand=nope",
        "accounts?$expand=primarycontactid($filter=lastname%20eq%20'x')",
        "accounts?$expand=primarycontactid($select=nope)",
    ] {
        let (status, text) = env.get(bad, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
    }
}

#[tokio::test]
async fn https_with_the_development_certificate() {
    let env = start(true).await;
    assert!(env.base.starts_with("https://"));
    let me = env.json("WhoAmI").await;
    assert!(
        me["@odata.context"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    // Made once, kept: a second start uses the same certificate.
    let ca = env
        .dir
        .path()
        .join("data")
        .join(api::TLS_DEV_DIR)
        .join("ca.pem");
    let before = std::fs::read(&ca).unwrap();
    api::development_certificate(&env.dir.path().join("data")).unwrap();
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    // A client that does not trust the CA is refused.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{}/WhoAmI", env.base))
            .send()
            .await
            .is_err()
    );
}
