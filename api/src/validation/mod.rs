//! Validation as the API server does it: names, labels, selectors and each kind's
//! spec. Every function returns all the field errors it finds, with the field's path,
//! so a user fixes a manifest in one go. Nothing here does IO.

pub mod endpoint_slice;
mod field;
pub mod meta;
pub mod names;
pub mod node;
mod objects;
pub mod pod;
pub mod resources;
pub mod service;

pub use field::{render, ErrorType, FieldError, FieldErrors, Path};
pub use objects::*;

#[cfg(test)]
mod tests;
