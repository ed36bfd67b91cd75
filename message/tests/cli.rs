//! `weft message convert|show` behaviour through the CLI module.

use std::path::PathBuf;
use weft_message::Format;
use weft_message::cli::{MessageCommand, execute, sniff};

/// The published Dataverse samples, kept in the repository (see `samples/README.md`).
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples");

fn run(cmd: MessageCommand, stdin: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    execute(cmd, &mut &stdin[..], &mut out)?;
    Ok(out)
}

/// `convert --from json --to json FILE` writes the sample back (compact, `\/`-escaped).
#[test]
fn convert_json_to_json_round_trips_a_sample() {
    let file = PathBuf::from(SAMPLES).join("webhook-update-contact-async.json");
    let original = std::fs::read(&file).unwrap();
    let out = run(
        MessageCommand::Convert {
            from: Format::Json,
            to: Format::Json,
            file: Some(file),
        },
        b"",
    )
    .unwrap();
    let strip = |b: &[u8]| -> Vec<u8> {
        String::from_utf8_lossy(b)
            .split_whitespace()
            .collect::<String>()
            .into_bytes()
    };
    // This sample keeps raw `\/` escaping and has no spaces inside strings that matter here.
    let want: String = String::from_utf8(original).unwrap().replace(": ", ":");
    assert_eq!(strip(&out), strip(want.as_bytes()));
    assert!(out.ends_with(b"}\n"));
}

/// Binary output from stdin input is raw msbin1 that converts back to the same JSON.
#[test]
fn convert_through_binary_via_stdin() {
    let json = std::fs::read(PathBuf::from(SAMPLES).join("create-sync-all-types.json")).unwrap();
    let bin = run(
        MessageCommand::Convert {
            from: Format::Json,
            to: Format::Binary,
            file: None,
        },
        &json,
    )
    .unwrap();
    assert_eq!(sniff(&bin), Format::Binary);
    assert_eq!(bin[0], 0x40, "starts with a ShortElement record");
    let xml = run(
        MessageCommand::Convert {
            from: Format::Binary,
            to: Format::Xml,
            file: None,
        },
        &bin,
    )
    .unwrap();
    assert!(xml.starts_with(
        b"<RemoteExecutionContext xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\""
    ));
    let back = run(
        MessageCommand::Convert {
            from: Format::Xml,
            to: Format::Json,
            file: None,
        },
        &xml,
    )
    .unwrap();
    let direct = run(
        MessageCommand::Convert {
            from: Format::Json,
            to: Format::Json,
            file: None,
        },
        &json,
    )
    .unwrap();
    assert_eq!(back, direct);
}

/// `show` detects the format and prints message, table, stage, images and the parent chain.
#[test]
fn show_prints_a_summary() {
    let file = PathBuf::from(SAMPLES).join("webhook-update-contact-async.json");
    let out =
        String::from_utf8(run(MessageCommand::Show { file: Some(file) }, b"").unwrap()).unwrap();
    for want in [
        "application/json",
        "Update of contact",
        "40 PostOperation",
        "asynchronous",
        "AsynchronousStepPrimaryName",
        "parent context:",
        "30 MainOperation",
        "ChangedEntityTypes = 14 string pairs",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

/// Malformed input is an error that names the problem, not a panic.
#[test]
fn convert_reports_malformed_input() {
    let err = run(
        MessageCommand::Convert {
            from: Format::Json,
            to: Format::Xml,
            file: None,
        },
        b"{\"Depth\":\"x\"}",
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("at Depth") && text.contains("byte 9") && text.contains("expected a number"),
        "{text}"
    );
}
