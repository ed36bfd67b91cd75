//! RetrieveMultiple: conditions (eq, ne, gt, lt, null, not-null, and/or), ordering, top, skip and column sets.

#[macro_use]
mod common;

use weft_store::{Attributes, Condition, Query, StoreError, StoreExt, Value};

fn seed(store: &dyn weft_store::Store) {
    store
        .transact(|tx| {
            for (name, employees, share, industry) in [
                ("alpha", Some(10), "2.5", Some(1)),
                ("Bravo", Some(200), "10", Some(2)),
                ("charlie", None, "9.75", None),
                ("delta", Some(50), "-1", Some(1)),
            ] {
                let mut a = Attributes::from([
                    ("name".to_string(), Value::String(name.into())),
                    ("share".to_string(), Value::Decimal(share.into())),
                ]);
                if let Some(e) = employees {
                    a.insert("numberofemployees".into(), Value::Integer(e));
                }
                if let Some(i) = industry {
                    a.insert("industrycode".into(), Value::OptionSetValue(i));
                }
                tx.create("account", None, a)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

fn names(store: &dyn weft_store::Store, q: Query) -> Vec<String> {
    store
        .read(|r| r.retrieve_multiple(&q))
        .unwrap()
        .into_iter()
        .map(|r| match r.attributes.get("name") {
            Some(Value::String(s)) => s.clone(),
            other => panic!("name is {other:?}"),
        })
        .collect()
}

fn q() -> Query {
    Query::new("account")
        .columns(["name", "numberofemployees"])
        .order_by("name", false)
}

/// Each condition operator selects exactly the matching rows; comparisons skip nulls as SQL does.
fn conditions_select_the_matching_rows(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    seed(&store);
    let emp = |v| Value::Integer(v);
    assert_eq!(
        names(
            &store,
            q().filter(Condition::Eq("numberofemployees".into(), emp(200)))
        ),
        ["Bravo"]
    );
    assert_eq!(
        names(
            &store,
            q().filter(Condition::Eq("name".into(), Value::String("BRAVO".into())))
        ),
        ["Bravo"],
        "case-insensitive"
    );
    assert_eq!(
        names(
            &store,
            q().filter(Condition::Ne("numberofemployees".into(), emp(200)))
        ),
        ["alpha", "delta"]
    );
    assert_eq!(
        names(
            &store,
            q().filter(Condition::Gt("numberofemployees".into(), emp(10)))
        ),
        ["Bravo", "delta"]
    );
    assert_eq!(
        names(
            &store,
            q().filter(Condition::Lt("numberofemployees".into(), emp(50)))
        ),
        ["alpha"]
    );
    assert_eq!(
        names(
            &store,
            q().filter(Condition::Null("numberofemployees".into()))
        ),
        ["charlie"]
    );
    assert_eq!(
        names(
            &store,
            q().filter(Condition::NotNull("industrycode".into()))
        ),
        ["alpha", "Bravo", "delta"]
    );
    assert_eq!(
        names(
            &store,
            q().filter(Condition::Gt("share".into(), Value::Decimal("9.5".into())))
        ),
        ["Bravo", "charlie"],
        "decimals compare as numbers, not text"
    );
    let and = Condition::And(vec![
        Condition::Eq("industrycode".into(), Value::OptionSetValue(1)),
        Condition::Gt("numberofemployees".into(), emp(20)),
    ]);
    assert_eq!(names(&store, q().filter(and)), ["delta"]);
    let or = Condition::Or(vec![
        Condition::Null("industrycode".into()),
        Condition::And(vec![
            Condition::Eq("industrycode".into(), Value::OptionSetValue(2)),
            Condition::Lt("share".into(), Value::Decimal("11".into())),
        ]),
    ]);
    assert_eq!(names(&store, q().filter(or)), ["Bravo", "charlie"]);
    assert!(names(&store, q().filter(Condition::Or(vec![]))).is_empty());
    assert_eq!(names(&store, q().filter(Condition::And(vec![]))).len(), 4);
}

/// Orders apply in sequence (numeric for decimals, case-insensitive for text) and top limits the rows.
fn order_and_top(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    seed(&store);
    assert_eq!(names(&store, q()), ["alpha", "Bravo", "charlie", "delta"]);
    assert_eq!(
        names(&store, Query::new("account").order_by("share", true)),
        ["Bravo", "charlie", "alpha", "delta"]
    );
    assert_eq!(
        names(
            &store,
            Query::new("account")
                .order_by("industrycode", false)
                .order_by("name", true)
                .top(3)
        ),
        ["charlie", "delta", "alpha"]
    );
    assert_eq!(names(&store, q().top(0)), Vec::<String>::new());
    let rows = store
        .read(|r| {
            r.retrieve_multiple(
                &Query::new("account")
                    .columns(["numberofemployees"])
                    .top(1)
                    .order_by("name", false),
            )
        })
        .unwrap();
    assert_eq!(rows[0].attributes.len(), 1, "only the selected column");
}

/// Malformed queries are refused with a precise message.
/// `skip` starts a page in the query's order, with or without `top`; past the end it is empty.
fn skip_pages_in_order(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    seed(&store);
    let page = |skip, top: Option<u32>| {
        let mut query = q();
        query.skip = skip;
        query.top = top;
        names(&store, query)
    };
    assert_eq!(page(1, Some(2)), ["Bravo", "charlie"]);
    assert_eq!(page(3, Some(2)), ["delta"]);
    assert_eq!(page(2, None), ["charlie", "delta"]);
    assert!(page(9, Some(2)).is_empty());
    assert_eq!(page(0, Some(1)), ["alpha"]);
}

fn bad_queries_are_refused(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let err = |query: Query| {
        store
            .read(|r| r.retrieve_multiple(&query))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(Query::new("nosuch")), "table `nosuch` is not declared");
    assert_eq!(
        err(Query::new("account").columns(["nope"])),
        "attribute `nope` is not declared on table `account`"
    );
    assert_eq!(
        err(Query::new("account").filter(Condition::Eq(
            "numberofemployees".into(),
            Value::String("5".into())
        ))),
        "attribute `numberofemployees` of table `account` expects Integer, got String"
    );
    assert_eq!(
        err(Query::new("account").filter(Condition::Gt("primarycontactid".into(), Value::Null))),
        "condition `primarycontactid gt null` on table `account`: use the null / not-null conditions"
    );
    assert_eq!(
        err(Query::new("account").filter(Condition::Lt("donotemail".into(), Value::Boolean(true)))),
        "condition `donotemail lt …` on table `account`: Boolean attributes cannot be compared with lt"
    );
    assert_eq!(
        err(Query::new("account").order_by("channels", false)),
        "cannot order table `account` by `channels`: MultiSelectPicklist attributes have no order"
    );
}

on_both_backends!(
    conditions_select_the_matching_rows,
    order_and_top,
    skip_pages_in_order,
    bad_queries_are_refused,
);
