//! RetrieveMultiple: conditions (eq, ne, gt, lt, null, not-null, contains/begins-with/ends-with, and/or/not),
//! ordering, top, skip and column sets.

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

fn create_row(
    tx: &mut dyn weft_store::Tx,
    name: Option<&str>,
    employees: Option<i32>,
) -> Result<(), StoreError> {
    let mut a = Attributes::new();
    if let Some(n) = name {
        a.insert("name".into(), Value::String(n.into()));
    }
    if let Some(e) = employees {
        a.insert("numberofemployees".into(), Value::Integer(e));
    }
    tx.create("account", None, a).map(|_| ())
}

/// contains / begins-with / ends-with take the value literally (a `%`, `_` or `\\` in it is no wildcard),
/// fold ASCII case like eq, never match null; `Not` follows SQL's three-valued logic (a null attribute is
/// excluded by `Not(Eq)` as by `Ne`). An operation's own uncommitted rows (matched in memory) answer the
/// same as the committed ones (matched by the backend's SQL).
fn text_functions_and_not(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let rows: [(Option<&str>, Option<i32>); 6] = [
        (Some("50% off"), Some(10)),
        (Some("50 percent"), None),
        (Some("a_b"), Some(20)),
        (Some("axb"), None),
        (Some("back\\"), Some(30)),
        (None, Some(40)),
    ];
    store
        .transact(move |tx| {
            for (name, employees) in rows {
                create_row(tx, name, employees)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let queries = [
        Condition::Contains("name".into(), "50%".into()),
        Condition::Contains("name".into(), "OFF".into()),
        Condition::BeginsWith("name".into(), "a_".into()),
        Condition::EndsWith("name".into(), "\\".into()),
        Condition::Not(Box::new(Condition::Eq(
            "numberofemployees".into(),
            Value::Integer(10),
        ))),
        Condition::Not(Box::new(Condition::Contains("name".into(), "b".into()))),
        Condition::Not(Box::new(Condition::Or(vec![
            Condition::Null("name".into()),
            Condition::Gt("numberofemployees".into(), Value::Integer(15)),
        ]))),
    ];
    let names_of = |rows: Vec<weft_store::Row>| -> Vec<String> {
        let mut names: Vec<String> = rows
            .into_iter()
            .map(|r| match r.attributes.get("name") {
                Some(Value::String(s)) => s.clone(),
                _ => "<null>".into(),
            })
            .collect();
        names.sort();
        names
    };
    let query = |c: &Condition| Query::new("account").filter(c.clone());
    // Inside an operation that adds one row of its own: matched in memory, merged with committed rows.
    let seen = store
        .operate(None, |tx: &mut dyn weft_store::Tx| {
            create_row(tx, Some("new 50% deal"), None)?;
            queries
                .iter()
                .map(|c| tx.retrieve_multiple(&query(c)).map(names_of))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .unwrap();
    let committed: Vec<Vec<String>> = queries
        .iter()
        .map(|c| names_of(store.read(|r| r.retrieve_multiple(&query(c))).unwrap()))
        .collect();
    assert_eq!(seen, committed, "the operation saw what it committed");
    let expected: [&[&str]; 7] = [
        &["50% off", "new 50% deal"],
        &["50% off"],
        &["a_b"],
        &["back\\"],
        &["<null>", "a_b", "back\\"],
        &["50 percent", "50% off", "new 50% deal"],
        &["50% off"],
    ];
    for ((c, got), want) in queries.iter().zip(&committed).zip(expected) {
        assert_eq!(got, want, "{c:?}");
    }
    let err = store
        .read(|r| {
            r.retrieve_multiple(
                &Query::new("account")
                    .filter(Condition::Contains("numberofemployees".into(), "1".into())),
            )
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("apply to text attributes"),
        "{err}"
    );
}

on_both_backends!(
    text_functions_and_not,
    conditions_select_the_matching_rows,
    order_and_top,
    skip_pages_in_order,
    bad_queries_are_refused,
);
