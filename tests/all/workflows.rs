//! Background workflows end to end: an operation through the pipeline queues the workflow's system job
//! (operation type 10) in its transaction, the asynchronous service runs it with the host's runner, and
//! its custom activity (the Azure-aware example's `PostContext`, in the sandbox) posts the workflow's
//! context over real HTTP to a real weft bus queue or a webhook served here.

use crate::delivery::{
    CONTACT_TABLE, Env, Hook, env, free_addr, header, only_job, receive, start_bus,
};
use crate::fixtures;
use axum::http::StatusCode;
use weft_host::registration::{EXAMPLE_ACCOUNT_TABLE, derived_id};
use weft_host::runtime::Runtime;
use weft_store::system::JobStatus;
use weft_store::{Query, Read, StoreExt};

/// A workflow on Create of account: when the account has a name, post the context to `endpoint` with the
/// Azure-aware activity, then write the listener's answer into `accountnumber` and stamp `emailaddress1`.
/// Names without a name are canceled.
fn post_workflow(endpoint: &str) -> String {
    format!(
        r#"
[[workflow]]
name = "Post new accounts"
table = "account"
on = ["create"]

  [[workflow.step]]
  kind = "condition"
  when = [{{ attribute = "name", operator = "not_null" }}]

    [[workflow.step.then]]
    kind = "create"
    table = "contact"
    values = {{ lastname = {{ attribute = "name" }} }}

    [[workflow.step.then]]
    kind = "activity"
    plugin = "azure-aware"
    activity = "PostContext"
    inputs = {{ ServiceEndpoint = "serviceendpoint:{}" }}
    outputs = {{ Response = "answer" }}

    [[workflow.step.then]]
    kind = "update"
    values = {{ accountnumber = {{ variable = "answer" }}, emailaddress1 = "posted@example.com" }}

    [[workflow.step.otherwise]]
    kind = "stop"
    status = "canceled"
    message = "Accounts without a name are not posted."
"#,
        derived_id("serviceendpoint", endpoint)
    )
}

fn contacts(env: &Env) -> usize {
    env.store()
        .read(|r: &dyn Read| r.retrieve_multiple(&Query::new("contact")))
        .unwrap()
        .len()
}

fn account_column(env: &Env, id: uuid::Uuid, column: &str) -> weft_store::Value {
    env.store()
        .read(|r: &dyn Read| r.retrieve("account", id, None))
        .unwrap()
        .expect("the account exists")
        .attributes
        .get(column)
        .cloned()
        .unwrap_or(weft_store::Value::Null)
}

/// Create → a Workflow system job (type 10) → the activity posts the workflow's context to the queue: the
/// listener reads a RemoteExecutionContext as from a plug-in (OperationId = the job, OwningExtension = the
/// workflow); the later steps ran (a contact created, the account updated) and the job Succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_activity_posts_the_context_to_the_queue() {
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = start_bus("127.0.0.1:0".parse().unwrap(), bus_dir.path()).await;
    let env = env(
        bus.local_addr(),
        "http://127.0.0.1:9/hook",
        &post_workflow("queue"),
    )
    .await;
    let account = env.create(Some("Fourth Coffee")).await.unwrap();
    let job = only_job(&env);
    assert_eq!(job.operation_type, 10);
    assert_eq!(job.name, "Post new accounts");
    let workflow_id = weft_workflows::id_for("Post new accounts");
    assert_eq!(job.owning_extension_id, Some(workflow_id));
    let service = env.jobs();
    let done = env
        .wait_job(job.id, |j| {
            j.status.state() == weft_store::system::JobState::Completed
        })
        .await;
    service.shutdown().await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");

    let r = receive(bus.local_addr(), 5).await;
    assert_eq!(r.status(), 200);
    let broker: serde_json::Value = serde_json::from_str(&header(&r, "BrokerProperties")).unwrap();
    let content_type = header(&r, "Content-Type");
    let body = r.bytes().await.unwrap();
    let ctx = weft_message::parse(&body, &content_type).unwrap();
    assert_eq!(ctx.operation_id, job.id);
    assert_eq!(broker["MessageId"], job.id.to_string());
    assert_eq!(ctx.primary_entity_id, account);
    assert_eq!(
        (ctx.message_name.as_str(), ctx.mode, ctx.stage),
        ("Create", 1, 40)
    );
    let owner = ctx.owning_extension.as_ref().expect("an OwningExtension");
    assert_eq!(owner.id, workflow_id);
    assert_eq!(owner.logical_name.as_deref(), Some("workflow"));
    assert_eq!(
        receive(bus.local_addr(), 1).await.status(),
        204,
        "exactly one post"
    );

    assert_eq!(contacts(&env), 1);
    // The queue (one-way) answers nothing: the activity's Response output is the empty string.
    assert_eq!(
        account_column(&env, account, "accountnumber"),
        weft_store::Value::String(String::new())
    );
    assert_eq!(
        account_column(&env, account, "emailaddress1"),
        weft_store::Value::String("posted@example.com".into())
    );
    let attempts = env.attempts(job.id);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(
        attempts[0].entry.endpoint_id,
        Some(derived_id("serviceendpoint", "queue"))
    );
    assert_eq!(attempts[0].entry.http_status, Some(201));
    // The activity's run is in the trace log, under the workflow.
    let traces = env.traces();
    assert!(
        traces.iter().any(|t| t.entry.step_id == Some(workflow_id)
            && t.entry
                .trace
                .contains("Workflow \"Post new accounts\": posting")),
        "{traces:?}"
    );
    bus.shutdown().await.unwrap();
}

/// A webhook answering 503 fails the activity's post: the job waits and retries, the retry posts again and
/// succeeds — and the Create step before the activity did not create its row twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_activity_post_is_retried_without_repeating_earlier_writes() {
    let (hook, url) = Hook::start(&[StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK]).await;
    let env = env(free_addr(), &url, &post_workflow("hook")).await;
    env.create(Some("Retry Co")).await.unwrap();
    let job = only_job(&env);
    let service = env.jobs();
    let done = env
        .wait_job(job.id, |j| {
            j.status.state() == weft_store::system::JobState::Completed
        })
        .await;
    service.shutdown().await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let attempts = env.attempts(job.id);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].entry.outcome, "webhook-gateway");
    assert_eq!(attempts[0].entry.http_status, Some(503));
    assert_eq!(attempts[1].entry.http_status, Some(200));
    let seen = hook.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let ctx = weft_message::parse(&request.body, "application/json").unwrap();
        assert_eq!(ctx.operation_id, job.id);
    }
    assert_eq!(contacts(&env), 1, "the retry found the contact created");
}

/// Stop with status Canceled ends the job Completed / Canceled with the step's message; nothing is posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_step_cancels_the_job() {
    let (hook, url) = Hook::start(&[StatusCode::OK]).await;
    let env = env(free_addr(), &url, &post_workflow("hook")).await;
    env.create(None).await.unwrap();
    let job = only_job(&env);
    let service = env.jobs();
    let done = env
        .wait_job(job.id, |j| {
            j.status.state() == weft_store::system::JobState::Completed
        })
        .await;
    service.shutdown().await;
    assert_eq!(done.status, JobStatus::Canceled, "{done:?}");
    assert_eq!(
        done.message.as_deref(),
        Some("Accounts without a name are not posted.")
    );
    assert!(hook.requests().is_empty());
    assert_eq!(env.attempts(job.id)[0].entry.outcome, "canceled");
}

/// A workflow whose activity the component does not hold stops the start, naming the workflow, the step
/// and the types the component does hold.
#[test]
fn an_unknown_activity_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    let bad =
        post_workflow("hook").replace("activity = \"PostContext\"", "activity = \"PostContxt\"");
    std::fs::write(
        &config,
        format!(
            "{EXAMPLE_ACCOUNT_TABLE}\n{CONTACT_TABLE}\n[[plugin]]\nname = \"azure-aware\"\ncomponent = \"{}\"\n\
             [[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\nauth_type = 4\n\
             url = \"http://127.0.0.1:9/hook\"\nauth_value = \"k\"\n{bad}",
            fixtures::component("azure-aware").display()
        ),
    )
    .unwrap();
    let error = match Runtime::open(&config, &dir.path().join("data")) {
        Ok(_) => panic!("the runtime opened"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains(
            "workflow \"Post new accounts\", step 1 (condition) → then step 2 (activity): plug-in \
             `azure-aware` holds no activity type `PostContxt` (it holds PostContext)"
        ),
        "{error}"
    );
}
