//! Validation as the API server does it: names, labels, selectors and each kind's
//! spec. Every function returns all the field errors it finds, with the field's path,
//! so a user fixes a manifest in one go. Nothing here does IO.

mod field;
pub mod names;
mod objects;

pub use field::{render, ErrorType, FieldError, FieldErrors, Path};
pub use objects::*;
