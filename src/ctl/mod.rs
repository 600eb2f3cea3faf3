//! `capstan ctl`: kubectl's everyday verbs (`apply -f`, `get`, `delete`,
//! `describe`) against any store member, through the same typed client, validation
//! and allocators every other writer uses.

mod print;

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use capstan_api::client::WatchEvent;
use capstan_api::k8s_openapi::api::coordination::v1::Lease;
use capstan_api::k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Service};
use capstan_api::k8s_openapi::api::discovery::v1::EndpointSlice;
use capstan_api::k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use capstan_api::k8s_openapi::api::scheduling::v1::PriorityClass;
use capstan_api::selector::Selector;
use capstan_api::{Client, Error as ApiError, Kind, Object, ObjectRef};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::Value;

/// `capstan ctl` flags shared by every verb.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Store client URLs, comma-separated.
    #[arg(
        long,
        env = "CAPSTAN_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        global = true
    )]
    endpoints: String,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Create or update objects from manifests (files, directories, `-` for stdin;
    /// multi-document YAML or JSON). Every object is validated before any is written.
    Apply {
        /// Manifest file, directory or `-`.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace for objects that do not name one.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// List objects, or show some by name.
    Get {
        /// Kind (`pods`, `svc`, `endpointslices`, `nodes`, ... or `kind1,kind2`).
        kind: String,
        /// Names (all objects when none).
        names: Vec<String>,
        #[command(flatten)]
        scope: Scope,
        /// Output: yaml, json, wide or name (default: a table).
        #[arg(short = 'o', long)]
        output: Option<String>,
        /// After listing, print changes as they happen.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Delete objects by kind and name, or those in manifests.
    Delete {
        /// Kind, then names.
        args: Vec<String>,
        /// Manifests whose objects to delete.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        scope: Scope,
        /// Delete every object of the kind in the namespace.
        #[arg(long)]
        all: bool,
        /// Pods only: mark terminating for this many seconds instead of deleting
        /// now (the node agent finishes the delete).
        #[arg(long)]
        grace_period: Option<i64>,
    },
    /// Show one object in detail, with related objects.
    Describe {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        #[command(flatten)]
        scope: Scope,
    },
}

#[derive(Args, Debug)]
struct Scope {
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector (`app=web,tier!=db,env in (a,b)`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
}

impl Scope {
    fn namespace(&self, kind: Kind) -> Option<String> {
        if !kind.namespaced() || self.all_namespaces {
            None
        } else {
            Some(self.namespace.clone().unwrap_or_else(|| "default".into()))
        }
    }
}

/// Runs one `capstan ctl` command.
pub async fn run(args: CtlArgs) -> Result<()> {
    let endpoints: Vec<String> = args
        .endpoints
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let client = Client::connect(&endpoints)
        .await
        .with_context(|| format!("connecting to {}", args.endpoints))?;
    // Only writers allocate (apply) or release (delete) Service addresses; reads
    // skip loading the ranges and claims.
    let client = if matches!(args.verb, Verb::Apply { .. } | Verb::Delete { .. }) {
        let allocator = capstan_controllers::alloc::Allocator::load(&client).await?;
        client.with_service_allocator(Arc::new(allocator))
    } else {
        client
    };
    match args.verb {
        Verb::Apply { files, namespace } => apply(&client, &files, namespace.as_deref()).await,
        Verb::Get {
            kind,
            names,
            scope,
            output,
            watch,
        } => {
            let kinds = kind
                .split(',')
                .map(parse_kind)
                .collect::<Result<Vec<_>>>()?;
            for (i, k) in kinds.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                get(
                    &client,
                    *k,
                    &names,
                    &scope,
                    output.as_deref(),
                    watch && kinds.len() == 1,
                )
                .await?;
            }
            Ok(())
        }
        Verb::Delete {
            args,
            files,
            scope,
            all,
            grace_period,
        } => delete(&client, &args, &files, &scope, all, grace_period).await,
        Verb::Describe { kind, name, scope } => {
            let kind = parse_kind(&kind)?;
            describe(&client, kind, &name, &scope).await
        }
    }
}

fn parse_kind(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| {
        anyhow!(
            "the server doesn't have a resource type {s:?} (known: {})",
            Kind::ALL
                .iter()
                .map(|k| k.plural())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Calls a generic function with the Rust type of a runtime kind.
macro_rules! by_kind {
    ($kind:expr, $f:ident ( $($arg:expr),* )) => {
        match $kind {
            Kind::Namespace => $f::<Namespace>($($arg),*).await,
            Kind::Node => $f::<Node>($($arg),*).await,
            Kind::Pod => $f::<Pod>($($arg),*).await,
            Kind::Service => $f::<Service>($($arg),*).await,
            Kind::ConfigMap => $f::<ConfigMap>($($arg),*).await,
            Kind::EndpointSlice => $f::<EndpointSlice>($($arg),*).await,
            Kind::Lease => $f::<Lease>($($arg),*).await,
            Kind::PriorityClass => $f::<PriorityClass>($($arg),*).await,
            Kind::IpAddress => $f::<IPAddress>($($arg),*).await,
            Kind::ServiceCidr => $f::<ServiceCIDR>($($arg),*).await,
            Kind::Event => $f::<Event>($($arg),*).await,
            other => Err(anyhow!("kind {other} is not supported by ctl yet")),
        }
    };
}

/// `pod/web-0`, `endpointslice.discovery.k8s.io/web-abc`, as kubectl names them.
fn type_name(kind: Kind, name: &str) -> String {
    let lower = kind.name().to_ascii_lowercase();
    match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{lower}.{group}/{name}"),
        None => format!("{lower}/{name}"),
    }
}

// ----- apply -----

/// One document of a manifest, with where it came from.
struct Doc {
    source: String,
    kind: Kind,
    value: Value,
}

fn read_manifests(files: &[PathBuf]) -> Result<Vec<Doc>> {
    let mut texts = Vec::new();
    for f in files {
        if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            texts.push(("<stdin>".to_string(), s));
        } else if f.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(f)
                .with_context(|| format!("reading {}", f.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            for p in entries {
                texts.push((p.display().to_string(), read_file(&p)?));
            }
        } else {
            texts.push((f.display().to_string(), read_file(f)?));
        }
    }
    let mut docs = Vec::new();
    for (source, text) in texts {
        for (i, de) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(de)
                .map_err(|e| anyhow!("error parsing {source} (document {}): {e}", i + 1))?;
            if value.is_null() {
                continue;
            }
            push_doc(&mut docs, &source, value)?;
        }
    }
    Ok(docs)
}

fn read_file(p: &FsPath) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

fn push_doc(docs: &mut Vec<Doc>, source: &str, value: Value) -> Result<()> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind_name = value["kind"].as_str().unwrap_or_default().to_string();
    if kind_name.ends_with("List") && value["items"].is_array() {
        for item in value["items"].as_array().into_iter().flatten() {
            push_doc(docs, source, item.clone())?;
        }
        return Ok(());
    }
    if api_version.is_empty() || kind_name.is_empty() {
        bail!("error validating {source}: apiVersion and kind must be set in every object");
    }
    let kind = Kind::from_type(&api_version, &kind_name).ok_or_else(|| {
        anyhow!("error validating {source}: no kind {kind_name:?} is registered for version {api_version:?}")
    })?;
    docs.push(Doc {
        source: source.to_string(),
        kind,
        value,
    });
    Ok(())
}

async fn apply(client: &Client, files: &[PathBuf], namespace: Option<&str>) -> Result<()> {
    let mut docs = read_manifests(files)?;
    if docs.is_empty() {
        bail!("no objects passed to apply");
    }
    // Namespaces and priority classes first, so objects in the same manifests that
    // need them find them.
    docs.sort_by_key(|d| !matches!(d.kind, Kind::Namespace | Kind::PriorityClass));
    for d in &mut docs {
        if d.kind.namespaced() {
            let ns = d.value["metadata"]["namespace"]
                .as_str()
                .map(str::to_string);
            match (ns, namespace) {
                (Some(a), Some(b)) if a != b => bail!(
                    "error from {}: the namespace from the provided object {a:?} does not match the namespace {b:?}. You must pass '--namespace={a}' to perform this operation.",
                    d.source
                ),
                (None, _) => d.value["metadata"]["namespace"] = Value::String(namespace.unwrap_or("default").into()),
                _ => {}
            }
        }
    }
    // Validate everything before writing anything.
    let mut problems = Vec::new();
    for d in &docs {
        if let Err(e) = by_kind!(d.kind, precheck(d)) {
            problems.push(format!("{e:#}"));
        }
    }
    if !problems.is_empty() {
        bail!("{}\nnothing was applied", problems.join("\n"));
    }
    let mut failed = 0;
    for d in &docs {
        match by_kind!(d.kind, apply_one(client, d)) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                eprintln!("Error from server: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} objects failed to apply", docs.len());
    }
    Ok(())
}

async fn precheck<K: Object>(d: &Doc) -> Result<()> {
    let mut obj: K = serde_json::from_value(d.value.clone()).map_err(|e| {
        anyhow!(
            "error validating {}: {} {:?}: {e}",
            d.source,
            d.kind,
            d.value["metadata"]["name"].as_str().unwrap_or("")
        )
    })?;
    if obj.metadata().name.as_deref().unwrap_or("").is_empty()
        && obj.metadata().generate_name.is_some()
    {
        bail!(
            "error from {}: apply needs metadata.name (generateName is only for create)",
            d.source
        );
    }
    obj.apply_defaults();
    let errors = obj.validate(None);
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            object: ObjectRef::of(&obj),
            errors,
        }
        .into());
    }
    Ok(())
}

async fn apply_one<K: Object>(client: &Client, d: &Doc) -> Result<String> {
    for _ in 0..5 {
        let mut new: K = serde_json::from_value(d.value.clone())?;
        let r = ObjectRef::of(&new);
        let name = type_name(d.kind, &r.name);
        let Some(old) = client.get_opt::<K>(&r).await? else {
            match client.create(new).await {
                Ok(_) => return Ok(format!("{name} created")),
                Err(ApiError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let old_v = serde_json::to_value(&old)?;
        let mut new_v = serde_json::to_value(&new)?;
        carry_over(d.kind, &mut new_v, &old_v);
        new = serde_json::from_value(new_v)?;
        let mut defaulted = new.clone();
        defaulted.apply_defaults();
        if serde_json::to_value(&defaulted)? == old_v {
            return Ok(format!("{name} unchanged"));
        }
        match client.update(new).await {
            Ok(_) => return Ok(format!("{name} configured")),
            Err(ApiError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("{}: kept conflicting with concurrent writers", d.source)
}

/// What an update keeps from the stored object when the manifest does not say:
/// server-set metadata, status, and fields the cluster filled in (a Service's
/// addresses and node ports, a Pod's node).
fn carry_over(kind: Kind, new: &mut Value, old: &Value) {
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        if !old["metadata"][f].is_null() {
            new["metadata"][f] = old["metadata"][f].clone();
        }
    }
    if !old["status"].is_null() && new["status"].is_null() {
        new["status"] = old["status"].clone();
    }
    let keep = |new: &mut Value, field: &str| {
        if new["spec"][field].is_null() && !old["spec"][field].is_null() && new["spec"].is_object()
        {
            new["spec"][field] = old["spec"][field].clone();
        }
    };
    match kind {
        Kind::Service => {
            let same_type = new["spec"]["type"] == old["spec"]["type"]
                || (new["spec"]["type"].is_null() && old["spec"]["type"] == "ClusterIP");
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                keep(new, f);
            }
            if same_type {
                let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
                if let Some(ports) = new["spec"]["ports"].as_array_mut() {
                    for p in ports {
                        if !p["nodePort"].is_null() {
                            continue;
                        }
                        let proto = |v: &Value| v["protocol"].as_str().unwrap_or("TCP").to_string();
                        if let Some(o) = old_ports
                            .iter()
                            .find(|o| o["port"] == p["port"] && proto(o) == proto(p))
                        {
                            if !o["nodePort"].is_null() {
                                p["nodePort"] = o["nodePort"].clone();
                            }
                        }
                    }
                }
            }
        }
        // Set by the scheduler and by priority admission, never by the manifest.
        Kind::Pod => {
            for f in ["nodeName", "priority", "preemptionPolicy"] {
                keep(new, f);
            }
        }
        _ => {}
    }
}

// ----- get -----

async fn get(
    client: &Client,
    kind: Kind,
    names: &[String],
    scope: &Scope,
    output: Option<&str>,
    watch: bool,
) -> Result<()> {
    let selector =
        Selector::parse(scope.selector.as_deref().unwrap_or("")).map_err(|e| anyhow!(e))?;
    let ns = scope.namespace(kind);
    let (objects, revision) = if names.is_empty() {
        let (mut objs, rev) = by_kind!(kind, list_values(client, ns.as_deref()))?;
        objs.retain(|o| selector.matches(labels_of(o).as_ref()));
        (objs, rev)
    } else {
        let mut objs = Vec::new();
        let mut missing = Vec::new();
        for n in names {
            let r = object_ref(kind, ns.as_deref(), n);
            match by_kind!(kind, get_value(client, &r)) {
                Ok(v) => objs.push(v),
                Err(e) => missing.push(format!("{e:#}")),
            }
        }
        print_objects(kind, &objs, scope, output)?;
        if !missing.is_empty() {
            bail!(
                "{}",
                missing
                    .iter()
                    .map(|m| format!("Error from server (NotFound): {m}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        if !watch {
            return Ok(());
        }
        (Vec::new(), 0)
    };
    if names.is_empty() {
        if objects.is_empty() && output.is_none_or(|o| o == "wide") && !watch {
            eprintln!("{}", print::no_resources(ns.as_deref()));
            return Ok(());
        }
        print_objects(kind, &objects, scope, output)?;
    }
    if watch {
        let from = if revision > 0 { revision + 1 } else { 0 };
        by_kind!(
            kind,
            watch_values(client, ns.as_deref(), from, names, &selector, scope, output)
        )?;
    }
    Ok(())
}

fn object_ref(kind: Kind, ns: Option<&str>, name: &str) -> ObjectRef {
    if kind.namespaced() {
        ObjectRef::namespaced(kind, ns.unwrap_or("default"), name)
    } else {
        ObjectRef::cluster(kind, name)
    }
}

fn labels_of(v: &Value) -> Option<std::collections::BTreeMap<String, String>> {
    serde_json::from_value(v["metadata"]["labels"].clone()).ok()
}

async fn list_values<K: Object>(client: &Client, ns: Option<&str>) -> Result<(Vec<Value>, i64)> {
    let list = client.list::<K>(ns).await?;
    if list.skipped > 0 {
        eprintln!(
            "warning: {} stored {} did not parse and were skipped",
            list.skipped,
            K::TYPE.plural()
        );
    }
    let values = list
        .items
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((values, list.revision))
}

async fn get_value<K: Object>(client: &Client, r: &ObjectRef) -> Result<Value> {
    Ok(serde_json::to_value(client.get::<K>(r).await?)?)
}

fn print_objects(kind: Kind, objects: &[Value], scope: &Scope, output: Option<&str>) -> Result<()> {
    match output {
        None | Some("wide") => {
            if !objects.is_empty() {
                print!("{}", table(kind, objects, scope, output == Some("wide"), true));
            }
        }
        Some("json") => println!("{}", serde_json::to_string_pretty(&as_document(objects))?),
        Some("yaml") => print!("{}", serde_norway::to_string(&as_document(objects))?),
        Some("name") => {
            for o in objects {
                println!("{}", type_name(kind, o["metadata"]["name"].as_str().unwrap_or("")));
            }
        }
        Some(other) => bail!("unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,wide,yaml"),
    }
    Ok(())
}

fn table(kind: Kind, objects: &[Value], scope: &Scope, wide: bool, header: bool) -> String {
    print::table(
        kind,
        objects,
        &print::TableOptions {
            all_namespaces: scope.all_namespaces && kind.namespaced(),
            wide,
            header,
            now: jiff::Timestamp::now(),
        },
    )
}

fn as_document(objects: &[Value]) -> Value {
    if objects.len() == 1 {
        objects[0].clone()
    } else {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": objects,
            "metadata": {"resourceVersion": ""},
        })
    }
}

async fn watch_values<K: Object>(
    client: &Client,
    ns: Option<&str>,
    from: i64,
    names: &[String],
    selector: &Selector,
    scope: &Scope,
    output: Option<&str>,
) -> Result<()> {
    let mut from = if from > 0 {
        from
    } else {
        current_revision(client).await? + 1
    };
    loop {
        let stream = client.watch::<K>(ns, from).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(WatchEvent::Added(o))
                | Ok(WatchEvent::Modified(o))
                | Ok(WatchEvent::Deleted(o)) => o,
                Ok(WatchEvent::Removed { revision, .. }) => {
                    from = from.max(revision + 1);
                    continue;
                }
                Ok(WatchEvent::Bookmark(r)) => {
                    from = from.max(r + 1);
                    continue;
                }
                Err(ApiError::Compacted { .. }) => {
                    bail!("watch fell behind a compaction; run get -w again")
                }
                Err(e) => {
                    eprintln!("watch broke ({e}); resuming");
                    break;
                }
            };
            if let Some(rv) = capstan_api::client::resource_version(&obj) {
                from = from.max(rv + 1);
            }
            let v = serde_json::to_value(&obj)?;
            let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
            if (!names.is_empty() && !names.contains(&name))
                || !selector.matches(labels_of(&v).as_ref())
            {
                continue;
            }
            match output {
                Some("json") => println!("{}", serde_json::to_string_pretty(&v)?),
                Some("yaml") => print!("---\n{}", serde_norway::to_string(&v)?),
                Some("name") => println!("{}", type_name(K::TYPE, &name)),
                _ => print!(
                    "{}",
                    table(K::TYPE, &[v], scope, output == Some("wide"), false)
                ),
            }
            use std::io::Write;
            std::io::stdout().flush()?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn current_revision(client: &Client) -> Result<i64> {
    let resp = client
        .etcd()
        .kv_client()
        .get(
            "/registry/",
            Some(capstan_api::etcd_client::GetOptions::new().with_count_only()),
        )
        .await?;
    Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
}

// ----- delete -----

async fn delete(
    client: &Client,
    args: &[String],
    files: &[PathBuf],
    scope: &Scope,
    all: bool,
    grace: Option<i64>,
) -> Result<()> {
    let mut targets: Vec<ObjectRef> = Vec::new();
    if !files.is_empty() {
        for d in read_manifests(files)? {
            let name = d.value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = d.value["metadata"]["namespace"]
                .as_str()
                .map(str::to_string)
                .or_else(|| scope.namespace.clone());
            targets.push(object_ref(d.kind, ns.as_deref(), &name));
        }
        // Namespaces last: deleting one deletes what is in it, and the manifest's
        // other objects would then be reported missing.
        targets.sort_by_key(|r| matches!(r.kind, Kind::Namespace | Kind::PriorityClass));
    } else {
        let Some((kind, names)) = args.split_first() else {
            bail!("you must specify the kind and name(s) of what to delete, or -f");
        };
        let kind = parse_kind(kind)?;
        let ns = scope.namespace(kind);
        if all || scope.selector.is_some() {
            let selector =
                Selector::parse(scope.selector.as_deref().unwrap_or("")).map_err(|e| anyhow!(e))?;
            let (objs, _) = by_kind!(kind, list_values(client, ns.as_deref()))?;
            for o in objs
                .iter()
                .filter(|o| selector.matches(labels_of(o).as_ref()))
            {
                let name = o["metadata"]["name"].as_str().unwrap_or_default();
                targets.push(object_ref(kind, o["metadata"]["namespace"].as_str(), name));
            }
        } else if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified (use --all to delete every one)");
        }
        targets.extend(names.iter().map(|n| object_ref(kind, ns.as_deref(), n)));
    }
    let mut failed = 0;
    for r in &targets {
        let result = match (r.kind, grace) {
            (Kind::Pod, Some(g)) if g > 0 => client
                .mark_deleting::<Pod>(r, g)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from),
            _ => by_kind!(r.kind, delete_one(client, r)),
        };
        match result {
            Ok(()) => println!(
                "{} {:?} deleted",
                r.kind.name().to_ascii_lowercase(),
                r.name
            ),
            Err(e) => {
                failed += 1;
                let not_found = matches!(
                    e.downcast_ref::<ApiError>(),
                    Some(ApiError::NotFound { .. })
                );
                let label = if not_found { " (NotFound)" } else { "" };
                eprintln!("Error from server{label}: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} deletes failed", targets.len());
    }
    Ok(())
}

async fn delete_one<K: Object>(client: &Client, r: &ObjectRef) -> Result<()> {
    client.delete::<K>(r, None).await?;
    Ok(())
}

// ----- describe -----

async fn describe(client: &Client, kind: Kind, name: &str, scope: &Scope) -> Result<()> {
    let ns = scope.namespace(kind);
    let r = object_ref(kind, ns.as_deref(), name);
    let obj = by_kind!(kind, get_value(client, &r))?;
    let mut related = print::Related::default();
    // The object's events: those naming it (and its uid, so a namesake that was
    // deleted and recreated does not lend its history).
    let events_ns = ns.clone().unwrap_or_else(|| "default".to_string());
    let (events, _) = list_values::<Event>(client, Some(&events_ns)).await?;
    related.events = events
        .into_iter()
        .filter(|e| {
            let o = &e["involvedObject"];
            o["kind"] == kind.name()
                && o["name"] == name
                && (o["uid"].is_null() || o["uid"] == obj["metadata"]["uid"])
        })
        .collect();
    match kind {
        Kind::Service => {
            let (slices, _) = list_values::<EndpointSlice>(client, ns.as_deref()).await?;
            related.endpoint_slices = slices
                .into_iter()
                .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == name)
                .collect();
        }
        Kind::Node => {
            let (pods, _) = list_values::<Pod>(client, None).await?;
            related.pods = pods
                .into_iter()
                .filter(|p| p["spec"]["nodeName"] == name)
                .collect();
        }
        _ => {}
    }
    print!(
        "{}",
        print::describe(kind, &obj, &related, jiff::Timestamp::now())
    );
    Ok(())
}
