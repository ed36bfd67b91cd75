//! An enricher: in PreOperation (20) it sets the account number of a new
//! account when the caller gave none, so the value is saved with the row in the
//! same transaction. Also the plug-in the sandbox benchmark's "step" runs:
//! read the Target, set one attribute, one trace, return.

use weft_sdk::{Context, Plugin, PluginError, Services};

/// Sets `accountnumber` from the name when it is missing.
pub struct Enricher;

/// `ACC-` and the upper-cased initials of the name's words, then a checksum of
/// the whole name so different names with the same initials differ.
pub fn account_number(name: &str) -> String {
    let initials: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .flat_map(char::to_uppercase)
        .collect();
    let sum = name.bytes().fold(0u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    format!("ACC-{initials}-{:05}", sum % 100_000)
}

impl Plugin for Enricher {
    fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError> {
        let Some(target) = ctx.target() else {
            return Ok(());
        };
        if target.contains("accountnumber") {
            return Ok(());
        }
        let number = account_number(target.get_str("name").unwrap_or(""));
        services.trace(format!("Enricher: accountnumber = {number}"));
        if let Some(target) = ctx.target_mut() {
            target.set("accountnumber", number);
        }
        Ok(())
    }
}

weft_sdk::export_plugin!(Enricher);

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{ContextBuilder, TestHost};
    use weft_sdk::{Entity, Stage};

    /// A missing account number is derived from the name and the change is
    /// reported as an InputParameters change.
    #[test]
    fn sets_missing_account_number() {
        let mut a = Entity::new("account");
        a.set("name", "Fourth Coffee");
        let mut ctx = ContextBuilder::new("Create", "account")
            .stage(Stage::PreOperation)
            .target(a)
            .build();
        let host = TestHost::new();
        host.run::<Enricher>(&mut ctx).unwrap();
        let number = ctx.target().unwrap().get_str("accountnumber").unwrap();
        assert!(number.starts_with("ACC-FC-"), "{number}");
        assert!(ctx.input_parameters_changed());
        assert_eq!(host.traces().len(), 1);
    }

    /// A caller-supplied account number is kept.
    #[test]
    fn keeps_given_account_number() {
        let mut a = Entity::new("account");
        a.set("name", "Fourth Coffee");
        a.set("accountnumber", "X-1");
        let mut ctx = ContextBuilder::new("Create", "account").target(a).build();
        TestHost::new().run::<Enricher>(&mut ctx).unwrap();
        assert_eq!(ctx.target().unwrap().get_str("accountnumber"), Some("X-1"));
        assert!(!ctx.input_parameters_changed());
    }

    /// Different names with the same initials get different numbers.
    #[test]
    fn numbers_differ_for_same_initials() {
        assert_ne!(account_number("Fourth Coffee"), account_number("Fine Cars"));
    }
}
