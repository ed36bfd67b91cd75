//! Create/Retrieve/Update/Delete, SetState, Assign and relationships through the group-commit writer.

#[macro_use]
mod common;

use uuid::Uuid;
use weft_store::{Attributes, EntityRef, Query, Store, StoreError, StoreExt, Value};

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn count(store: &dyn weft_store::Store, table: &str) -> usize {
    store
        .read(|r| r.retrieve_multiple(&Query::new(table)))
        .map(|rows| rows.len())
        .expect("query runs")
}

/// Every attribute type round-trips through create and retrieve, in canonical form.
fn every_attribute_type_round_trips(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let contact = store
        .transact(|tx| {
            tx.create(
                "contact",
                None,
                attrs([("fullname", Value::String("Ana".into()))]),
            )
        })
        .unwrap();
    let external = Uuid::new_v4();
    let written = attrs([
        ("name", Value::String("Contoso".into())),
        ("description", Value::String("multi\nline ✓".into())),
        ("numberofemployees", Value::Integer(250)),
        ("bigcount", Value::BigInt(9_000_000_000)),
        ("ratio", Value::Double(0.25)),
        ("share", Value::Decimal("0012.5".into())),
        ("revenue", Value::Money("1000000.1234".into())),
        ("donotemail", Value::Boolean(true)),
        ("lastcontactedon", Value::DateTime(1_600_000_000_123)),
        ("externalid", Value::Guid(external)),
        (
            "primarycontactid",
            Value::EntityReference {
                logical_name: "contact".into(),
                id: contact,
            },
        ),
        ("industrycode", Value::OptionSetValue(2)),
        ("channels", Value::OptionSetValueCollection(vec![30, 10])),
        (
            "ownerid",
            Value::EntityReference {
                logical_name: "systemuser".into(),
                id: external,
            },
        ),
    ]);
    let id = store
        .transact(move |tx| tx.create("account", None, written))
        .unwrap();
    let row = store
        .read(|r| r.retrieve("account", id, None))
        .unwrap()
        .expect("row exists");
    assert_eq!(row.id, id);
    let a = &row.attributes;
    assert_eq!(a["accountid"], Value::Guid(id));
    assert_eq!(a["name"], Value::String("Contoso".into()));
    assert_eq!(a["description"], Value::String("multi\nline ✓".into()));
    assert_eq!(a["numberofemployees"], Value::Integer(250));
    assert_eq!(a["bigcount"], Value::BigInt(9_000_000_000));
    assert_eq!(a["ratio"], Value::Double(0.25));
    assert_eq!(a["share"], Value::Decimal("12.500".into()));
    assert_eq!(a["revenue"], Value::Money("1000000.1234".into()));
    assert_eq!(a["donotemail"], Value::Boolean(true));
    assert_eq!(a["lastcontactedon"], Value::DateTime(1_600_000_000_123));
    assert_eq!(a["externalid"], Value::Guid(external));
    assert_eq!(
        a["primarycontactid"],
        Value::EntityReference {
            logical_name: "contact".into(),
            id: contact
        }
    );
    assert_eq!(a["industrycode"], Value::OptionSetValue(2));
    assert_eq!(a["channels"], Value::OptionSetValueCollection(vec![30, 10]));
    assert_eq!(a["statecode"], Value::OptionSetValue(0), "default state");
    assert_eq!(
        a["statuscode"],
        Value::OptionSetValue(1),
        "first status of the default state"
    );
    assert_eq!(a["createdon"], Value::DateTime(1_700_000_000_000));
    assert_eq!(a["modifiedon"], Value::DateTime(1_700_000_000_000));
    // Column sets return only what was asked; nulls are omitted.
    let cols = vec!["name".to_string(), "ratio".to_string()];
    let partial = store
        .read(|r| r.retrieve("contact", contact, Some(&cols)))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        partial,
        StoreError::UnknownAttribute {
            table: "contact".into(),
            attribute: "name".into()
        }
    );
    let row = store
        .read(|r| r.retrieve("account", id, Some(&cols)))
        .unwrap()
        .unwrap();
    assert_eq!(row.attributes.keys().collect::<Vec<_>>(), ["name", "ratio"]);
}

/// Wrong types and out-of-range values are refused with a precise message and nothing is written.
fn type_errors_are_rejected_with_nothing_written(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let err = store
        .transact(|tx| {
            tx.create(
                "account",
                None,
                attrs([
                    ("name", Value::String("ok".into())),
                    ("revenue", Value::String("12".into())),
                ]),
            )
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "attribute `revenue` of table `account` expects Money, got String"
    );
    let cases: Vec<(Attributes, &str)> = vec![
        (
            attrs([("name", Value::String("x".repeat(21)))]),
            "attribute `name` of table `account`: 21 characters exceed the maximum length 20",
        ),
        (
            attrs([("numberofemployees", Value::Integer(-1))]),
            "attribute `numberofemployees` of table `account`: -1 is outside 0..=100000",
        ),
        (
            attrs([("share", Value::Decimal("1.2345".into()))]),
            "attribute `share` of table `account`: `1.2345` has 4 decimals, the column keeps 3",
        ),
        (
            attrs([("industrycode", Value::OptionSetValue(7))]),
            "attribute `industrycode` of table `account`: 7 is not one of the allowed options [1, 2]",
        ),
        (
            attrs([("channels", Value::OptionSetValueCollection(vec![10, 10]))]),
            "attribute `channels` of table `account`: option 10 appears twice",
        ),
        (
            attrs([("ratio", Value::Double(f64::NAN))]),
            "attribute `ratio` of table `account`: NaN is not a finite number",
        ),
        (
            attrs([
                ("statuscode", Value::OptionSetValue(2)),
                ("statecode", Value::OptionSetValue(0)),
            ]),
            "table `account`: status 2 belongs to state 1, not to state 0",
        ),
        (
            attrs([("createdon", Value::DateTime(5))]),
            "attribute `createdon` of table `account` is set by the platform and cannot be written",
        ),
        (
            attrs([("nosuch", Value::Integer(1))]),
            "attribute `nosuch` is not declared on table `account`",
        ),
        (
            attrs([(
                "primarycontactid",
                Value::EntityReference {
                    logical_name: "account".into(),
                    id: Uuid::nil(),
                },
            )]),
            "attribute `primarycontactid` of table `account`: cannot refer to table `account` (targets: [\"contact\"])",
        ),
    ];
    for (a, msg) in cases {
        let err = store
            .transact(move |tx| tx.create("account", None, a))
            .unwrap_err();
        assert_eq!(err.to_string(), msg);
    }
    let missing = Uuid::new_v4();
    let err = store
        .transact(move |tx| {
            tx.create(
                "contact",
                None,
                attrs([(
                    "parentcustomerid",
                    Value::EntityReference {
                        logical_name: "account".into(),
                        id: missing,
                    },
                )]),
            )
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "attribute `parentcustomerid` of table `contact` refers to account {missing}, which does not exist"
        )
    );
    assert_eq!(
        store
            .transact(|tx| tx.create("nosuch", None, Attributes::new()))
            .unwrap_err(),
        StoreError::UnknownTable("nosuch".into())
    );
    // A work that wrote one row and then failed leaves nothing behind.
    let err = store
        .transact(|tx| {
            tx.create(
                "account",
                None,
                attrs([("name", Value::String("first".into()))]),
            )?;
            tx.create("account", None, attrs([("revenue", Value::Integer(3))]))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::TypeMismatch { .. }));
    assert_eq!(count(&store, "account"), 0);
    assert_eq!(count(&store, "contact"), 0);
}

/// Update returns the pre-image of the changed attributes; delete returns the deleted row; ids are unique.
fn update_and_delete_return_pre_images(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::TestClock::new(1_000);
    let store = common::open_with_clock(backend, dir.path(), &clock);
    let id = Uuid::new_v4();
    let created = store
        .transact(move |tx| {
            tx.create(
                "account",
                Some(id),
                attrs([
                    ("name", Value::String("A".into())),
                    ("revenue", Value::Money("5".into())),
                ]),
            )
        })
        .unwrap();
    assert_eq!(created, id);
    let dup = store
        .transact(move |tx| tx.create("account", Some(id), Attributes::new()))
        .unwrap_err();
    assert_eq!(
        dup,
        StoreError::DuplicateId {
            table: "account".into(),
            id
        }
    );
    let version = |store: &dyn Store| match store
        .read(|r| r.retrieve("account", id, None))
        .unwrap()
        .unwrap()
        .attributes["versionnumber"]
    {
        Value::BigInt(v) => v,
        ref other => panic!("versionnumber is {other:?}"),
    };
    let created_version = version(&*store);
    // The write's microseconds (1 000 ms), with low digits from the row's identity.
    assert!(
        (1_000_000..1_001_000).contains(&created_version),
        "{created_version}"
    );
    clock.set(2_000);
    let previous = store
        .transact(move |tx| {
            tx.update(
                "account",
                id,
                attrs([
                    ("name", Value::String("B".into())),
                    ("ratio", Value::Double(1.5)),
                    ("accountid", Value::Guid(id)),
                ]),
            )
        })
        .unwrap();
    // The previous version always comes back: conditional writes are checked against it.
    assert_eq!(
        previous,
        attrs([
            ("name", Value::String("A".into())),
            ("ratio", Value::Null),
            ("versionnumber", Value::BigInt(created_version)),
        ])
    );
    let updated_version = version(&*store);
    assert!(updated_version > created_version);
    // A write in the same millisecond still raises the version.
    store
        .transact(move |tx| tx.update("account", id, attrs([("ratio", Value::Double(1.5))])))
        .unwrap();
    assert!(version(&*store) > updated_version);
    let err = store
        .transact(move |tx| tx.update("account", id, attrs([("versionnumber", Value::BigInt(1))])))
        .unwrap_err();
    assert!(err.to_string().contains("set by the platform"), "{err}");
    let row = store
        .read(|r| r.retrieve("account", id, None))
        .unwrap()
        .unwrap();
    assert_eq!(row.attributes["name"], Value::String("B".into()));
    assert_eq!(row.attributes["revenue"], Value::Money("5.0000".into()));
    assert_eq!(row.attributes["createdon"], Value::DateTime(1_000));
    assert_eq!(row.attributes["modifiedon"], Value::DateTime(2_000));
    let other = Uuid::new_v4();
    let err = store
        .transact(move |tx| tx.update("account", id, attrs([("accountid", Value::Guid(other))])))
        .unwrap_err();
    assert!(err.to_string().contains("cannot change the id"), "{err}");
    let err = store
        .transact(move |tx| tx.update("account", other, Attributes::new()))
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            table: "account".into(),
            id: other
        }
    );
    let deleted = store.transact(move |tx| tx.delete("account", id)).unwrap();
    assert_eq!(deleted.attributes["name"], Value::String("B".into()));
    assert_eq!(deleted.attributes["ratio"], Value::Double(1.5));
    assert_eq!(
        store.read(|r| r.retrieve("account", id, None)).unwrap(),
        None
    );
    assert_eq!(
        store
            .transact(move |tx| tx.delete("account", id))
            .unwrap_err(),
        StoreError::NotFound {
            table: "account".into(),
            id
        }
    );
}

/// SetState checks the state/status pairing and Assign sets the owner, both returning the previous values.
fn set_state_and_assign(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let id = store
        .transact(|tx| {
            tx.create(
                "account",
                None,
                attrs([("name", Value::String("A".into()))]),
            )
        })
        .unwrap();
    let mut prev = store
        .transact(move |tx| tx.set_state("account", id, 1, 2))
        .unwrap();
    assert!(matches!(
        prev.remove("versionnumber"),
        Some(Value::BigInt(_))
    ));
    assert_eq!(
        prev,
        attrs([
            ("statecode", Value::OptionSetValue(0)),
            ("statuscode", Value::OptionSetValue(1))
        ])
    );
    let err = store
        .transact(move |tx| tx.set_state("account", id, 0, 2))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "table `account`: status 2 belongs to state 1, not to state 0"
    );
    let err = store
        .transact(move |tx| tx.set_state("account", id, 5, 1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("5 is not one of the allowed options"),
        "{err}"
    );
    // Updating only the status derives the state.
    store
        .transact(move |tx| {
            tx.update(
                "account",
                id,
                attrs([("statuscode", Value::OptionSetValue(3))]),
            )
        })
        .unwrap();
    let row = store
        .read(|r| r.retrieve("account", id, None))
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            row.attributes["statecode"].clone(),
            row.attributes["statuscode"].clone()
        ),
        (Value::OptionSetValue(0), Value::OptionSetValue(3))
    );

    let user = EntityRef::new("systemuser", Uuid::new_v4());
    let team = EntityRef::new("team", Uuid::new_v4());
    let u = user.clone();
    let without_version = |mut prev: Attributes| {
        assert!(matches!(
            prev.remove("versionnumber"),
            Some(Value::BigInt(_))
        ));
        prev
    };
    assert_eq!(
        without_version(
            store
                .transact(move |tx| tx.assign("account", id, u))
                .unwrap()
        ),
        attrs([("ownerid", Value::Null)])
    );
    let t = team.clone();
    let mut prev = store
        .transact(move |tx| tx.assign("account", id, t))
        .unwrap();
    assert!(matches!(
        prev.remove("versionnumber"),
        Some(Value::BigInt(_))
    ));
    assert_eq!(
        prev,
        attrs([(
            "ownerid",
            Value::EntityReference {
                logical_name: "systemuser".into(),
                id: user.id
            }
        )])
    );
    let setting = store
        .transact(|tx| {
            tx.create(
                "setting",
                None,
                attrs([("name", Value::String("s".into()))]),
            )
        })
        .unwrap();
    let err = store
        .transact(move |tx| tx.assign("setting", setting, team))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "table `setting` is organization-owned: its rows cannot be assigned"
    );
}

/// N:N links live in the intersect table; 1:N links set and clear the lookup; both are refused when wrong.
fn associate_and_disassociate(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let (account, c1, c2) = store
        .transact(|tx| {
            let a = tx.create(
                "account",
                None,
                attrs([("name", Value::String("A".into()))]),
            )?;
            let c1 = tx.create(
                "contact",
                None,
                attrs([("fullname", Value::String("one".into()))]),
            )?;
            let c2 = tx.create(
                "contact",
                None,
                attrs([("fullname", Value::String("two".into()))]),
            )?;
            Ok::<_, StoreError>((a, c1, c2))
        })
        .unwrap();
    let a = EntityRef::new("account", account);
    let contacts = vec![EntityRef::new("contact", c1), EntityRef::new("contact", c2)];
    let mut expected = contacts.clone();
    expected.sort_by_key(|r| r.id.to_string());
    for rel in ["account_contacts_nn", "contact_customer_accounts"] {
        let (ta, tc) = (a.clone(), contacts.clone());
        store
            .transact(move |tx| tx.associate(rel, &ta, &tc))
            .unwrap();
        assert_eq!(
            store.read(|r| r.related(rel, &a)).unwrap(),
            expected,
            "{rel}"
        );
        assert_eq!(
            store.read(|r| r.related(rel, &contacts[0])).unwrap(),
            vec![a.clone()],
            "{rel}"
        );
        let (ta, tc) = (a.clone(), vec![contacts[0].clone()]);
        store
            .transact(move |tx| tx.disassociate(rel, &ta, &tc))
            .unwrap();
        assert_eq!(
            store.read(|r| r.related(rel, &a)).unwrap(),
            vec![contacts[1].clone()],
            "{rel}"
        );
    }
    let row = store
        .read(|r| r.retrieve("contact", c2, None))
        .unwrap()
        .unwrap();
    assert_eq!(
        row.attributes["parentcustomerid"],
        Value::EntityReference {
            logical_name: "account".into(),
            id: account
        }
    );
    // Twice associated, wrong table, unknown relationship, missing row.
    let (ta, tc) = (a.clone(), vec![contacts[1].clone()]);
    let err = store
        .transact(move |tx| tx.associate("account_contacts_nn", &ta, &tc))
        .unwrap_err();
    assert!(err.to_string().contains("already associated"), "{err}");
    let (ta, tc) = (a.clone(), vec![a.clone()]);
    let err = store
        .transact(move |tx| tx.associate("account_contacts_nn", &ta, &tc))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "relationship `account_contacts_nn` does not relate table `account` that way"
    );
    let ta = a.clone();
    let err = store
        .transact(move |tx| tx.associate("nope", &ta, &[]))
        .unwrap_err();
    assert_eq!(err, StoreError::UnknownRelationship("nope".into()));
    let ghost = EntityRef::new("contact", Uuid::new_v4());
    let (ta, tc) = (a.clone(), vec![ghost.clone()]);
    let err = store
        .transact(move |tx| tx.associate("account_contacts_nn", &ta, &tc))
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            table: "contact".into(),
            id: ghost.id
        }
    );
    let (ta, tc) = (a.clone(), vec![contacts[0].clone()]);
    let err = store
        .transact(move |tx| tx.disassociate("contact_customer_accounts", &ta, &tc))
        .unwrap_err();
    assert!(err.to_string().contains("is not associated"), "{err}");
    // Deleting a row removes its N:N links.
    store.transact(move |tx| tx.delete("contact", c2)).unwrap();
    assert_eq!(
        store
            .read(|r| r.related("account_contacts_nn", &a))
            .unwrap(),
        vec![]
    );
}

on_both_backends!(
    every_attribute_type_round_trips,
    type_errors_are_rejected_with_nothing_written,
    update_and_delete_return_pre_images,
    set_state_and_assign,
    associate_and_disassociate,
    alternate_keys_are_unique,
);

/// An alternate key's values identify one row: a second row with the same values (text compared ignoring
/// case) is refused with the key's name, on create and on update, and nothing of the refused operation is
/// written; a different value, or a null in the key, is accepted.
fn alternate_keys_are_unique(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let create = |name: &str, scope: Option<i32>| {
        let name = name.to_owned();
        store.transact(move |tx| {
            let mut a = attrs([("name", Value::String(name))]);
            if let Some(s) = scope {
                a.insert("scope".into(), Value::Integer(s));
            }
            tx.create("setting", None, a)
        })
    };
    let first = create("Theme", Some(1)).unwrap();
    create("Theme", Some(2)).unwrap();
    let dup = create("THEME", Some(1)).unwrap_err();
    assert_eq!(
        dup,
        StoreError::DuplicateKey {
            table: "setting".into(),
            key: "setting_name_scope".into()
        }
    );
    assert_eq!(dup.dataverse_code(), "0x80040237");
    // Nulls never collide (as Dataverse, where a key's columns may be empty).
    create("Theme", None).unwrap();
    create("Theme", None).unwrap();
    // An update onto another row's values is refused too, and the operation writes nothing.
    let other = create("Language", Some(1)).unwrap();
    let err = store
        .transact(move |tx| {
            tx.create(
                "setting",
                None,
                attrs([("name", Value::String("Written".into()))]),
            )?;
            tx.update(
                "setting",
                other,
                attrs([("name", Value::String("theme".into()))]),
            )
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err}");
    let written = store
        .read(|r| {
            r.retrieve_multiple(&Query::new("setting").filter(weft_store::Condition::Eq(
                "name".into(),
                Value::String("Written".into()),
            )))
        })
        .unwrap();
    assert!(written.is_empty(), "the refused operation wrote nothing");
    let row = store
        .read(|r| r.retrieve("setting", first, None))
        .unwrap()
        .unwrap();
    assert_eq!(row.attributes["name"], Value::String("Theme".into()));
}
