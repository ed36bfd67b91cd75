//! A validator: rejects accounts that break simple rules, with an
//! InvalidPluginExecution-style message the caller sees verbatim. Register it on
//! Create/Update of `account` in PreValidation (10) or PreOperation (20).

use weft_sdk::{Context, Plugin, PluginError, Services};

/// Rejects an account without a name, with a malformed e-mail address or a
/// negative credit limit.
pub struct Validator;

impl Plugin for Validator {
    fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError> {
        let Some(target) = ctx.target() else {
            return Err(PluginError::new(
                "Validator: the request has no Target entity.",
            ));
        };
        let creating = ctx.message_name() == "Create";
        match target.get_str("name") {
            Some(name) if !name.trim().is_empty() => {}
            None if !creating && !target.contains("name") => {}
            _ => return Err(PluginError::new("Account name is required.")),
        }
        if let Some(email) = target.get_str("emailaddress1") {
            let valid = email
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
            if !valid {
                return Err(PluginError::new(format!(
                    "'{email}' is not a valid e-mail address."
                )));
            }
        }
        if let Some(limit) = target.get_decimal("creditlimit")
            && limit.trim_start().starts_with('-')
        {
            return Err(PluginError::new("Credit limit cannot be negative."));
        }
        services.trace("Validator: account is valid.");
        Ok(())
    }
}

weft_sdk::export_plugin!(Validator);

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{ContextBuilder, TestHost};
    use weft_sdk::{Entity, Stage, Value};

    fn run(target: Entity, message: &str) -> Result<(), PluginError> {
        let mut ctx = ContextBuilder::new(message, "account")
            .stage(Stage::PreValidation)
            .target(target)
            .build();
        TestHost::new().run::<Validator>(&mut ctx)
    }

    /// A good account passes.
    #[test]
    fn accepts_valid_account() {
        let mut a = Entity::new("account");
        a.set("name", "Contoso");
        a.set("emailaddress1", "info@contoso.com");
        assert!(run(a, "Create").is_ok());
    }

    /// Each rule gives its own message.
    #[test]
    fn rejects_each_rule_with_its_message() {
        let mut a = Entity::new("account");
        a.set("name", " ");
        assert_eq!(
            run(a, "Create").unwrap_err().message,
            "Account name is required."
        );

        let mut b = Entity::new("account");
        b.set("name", "Contoso");
        b.set("emailaddress1", "nobody");
        assert!(run(b, "Create").unwrap_err().message.contains("'nobody'"));

        let mut c = Entity::new("account");
        c.set("name", "Contoso");
        c.set("creditlimit", Value::Money("-1.00".into()));
        assert_eq!(
            run(c, "Create").unwrap_err().message,
            "Credit limit cannot be negative."
        );
    }

    /// An Update that does not touch the name is not rejected for it.
    #[test]
    fn update_without_name_passes() {
        let mut a = Entity::new("account");
        a.set("telephone1", "555");
        assert!(run(a, "Update").is_ok());
    }
}
