//! Table declarations from TOML: the documented shape parses, and every invalid declaration gets a precise error.

mod common;

use weft_store::schema::{AttributeKind, Ownership};
use weft_store::{RelationshipDef, Schema};

fn table(attrs: &str) -> String {
    format!(
        "[[table]]\nlogical_name = \"account\"\nentity_set_name = \"accounts\"\nprimary_id_attribute = \"accountid\"\n\
         primary_name_attribute = \"name\"\n[[table.attribute]]\nlogical_name = \"name\"\ntype = \"String\"\n{attrs}"
    )
}

fn error(text: &str) -> String {
    Schema::from_toml_str("weft.toml", text)
        .expect_err("declaration must be refused")
        .to_string()
}

/// The fixture (every attribute type, both relationship kinds) parses and gains the platform attributes.
#[test]
fn documented_shape_parses_with_platform_attributes() {
    let s = common::schema();
    let account = s.table("account").unwrap();
    assert_eq!(
        s.table_by_entity_set("accounts")
            .map(|t| t.logical_name.as_str()),
        Some("account")
    );
    assert_eq!(
        account.attribute("accountid").unwrap().kind,
        AttributeKind::Uniqueidentifier
    );
    assert_eq!(
        account.attribute("share").unwrap().kind,
        AttributeKind::Decimal { precision: 3 }
    );
    assert_eq!(
        account.attribute("name").unwrap().kind,
        AttributeKind::String { max_length: 20 }
    );
    assert_eq!(
        account.attribute("description").unwrap().kind,
        AttributeKind::Memo { max_length: 2000 }
    );
    for platform in [
        "createdon",
        "modifiedon",
        "ownerid",
        "statecode",
        "statuscode",
    ] {
        assert!(account.attribute(platform).is_some(), "{platform} added");
    }
    let setting = s.table("setting").unwrap();
    assert_eq!(setting.ownership, Ownership::OrganizationOwned);
    assert!(setting.attribute("ownerid").is_none());
    assert!(matches!(
        s.relationship("contact_customer_accounts"),
        Some(RelationshipDef::OneToMany { .. })
    ));
}

/// A schema written back as TOML parses to the same schema.
#[test]
fn schema_round_trips_through_toml() {
    let s = common::schema();
    let text = s.to_toml_string().unwrap();
    let again = Schema::from_toml_str("written.toml", &text).unwrap();
    assert_eq!(again.tables(), s.tables());
    assert_eq!(again.relationships(), s.relationships());
    assert!(text.contains("type = \"MultiSelectPicklist\""), "{text}");
}

/// Each kind of invalid declaration is refused with the file, the entry and the reason.
#[test]
fn invalid_declarations_are_refused_precisely() {
    let cases: Vec<(String, &str)> = vec![
        (table("colour = \"red\"\n"), "unknown field `colour`"),
        (table("[[table.attribute]]\nlogical_name = \"name\"\ntype = \"Memo\"\n"), "weft.toml: table `account`: duplicate attribute `name`"),
        (
            "[[table]]\nlogical_name = \"account\"\nentity_set_name = \"accounts\"\nprimary_id_attribute = \"\"\nprimary_name_attribute = \"name\"\n".into(),
            "weft.toml: table `account`: primary id attribute missing",
        ),
        (
            "[[table]]\nlogical_name = \"account\"\nentity_set_name = \"accounts\"\nprimary_name_attribute = \"name\"\n".into(),
            "missing field `primary_id_attribute`",
        ),
        (
            "[[table]]\nlogical_name = \"account\"\nentity_set_name = \"accounts\"\nprimary_id_attribute = \"accountid\"\nprimary_name_attribute = \"name\"\n".into(),
            "weft.toml: table `account`: primary name attribute `name` is not declared among its attributes",
        ),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"Picklist\"\noptions = [{ value = 1, label = \"a\" }, { value = 1, label = \"b\" }]\n"), "attribute `x` (Picklist): duplicate option value 1"),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"Picklist\"\noptions = []\n"), "attribute `x` (Picklist): `options` must not be empty"),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"Integer\"\nmax_length = 5\n"), "attribute `x` (Integer): `max_length` does not apply to type Integer"),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"Integer\"\nmin_value = 5\nmax_value = 1\n"), "attribute `x` (Integer): min_value 5 is greater than max_value 1"),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"Text\"\n"), "attribute `x`: unknown type `Text`"),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"String\"\nmax_length = 5000\n"), "attribute `x` (String): max_length 5000 is outside 1..=4000"),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"Decimal\"\nprecision = 11\n"), "attribute `x` (Decimal): precision 11 is outside 0..=10"),
        (table("[[table.attribute]]\nlogical_name = \"x\"\ntype = \"Lookup\"\ntargets = [\"nowhere\"]\n"), "attribute `x` of table `account` targets `nowhere`, which is not a declared table"),
        (table("[[table.attribute]]\nlogical_name = \"Bad-Name\"\ntype = \"Boolean\"\n"), "attribute of table `account`: name `Bad-Name` is invalid"),
        (
            table("[[table.attribute]]\nlogical_name = \"statuscode\"\ntype = \"Status\"\noptions = [{ value = 1, label = \"a\", state = 7 }]\n"),
            "table `account`: status option 1 (a) belongs to state 7, which `statecode` does not declare",
        ),
        (
            table("[[table.attribute]]\nlogical_name = \"statuscode\"\ntype = \"Status\"\noptions = [{ value = 1, label = \"a\" }]\n"),
            "attribute `statuscode` (Status): option 1 needs the `state` it belongs to",
        ),
        (
            table("[[table.attribute]]\nlogical_name = \"statuscode\"\ntype = \"Status\"\noptions = [{ value = 1, label = \"a\", state = 0 }]\n"),
            "table `account`: state 1 has no status option in `statuscode`",
        ),
        (table("[[table.attribute]]\nlogical_name = \"createdon\"\ntype = \"String\"\n"), "table `account`: attribute `createdon` must be of type DateTime, not String"),
        (table("").replace("\"account\"", "\"asyncoperation\""), "table name `asyncoperation` is reserved for a system table"),
        (
            format!("{}\n[[relationship]]\nname = \"r\"\ntype = \"OneToMany\"\nreferenced_entity = \"account\"\nreferencing_entity = \"account\"\nreferencing_attribute = \"name\"\n", table("")),
            "relationship `r`: attribute `name` of table `account` is not a Lookup to `account`",
        ),
        (
            format!("{}\n[[relationship]]\nname = \"r\"\ntype = \"ManyToMany\"\nentity1 = \"account\"\nentity2 = \"lead\"\n", table("")),
            "relationship `r`: table `lead` is not declared",
        ),
        (format!("{0}\n{0}", table("")), "duplicate table `account`"),
    ];
    for (text, expected) in cases {
        let e = error(&text);
        assert!(e.starts_with("weft.toml: "), "error names the file: {e}");
        assert!(e.contains(expected), "expected `{expected}` in: {e}");
    }
}
