//! Field errors shaped like the API server's (`field.Error` in apimachinery): a path,
//! a type, the offending value and a detail, rendered the way kubectl shows them.

use std::fmt;

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// `Required value`
    Required,
    /// `Invalid value`
    Invalid,
    /// `Unsupported value` (with the values that are supported)
    NotSupported(Vec<String>),
    /// `Duplicate value`
    Duplicate,
    /// `Forbidden`
    Forbidden,
    /// `Too long` (with the limit)
    TooLong(usize),
    /// `Too many` (with the limit)
    TooMany(usize),
    /// `Not found`
    NotFound,
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, `spec.ports[0].port`.
    pub field: String,
    /// What is wrong.
    pub kind: ErrorType,
    /// The offending value as the API server prints it (strings quoted); empty when
    /// there is none to show.
    pub value: String,
    /// Why it is wrong.
    pub detail: String,
}

/// Every error found in one object.
pub type FieldErrors = Vec<FieldError>;

/// A field path under construction: `Path::new("spec").child("ports").index(0)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// A root path.
    pub fn new(root: &str) -> Self {
        Path(root.to_string())
    }
    /// `self.name`
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }
    /// `self[i]`
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }
    /// `self[key]`
    pub fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }
    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Required value: detail`
    pub fn required(&self, detail: impl Into<String>) -> FieldError {
        self.err(ErrorType::Required, String::new(), detail)
    }
    /// `Invalid value: <value>: detail`
    pub fn invalid(&self, value: impl fmt::Debug, detail: impl Into<String>) -> FieldError {
        self.err(ErrorType::Invalid, quote(value), detail)
    }
    /// `Unsupported value: <value>: supported values: ...`
    pub fn not_supported(&self, value: impl fmt::Debug, supported: &[&str]) -> FieldError {
        self.err(
            ErrorType::NotSupported(supported.iter().map(|s| s.to_string()).collect()),
            quote(value),
            "",
        )
    }
    /// `Duplicate value: <value>`
    pub fn duplicate(&self, value: impl fmt::Debug) -> FieldError {
        self.err(ErrorType::Duplicate, quote(value), "")
    }
    /// `Forbidden: detail`
    pub fn forbidden(&self, detail: impl Into<String>) -> FieldError {
        self.err(ErrorType::Forbidden, String::new(), detail)
    }
    /// `Too long: may not be more than N bytes`
    pub fn too_long(&self, value: impl fmt::Debug, max: usize) -> FieldError {
        self.err(ErrorType::TooLong(max), quote(value), "")
    }
    /// `Too many: N: must have at most M items`
    pub fn too_many(&self, actual: usize, max: usize) -> FieldError {
        self.err(ErrorType::TooMany(max), actual.to_string(), "")
    }
    /// `Not found: <value>`
    pub fn not_found(&self, value: impl fmt::Debug) -> FieldError {
        self.err(ErrorType::NotFound, quote(value), "")
    }

    fn err(&self, kind: ErrorType, value: String, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: self.0.clone(),
            kind,
            value,
            detail: detail.into(),
        }
    }
}

fn quote(value: impl fmt::Debug) -> String {
    format!("{value:?}")
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        match &self.kind {
            ErrorType::Required => write!(f, "Required value")?,
            ErrorType::Invalid => write!(f, "Invalid value: {}", self.value)?,
            ErrorType::NotSupported(supported) => {
                write!(f, "Unsupported value: {}", self.value)?;
                if !supported.is_empty() {
                    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                    write!(f, ": supported values: {}", list.join(", "))?;
                }
            }
            ErrorType::Duplicate => write!(f, "Duplicate value: {}", self.value)?,
            ErrorType::Forbidden => write!(f, "Forbidden")?,
            ErrorType::TooLong(max) => write!(f, "Too long: may not be more than {max} bytes")?,
            ErrorType::TooMany(max) => {
                write!(f, "Too many: {}: must have at most {max} items", self.value)?
            }
            ErrorType::NotFound => write!(f, "Not found: {}", self.value)?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Renders an object's field errors as the API server does:
/// `Service "web" is invalid: spec.ports[0].port: Invalid value: 0: must be ...`,
/// or with `[a, b]` around several.
pub fn render(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    if list.len() == 1 {
        format!("{kind} {name:?} is invalid: {}", list[0])
    } else {
        format!("{kind} {name:?} is invalid: [{}]", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_api_server() {
        let p = Path::new("spec").child("ports").index(0);
        let e = p
            .child("port")
            .invalid(0, "must be between 1 and 65535, inclusive");
        assert_eq!(
            e.to_string(),
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        let e2 = p
            .child("protocol")
            .not_supported("SCTPX", &["SCTP", "TCP", "UDP"]);
        assert_eq!(
            e2.to_string(),
            "spec.ports[0].protocol: Unsupported value: \"SCTPX\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        );
        assert_eq!(
            render("Service", "web", std::slice::from_ref(&e)),
            "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert!(render("Service", "web", &[e, e2]).contains(": [spec.ports[0].port"));
        assert_eq!(
            Path::new("metadata")
                .child("name")
                .required("name or generateName is required")
                .to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}
