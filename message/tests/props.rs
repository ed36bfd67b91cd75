//! Property tests: arbitrary contexts (every value type, nesting, ParentContext,
//! unicode, extreme numbers and dates) through every format.

use proptest::prelude::*;
use uuid::Uuid;
use weft_message::*;

fn guid() -> BoxedStrategy<Uuid> {
    any::<u128>().prop_map(Uuid::from_u128).boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z_]{0,12}",
        any::<String>(),
        Just("/Date(0)/".to_string()),
        Just("a<b>&\"c'\r\n\t]]>".to_string()),
    ]
    .boxed()
}

fn decimal() -> BoxedStrategy<Decimal> {
    "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,10})?"
        .prop_map(|s| Decimal::parse(&s).expect("valid decimal"))
        .boxed()
}

/// The local zone of generated local-kind dates. Binary carries a local
/// date's instant only and JSON writes unspecified dates as local time, so
/// every format agrees only for readers and writers in one zone: UTC, like
/// Dataverse's servers. (Other offsets: the golden and .NET tests.)
const ZONE: i16 = 0;

fn date() -> BoxedStrategy<DateTime> {
    (
        prop_oneof![
            -62_135_596_800_000i64..=253_402_300_799_999,
            Just(-62_135_596_800_000i64),
            Just(253_402_300_799_999i64),
            Just(0i64)
        ],
        0..3u8,
    )
        .prop_map(|(ms, kind)| match kind {
            0 => DateTime::utc(ms),
            1 => DateTime::unspecified(ms),
            _ => DateTime::local(ms, ZONE),
        })
        .boxed()
}

fn finite_double() -> BoxedStrategy<f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |d| d.is_finite()),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(1e15),
        Just(1e-5)
    ]
    .boxed()
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn entity_reference() -> BoxedStrategy<EntityReference> {
    (
        guid(),
        opt_text(),
        opt_text(),
        proptest::option::of("[0-9]{1,8}"),
        prop::collection::vec(
            (
                "[a-z]{1,8}",
                prop_oneof![
                    any::<i32>().prop_map(Value::Int),
                    text().prop_map(Value::String)
                ],
            ),
            0..2,
        ),
    )
        .prop_map(
            |(id, logical_name, name, row_version, key_attributes)| EntityReference {
                id,
                key_attributes,
                logical_name,
                name,
                row_version,
            },
        )
        .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        finite_double().prop_map(Value::Double),
        decimal().prop_map(Value::Decimal),
        decimal().prop_map(Value::Money),
        text().prop_map(Value::String),
        date().prop_map(Value::DateTime),
        guid().prop_map(Value::Guid),
        entity_reference().prop_map(Value::EntityReference),
        any::<i32>().prop_map(Value::OptionSetValue),
        prop::collection::vec(any::<i32>(), 0..4).prop_map(Value::OptionSetValueCollection),
        prop::collection::vec(entity_reference(), 1..3).prop_map(Value::EntityReferenceCollection),
        (any::<bool>(), prop::collection::vec(text(), 0..3)).prop_map(|(all_columns, columns)| {
            Value::ColumnSet(ColumnSet {
                all_columns,
                columns,
            })
        }),
        (proptest::option::of(0i32..2), opt_text()).prop_map(
            |(primary_entity_role, schema_name)| Value::Relationship(Relationship {
                primary_entity_role,
                schema_name
            })
        ),
        prop::collection::vec((text(), text()), 1..3).prop_map(Value::StringPairs),
    ]
    .boxed()
}

fn entity_with(values: BoxedStrategy<Value>) -> BoxedStrategy<Entity> {
    (
        prop::collection::vec((text(), values), 0..5),
        proptest::option::of(0i32..3),
        prop::collection::vec((text(), text()), 0..3),
        guid(),
        opt_text(),
        proptest::option::of("[0-9]{1,8}"),
    )
        .prop_map(
            |(attributes, entity_state, formatted_values, id, logical_name, row_version)| Entity {
                attributes,
                entity_state,
                formatted_values,
                id,
                key_attributes: Vec::new(),
                logical_name,
                related_entities: Vec::new(),
                row_version,
            },
        )
        .boxed()
}

fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                entity_with(inner.clone()).prop_map(|e| Value::Entity(Box::new(e))),
                (opt_text(), opt_text(), inner.clone()).prop_map(|(a, e, v)| Value::AliasedValue(
                    Box::new(AliasedValue {
                        attribute_logical_name: a,
                        entity_logical_name: e,
                        value: v
                    })
                )),
                (
                    prop::collection::vec(entity_with(inner.clone()), 0..2),
                    opt_text(),
                    any::<bool>(),
                    any::<i32>()
                )
                    .prop_map(
                        |(entities, entity_name, more_records, total_record_count)| {
                            Value::EntityCollection(EntityCollection {
                                entities,
                                entity_name,
                                more_records,
                                total_record_count,
                                paging_cookie: Some("<cookie page=\"1\"/>".into()),
                                ..Default::default()
                            })
                        }
                    ),
                (entity_with(inner), opt_text()).prop_map(|(mut e, schema)| {
                    let rel = Relationship {
                        primary_entity_role: Some(1),
                        schema_name: schema,
                    };
                    let coll = EntityCollection {
                        entities: vec![Entity::new("contact", Uuid::nil())],
                        ..Default::default()
                    };
                    e.related_entities.push((rel, coll));
                    Value::Entity(Box::new(e))
                }),
            ]
        })
        .boxed()
}

fn params() -> BoxedStrategy<Params> {
    prop::collection::vec((text(), value()), 0..4).boxed()
}

fn context_leaf() -> BoxedStrategy<RemoteExecutionContext> {
    (
        (
            guid(),
            guid(),
            any::<i32>(),
            opt_text(),
            proptest::option::of(guid()),
            guid(),
            params(),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<i32>(),
            text(),
            any::<i32>(),
            date(),
            guid(),
        ),
        (
            guid(),
            text(),
            params(),
            proptest::option::of(entity_reference()),
        ),
        (
            prop::collection::vec((text(), entity_with(leaf())), 0..2),
            guid(),
            text(),
            proptest::option::of(guid()),
            text(),
            params(),
            any::<i32>(),
            proptest::option::of(guid()),
            guid(),
        ),
    )
        .prop_map(|(a, b, c, d)| RemoteExecutionContext {
            business_unit_id: a.0,
            correlation_id: a.1,
            depth: a.2,
            initiating_user_agent: a.3,
            initiating_user_azure_active_directory_object_id: a.4,
            initiating_user_id: a.5,
            input_parameters: a.6,
            is_executing_offline: b.0,
            is_in_transaction: b.1,
            is_offline_playback: b.2,
            isolation_mode: b.3,
            message_name: b.4,
            mode: b.5,
            operation_created_on: b.6,
            operation_id: b.7,
            organization_id: c.0,
            organization_name: c.1,
            output_parameters: c.2,
            owning_extension: c.3,
            parent_context: None,
            post_entity_images: d.0.clone(),
            pre_entity_images: d.0,
            primary_entity_id: d.1,
            primary_entity_name: d.2,
            request_id: d.3,
            secondary_entity_name: d.4,
            shared_variables: d.5,
            stage: d.6,
            user_azure_active_directory_object_id: d.7,
            user_id: d.8,
        })
        .boxed()
}

fn context() -> BoxedStrategy<RemoteExecutionContext> {
    (
        context_leaf(),
        proptest::option::of(context_leaf()),
        proptest::option::of(context_leaf()),
    )
        .prop_map(|(mut c, p, gp)| {
            if let Some(mut p) = p {
                p.parent_context = gp.map(Box::new);
                c.parent_context = Some(Box::new(p));
            }
            c
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// XML and binary keep every value and its exact type.
    #[test]
    fn xml_and_binary_are_lossless(ctx in context()) {
        for f in [Format::Xml, Format::Binary] {
            let body = encode(&ctx, f);
            let back = decode(&body, f).map_err(|e| TestCaseError::fail(format!("{f:?}: {e}")))?;
            prop_assert_eq!(&back, &ctx);
        }
    }

    /// Binary → text gives the text encoder's bytes (for a reader in UTC),
    /// text → binary → text is byte-identical, with and without dictionary records.
    #[test]
    fn binary_and_text_xml_convert_exactly(ctx in context()) {
        let bin = encode(&ctx, Format::Binary);
        let dict = nbfx::encode_with_dictionary(&ctx);
        let in_utc = decode(&bin, Format::Binary).unwrap();
        let text = encode(&in_utc, Format::Xml);
        prop_assert_eq!(&nbfx::to_text(&bin).unwrap(), &text);
        prop_assert_eq!(&nbfx::to_text(&dict).unwrap(), &text);
        for d in [false, true] {
            let converted = nbfx::from_text(&text, d).unwrap();
            prop_assert_eq!(&nbfx::to_text(&converted).unwrap(), &text);
        }
        prop_assert_eq!(&nbfx::decode(&dict).unwrap(), &ctx);
    }

    /// JSON is stable after one pass, and JSON → XML/binary → JSON returns the same bytes.
    #[test]
    fn json_round_trips_through_every_format(ctx in context()) {
        let j1 = encode(&ctx, Format::Json);
        let c2 = decode(&j1, Format::Json).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let j2 = encode(&c2, Format::Json);
        prop_assert_eq!(String::from_utf8_lossy(&j2), String::from_utf8_lossy(&j1));
        // .NET's binary writer writes -0.0 as ZeroText (an integral float), so
        // a negative zero read from JSON comes back from binary as 0.
        let text = String::from_utf8_lossy(&j1);
        let negative_zero = ["-0,", "-0}", "-0]"].iter().any(|z| text.contains(&format!(":{z}")));
        for f in [Format::Xml, Format::Binary] {
            if f == Format::Binary && negative_zero {
                continue;
            }
            let back = decode(&encode(&c2, f), f).unwrap();
            prop_assert_eq!(&encode(&back, Format::Json), &j1);
        }
    }

    /// Non-finite doubles survive XML and binary (JSON has no number form for them).
    #[test]
    fn non_finite_doubles_survive_xml_and_binary(d in prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY)]) {
        let mut ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
        ctx.shared_variables.push(("d".into(), Value::Double(d)));
        for f in [Format::Xml, Format::Binary] {
            prop_assert_eq!(&decode(&encode(&ctx, f), f).unwrap(), &ctx);
        }
    }
}
