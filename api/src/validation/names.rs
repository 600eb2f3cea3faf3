//! Name, label, annotation, selector, IP and port rules (apimachinery's
//! `util/validation`, `api/validate/content` and `apis/meta/v1/validation`).
//!
//! Two layers, as in apimachinery: `is_*` functions take a value and return the
//! detail messages of everything wrong with it (empty when valid), so callers can
//! attach them to any field; `validate_*` functions take a field [`Path`] and return
//! ready [`FieldErrors`]. Messages are the API server's, word for word, so a kubectl
//! user recognises them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{FieldErrors, Path};

/// Longest DNS-1123 label (RFC 1123).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain (RFC 1123).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Longest label value, and longest name part of a qualified name.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Most bytes all annotations of an object may hold together (keys and values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";

/// The detail for a non-negative field that is negative.
pub const IS_NEGATIVE_ERROR: &str = "must be greater than or equal to 0";
/// The detail for an immutable field that changed.
pub const FIELD_IMMUTABLE_ERROR: &str = "field is immutable";

/// Prints a value as-is in an error (for values that are not plain strings or
/// numbers, which `Path::invalid` would otherwise quote).
pub struct Raw(pub String);

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `must be no more than N characters` (apimachinery's `MaxLenError`).
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `must be no more than N bytes` (the `content` package's `MaxLenError`, used for
/// label keys and values).
fn max_bytes_error(length: usize) -> String {
    format!("must be no more than {length} bytes")
}

/// `must be between LO and HI, inclusive`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// The explanation of a value that does not match a pattern, with examples, as
/// apimachinery's `RegexError` builds it (the odd double space included).
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_label_key_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Whether `value` is a lowercase RFC 1123 label (namespace names, container names).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Whether `value` is a lowercase RFC 1123 subdomain (most object names).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    dns1123_subdomain_errors(value, max_len_error)
}

fn dns1123_subdomain_errors(value: &str, too_long: fn(usize) -> String) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(too_long(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Whether `value` is a DNS-1035 label (Service names: they become DNS names and
/// environment variable prefixes, so they must start with a letter).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    let b = value.as_bytes();
    let ok = matches_dns1123_label(value) && b.first().is_some_and(u8::is_ascii_lowercase);
    if !ok {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Whether `value` is a qualified name: a label or annotation key, an optional DNS
/// subdomain prefix and `/`, then a name of at most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix, max_bytes_error)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_bytes_error(LABEL_VALUE_MAX_LENGTH)
        ));
    }
    if !matches_label_key_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_ERR,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Whether `value` is a label value (at most 63 characters, may be empty).
pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_bytes_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_label_key_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Whether `value` is a ConfigMap (or Secret) key: `[-._a-zA-Z0-9]+`, at most 253
/// characters, and not `.`, `..` or `..`-prefixed (keys become file names).
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !ok {
        errs.push(regex_error(
            CONFIG_MAP_KEY_ERR,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if value == "." {
        errs.push("must not be '.'".to_string());
    } else if value == ".." {
        errs.push("must not be '..'".to_string());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Whether `value` can be a path segment (a name in a URL or store key): not `.` or
/// `..`, and without `/` or `%`.
pub fn is_path_segment_name(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| value.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Whether `port` is a port number, 1 to 65535.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Whether `port` is an IANA_SVC_NAME (RFC 6335): at most 15 characters of `[-a-z0-9]`,
/// at least one letter, no `--`, no leading or trailing `-`. Container port names
/// and named target ports follow it.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Whether `value` is an environment variable name under the relaxed rule the API
/// server applies since 1.34: printable ASCII other than `=`.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_string(),
        );
    }
    errs
}

/// A name rule for `metadata.name`: `(name, prefix)` → messages. With `prefix` the
/// value is a `generateName` to which random characters will be appended, so a
/// trailing `-` is allowed.
pub type NameFn = fn(&str, bool) -> Vec<String>;

/// The prefix rule: a trailing dash is fine because more characters follow.
fn mask_trailing_dash(name: &str) -> String {
    match name.strip_suffix('-') {
        Some(head) if !head.is_empty() => format!("{head}a"),
        _ => name.to_string(),
    }
}

/// Names that must be DNS-1123 subdomains (pods, nodes, config maps, ...).
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        is_dns1123_subdomain(&mask_trailing_dash(name))
    } else {
        is_dns1123_subdomain(name)
    }
}

/// Names that must be DNS-1123 labels (namespaces).
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        is_dns1123_label(&mask_trailing_dash(name))
    } else {
        is_dns1123_label(name)
    }
}

/// Names that must be DNS-1035 labels (services).
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        is_dns1035_label(&mask_trailing_dash(name))
    } else {
        is_dns1035_label(name)
    }
}

fn invalid_each(path: &Path, value: &str, msgs: Vec<String>) -> FieldErrors {
    msgs.into_iter().map(|m| path.invalid(value, m)).collect()
}

/// `path` must be a DNS-1123 label.
pub fn validate_dns1123_label(value: &str, path: &Path) -> FieldErrors {
    invalid_each(path, value, is_dns1123_label(value))
}

/// `path` must be a DNS-1123 subdomain.
pub fn validate_dns1123_subdomain(value: &str, path: &Path) -> FieldErrors {
    invalid_each(path, value, is_dns1123_subdomain(value))
}

/// `path` must be a qualified name.
pub fn validate_qualified_name(value: &str, path: &Path) -> FieldErrors {
    invalid_each(path, value, is_qualified_name(value))
}

/// A label key (reported at `path`, as the API server does for label maps).
pub fn validate_label_name(key: &str, path: &Path) -> FieldErrors {
    validate_qualified_name(key, path)
}

/// A map of labels: every key a qualified name, every value a label value. Errors
/// name the map (`metadata.labels`) and show the offending key or value.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        errs.extend(validate_label_name(k, path));
        errs.extend(invalid_each(path, v, is_label_value(v)));
    }
    errs
}

/// Annotations: keys are qualified names (case-insensitive), and all of them together
/// hold at most 256 KiB.
pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(path.invalid(k, m));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(path.too_long(Raw(String::new()), TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// The operators a label selector requirement may use.
pub const LABEL_SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// The values a set-based operator needs: some for `In`/`NotIn`, none for
/// `Exists`/`DoesNotExist`. `None` for any other operator (label selectors refuse
/// them; node selectors also know `Gt`/`Lt`).
pub fn set_operator_values(operator: &str, values: &[String], path: &Path) -> Option<FieldErrors> {
    match operator {
        "In" | "NotIn" if values.is_empty() => Some(vec![path
            .child("values")
            .required("must be specified when `operator` is 'In' or 'NotIn'")]),
        "Exists" | "DoesNotExist" if !values.is_empty() => Some(vec![path
            .child("values")
            .forbidden("may not be specified when `operator` is 'Exists' or 'DoesNotExist'")]),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => Some(Vec::new()),
        _ => None,
    }
}

/// One `matchExpressions` entry: `In`/`NotIn` need values, `Exists`/`DoesNotExist`
/// forbid them; the key is a qualified name and every value a label value.
pub fn validate_label_selector_requirement(
    req: &LabelSelectorRequirement,
    path: &Path,
) -> FieldErrors {
    let values = req.values.as_deref().unwrap_or_default();
    let mut errs = set_operator_values(&req.operator, values, path).unwrap_or_else(|| {
        vec![path
            .child("operator")
            .invalid(&req.operator, "not a valid selector operator")]
    });
    errs.extend(validate_label_name(&req.key, &path.child("key")));
    for (i, v) in values.iter().enumerate() {
        errs.extend(invalid_each(
            &path.child("values").index(i),
            v,
            is_label_value(v),
        ));
    }
    errs
}

/// A `LabelSelector` (`matchLabels` and `matchExpressions`); `None` is valid.
pub fn validate_label_selector(selector: Option<&LabelSelector>, path: &Path) -> FieldErrors {
    let Some(sel) = selector else {
        return Vec::new();
    };
    let mut errs = validate_labels(sel.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_label_selector_requirement(
            req,
            &path.child("matchExpressions").index(i),
        ));
    }
    errs
}

/// A port given as a number (1-65535) or a name (IANA_SVC_NAME), like a Service's
/// `targetPort` or a probe's port.
pub fn validate_port_num_or_name(port: &IntOrString, path: &Path) -> FieldErrors {
    match port {
        IntOrString::Int(n) => is_valid_port_num(i64::from(*n))
            .into_iter()
            .map(|m| path.invalid(*n, m))
            .collect(),
        IntOrString::String(s) => invalid_each(path, s, is_valid_port_name(s)),
    }
}

/// Parses an IPv4 address that may carry leading zeros in its octets (`010.1.2.3`),
/// as Go's `ParseIPSloppy` does, so such values get a precise error.
fn parse_ipv4_sloppy(value: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = value.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// Parses an IP address the way the API server's strict rules accept it: no leading
/// zeros, not IPv4-mapped IPv6. Canonical spelling is not required here.
pub fn parse_ip(value: &str) -> Option<IpAddr> {
    let ip: IpAddr = value.parse().ok()?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        _ => Some(ip),
    }
}

/// Whether `value` is an IP address in canonical form (`IsValidIP`): `10.0.0.1`,
/// `2001:db8::1`; not `010.0.0.1`, `::ffff:1.2.3.4` or `2001:DB8::1`.
pub fn is_valid_ip(path: &Path, value: &str) -> FieldErrors {
    let parsed: Option<IpAddr> = value.parse().ok();
    let Some(ip) = parsed else {
        if parse_ipv4_sloppy(value).is_some() {
            return vec![path.invalid(value, "must not have leading 0s")];
        }
        return vec![path.invalid(
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )];
    };
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return vec![path.invalid(value, "must not be an IPv4-mapped IPv6 address")];
        }
    }
    let canonical = ip.to_string();
    if canonical != value {
        return vec![path.invalid(value, format!("must be in canonical form ({canonical:?})"))];
    }
    Vec::new()
}

/// Rejects addresses that make no sense as an endpoint or external IP: unspecified,
/// loopback, link-local and link-local multicast (`ValidateEndpointIP`). Assumes the
/// value parses; an unparseable one gets "must be a valid IP address".
pub fn validate_endpoint_ip(path: &Path, value: &str) -> FieldErrors {
    let ip = parse_ip(value).or_else(|| parse_ipv4_sloppy(value).map(IpAddr::V4));
    let Some(ip) = ip else {
        return vec![path.invalid(value, "must be a valid IP address")];
    };
    let (unspecified, loopback, link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_unspecified(),
            v4.is_loopback(),
            v4.is_link_local(),
            v4.octets()[..3] == [224, 0, 0],
        ),
        IpAddr::V6(v6) => (
            v6.is_unspecified(),
            v6.is_loopback(),
            (v6.segments()[0] & 0xffc0) == 0xfe80,
            v6.octets()[0] == 0xff && (v6.octets()[1] & 0x0f) == 0x02,
        ),
    };
    let mut errs = Vec::new();
    if unspecified {
        errs.push(path.invalid(value, format!("may not be unspecified ({value})")));
    }
    if loopback {
        errs.push(path.invalid(
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if link_local {
        errs.push(path.invalid(
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(path.invalid(
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// A parsed CIDR: the network address and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address as written (bits beyond the prefix may be set).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// The address with the bits beyond the prefix cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// Parses a CIDR strictly (`10.0.0.0/8`, `2001:db8::/64`; no leading zeros, not
/// IPv4-mapped). Bits beyond the prefix are allowed here; see [`is_valid_cidr`].
pub fn parse_cidr(value: &str) -> Option<Cidr> {
    let (ip, len) = value.split_once('/')?;
    let addr = parse_ip(ip)?;
    if len.is_empty() || !len.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if len.len() > 1 && len.starts_with('0') {
        return None;
    }
    let prefix: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Cidr { addr, prefix })
}

/// Whether `value` is a subnet in canonical CIDR form (`IsValidCIDR`): parses, no
/// leading zeros, no bits set beyond the prefix, canonical spelling.
pub fn is_valid_cidr(path: &Path, value: &str) -> FieldErrors {
    if let Some(cidr) = parse_cidr(value) {
        if cidr.network() != cidr.addr {
            return vec![path.invalid(value, "must not have bits set beyond the prefix length")];
        }
        let canonical = cidr.to_string();
        if canonical != value {
            return vec![path.invalid(value, format!("must be in canonical form ({canonical:?})"))];
        }
        return Vec::new();
    }
    // Sloppy parse, to tell a malformed value from one with leading zeros.
    let sloppy = value.split_once('/').is_some_and(|(ip, len)| {
        let ip_ok = ip.parse::<IpAddr>().is_ok() || parse_ipv4_sloppy(ip).is_some();
        let len_ok = !len.is_empty()
            && len.len() <= 3
            && len.bytes().all(|c| c.is_ascii_digit())
            && len
                .parse::<u8>()
                .is_ok_and(|l| l <= if ip.contains(':') { 128 } else { 32 });
        ip_ok && len_ok
    });
    if !sloppy {
        return vec![path.invalid(
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )];
    }
    let mapped = value
        .split_once('/')
        .and_then(|(ip, _)| ip.parse::<Ipv6Addr>().ok())
        .is_some_and(|v6| v6.to_ipv4_mapped().is_some());
    if mapped {
        vec![path.invalid(value, "must not have an IPv4-mapped IPv6 address")]
    } else {
        vec![path.invalid(value, "must not have leading 0s in IP or prefix length")]
    }
}

/// Whether `value` is a fully qualified domain name: a DNS-1123 subdomain of at
/// least two labels, a trailing dot allowed (`IsFullyQualifiedDomainName`).
pub fn is_fully_qualified_domain_name(path: &Path, value: &str) -> FieldErrors {
    if value.is_empty() {
        return vec![path.required("")];
    }
    let name = value.strip_suffix('.').unwrap_or(value);
    let errs = is_dns1123_subdomain(name);
    if !errs.is_empty() {
        return vec![path.invalid(name, errs.join(","))];
    }
    if name.split('.').count() < 2 {
        return vec![path.invalid(
            name,
            "should be a domain with at least two segments separated by dots",
        )];
    }
    for label in name.split('.') {
        let errs = is_dns1123_label(label);
        if !errs.is_empty() {
            return vec![path.invalid(label, errs.join(","))];
        }
    }
    Vec::new()
}
