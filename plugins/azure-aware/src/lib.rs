//! The seed's custom Azure-aware plug-in (Dataverse's "write a custom
//! Azure-aware plug-in" sample, in Rust): reads the service endpoint id from the
//! step's unsecure configuration, traces, posts the execution context through
//! the notification service, and traces the listener's answer.

use weft_sdk::{Context, Guid, Plugin, PluginError, Services};

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

weft_sdk::export_plugin!(AzureAware);

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
