//! The size rule Dataverse applies before posting: above the channel's limit,
//! drop `ParentContext`, `InputParameters`, `PreEntityImages` and
//! `PostEntityImages`, re-serialize and mark the message truncated; still too
//! big → an error and nothing to send.
//!
//! Owns only that rule. The caller adds `MessageMaxSizeExceeded` (Service Bus,
//! Event Hubs) or `x-ms-dynamics-msg-size-exceeded` (webhooks) when
//! `truncated` is set.
//!
//! Microsoft writes the limits as "192 KB" / "256 KB" without defining KB;
//! weft takes 1 KB = 1024 bytes.

use crate::{Format, MessageError, RemoteExecutionContext};

/// Service Bus and Event Hubs limit: 192 KB = 196 608 bytes.
pub const SERVICE_BUS_LIMIT: usize = 192 * 1024;
/// Webhook limit: 256 KB = 262 144 bytes.
pub const WEBHOOK_LIMIT: usize = 256 * 1024;

/// An encoded message and whether the size rule removed members.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The body to send.
    pub bytes: Vec<u8>,
    /// True when ParentContext, InputParameters and the images were removed.
    pub truncated: bool,
}

/// Encodes `ctx`, applying the size rule for a `limit` in bytes.
pub fn encode_limited(
    ctx: &RemoteExecutionContext,
    format: Format,
    limit: usize,
) -> Result<Encoded, MessageError> {
    let bytes = crate::encode(ctx, format);
    if bytes.len() <= limit {
        return Ok(Encoded {
            bytes,
            truncated: false,
        });
    }
    let reduced = RemoteExecutionContext {
        parent_context: None,
        input_parameters: Vec::new(),
        pre_entity_images: Vec::new(),
        post_entity_images: Vec::new(),
        ..ctx.clone()
    };
    let bytes = crate::encode(&reduced, format);
    if bytes.len() <= limit {
        Ok(Encoded {
            bytes,
            truncated: true,
        })
    } else {
        Err(MessageError::TooLarge {
            size: bytes.len(),
            limit,
        })
    }
}
