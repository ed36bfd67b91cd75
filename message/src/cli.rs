//! `weft message convert|show`: the only module of this crate that does I/O
//! (reads a file or stdin, writes stdout). The host wires it into its CLI.

use crate::{Format, decode, encode, summary};
use anyhow::Context;
use std::io::{Read, Write};
use std::path::PathBuf;

/// `weft message …` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MessageCommand {
    /// Convert a RemoteExecutionContext between json, xml and binary (msbin1).
    Convert {
        /// Input format.
        #[arg(long, value_enum)]
        from: Format,
        /// Output format.
        #[arg(long, value_enum)]
        to: Format,
        /// Input file; stdin when absent. Output goes to stdout.
        file: Option<PathBuf>,
    },
    /// Print a readable summary (format detected from the content).
    Show {
        /// Input file; stdin when absent.
        file: Option<PathBuf>,
    },
}

fn read_input(file: &Option<PathBuf>, stdin: &mut dyn Read) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
        None => {
            let mut v = Vec::new();
            stdin.read_to_end(&mut v).context("reading stdin")?;
            Ok(v)
        }
    }
}

/// Guesses the format of a body: `{` → JSON, `<` → XML, else binary.
pub fn sniff(bytes: &[u8]) -> Format {
    let t = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match t.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Format::Json,
        Some(b'<') => Format::Xml,
        _ => Format::Binary,
    }
}

/// Runs a `weft message` subcommand on the process's stdin/stdout.
pub fn run(cmd: MessageCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    execute(cmd, &mut std::io::stdin().lock(), &mut stdout)?;
    stdout.flush()?;
    Ok(())
}

/// Runs a subcommand with explicit input and output streams. Binary output is
/// written raw; text formats get a trailing newline.
pub fn execute(
    cmd: MessageCommand,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        MessageCommand::Convert { from, to, file } => {
            let input = read_input(&file, stdin)?;
            let ctx = decode(&input, from).context("decoding the input")?;
            stdout.write_all(&encode(&ctx, to))?;
            if to != Format::Binary {
                stdout.write_all(b"\n")?;
            }
        }
        MessageCommand::Show { file } => {
            let input = read_input(&file, stdin)?;
            let format = sniff(&input);
            let ctx = decode(&input, format)
                .with_context(|| format!("decoding the input as {}", format.content_type()))?;
            write!(
                stdout,
                "format:       {}\n{}",
                format.content_type(),
                summary(&ctx)
            )?;
        }
    }
    Ok(())
}
