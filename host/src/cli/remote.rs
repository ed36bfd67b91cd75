//! `weft exec --server URL`: one operation made against a running `weft up` over its Web API, exactly as
//! any Web API client makes it (POST/GET/PATCH/DELETE on `/api/data/v9.2/{entityset}`, Custom APIs as
//! actions or functions), with the `tag` query option, the bypass header and the bearer key.
//!
//! Owns the request building and printing of these calls; the JSON of rows and parameters is the API
//! module's (`crate::api`), never a copy. It must not open the store: the server holds the data.

use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use reqwest::Method;
use serde_json::Value as Json;

use super::data::{ExecArgs, Operation};
use crate::api::{self, body_object};
use crate::context;
use crate::registration::{Binding, CustomApiDecl, Registration};

/// A running weft's Web API and what every request carries.
pub(super) struct Remote {
    base: reqwest::Url,
    api_key: Option<String>,
    tag: Option<String>,
    bypass: Option<String>,
}

/// An answer: the status and the body as text, with the new row's URL for a Create.
struct Answer {
    status: reqwest::StatusCode,
    body: String,
    entity_id: Option<String>,
}

impl Remote {
    pub(super) fn new(
        server: &str,
        api_key: Option<String>,
        tag: &Option<String>,
        bypass: &Option<String>,
    ) -> anyhow::Result<Remote> {
        let base =
            reqwest::Url::parse(&format!("{}{}/", server.trim_end_matches('/'), api::PREFIX))
                .with_context(|| format!("--server `{server}` is not a URL"))?;
        Ok(Remote {
            base,
            api_key,
            tag: tag.clone(),
            bypass: bypass.clone(),
        })
    }

    /// Create, Retrieve, RetrieveMultiple, Update or Delete on the table `args.table`. `--attributes` is
    /// read as in-process (typed values) and written as the Web API's JSON (lookups as `@odata.bind`).
    pub(super) fn table_operation(
        &self,
        registration: &Registration,
        args: &ExecArgs,
        id: Option<uuid::Uuid>,
    ) -> anyhow::Result<ExitCode> {
        let table = registration.schema.table(&args.table).with_context(|| {
            format!(
                "{}: table `{}` is not declared",
                registration.file, args.table
            )
        })?;
        let set = &table.entity_set_name;
        let need_id = || id.context("this operation needs --id");
        let body = || -> anyhow::Result<String> {
            let text = args.attributes.as_deref().unwrap_or("{}");
            let json = serde_json::from_str(text).context("--attributes is not valid JSON")?;
            let entity = context::entity_from_json(&args.table, &json).context("--attributes")?;
            api::entity_to_body(&registration.schema, &entity)
                .map_err(|e| anyhow!("--attributes: {e}"))
        };
        let mut query = Vec::new();
        if let Some(columns) = &args.columns {
            query.push(("$select".to_owned(), columns.join(",")));
        }
        let (method, path, body) = match args.operation {
            Operation::Create => (Method::POST, set.clone(), Some(body()?)),
            Operation::Retrieve => (Method::GET, format!("{set}({})", need_id()?), None),
            Operation::RetrieveMultiple => {
                if let Some(top) = args.top {
                    query.push(("$top".to_owned(), top.to_string()));
                }
                (Method::GET, set.clone(), None)
            }
            Operation::Update => (
                Method::PATCH,
                format!("{set}({})", need_id()?),
                Some(body()?),
            ),
            Operation::Delete => (Method::DELETE, format!("{set}({})", need_id()?), None),
            Operation::CustomApi => bail!("a Custom API is not a table operation"),
        };
        let answer = self.send(method, &path, query, body, &[])?;
        if !answer.status.is_success() {
            return print_error(&answer);
        }
        match (args.operation, &answer.entity_id) {
            (Operation::Create, Some(url)) => {
                let id = url
                    .rsplit_once('(')
                    .and_then(|(_, rest)| rest.strip_suffix(')'))
                    .unwrap_or(url);
                println!("{}", serde_json::json!({ "id": id }));
            }
            (Operation::Update | Operation::Delete, _) => {
                println!("{}", serde_json::json!({"done": true}))
            }
            _ => {
                let json: Json = serde_json::from_str(&answer.body)
                    .with_context(|| format!("the answer is not JSON: {}", answer.body))?;
                println!("{}", without_annotations(json));
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A Custom API: a POST action or a GET function, bound or not; prints its response properties.
    pub(super) fn custom_api(
        &self,
        registration: &Registration,
        api: &CustomApiDecl,
        id: Option<uuid::Uuid>,
        parameters: Option<&str>,
    ) -> anyhow::Result<ExitCode> {
        let set = |t: &str| {
            registration
                .schema
                .table(t)
                .map(|d| d.entity_set_name.clone())
                .with_context(|| format!("bound table `{t}` is not declared"))
        };
        let name = &api.unique_name;
        let mut path = match (&api.binding, id) {
            (Binding::Global, _) => name.clone(),
            (Binding::Entity(t), Some(id)) => {
                format!("{}({id})/Microsoft.Dynamics.CRM.{name}", set(t)?)
            }
            (Binding::Entity(_), None) => bail!("{name} needs --id"),
            (Binding::EntityCollection(t), _) => {
                format!("{}/Microsoft.Dynamics.CRM.{name}", set(t)?)
            }
        };
        let text = parameters.unwrap_or("{}");
        let fields =
            body_object(text.as_bytes()).map_err(|e| anyhow!("--parameters: {}", e.message))?;
        let mut query = Vec::new();
        let body = if api.is_function {
            // Each argument goes as a parameter alias: the URL path stays free of quoting.
            let mut names = Vec::new();
            for (i, (k, v)) in fields.iter().enumerate() {
                names.push(format!("{k}=@p{i}"));
                query.push((format!("@p{i}"), odata_literal(v)));
            }
            path = format!("{path}({})", names.join(","));
            None
        } else {
            Some(Json::Object(fields).to_string())
        };
        let method = if api.is_function {
            Method::GET
        } else {
            Method::POST
        };
        let answer = self.send(method, &path, query, body, &[])?;
        if !answer.status.is_success() {
            return print_error(&answer);
        }
        let json: Json = serde_json::from_str(&answer.body).with_context(|| {
            format!("{}: the answer is not JSON: {}", answer.status, answer.body)
        })?;
        println!("{}", without_annotations(json));
        Ok(ExitCode::SUCCESS)
    }

    /// One request: `tag` joins the query, the bypass header and the bearer key are added.
    fn send(
        &self,
        method: Method,
        path: &str,
        mut query: Vec<(String, String)>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        let mut url = self.base.join(path).context("building the URL")?;
        if let Some(tag) = &self.tag {
            query.push(("tag".into(), tag.clone()));
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let shown = url.to_string();
        let mut request = reqwest::Client::new().request(method, url);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(bypass) = &self.bypass {
            request = request.header("MSCRM.BypassBusinessLogicExecution", bypass);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let r = request
                    .send()
                    .await
                    .with_context(|| format!("calling {shown}"))?;
                let status = r.status();
                let entity_id = r
                    .headers()
                    .get("OData-EntityId")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok(Answer {
                    status,
                    body: r.text().await?,
                    entity_id,
                })
            })
    }
}

impl Remote {
    /// `GET path` with formatted values (names of lookups and messages) annotated; an error answer is an
    /// error naming Dataverse's code and message.
    pub(super) fn get_json(&self, path: &str) -> anyhow::Result<Json> {
        let prefer = [(
            "Prefer",
            "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\"",
        )];
        json_answer(self.send(Method::GET, path, Vec::new(), None, &prefer)?)
    }

    /// `method path` with a JSON body; the answer's JSON (Null when it has none).
    pub(super) fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Json,
    ) -> anyhow::Result<Json> {
        let prefer = [("Prefer", "return=representation")];
        json_answer(self.send(method, path, Vec::new(), Some(body.to_string()), &prefer)?)
    }
}

fn json_answer(answer: Answer) -> anyhow::Result<Json> {
    if !answer.status.is_success() {
        bail!("{}", error_text(&answer));
    }
    Ok(serde_json::from_str(&answer.body).unwrap_or(Json::Null))
}

/// The API's error as one line: `error <code>: <message> (HTTP <status>)`.
fn error_text(answer: &Answer) -> String {
    let json: Json = serde_json::from_str(&answer.body).unwrap_or(Json::Null);
    format!(
        "error {}: {} (HTTP {})",
        json["error"]["code"].as_str().unwrap_or("?"),
        json["error"]["message"].as_str().unwrap_or(&answer.body),
        answer.status
    )
}

/// Prints the API's error; the command fails.
fn print_error(answer: &Answer) -> anyhow::Result<ExitCode> {
    println!("{}", error_text(answer));
    Ok(ExitCode::FAILURE)
}

/// The answer without OData annotations (`@odata.context`, …): the data only.
fn without_annotations(mut json: Json) -> Json {
    if let Some(o) = json.as_object_mut() {
        o.retain(|k, _| !k.starts_with('@'));
    }
    json
}

/// An OData URL literal for a JSON parameter value (text quoted, quotes doubled; the rest as JSON).
fn odata_literal(value: &Json) -> String {
    match value {
        Json::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    }
}
