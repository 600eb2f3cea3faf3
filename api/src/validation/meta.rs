//! `metadata` rules every kind shares (apimachinery's `ValidateObjectMeta` and
//! `ValidateObjectMetaUpdate`): name and generateName, namespace presence by scope,
//! labels, annotations, owner references, finalizers, and on update the fields that
//! never change.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;

use super::names::{
    is_qualified_name, name_is_dns_label, validate_annotations, validate_labels, NameFn, Raw,
    FIELD_IMMUTABLE_ERROR, IS_NEGATIVE_ERROR,
};
use super::{FieldErrors, Path};

/// Finalizers Kubernetes itself defines, the only ones allowed without a `/` prefix.
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// Renders a value as compact JSON for an error (timestamps, references).
pub(crate) fn json<T: Serialize>(value: &T) -> Raw {
    Raw(serde_json::to_string(value).unwrap_or_default())
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// Checks an object's metadata on create (and, for the parts that can change, on
/// update): `namespaced` says whether the kind lives in a namespace, `name_fn` is the
/// kind's name rule.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: NameFn,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let generate_name = text(&meta.generate_name);
    if !generate_name.is_empty() {
        for m in name_fn(generate_name, true) {
            errs.push(path.child("generateName").invalid(generate_name, m));
        }
    }
    let name = text(&meta.name);
    if name.is_empty() {
        errs.push(
            path.child("name")
                .required("name or generateName is required"),
        );
    } else {
        for m in name_fn(name, false) {
            errs.push(path.child("name").invalid(name, m));
        }
    }
    let namespace = text(&meta.namespace);
    if namespaced {
        if namespace.is_empty() {
            errs.push(path.child("namespace").required(""));
        } else {
            for m in name_is_dns_label(namespace, false) {
                errs.push(path.child("namespace").invalid(namespace, m));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(
            path.child("namespace")
                .forbidden("not allowed on this type"),
        );
    }
    if let Some(g) = meta.generation.filter(|g| *g < 0) {
        errs.push(path.child("generation").invalid(g, IS_NEGATIVE_ERROR));
    }
    errs.extend(validate_common(meta, path));
    errs.extend(validate_finalizers(
        meta.finalizers.as_deref().unwrap_or_default(),
        &path.child("finalizers"),
    ));
    errs
}

/// What create and update both check: labels, annotations, owner references.
fn validate_common(meta: &ObjectMeta, path: &Path) -> FieldErrors {
    let mut errs = validate_labels(meta.labels.as_ref(), &path.child("labels"));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        meta.owner_references.as_deref().unwrap_or_default(),
        &path.child("ownerReferences"),
    ));
    errs
}

/// Owner references: apiVersion, kind, name and uid present; at most one controller.
pub fn validate_owner_references(refs: &[OwnerReference], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut controller: Option<String> = None;
    for (i, r) in refs.iter().enumerate() {
        let p = path.index(i);
        if r.api_version.is_empty() {
            errs.push(p.child("apiVersion").required("must not be empty"));
        } else {
            let version = r.api_version.rsplit('/').next().unwrap_or_default();
            if version.is_empty() || r.api_version.matches('/').count() > 1 {
                errs.push(
                    p.child("apiVersion")
                        .invalid(&r.api_version, "must be <group>/<version> or <version>"),
                );
            }
        }
        if r.kind.is_empty() {
            errs.push(p.child("kind").required("must not be empty"));
        }
        if r.name.is_empty() {
            errs.push(p.child("name").required("must not be empty"));
        }
        if r.uid.is_empty() {
            errs.push(p.child("uid").required("must not be empty"));
        }
        if r.api_version == "v1" && r.kind == "Event" {
            errs.push(p.invalid(json(r), "/v1, Kind=Event is disallowed from being an owner"));
        }
        if r.controller == Some(true) {
            let this = format!("{}/{}", r.kind, r.name);
            match &controller {
                Some(first) => errs.push(path.invalid(
                    json(&refs),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                )),
                None => controller = Some(this),
            }
        }
    }
    errs
}

/// Finalizer names: qualified names; unprefixed ones must be Kubernetes' own; `orphan`
/// and `foregroundDeletion` exclude each other.
pub fn validate_finalizers(finalizers: &[String], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, f) in finalizers.iter().enumerate() {
        for m in is_qualified_name(f) {
            errs.push(path.invalid(f, m));
        }
        errs.extend(validate_kube_finalizer_name(f, &path.index(i)));
    }
    let has = |n: &str| finalizers.iter().any(|f| f == n);
    if has("orphan") && has("foregroundDeletion") {
        errs.push(path.invalid(
            finalizers,
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// An unprefixed finalizer must be one Kubernetes defines.
pub fn validate_kube_finalizer_name(name: &str, path: &Path) -> FieldErrors {
    if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        return vec![path.invalid(
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        )];
    }
    Vec::new()
}

/// Checks what an update may not do to metadata: change name, namespace, uid,
/// creationTimestamp or the deletion fields, lower the generation, or add finalizers
/// to an object being deleted.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if old.deletion_timestamp.is_some() {
        let before: BTreeSet<&String> = old.finalizers.iter().flatten().collect();
        let added: Vec<&String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            errs.push(path.child("finalizers").forbidden(format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
            )));
        }
    }
    let (new_gen, old_gen) = (new.generation.unwrap_or(0), old.generation.unwrap_or(0));
    if new_gen < 0 {
        errs.push(path.child("generation").invalid(new_gen, IS_NEGATIVE_ERROR));
    }
    if new_gen < old_gen {
        errs.push(
            path.child("generation")
                .invalid(new_gen, "must not be decremented"),
        );
    }
    let immutable = |field: &str, new: &Option<String>, old: &Option<String>| {
        (text(new) != text(old))
            .then(|| path.child(field).invalid(text(new), FIELD_IMMUTABLE_ERROR))
    };
    errs.extend(immutable("name", &new.name, &old.name));
    errs.extend(immutable("namespace", &new.namespace, &old.namespace));
    errs.extend(immutable("uid", &new.uid, &old.uid));
    if new.creation_timestamp != old.creation_timestamp {
        errs.push(
            path.child("creationTimestamp")
                .invalid(json(&new.creation_timestamp), FIELD_IMMUTABLE_ERROR),
        );
    }
    if new.deletion_timestamp != old.deletion_timestamp {
        errs.push(
            path.child("deletionTimestamp")
                .invalid(json(&new.deletion_timestamp), FIELD_IMMUTABLE_ERROR),
        );
    }
    if new.deletion_grace_period_seconds != old.deletion_grace_period_seconds {
        errs.push(path.child("deletionGracePeriodSeconds").invalid(
            json(&new.deletion_grace_period_seconds),
            FIELD_IMMUTABLE_ERROR,
        ));
    }
    errs
}

/// Metadata on create (`old == None`) or update, the way every kind checks it:
/// on update the immutable fields, plus everything a create checks.
pub fn validate_meta(
    meta: &ObjectMeta,
    old: Option<&ObjectMeta>,
    namespaced: bool,
    name_fn: NameFn,
) -> FieldErrors {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    if let Some(old) = old {
        errs.extend(validate_object_meta_update(meta, old, &path));
    }
    errs.extend(validate_object_meta(meta, namespaced, name_fn, &path));
    errs
}
