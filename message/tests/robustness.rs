//! Malformed input gets a precise error (never a panic), the size rule, the
//! content-type API, and a bounded deterministic fuzz smoke run of every decoder.

use weft_message::*;

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("sample readable")
}

fn malformed(r: Result<RemoteExecutionContext, MessageError>) -> (usize, String, String) {
    match r {
        Err(MessageError::Malformed {
            offset,
            path,
            message,
            ..
        }) => (offset, path, message),
        other => panic!("expected a Malformed error, got {other:?}"),
    }
}

/// A bad attribute value deep inside JSON is reported with its path, offset and expectation.
#[test]
fn json_error_names_path_and_offset() {
    let text = String::from_utf8(sample("create-sync-all-types.json")).unwrap();
    let bad = text.replacen("\"value\": 321", "\"value\": +321", 1);
    let at = bad.find("+321").unwrap();
    let (offset, path, message) = malformed(json::decode(bad.as_bytes()));
    assert_eq!(path, "InputParameters[0].value.Attributes[1].value");
    assert_eq!(offset, at, "offset points at the unexpected byte");
    assert!(message.contains("expected"), "{message}");
    let shown = json::decode(bad.as_bytes()).unwrap_err().to_string();
    assert!(
        shown.contains("InputParameters[0].value.Attributes[1].value"),
        "{shown}"
    );
}

/// A non-GUID id and a non-first __type are rejected with what was expected.
#[test]
fn json_type_errors_say_what_was_expected() {
    let text = String::from_utf8(sample("webhook-update-contact-async.json")).unwrap();
    let bad = text.replacen(
        "\"e2b9dd85-e89e-e711-8122-000d3aa2331c\"",
        "\"not-a-guid\"",
        1,
    );
    let (_, path, message) = malformed(json::decode(bad.as_bytes()));
    assert_eq!(path, "BusinessUnitId");
    assert!(message.contains("GUID"), "{message}");
    let bad = r#"{"InputParameters":[{"key":"Target","value":{"Id":"x","__type":"Entity:http://schemas.microsoft.com/xrm/2011/Contracts"}}]}"#;
    let (_, path, message) = malformed(json::decode(bad.as_bytes()));
    assert_eq!(path, "InputParameters[0].value");
    assert!(message.contains("__type"), "{message}");
    let (offset, _, message) = malformed(json::decode(b"{\"Depth\":1"));
    assert_eq!(offset, 10);
    assert!(message.contains("end of input"), "{message}");
}

/// A byte order mark and `null` collections are accepted.
#[test]
fn json_tolerates_bom_and_null_collections() {
    let ctx = json::decode("\u{feff}{\"InputParameters\":null,\"Stage\":40}".as_bytes()).unwrap();
    assert!(ctx.input_parameters.is_empty());
    assert_eq!(ctx.stage, 40);
}

/// Unknown members are skipped and missing newer members stay absent.
#[test]
fn json_tolerates_unknown_and_missing_members() {
    let ctx =
        json::decode(br#"{"Future":{"a":[1,2,{"b":null}]},"MessageName":"Create","Depth":2}"#)
            .unwrap();
    assert_eq!(ctx.message_name, "Create");
    assert_eq!(ctx.depth, 2);
    assert_eq!(ctx.initiating_user_agent, None);
    let out = String::from_utf8(json::encode(&ctx)).unwrap();
    assert!(!out.contains("InitiatingUserAgent") && !out.contains("Future"));
}

/// XML errors carry the element path and offset; mismatched tags are named.
#[test]
fn xml_errors_name_path_and_offset() {
    let ctx = json::decode(&sample("webhook-update-contact-async.json")).unwrap();
    let xml = String::from_utf8(xml::encode(&ctx)).unwrap();
    let bad = xml.replacen("<Depth>1</Depth>", "<Depth>one</Depth>", 1);
    let (_, path, message) = malformed(xml::decode(bad.as_bytes()));
    assert_eq!(path, "Depth");
    assert!(
        message.contains("32-bit integer") && message.contains("one"),
        "{message}"
    );
    let bad = xml.replacen("</MessageName>", "</MessageNam>", 1);
    let (offset, _, message) = malformed(xml::decode(bad.as_bytes()));
    assert_eq!(offset, bad.find("</MessageNam>").unwrap());
    assert!(message.contains("expected </MessageName>"), "{message}");
    let bad = xml.replacen("b:string", "b:strang", 1);
    let (_, path, message) = malformed(xml::decode(bad.as_bytes()));
    assert_eq!(path, "InputParameters[0].value.Attributes[0].value");
    assert!(message.contains("i:type"), "{message}");
}

/// Truncated binary input reports the byte offset and what was missing.
#[test]
fn binary_errors_name_offset() {
    let ctx = json::decode(&sample("webhook-update-contact-async.json")).unwrap();
    let bin = nbfx::encode(&ctx);
    let (offset, _, message) = malformed(nbfx::decode(&bin[..bin.len() / 2]));
    assert!(offset <= bin.len() / 2, "{offset}");
    assert!(message.contains("expected"), "{message}");
    let mut bad = vec![0x40, 22];
    bad.extend_from_slice(b"RemoteExecutionContext");
    bad.push(0xFF);
    let (offset, _, message) = malformed(nbfx::decode(&bad));
    assert_eq!(offset, 24);
    assert!(message.contains("0xFF"), "{message}");
}

/// Content types select formats, tolerating parameters and case.
#[test]
fn content_types_map_to_formats() {
    assert_eq!(
        Format::from_content_type("application/json; charset=utf-8").unwrap(),
        Format::Json
    );
    assert_eq!(
        Format::from_content_type("Application/XML").unwrap(),
        Format::Xml
    );
    assert_eq!(
        Format::from_content_type("application/msbin1").unwrap(),
        Format::Binary
    );
    assert!(matches!(
        Format::from_content_type("text/plain"),
        Err(MessageError::ContentType(_))
    ));
    for f in [Format::Json, Format::Xml, Format::Binary] {
        assert_eq!(Format::from_content_type(f.content_type()).unwrap(), f);
    }
    let body = sample("create-sync-all-types.json");
    assert_eq!(
        parse(&body, "application/json").unwrap().message_name,
        "Create"
    );
}

fn big_context(attrs: usize) -> RemoteExecutionContext {
    let mut ctx = json::decode(&sample("create-sync-all-types.json")).unwrap();
    let mut e = Entity::new("account", uuid::Uuid::nil());
    for i in 0..attrs {
        e.attributes
            .push((format!("a{i}"), Value::String("x".repeat(100))));
    }
    ctx.pre_entity_images.push(("pre".into(), e));
    ctx
}

/// Under the limit nothing is dropped; over it the four members go and `truncated` is set.
#[test]
fn size_rule_drops_the_four_members() {
    for f in [Format::Json, Format::Xml, Format::Binary] {
        let small = json::decode(&sample("create-sync-all-types.json")).unwrap();
        let enc = encode_limited(&small, f, SERVICE_BUS_LIMIT).unwrap();
        assert!(!enc.truncated);
        assert_eq!(enc.bytes, encode(&small, f));

        let big = big_context(3000);
        assert!(encode(&big, f).len() > SERVICE_BUS_LIMIT);
        let enc = encode_limited(&big, f, SERVICE_BUS_LIMIT).unwrap();
        assert!(enc.truncated && enc.bytes.len() <= SERVICE_BUS_LIMIT);
        let back = decode(&enc.bytes, f).unwrap();
        assert!(back.parent_context.is_none() && back.input_parameters.is_empty());
        assert!(back.pre_entity_images.is_empty() && back.post_entity_images.is_empty());
        assert_eq!(
            back.output_parameters, big.output_parameters,
            "other members are kept"
        );
        assert_eq!(back.shared_variables, big.shared_variables);
    }
    assert_eq!(SERVICE_BUS_LIMIT, 196_608);
    assert_eq!(WEBHOOK_LIMIT, 262_144);
}

/// Still too large after dropping → a TooLarge error, no body.
#[test]
fn size_rule_refuses_what_cannot_fit() {
    let mut ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
    ctx.shared_variables
        .push(("blob".into(), Value::String("y".repeat(300_000))));
    match encode_limited(&ctx, Format::Json, WEBHOOK_LIMIT) {
        Err(MessageError::TooLarge { size, limit }) => {
            assert!(size > limit);
            assert_eq!(limit, WEBHOOK_LIMIT);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// Small deterministic PRNG (xorshift) so the smoke run is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    match rng.below(5) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
        }
        1 => v.truncate(rng.below(v.len())),
        2 => {
            let (a, b) = (rng.below(v.len()), rng.below(other.len()));
            v.truncate(a);
            v.extend_from_slice(&other[b..]);
        }
        3 => {
            let i = rng.below(v.len());
            let n = rng.below(16);
            let end = (i + n).min(v.len());
            v.drain(i..end);
        }
        _ => {
            let i = rng.below(v.len());
            let b = (rng.next() & 0xFF) as u8;
            for _ in 0..1 + rng.below(4) {
                v.insert(i, b);
            }
        }
    }
    v
}

/// Thousands of mutated encodings per format: decoders return Ok or Err, never panic.
#[test]
fn fuzz_smoke_decoders_never_panic() {
    let a = json::decode(&sample("create-sync-all-types.json")).unwrap();
    let b = json::decode(&sample("webhook-update-contact-async.json")).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut errors = 0;
    for f in [Format::Json, Format::Xml, Format::Binary] {
        let (ea, eb) = (encode(&a, f), encode(&b, f));
        for i in 0..3000 {
            let (base, other) = if i % 2 == 0 { (&ea, &eb) } else { (&eb, &ea) };
            let input = mutate(&mut rng, base, other);
            if decode(&input, f).is_err() {
                errors += 1;
            }
            if f == Format::Binary {
                let _ = nbfx::to_text(&input);
            }
        }
    }
    assert!(
        errors > 1000,
        "mutations should mostly be rejected, got {errors} errors"
    );
}

/// Deeply nested values are decoded or refused with an error, never a stack overflow.
#[test]
fn deep_nesting_is_bounded() {
    let mut v = Value::Int(1);
    for _ in 0..200 {
        v = Value::AliasedValue(Box::new(AliasedValue {
            attribute_logical_name: None,
            entity_logical_name: None,
            value: v,
        }));
    }
    let mut ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
    ctx.shared_variables.push(("deep".into(), v));
    for f in [Format::Json, Format::Xml, Format::Binary] {
        let body = encode(&ctx, f);
        match decode(&body, f) {
            Err(MessageError::Malformed { message, .. }) => {
                assert!(message.contains("deeper"), "{message}")
            }
            other => panic!(
                "{f:?}: expected a nesting error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // Deep parents likewise.
    let mut c = RemoteExecutionContext::new_minimal("Create", "account", 40);
    for _ in 0..100 {
        let mut p = RemoteExecutionContext::new_minimal("Create", "account", 30);
        p.parent_context = Some(Box::new(c));
        c = p;
    }
    for f in [Format::Json, Format::Xml, Format::Binary] {
        assert!(
            decode(&encode(&c, f), f).is_err(),
            "{f:?}: 100 parents exceed the limit"
        );
    }
}
