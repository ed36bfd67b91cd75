//! The one error type of the crate. Decoders report where (byte offset and a
//! path such as `InputParameters[0].value.Attributes[3].value`) and what was
//! expected; nothing here panics on bad input.

use std::fmt;

/// Which wire format an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// DataContractJsonSerializer JSON.
    Json,
    /// DataContractSerializer text XML.
    Xml,
    /// .NET Binary XML ([MC-NBFX]).
    Binary,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Syntax::Json => "JSON",
            Syntax::Xml => "XML",
            Syntax::Binary => "binary XML",
        })
    }
}

/// Everything that can go wrong parsing or encoding a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    /// The input is not a well-formed message of the given syntax.
    #[error("malformed {syntax} at byte {offset}{}: {message}", path_suffix(.path))]
    Malformed {
        /// The format being decoded.
        syntax: Syntax,
        /// Byte offset into the input where the problem was found.
        offset: usize,
        /// Path of the member being read (`""` at top level).
        path: String,
        /// What was expected and what was found.
        message: String,
    },
    /// The content type names none of the three Dataverse formats.
    #[error(
        "unsupported content type {0:?}: expected application/json, application/xml or application/msbin1"
    )]
    ContentType(String),
    /// Even after dropping the droppable members the message exceeds the limit.
    #[error(
        "message is {size} bytes after removing ParentContext, InputParameters, PreEntityImages and PostEntityImages, above the {limit}-byte limit; nothing to send"
    )]
    TooLarge {
        /// Size of the reduced message in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

fn path_suffix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" (at {path})")
    }
}

/// One step of a decoding path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg {
    /// A member name.
    Name(&'static str),
    /// An array / collection index.
    Index(usize),
}

/// Renders a path like `InputParameters[0].value`.
pub(crate) fn render_path(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Name(n) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(n);
            }
            Seg::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
        }
    }
    s
}
