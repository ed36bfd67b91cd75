//! placeholder: replaced by the store work
