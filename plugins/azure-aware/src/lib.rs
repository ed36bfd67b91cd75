//! The seed's custom Azure-aware plug-in (Dataverse's "write a custom
//! Azure-aware plug-in" sample, in Rust): reads the service endpoint id from the
//! step's unsecure configuration, traces, posts the execution context through
//! the notification service, and traces the listener's answer.
//!
//! The same component holds the Azure-aware custom workflow activity
//! (Dataverse's "AzureAwareWorkflowActivity" sample): [`PostContext`] posts the
//! workflow's execution context to the service endpoint bound to its
//! `ServiceEndpoint` input and returns the listener's answer as `Response`.

use weft_sdk::{
    Activity, ArgumentSpec, ArgumentType, Arguments, Context, Guid, Plugin, PluginError, Services,
    WorkflowContext,
};

/// Posts the context to the service endpoint named in the unsecure configuration.
pub struct AzureAware;

impl Plugin for AzureAware {
    fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError> {
        let config = services.unsecure_config().ok_or_else(|| {
            PluginError::new(
                "AzureAware: the step's unsecure configuration must hold the service endpoint id \
                 (a GUID); it is empty.",
            )
        })?;
        let endpoint: Guid = config.trim().parse().map_err(|e| {
            PluginError::new(format!(
                "AzureAware: the step's unsecure configuration is not a service endpoint id: {e}"
            ))
        })?;
        services.trace(format!(
            "Posting the execution context of {} {} to service endpoint {endpoint}.",
            ctx.message_name, ctx.primary_entity_name
        ));
        let response = services.notify(endpoint, ctx)?;
        if response.is_empty() {
            services.trace("Posted; the endpoint returned no response.");
        } else {
            services.trace(format!("Response: {response}"));
        }
        Ok(())
    }
}

/// Custom workflow activity: posts the workflow's context to the service
/// endpoint bound to `ServiceEndpoint` (an entity reference to a
/// `serviceendpoint` row) and returns the listener's answer as `Response`.
pub struct PostContext;

impl Activity for PostContext {
    fn inputs() -> Vec<ArgumentSpec> {
        vec![
            ArgumentSpec::new("ServiceEndpoint", ArgumentType::EntityReference)
                .required()
                .reference_target("serviceendpoint"),
        ]
    }

    fn outputs() -> Vec<ArgumentSpec> {
        vec![ArgumentSpec::new("Response", ArgumentType::String)]
    }

    fn execute(
        ctx: &mut Context,
        workflow: &WorkflowContext,
        inputs: &Arguments,
        outputs: &mut Arguments,
        services: &Services,
    ) -> Result<(), PluginError> {
        let endpoint = inputs
            .get_reference("ServiceEndpoint")
            .ok_or_else(|| PluginError::new("PostContext: the ServiceEndpoint input is not bound"))?
            .id;
        services.trace(format!(
            "Workflow \"{}\": posting the execution context of {} {} to service endpoint {endpoint}.",
            workflow.workflow_name, ctx.message_name, ctx.primary_entity_name
        ));
        let response = services.notify(endpoint, ctx)?;
        services.trace(format!("Response: {response}"));
        outputs.set("Response", response);
        Ok(())
    }
}

weft_sdk::export_component!(plugins: [AzureAware], activities: [PostContext]);

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::ServiceErrorKind;
    use weft_sdk::testing::{ContextBuilder, TestHost};

    const ENDPOINT: &str = "c0ffee00-0000-4000-8000-000000000001";

    /// The context goes to the configured endpoint and the answer is traced.
    #[test]
    fn posts_and_traces_the_response() {
        let endpoint: Guid = ENDPOINT.parse().unwrap();
        let host = TestHost::new()
            .unsecure_config(ENDPOINT)
            .respond(endpoint, "Success");
        let mut ctx = ContextBuilder::new("Create", "account").build();
        host.run::<AzureAware>(&mut ctx).unwrap();
        assert_eq!(host.posts().len(), 1);
        assert_eq!(host.posts()[0].endpoint, endpoint);
        assert_eq!(host.traces().last().unwrap(), "Response: Success");
    }

    /// Missing configuration fails clearly, before any post.
    #[test]
    fn missing_configuration_fails_clearly() {
        let host = TestHost::new();
        let mut ctx = ContextBuilder::new("Create", "account").build();
        let err = host.run::<AzureAware>(&mut ctx).unwrap_err();
        assert!(err.message.contains("unsecure configuration"), "{err}");
        assert!(host.posts().is_empty());
    }

    /// Malformed configuration names the problem.
    #[test]
    fn malformed_configuration_fails_clearly() {
        let host = TestHost::new().unsecure_config("not-a-guid");
        let mut ctx = ContextBuilder::new("Create", "account").build();
        let err = host.run::<AzureAware>(&mut ctx).unwrap_err();
        assert!(err.message.contains("not a service endpoint id"), "{err}");
    }

    fn endpoint_input() -> Arguments {
        let mut inputs = Arguments::new();
        inputs.set(
            "ServiceEndpoint",
            weft_sdk::EntityReference::new("serviceendpoint", ENDPOINT.parse().unwrap()),
        );
        inputs
    }

    /// The activity posts the workflow's context to the bound endpoint and returns the answer.
    #[test]
    fn the_activity_posts_and_returns_the_response() {
        let endpoint: Guid = ENDPOINT.parse().unwrap();
        let host = TestHost::new().respond(endpoint, "Accepted");
        let mut ctx = ContextBuilder::new("Create", "account").build();
        let workflow = WorkflowContext {
            workflow_name: "Post new accounts".into(),
            ..WorkflowContext::default()
        };
        let out = host
            .run_activity::<PostContext>(&mut ctx, &workflow, &endpoint_input())
            .unwrap();
        assert_eq!(out.get_str("Response"), Some("Accepted"));
        assert_eq!(host.posts().len(), 1);
        assert_eq!(host.posts()[0].endpoint, endpoint);
        assert!(
            host.traces()[0].starts_with("Workflow \"Post new accounts\""),
            "{:?}",
            host.traces()
        );
    }

    /// Without its required input the activity is refused before it runs.
    #[test]
    fn the_activity_needs_its_endpoint() {
        let host = TestHost::new();
        let mut ctx = ContextBuilder::new("Create", "account").build();
        let err = host
            .run_activity::<PostContext>(&mut ctx, &WorkflowContext::default(), &Arguments::new())
            .unwrap_err();
        assert!(err.message.contains("ServiceEndpoint"), "{err}");
        assert!(host.posts().is_empty());
    }

    /// A failed post fails the activity (the system job retries it).
    #[test]
    fn the_activity_fails_when_the_post_fails() {
        let endpoint: Guid = ENDPOINT.parse().unwrap();
        let host = TestHost::new().fail(endpoint, ServiceErrorKind::Unavailable);
        let mut ctx = ContextBuilder::new("Create", "account").build();
        let err = host
            .run_activity::<PostContext>(&mut ctx, &WorkflowContext::default(), &endpoint_input())
            .unwrap_err();
        assert!(err.message.starts_with("unavailable"), "{err}");
    }

    /// A failed post fails the plug-in with the service's message.
    #[test]
    fn failed_post_fails_the_plugin() {
        let endpoint: Guid = ENDPOINT.parse().unwrap();
        let host = TestHost::new()
            .unsecure_config(ENDPOINT)
            .fail(endpoint, ServiceErrorKind::Unavailable);
        let mut ctx = ContextBuilder::new("Create", "account").build();
        let err = host.run::<AzureAware>(&mut ctx).unwrap_err();
        assert!(err.message.starts_with("unavailable"), "{err}");
    }
}
