//! An independent .NET check of the text XML and binary XML weft writes.
//!
//! `tests/dotnet/RoundTrip.cs` mirrors Microsoft.Xrm.Sdk's data contracts; this
//! test compiles it with Mono's `mcs` into a temporary directory, has .NET's
//! DataContractSerializer read every case weft encoded (text reader, and the
//! binary reader without a dictionary that Service Bus listeners use) and
//! write it back in both formats. Then weft's bytes must equal .NET's, and weft
//! must read .NET's output back to the same context.
//!
//! Needs `mcs` and `mono` (Debian: mono-mcs mono-runtime
//! libmono-system-runtime-serialization4.0-cil libmono-system-xml4.0-cil).
//! Without them the test prints `SKIPPED dotnet_roundtrip: …` and passes,
//! unless `WEFT_REQUIRE_MONO=1`, when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use uuid::Uuid;
use weft_message::*;

/// One context weft encodes for .NET, with the zone its local dates are in
/// (.NET runs in that zone; binary local dates carry only their instant).
struct Case {
    name: String,
    ctx: RemoteExecutionContext,
    zone_minutes: i16,
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x6d81597f_0f9f_e711_8122_000d3aa2331c ^ n.wrapping_mul(0x9e3779b97f4a7c15))
}

/// Every value type, images, multi-select values, dates of every kind,
/// long and non-ASCII strings (the 512-byte buffer and UnicodeChars paths).
fn every_value_type(zone: i16) -> RemoteExecutionContext {
    let mut ctx = RemoteExecutionContext::new_minimal("Update", "account", 40);
    ctx.mode = 1;
    ctx.primary_entity_id = id(1);
    ctx.operation_created_on = DateTime::local(1_697_398_446_012, zone);
    ctx.request_id = Some(id(2));
    let mut reference = EntityReference::new("systemuser", id(3));
    reference.key_attributes = vec![("employeeid".into(), Value::String("E-1".into()))];
    reference.name = Some("Nancy".into());
    let mut target = Entity::new("account", id(1));
    target.entity_state = Some(2);
    target.row_version = Some("1".into());
    let long_ascii = "Contoso ".repeat(90);
    let cjk = "数据".repeat(200);
    let values = vec![
        Value::Null,
        Value::Boolean(true),
        Value::Boolean(false),
        Value::Int(0),
        Value::Int(1),
        Value::Int(-5),
        Value::Int(300),
        Value::Int(1_234_567),
        Value::Long(5),
        Value::Long(9_000_000_000),
        Value::Double(1.5),
        Value::Double(100.0),
        Value::Double(0.1),
        Value::Double(1e20),
        Value::Double(f64::INFINITY),
        Value::Decimal(Decimal::parse("10.120").unwrap()),
        Value::Decimal(Decimal::parse("-0.05").unwrap()),
        Value::Money(Decimal::parse("100").unwrap()),
        Value::String(String::new()),
        Value::String("0".into()),
        Value::String("1".into()),
        Value::String("123".into()),
        Value::String("true".into()),
        Value::String("héllo € <&> \"quoted\" 'x'\r\n\ttab 😀".into()),
        Value::String(long_ascii.clone()),
        Value::String(cjk),
        Value::String("日本語".into()),
        Value::DateTime(DateTime::utc(1_697_526_000_000)),
        Value::DateTime(DateTime::utc(1_697_526_000_123)),
        Value::DateTime(DateTime::unspecified(1_697_526_000_000)),
        Value::DateTime(DateTime::local(1_506_409_448_000, zone)),
        Value::Guid(id(4)),
        Value::EntityReference(reference.clone()),
        Value::OptionSetValue(342_490_000),
        Value::OptionSetValueCollection(vec![342_490_001, 342_490_002]),
        Value::OptionSetValueCollection(vec![]),
        Value::EntityReferenceCollection(vec![reference.clone()]),
        Value::AliasedValue(Box::new(AliasedValue {
            attribute_logical_name: Some("name".into()),
            entity_logical_name: Some("contact".into()),
            value: Value::String("x".into()),
        })),
        Value::ColumnSet(ColumnSet {
            all_columns: false,
            columns: vec!["name".into(), "accountid".into()],
        }),
        Value::Relationship(Relationship {
            primary_entity_role: Some(1),
            schema_name: Some("account_contacts".into()),
        }),
        Value::StringPairs(vec![("account".into(), "Update".into())]),
        Value::EntityCollection(EntityCollection {
            entities: vec![Entity::new("contact", id(5))],
            entity_name: Some("contact".into()),
            more_records: true,
            paging_cookie: Some("<cookie page=\"1\"/>".into()),
            total_record_count: -1,
            ..EntityCollection::default()
        }),
    ];
    for (i, v) in values.into_iter().enumerate() {
        target.attributes.push((format!("attr{i}"), v));
    }
    target.formatted_values = vec![("attr1".into(), "Yes".into()), ("long".into(), long_ascii)];
    target.key_attributes = vec![("accountnumber".into(), Value::String("A-1".into()))];
    target.related_entities = vec![(
        Relationship {
            primary_entity_role: None,
            schema_name: Some("account_primary_contact".into()),
        },
        EntityCollection {
            entities: vec![Entity::new("contact", id(6))],
            ..EntityCollection::default()
        },
    )];
    ctx.input_parameters = vec![
        ("Target".into(), Value::Entity(Box::new(target.clone()))),
        (
            "Nested".into(),
            Value::Entity(Box::new(Entity::new("contact", id(7)))),
        ),
    ];
    ctx.output_parameters = vec![("id".into(), Value::Guid(id(1)))];
    let mut image = target.clone();
    image.attributes.truncate(10);
    ctx.pre_entity_images = vec![("PreImage".into(), image.clone())];
    ctx.post_entity_images = vec![("AsynchronousStepPrimaryName".into(), image)];
    ctx.owning_extension = Some(reference);
    ctx.shared_variables = vec![(
        "ChangedEntityTypes".into(),
        Value::StringPairs(vec![("account".into(), "Update".into())]),
    )];
    let mut parent = RemoteExecutionContext::new_minimal("Update", "account", 30);
    parent.operation_created_on = DateTime::utc(1_697_398_446_000);
    parent.input_parameters = vec![("Target".into(), Value::Entity(Box::new(target)))];
    ctx.parent_context = Some(Box::new(parent));
    ctx
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples");
    for name in ["webhook-update-contact-async", "create-sync-all-types"] {
        let json = std::fs::read(dir.join(format!("{name}.json"))).expect("sample readable");
        let ctx = json::decode(&json).expect("sample decodes");
        let zone_minutes = ctx.operation_created_on.offset_minutes.unwrap_or(0);
        cases.push(Case {
            name: name.into(),
            ctx,
            zone_minutes,
        });
    }
    for zone in [0, -420, 330] {
        cases.push(Case {
            name: format!("every-value-type-{zone}"),
            ctx: every_value_type(zone),
            zone_minutes: zone,
        });
    }
    cases.push(Case {
        name: "realistic-64k".into(),
        ctx: bench::realistic_context(64 * 1024),
        zone_minutes: 0,
    });
    cases
}

/// The tz database name of a whole-hour zone (`Etc/GMT+7` is UTC−7).
fn tz_name(minutes: i16) -> String {
    match minutes {
        0 => "UTC".into(),
        m if m % 60 == 0 => format!("Etc/GMT{:+}", -m / 60),
        330 => "Asia/Kolkata".into(),
        m => panic!("no tz name for offset {m}"),
    }
}

/// The first differing byte, with context, for a readable failure.
fn diff(want: &[u8], got: &[u8]) -> Option<String> {
    if want == got {
        return None;
    }
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let show = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.saturating_sub(60)..(at + 60).min(b.len())]).into_owned()
    };
    Some(format!(
        "first difference at byte {at} (lengths .NET {} / weft {}):\n  .NET …{:?}\n  weft …{:?}",
        want.len(),
        got.len(),
        show(want),
        show(got)
    ))
}

#[test]
fn dotnet_roundtrip() {
    if !on_path("mcs") || !on_path("mono") {
        assert!(
            std::env::var("WEFT_REQUIRE_MONO").as_deref() != Ok("1"),
            "WEFT_REQUIRE_MONO=1 but mcs/mono are not installed"
        );
        // Written to the stderr handle, not through eprintln!, so the test
        // harness does not capture it: a skip must be visible.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED dotnet_roundtrip: mono not installed (mcs and mono not on PATH)"
        );
        return;
    }
    let work = std::env::temp_dir().join(format!("weft-dotnet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let exe = work.join("RoundTrip.exe");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dotnet/RoundTrip.cs");
    let out = Command::new("mcs")
        .args([
            "-nologo",
            "-r:System.Runtime.Serialization.dll",
            "-r:System.Xml.dll",
        ])
        .arg(format!("-out:{}", exe.display()))
        .arg(&source)
        .output()
        .expect("mcs runs");
    assert!(
        out.status.success(),
        "mcs failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut failures = Vec::new();
    let cases = cases();
    let mut zones: Vec<i16> = cases.iter().map(|c| c.zone_minutes).collect();
    zones.sort_unstable();
    zones.dedup();
    for zone in zones {
        let dir: PathBuf = work.join(format!("zone{zone}"));
        std::fs::create_dir_all(&dir).unwrap();
        let in_zone: Vec<&Case> = cases.iter().filter(|c| c.zone_minutes == zone).collect();
        for c in &in_zone {
            std::fs::write(
                dir.join(format!("{}.weft.xml", c.name)),
                encode(&c.ctx, Format::Xml),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("{}.weft.bin", c.name)),
                encode(&c.ctx, Format::Binary),
            )
            .unwrap();
        }
        let run = Command::new("mono")
            .arg(&exe)
            .arg(&dir)
            .env("TZ", tz_name(zone))
            .output()
            .expect("mono runs");
        if !run.status.success() {
            failures.push(format!(
                "zone {zone}: .NET could not read weft's output:\n{}{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ));
            continue;
        }
        for c in in_zone {
            let weft = [encode(&c.ctx, Format::Xml), encode(&c.ctx, Format::Binary)];
            for from in ["xml", "bin"] {
                for (to, mine) in [("xml", &weft[0]), ("bin", &weft[1])] {
                    let file = format!("{}.weft.{from}.net.{to}", c.name);
                    let net = std::fs::read(dir.join(&file)).unwrap();
                    if let Some(d) = diff(&net, mine) {
                        failures.push(format!("{file}: bytes differ, {d}"));
                    }
                    let back = if to == "bin" {
                        nbfx::decode_in_zone(&net, zone)
                    } else {
                        xml::decode(&net)
                    };
                    match back {
                        Ok(back) if back == c.ctx => {}
                        Ok(_) => failures.push(format!("{file}: weft reads a different context")),
                        Err(e) => failures.push(format!("{file}: weft cannot read it: {e}")),
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
