//! Golden round trips on the published samples.

use std::path::PathBuf;

fn samples() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples"));
    let mut out = Vec::new();
    for name in [
        "webhook-update-contact-async.json",
        "create-sync-all-types.json",
    ] {
        out.push((
            name.to_string(),
            std::fs::read(dir.join(name)).expect("sample readable"),
        ));
    }
    out
}

/// Removes whitespace outside strings and reads `\/` as `/`.
fn normalise(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_str = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            if b == b'\\' && bytes.get(i + 1) == Some(&b'/') {
                out.push(b'/');
                i += 2;
                continue;
            }
            if b == b'\\' {
                out.push(b);
                out.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            if b == b'"' {
                in_str = false;
            }
            out.push(b);
        } else if b == b'"' {
            in_str = true;
            out.push(b);
        } else if !b.is_ascii_whitespace() {
            out.push(b);
        }
        i += 1;
    }
    out
}

/// Reading then writing each sample gives back its bytes (normalised as the issue says).
#[test]
fn samples_round_trip_through_json() {
    for (name, bytes) in samples() {
        let ctx = weft_message::json::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = weft_message::json::encode(&ctx);
        let (a, b) = (normalise(&bytes), normalise(&out));
        if a != b {
            let at = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            panic!(
                "{name}: differs at {at}:\nwant …{}\ngot  …{}",
                String::from_utf8_lossy(&a[at.saturating_sub(80)..(at + 80).min(a.len())]),
                String::from_utf8_lossy(&b[at.saturating_sub(80)..(at + 80).min(b.len())])
            );
        }
        // weft writes compact output with `\/` escaping.
        assert!(!out.contains(&b'\n'));
        assert!(
            !out.windows(2).any(|w| w == b"\"/"),
            "{name}: unescaped slash after quote"
        );
    }
}

/// JSON → XML → JSON and JSON → binary → JSON give back the original JSON bytes.
#[test]
fn samples_cross_formats_losslessly() {
    use weft_message::{Format, decode, encode};
    for (name, bytes) in samples() {
        let ctx = decode(&bytes, Format::Json).unwrap();
        let json = encode(&ctx, Format::Json);
        // A local date in binary carries only its instant: read it in the
        // sender's zone to get the same context back.
        let zone = ctx.operation_created_on.offset_minutes.unwrap_or(0);
        for f in [Format::Xml, Format::Binary] {
            let body = encode(&ctx, f);
            let back = match f {
                Format::Binary => weft_message::nbfx::decode_in_zone(&body, zone),
                _ => decode(&body, f),
            }
            .unwrap_or_else(|e| panic!("{name} {f:?}: {e}"));
            assert_eq!(back, ctx, "{name} {f:?}: model differs");
            assert_eq!(
                encode(&back, Format::Json),
                json,
                "{name} {f:?}: JSON differs"
            );
        }
        // binary → text XML gives the text encoder's bytes (in the sender's
        // zone); text → binary keeps the infoset (the typed records .NET picks
        // come from the model's types, which text does not carry).
        let bin = encode(&ctx, Format::Binary);
        if zone == 0 {
            let text = weft_message::nbfx::to_text(&bin).unwrap();
            assert_eq!(
                text,
                encode(&ctx, Format::Xml),
                "{name}: binary→text differs from text encoder"
            );
        }
        let text = encode(&ctx, Format::Xml);
        let converted = weft_message::nbfx::from_text(&text, false).unwrap();
        assert_eq!(
            weft_message::nbfx::to_text(&converted).unwrap(),
            text,
            "{name}: text→binary→text differs"
        );
        // The default encoding spells every name inline: a dictionary-less .NET
        // reader accepts it. The dictionary form is smaller and decodes the same.
        let dict = weft_message::nbfx::encode_with_dictionary(&ctx);
        let xsi = b"http://www.w3.org/2001/XMLSchema-instance";
        assert!(
            bin.windows(xsi.len()).any(|w| w == xsi),
            "{name}: names are spelled inline"
        );
        assert!(
            !dict.windows(xsi.len()).any(|w| w == xsi),
            "{name}: the dictionary form uses the MC-NBFS id"
        );
        assert!(dict.len() < bin.len());
        assert_eq!(
            weft_message::nbfx::decode_in_zone(&dict, zone).unwrap(),
            ctx
        );
    }
}

/// Multi-select values are in the 9.0 contracts namespace, as in the decompiled
/// SDK; the 2011 form weft wrote before is still read.
#[test]
fn option_set_value_collections_use_the_9_0_namespace() {
    use weft_message::{RemoteExecutionContext, Value, xml};
    let mut ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
    ctx.shared_variables.push((
        "choices".into(),
        Value::OptionSetValueCollection(vec![1, 2]),
    ));
    let text = String::from_utf8(xml::encode(&ctx)).unwrap();
    let want = "<a:value i:type=\"b:OptionSetValueCollection\" \
                xmlns:b=\"http://schemas.microsoft.com/xrm/9.0/Contracts\">\
                <b:OptionSetValue><Value>1</Value></b:OptionSetValue>\
                <b:OptionSetValue><Value>2</Value></b:OptionSetValue></a:value>";
    assert!(text.contains(want), "{text}");
    let old = text
        .replace(
            "xmlns:b=\"http://schemas.microsoft.com/xrm/9.0/Contracts\"",
            "",
        )
        .replace("b:OptionSetValueCollection", "OptionSetValueCollection")
        .replace("b:OptionSetValue>", "OptionSetValue>")
        .replace("<b:OptionSetValue", "<OptionSetValue");
    assert_eq!(xml::decode(old.as_bytes()).unwrap(), ctx);
}

/// Image items carry the name .NET derives for KeyValuePair<string, Entity>.
#[test]
fn image_items_use_the_generic_name_with_digest() {
    use weft_message::{Entity, RemoteExecutionContext, xml};
    let mut ctx = RemoteExecutionContext::new_minimal("Update", "contact", 40);
    ctx.post_entity_images.push((
        "AsynchronousStepPrimaryName".into(),
        Entity::new("contact", uuid::Uuid::nil()),
    ));
    let text = String::from_utf8(xml::encode(&ctx)).unwrap();
    assert!(
        text.contains("<PostEntityImages xmlns:a=\"http://schemas.datacontract.org/2004/07/System.Collections.Generic\"><KeyValuePairOfstringEntitygUGIFE1S><a:key>AsynchronousStepPrimaryName</a:key><a:value>"),
        "{text}"
    );
}

/// A head decode gives every member of the context itself as the whole decode does, and leaves the
/// collections, the owning extension and the parent empty; malformed JSON inside a skipped member still
/// fails.
#[test]
fn samples_head_decode_keeps_the_contexts_own_members() {
    use weft_message::{RemoteExecutionContext, parse, parse_head};
    for (name, bytes) in samples() {
        let whole = parse(&bytes, "application/json").unwrap();
        let head = parse_head(&bytes, "application/json; charset=utf-8")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = RemoteExecutionContext {
            input_parameters: Vec::new(),
            output_parameters: Vec::new(),
            shared_variables: Vec::new(),
            pre_entity_images: Vec::new(),
            post_entity_images: Vec::new(),
            owning_extension: None,
            parent_context: None,
            ..whole.clone()
        };
        assert_eq!(head, expected, "{name}");
        assert!(
            !whole.input_parameters.is_empty(),
            "{name}: the sample has parameters, so the head decode left something out"
        );
        // The other formats are decoded whole.
        for f in [weft_message::Format::Xml, weft_message::Format::Binary] {
            let body = weft_message::encode(&whole, f);
            let back = weft_message::decode(&body, f).unwrap();
            assert_eq!(parse_head(&body, f.content_type()).unwrap(), back);
        }
    }
    let broken = br#"{"InputParameters":[{"key":"Target","value":{]}],"MessageName":"Create"}"#;
    assert!(parse_head(broken, "application/json").is_err());
}
