//! placeholder: replaced by the message work
