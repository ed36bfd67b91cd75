//! placeholder: replaced by the bus work
