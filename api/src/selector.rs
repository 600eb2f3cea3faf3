//! Label selectors: the string form users type (`app=web,tier!=db,env in (a,b),!x`)
//! and the `LabelSelector` objects carry, both matched against label maps.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`, or `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value`, or `key notin (a,b)` (also true when the key is absent).
    NotIn(String, Vec<String>),
    /// `key`
    Exists(String),
    /// `!key`
    DoesNotExist(String),
}

/// A parsed selector: every requirement must hold. The empty selector matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    /// Parses kubectl's `-l` syntax.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(check_key(key.trim())?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotIn(check_key(k.trim())?, vec![v.trim().to_string()])
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::In(check_key(k.trim())?, vec![v.trim().to_string()])
            } else if let Some((k, vals)) = set_op(part, " notin ") {
                Requirement::NotIn(check_key(k)?, vals?)
            } else if let Some((k, vals)) = set_op(part, " in ") {
                Requirement::In(check_key(k)?, vals?)
            } else {
                Requirement::Exists(check_key(part)?)
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// The selector a `LabelSelector` object describes; `None` if it is malformed
    /// (an unknown operator), which matches nothing, as in Kubernetes.
    pub fn from_label_selector(ls: &LabelSelector) -> Option<Selector> {
        let mut reqs: Vec<Requirement> = ls
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for e in ls.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            reqs.push(match e.operator.as_str() {
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                _ => return None,
            });
        }
        Some(Selector(reqs))
    }

    /// A selector of equalities (a Service's `spec.selector`).
    pub fn from_map(map: &BTreeMap<String, String>) -> Selector {
        Selector(
            map.iter()
                .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
                .collect(),
        )
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// Whether the selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_op<'a>(part: &'a str, op: &str) -> Option<(&'a str, Result<Vec<String>, String>)> {
    let (k, rest) = part.split_once(op)?;
    let rest = rest.trim();
    let values = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .map(|inner| {
            inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .ok_or_else(|| format!("invalid selector {part:?}: expected a value list in parentheses"));
    Some((k.trim(), values))
}

fn check_key(k: &str) -> Result<String, String> {
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?} in selector"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn string_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("env", "prod")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("env in (prod, staging)", true),
            ("env notin (prod)", false),
            ("env", true),
            ("!env", false),
            ("!missing", true),
            ("app=web,env in (dev,prod),!missing", true),
        ];
        for (s, want) in cases {
            assert_eq!(Selector::parse(s).unwrap().matches(Some(&l)), want, "{s}");
        }
        assert!(Selector::parse("env in prod").is_err());
        assert!(Selector::parse("a b=c").is_err());
        assert!(!Selector::parse("app=web").unwrap().matches(None));
    }

    #[test]
    fn label_selector_objects() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let ls = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["front".into()]),
            }]),
        };
        let s = Selector::from_label_selector(&ls).unwrap();
        assert!(s.matches(Some(&labels(&[("app", "web"), ("tier", "front")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web")]))));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(Selector::from_label_selector(&bad).is_none());
    }
}
