//! kubectl's human-readable output: `get` tables with kubectl's columns per kind
//! (and `-o wide`'s extra ones), ages as kubectl rounds them, and `describe` pages.
//! Everything works on the JSON form of objects, so a field that is missing or of an
//! odd shape prints as kubectl prints an unset value instead of failing.

use capstan_api::Kind;
use jiff::Timestamp;
use serde_json::Value;

/// How a `get` table is laid out.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// Objects from several namespaces: a NAMESPACE column comes first.
    pub all_namespaces: bool,
    /// `-o wide`: the extra columns.
    pub wide: bool,
    /// Print the header line (not for `get -w` updates after the first).
    pub header: bool,
    /// The time ages are measured to.
    pub now: Timestamp,
}

/// Objects shown alongside the one described.
#[derive(Clone, Debug, Default)]
pub struct Related {
    /// A Service's EndpointSlices.
    pub endpoint_slices: Vec<Value>,
    /// A Node's pods.
    pub pods: Vec<Value>,
    /// Events about the object.
    pub events: Vec<Value>,
}

/// kubectl's message for an empty list.
pub fn no_resources(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".to_string(),
    }
}

/// A `get` table of `objects` of `kind`, aligned as kubectl aligns it.
pub fn table(kind: Kind, objects: &[Value], opts: &TableOptions) -> String {
    let (mut header, wide_header) = columns(kind);
    if opts.wide {
        header.extend(wide_header);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    if opts.header {
        let mut h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        if opts.all_namespaces {
            h.insert(0, "NAMESPACE".into());
        }
        rows.push(h);
    }
    for o in objects {
        let mut row = cells(kind, o, opts);
        row.truncate(header.len());
        if opts.all_namespaces {
            row.insert(0, text(&o["metadata"]["namespace"]).to_string());
        }
        rows.push(row);
    }
    let lines: Vec<String> = rows.iter().map(|r| r.join("\t")).collect();
    align(&lines, 6, 3)
}

/// Header columns, then the extra `-o wide` ones.
fn columns(kind: Kind) -> (Vec<&'static str>, Vec<&'static str>) {
    match kind {
        Kind::Namespace => (vec!["NAME", "STATUS", "AGE"], vec![]),
        Kind::Node => (
            vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            vec![
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
        Kind::Pod => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            vec!["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        ),
        Kind::Service => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            vec!["SELECTOR"],
        ),
        Kind::ConfigMap => (vec!["NAME", "DATA", "AGE"], vec![]),
        Kind::EndpointSlice => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            vec![],
        ),
        Kind::Lease => (vec!["NAME", "HOLDER", "AGE"], vec![]),
        Kind::PriorityClass => (
            vec!["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
            vec![],
        ),
        Kind::IpAddress => (vec!["NAME", "PARENTREF"], vec![]),
        Kind::ServiceCidr => (vec!["NAME", "CIDRS", "AGE"], vec![]),
        Kind::Event => (
            vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            vec![],
        ),
        _ => (vec!["NAME", "AGE"], vec![]),
    }
}

/// One row: the header's columns, then the wide ones.
fn cells(kind: Kind, o: &Value, opts: &TableOptions) -> Vec<String> {
    let name = text(&o["metadata"]["name"]).to_string();
    let age = age(o, opts.now);
    match kind {
        Kind::Namespace => vec![name, text(&o["status"]["phase"]).to_string(), age],
        Kind::Node => {
            let info = &o["status"]["nodeInfo"];
            vec![
                name,
                node_status(o),
                node_roles(o),
                age,
                or_none(text(&info["kubeletVersion"])),
                node_address(o, "InternalIP"),
                node_address(o, "ExternalIP"),
                or_unknown(text(&info["osImage"])),
                or_unknown(text(&info["kernelVersion"])),
                or_unknown(text(&info["containerRuntimeVersion"])),
            ]
        }
        Kind::Pod => {
            let containers = array(&o["spec"]["containers"]).len();
            let statuses = array(&o["status"]["containerStatuses"]);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses
                .iter()
                .map(|s| s["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let gates = array(&o["spec"]["readinessGates"]);
            let gates = if gates.is_empty() {
                "<none>".to_string()
            } else {
                let conditions = array(&o["status"]["conditions"]);
                let met = gates
                    .iter()
                    .filter(|g| {
                        conditions
                            .iter()
                            .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
                    })
                    .count();
                format!("{met}/{}", gates.len())
            };
            vec![
                name,
                format!("{ready}/{containers}"),
                pod_status(o),
                restarts.to_string(),
                age,
                or_none(text(&o["status"]["podIP"])),
                or_none(text(&o["spec"]["nodeName"])),
                or_none(text(&o["status"]["nominatedNodeName"])),
                gates,
            ]
        }
        Kind::Service => {
            let spec = &o["spec"];
            let ty = text(&spec["type"]);
            let cluster_ip = match ty {
                "ExternalName" => "<none>".to_string(),
                _ => or_none(text(&spec["clusterIP"])),
            };
            vec![
                name,
                ty.to_string(),
                cluster_ip,
                service_external_ip(o),
                service_ports(spec),
                age,
                selector(&spec["selector"]),
            ]
        }
        Kind::ConfigMap => {
            let n = object_len(&o["data"]) + object_len(&o["binaryData"]);
            vec![name, n.to_string(), age]
        }
        Kind::EndpointSlice => vec![
            name,
            text(&o["addressType"]).to_string(),
            slice_ports(o),
            slice_endpoints(o),
            age,
        ],
        Kind::Lease => vec![name, or_none(text(&o["spec"]["holderIdentity"])), age],
        Kind::PriorityClass => vec![
            name,
            o["value"].as_i64().unwrap_or(0).to_string(),
            (o["globalDefault"] == true).to_string(),
            age,
            or_none(text(&o["preemptionPolicy"])),
        ],
        Kind::IpAddress => vec![name, parent_ref(&o["spec"]["parentRef"])],
        Kind::ServiceCidr => {
            let cidrs: Vec<&str> = array(&o["spec"]["cidrs"]).iter().map(text).collect();
            vec![name, cidrs.join(","), age]
        }
        Kind::Event => {
            let o_ref = &o["involvedObject"];
            vec![
                event_last_seen(o, opts.now),
                text(&o["type"]).to_string(),
                text(&o["reason"]).to_string(),
                format!(
                    "{}/{}",
                    text(&o_ref["kind"]).to_ascii_lowercase(),
                    text(&o_ref["name"])
                ),
                text(&o["message"]).trim().to_string(),
            ]
        }
        _ => vec![name, age],
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn object_len(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>" } else { s }.to_string()
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() { "<unknown>" } else { s }.to_string()
}

fn timestamp(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn age(o: &Value, now: Timestamp) -> String {
    match timestamp(&o["metadata"]["creationTimestamp"]) {
        Some(t) => human_duration(now.as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

/// kubectl's `HumanDuration`: two significant units while they matter, one after.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// When an event last happened: `lastTimestamp`, else `eventTime`, else creation.
fn event_last_seen(o: &Value, now: Timestamp) -> String {
    ["lastTimestamp", "eventTime"]
        .iter()
        .find_map(|f| timestamp(&o[*f]))
        .or_else(|| timestamp(&o["metadata"]["creationTimestamp"]))
        .map(|t| human_duration(now.as_second() - t.as_second()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn condition<'a>(o: &'a Value, ty: &str) -> Option<&'a Value> {
    array(&o["status"]["conditions"])
        .iter()
        .find(|c| c["type"] == ty)
}

fn node_status(o: &Value) -> String {
    let mut status = match condition(o, "Ready").map(|c| text(&c["status"])) {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_string();
    if o["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(o: &Value) -> String {
    let mut roles: Vec<&str> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                (!role.is_empty()).then_some(role)
            } else if k == "kubernetes.io/role" {
                v.as_str().filter(|r| !r.is_empty())
            } else {
                None
            }
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_address(o: &Value, ty: &str) -> String {
    array(&o["status"]["addresses"])
        .iter()
        .find(|a| a["type"] == ty)
        .map(|a| text(&a["address"]).to_string())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

/// The STATUS column: the phase, refined by a container's waiting or terminated
/// reason, and `Terminating` once deletion started (kubectl's `printPod`).
fn pod_status(o: &Value) -> String {
    let status = &o["status"];
    let mut reason = text(&status["phase"]).to_string();
    if let Some(r) = status["reason"].as_str().filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    let mut init_running = false;
    let init_total = array(&o["spec"]["initContainers"]).len();
    for (i, c) in array(&status["initContainerStatuses"]).iter().enumerate() {
        let state = &c["state"];
        if state["terminated"]["exitCode"] == 0 && state["terminated"].is_object() {
            continue;
        }
        init_running = true;
        reason = if let Some(r) = state["terminated"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            format!("Init:{r}")
        } else if state["terminated"].is_object() {
            format!("Init:ExitCode:{}", state["terminated"]["exitCode"])
        } else if let Some(r) = state["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{init_total}")
        };
        break;
    }
    if !init_running {
        let mut has_running = false;
        for c in array(&status["containerStatuses"]).iter().rev() {
            let state = &c["state"];
            if let Some(r) = state["waiting"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if let Some(r) = state["terminated"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if state["terminated"].is_object() {
                reason = match state["terminated"]["signal"].as_i64().filter(|s| *s != 0) {
                    Some(s) => format!("Signal:{s}"),
                    None => format!("ExitCode:{}", state["terminated"]["exitCode"]),
                };
            } else if c["ready"] == true && state["running"].is_object() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition(o, "Ready").is_some_and(|c| c["status"] == "True") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if !o["metadata"]["deletionTimestamp"].is_null() {
        reason = if status["reason"] == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    if reason.is_empty() {
        "Pending".into()
    } else {
        reason
    }
}

fn service_external_ip(o: &Value) -> String {
    let spec = &o["spec"];
    let external: Vec<&str> = array(&spec["externalIPs"]).iter().map(text).collect();
    let ingress: Vec<&str> = array(&o["status"]["loadBalancer"]["ingress"])
        .iter()
        .map(|i| {
            i["ip"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| text(&i["hostname"]))
        })
        .collect();
    match text(&spec["type"]) {
        "ExternalName" => or_none(text(&spec["externalName"])),
        "LoadBalancer" => {
            let all: Vec<&str> = ingress.into_iter().chain(external).collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        _ if !external.is_empty() => external.join(","),
        _ => "<none>".into(),
    }
}

fn service_ports(spec: &Value) -> String {
    let ports: Vec<String> = array(&spec["ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn selector(v: &Value) -> String {
    let pairs: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// kubectl shows the first three, then `+ N more...`.
fn with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    match items.len() {
        0 => "<unset>".into(),
        n if n > MAX => format!("{} + {} more...", items[..MAX].join(","), n - MAX),
        _ => items.join(","),
    }
}

fn slice_ports(o: &Value) -> String {
    with_more(
        array(&o["ports"])
            .iter()
            .map(|p| match p["port"].as_i64() {
                Some(port) => port.to_string(),
                None => p["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or("*")
                    .to_string(),
            })
            .collect(),
    )
}

fn slice_endpoints(o: &Value) -> String {
    with_more(
        array(&o["endpoints"])
            .iter()
            .flat_map(|e| array(&e["addresses"]).iter().map(|a| text(a).to_string()))
            .collect(),
    )
}

fn parent_ref(p: &Value) -> String {
    let mut s = text(&p["resource"]).to_ascii_lowercase();
    if let Some(g) = p["group"].as_str().filter(|g| !g.is_empty()) {
        s.push('.');
        s.push_str(g);
    }
    s.push('/');
    if let Some(ns) = p["namespace"].as_str().filter(|n| !n.is_empty()) {
        s.push_str(ns);
        s.push('/');
    }
    s.push_str(text(&p["name"]));
    s
}

/// Aligns tab-separated cells into columns as Go's `tabwriter` does: a column is
/// as wide as its widest cell in a run of consecutive lines that have it, plus
/// `padding`, at least `min_width`; the last cell of a line is never padded.
fn align(lines: &[String], min_width: usize, padding: usize) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = cells.iter().map(|c| vec![0; c.len()]).collect();
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    for col in 0..columns.saturating_sub(1) {
        let mut start = 0;
        while start < cells.len() {
            // A run: consecutive lines with a terminated cell in this column.
            if cells[start].len() <= col + 1 {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < cells.len() && cells[end].len() > col + 1 {
                end += 1;
            }
            let width = cells[start..end]
                .iter()
                .map(|c| c[col].chars().count() + padding)
                .max()
                .unwrap_or(0)
                .max(min_width);
            for w in &mut widths[start..end] {
                w[col] = width;
            }
            start = end;
        }
    }
    let mut out = String::new();
    for (line, ws) in cells.iter().zip(&widths) {
        let mut s = String::new();
        for (i, cell) in line.iter().enumerate() {
            s.push_str(cell);
            if i + 1 < line.len() {
                let pad = ws[i].saturating_sub(cell.chars().count());
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    }
    out
}

// ----- describe -----

/// A `describe` page: metadata, the kind's own sections, related objects.
pub fn describe(kind: Kind, o: &Value, related: &Related, now: Timestamp) -> String {
    let mut w = Lines::default();
    let meta = &o["metadata"];
    w.field("Name", text(&meta["name"]));
    if kind.namespaced() {
        w.field("Namespace", text(&meta["namespace"]));
    }
    w.map("Labels", &meta["labels"]);
    w.map("Annotations", &meta["annotations"]);
    if let Some(t) = meta["creationTimestamp"].as_str() {
        w.field("CreationTimestamp", &creation_time(t));
    }
    match kind {
        Kind::Service => describe_service(&mut w, o, related),
        Kind::Pod => describe_pod(&mut w, o, now),
        Kind::Node => describe_node(&mut w, o, related, now),
        Kind::EndpointSlice => describe_slice(&mut w, o),
        Kind::Namespace => w.field("Status", text(&o["status"]["phase"])),
        Kind::ConfigMap => {
            w.line("");
            w.line("Data");
            w.line("====");
            let data = o["data"].as_object().cloned().unwrap_or_default();
            for (k, v) in &data {
                w.line(&format!("{k}:"));
                w.line("----");
                w.line(text(v));
                w.line("");
            }
            w.line("");
            w.line("BinaryData");
            w.line("====");
            for (k, v) in o["binaryData"].as_object().into_iter().flatten() {
                w.line(&format!("{k}: {} bytes", base64_len(text(v))));
            }
        }
        Kind::Lease => {
            let spec = &o["spec"];
            w.field("Holder Identity", &or_none(text(&spec["holderIdentity"])));
            w.field(
                "Lease Duration Seconds",
                &spec["leaseDurationSeconds"]
                    .as_i64()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "<unset>".into()),
            );
            w.field("Acquire Time", &or_none(text(&spec["acquireTime"])));
            w.field("Renew Time", &or_none(text(&spec["renewTime"])));
            w.field(
                "Lease Transitions",
                &spec["leaseTransitions"].as_i64().unwrap_or(0).to_string(),
            );
        }
        Kind::PriorityClass => {
            w.field("Value", &o["value"].as_i64().unwrap_or(0).to_string());
            w.field("GlobalDefault", &(o["globalDefault"] == true).to_string());
            w.field("PreemptionPolicy", &or_none(text(&o["preemptionPolicy"])));
            w.field("Description", text(&o["description"]));
        }
        Kind::IpAddress => w.field("Parent Reference", &parent_ref(&o["spec"]["parentRef"])),
        Kind::ServiceCidr => {
            let cidrs: Vec<&str> = array(&o["spec"]["cidrs"]).iter().map(text).collect();
            w.field("CIDRs", &cidrs.join(", "));
        }
        _ => {}
    }
    if related.events.is_empty() {
        w.field("Events", "<none>");
        return w.render();
    }
    let mut out = w.render();
    out.push_str(&describe_events(&related.events, now));
    out
}

/// kubectl's Events section: oldest first, repeats as `x<count> over <age>`.
fn describe_events(events: &[Value], now: Timestamp) -> String {
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| timestamp(&e["lastTimestamp"]).map(|t| t.as_second()));
    let mut lines = vec![
        "  Type\tReason\tAge\tFrom\tMessage".to_string(),
        "  ----\t------\t----\t----\t-------".to_string(),
    ];
    for e in sorted {
        let last = event_last_seen(e, now);
        let count = e["count"].as_i64().unwrap_or(1);
        let age = match timestamp(&e["firstTimestamp"]) {
            Some(first) if count > 1 => format!(
                "{last} (x{count} over {})",
                human_duration(now.as_second() - first.as_second())
            ),
            _ => last,
        };
        let from = e["source"]["component"]
            .as_str()
            .or_else(|| e["reportingComponent"].as_str())
            .unwrap_or("");
        lines.push(format!(
            "  {}\t{}\t{age}\t{from}\t{}",
            text(&e["type"]),
            text(&e["reason"]),
            text(&e["message"]).trim()
        ));
    }
    format!("Events:\n{}", align(&lines, 0, 2))
}

fn base64_len(s: &str) -> usize {
    let trimmed = s.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

/// `Mon, 02 Jan 2006 15:04:05 +0000`, kubectl's RFC 1123 with numeric zone.
fn creation_time(t: &str) -> String {
    match t.parse::<Timestamp>() {
        Ok(ts) => ts.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        Err(_) => t.to_string(),
    }
}

fn describe_service(w: &mut Lines, o: &Value, related: &Related) {
    let spec = &o["spec"];
    w.field(
        "Selector",
        &selector(&spec["selector"]).replace("<none>", ""),
    );
    let ty = text(&spec["type"]);
    w.field("Type", ty);
    if ty == "ExternalName" {
        w.field("External Name", text(&spec["externalName"]));
    } else {
        w.field("IP Family Policy", &or_none(text(&spec["ipFamilyPolicy"])));
        let families: Vec<&str> = array(&spec["ipFamilies"]).iter().map(text).collect();
        w.field("IP Families", &or_none(&families.join(",")));
        w.field("IP", &or_none(text(&spec["clusterIP"])));
        let ips: Vec<&str> = array(&spec["clusterIPs"]).iter().map(text).collect();
        w.field("IPs", &or_none(&ips.join(",")));
    }
    let endpoints: Vec<String> = related
        .endpoint_slices
        .iter()
        .flat_map(|s| {
            array(&s["endpoints"])
                .iter()
                .filter(|e| e["conditions"]["ready"] != false)
                .flat_map(|e| array(&e["addresses"]).iter().map(|a| text(a).to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    for p in array(&spec["ports"]) {
        let name = p["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("<unset>");
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        w.field("Port", &format!("{name}  {}/{proto}", p["port"]));
        let target = match &p["targetPort"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => p["port"].to_string(),
        };
        w.field("TargetPort", &format!("{target}/{proto}"));
        if let Some(np) = p["nodePort"].as_i64() {
            w.field("NodePort", &format!("{name}  {np}/{proto}"));
        }
        let target_port_for = |s: &Value| {
            array(&s["ports"])
                .iter()
                .find(|sp| sp["name"].as_str().unwrap_or("") == p["name"].as_str().unwrap_or(""))
                .and_then(|sp| sp["port"].as_i64())
        };
        let eps: Vec<String> = related
            .endpoint_slices
            .iter()
            .flat_map(|s| {
                let port = target_port_for(s);
                array(&s["endpoints"])
                    .iter()
                    .filter(|e| e["conditions"]["ready"] != false)
                    .flat_map(move |e| {
                        array(&e["addresses"]).iter().map(move |a| match port {
                            Some(port) => format!("{}:{port}", text(a)),
                            None => text(a).to_string(),
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        w.field("Endpoints", &eps.join(","));
    }
    if array(&spec["ports"]).is_empty() {
        w.field("Endpoints", &endpoints.join(","));
    }
    w.field("Session Affinity", &or_none(text(&spec["sessionAffinity"])));
    if let Some(t) = spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"].as_i64() {
        w.field("Session Affinity Timeout", &format!("{t}s"));
    }
    if let Some(p) = spec["externalTrafficPolicy"].as_str() {
        w.field("External Traffic Policy", p);
    }
    if let Some(p) = spec["internalTrafficPolicy"].as_str() {
        w.field("Internal Traffic Policy", p);
    }
    if let Some(d) = spec["trafficDistribution"].as_str() {
        w.field("Traffic Distribution", d);
    }
}

fn describe_pod(w: &mut Lines, o: &Value, now: Timestamp) {
    let spec = &o["spec"];
    let status = &o["status"];
    w.field(
        "Priority",
        &spec["priority"].as_i64().unwrap_or(0).to_string(),
    );
    if let Some(pc) = spec["priorityClassName"].as_str() {
        w.field("Priority Class Name", pc);
    }
    w.field("Service Account", text(&spec["serviceAccountName"]));
    let node = text(&spec["nodeName"]);
    let host_ip = text(&status["hostIP"]);
    w.field(
        "Node",
        &match (node, host_ip) {
            ("", _) => "<none>".to_string(),
            (n, "") => n.to_string(),
            (n, ip) => format!("{n}/{ip}"),
        },
    );
    if let Some(t) = status["startTime"].as_str() {
        w.field("Start Time", &creation_time(t));
    }
    if let Some(t) = o["metadata"]["deletionTimestamp"].as_str() {
        let left = timestamp(&o["metadata"]["deletionTimestamp"])
            .map(|d| human_duration(now.as_second() - d.as_second()));
        w.field(
            "Status",
            &format!(
                "Terminating (lasts {})",
                left.unwrap_or_else(|| t.to_string())
            ),
        );
        if let Some(g) = o["metadata"]["deletionGracePeriodSeconds"].as_i64() {
            w.field("Termination Grace Period", &format!("{g}s"));
        }
    } else {
        w.field("Status", &or_none(text(&status["phase"])));
    }
    w.field("IP", text(&status["podIP"]));
    w.line("IPs:");
    let ips = array(&status["podIPs"]);
    if ips.is_empty() {
        w.line("  <none>");
    }
    for ip in ips {
        w.field("  IP", text(&ip["ip"]));
    }
    w.line("Containers:");
    let statuses = array(&status["containerStatuses"]);
    for c in array(&spec["containers"]) {
        w.line(&format!("  {}:", text(&c["name"])));
        w.field("    Image", text(&c["image"]));
        let ports: Vec<String> = array(&c["ports"])
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["containerPort"],
                    p["protocol"].as_str().unwrap_or("TCP")
                )
            })
            .collect();
        w.field("    Port", &or_none(&ports.join(", ")));
        if let Some(s) = statuses.iter().find(|s| s["name"] == c["name"]) {
            let state = s["state"]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
                .unwrap_or_default();
            let mut state = state;
            if let Some(first) = state.get(0..1) {
                state = first.to_uppercase() + &state[1..];
            }
            w.field("    State", &state);
            w.field("    Ready", &(s["ready"] == true).to_string());
            w.field(
                "    Restart Count",
                &s["restartCount"].as_i64().unwrap_or(0).to_string(),
            );
        }
        for (label, key) in [("    Limits", "limits"), ("    Requests", "requests")] {
            if let Some(m) = c["resources"][key].as_object().filter(|m| !m.is_empty()) {
                w.line(&format!("{label}:"));
                for (k, v) in m {
                    w.field(&format!("      {k}"), text(v));
                }
            }
        }
    }
    let conditions = array(&status["conditions"]);
    if !conditions.is_empty() {
        w.line("Conditions:");
        w.line("  Type\tStatus");
        for c in conditions {
            w.line(&format!("  {} \t{} ", text(&c["type"]), text(&c["status"])));
        }
    }
    w.map("Node-Selectors", &spec["nodeSelector"]);
    let tolerations: Vec<String> = array(&spec["tolerations"]).iter().map(toleration).collect();
    w.list("Tolerations", &tolerations);
}

fn toleration(t: &Value) -> String {
    let mut s = text(&t["key"]).to_string();
    if let Some(v) = t["value"].as_str().filter(|v| !v.is_empty()) {
        s.push('=');
        s.push_str(v);
    }
    if let Some(e) = t["effect"].as_str().filter(|e| !e.is_empty()) {
        s.push(':');
        s.push_str(e);
    }
    if t["operator"] == "Exists" && t["value"].as_str().unwrap_or("").is_empty() {
        s.push_str(" op=Exists");
    }
    if let Some(secs) = t["tolerationSeconds"].as_i64() {
        s.push_str(&format!(" for {secs}s"));
    }
    s
}

fn describe_node(w: &mut Lines, o: &Value, related: &Related, now: Timestamp) {
    w.field("Roles", &node_roles(o));
    let taints: Vec<String> = array(&o["spec"]["taints"])
        .iter()
        .map(|t| {
            let mut s = text(&t["key"]).to_string();
            if let Some(v) = t["value"].as_str().filter(|v| !v.is_empty()) {
                s.push('=');
                s.push_str(v);
            }
            s.push(':');
            s.push_str(text(&t["effect"]));
            s
        })
        .collect();
    w.list("Taints", &taints);
    w.field(
        "Unschedulable",
        &(o["spec"]["unschedulable"] == true).to_string(),
    );
    let conditions = array(&o["status"]["conditions"]);
    w.line("Conditions:");
    w.line("  Type\tStatus\tLastHeartbeatTime\tReason\tMessage");
    w.line("  ----\t------\t-----------------\t------\t-------");
    for c in conditions {
        w.line(&format!(
            "  {}\t{}\t{}\t{}\t{}",
            text(&c["type"]),
            text(&c["status"]),
            c["lastHeartbeatTime"]
                .as_str()
                .map(creation_time)
                .unwrap_or_default(),
            text(&c["reason"]),
            text(&c["message"])
        ));
    }
    w.line("Addresses:");
    for a in array(&o["status"]["addresses"]) {
        w.field(&format!("  {}", text(&a["type"])), text(&a["address"]));
    }
    for (label, key) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
        w.line(&format!("{label}:"));
        for (k, v) in o["status"][key].as_object().into_iter().flatten() {
            w.field(&format!("  {k}"), text(v));
        }
    }
    if let Some(cidr) = o["spec"]["podCIDR"].as_str() {
        w.field("PodCIDR", cidr);
    }
    w.line(&format!(
        "Non-terminated Pods:\t({} in total)",
        related.pods.len()
    ));
    w.line("  Namespace\tName\tCPU Requests\tMemory Requests\tAge");
    w.line("  ---------\t----\t------------\t---------------\t---");
    for p in &related.pods {
        let requests = |r: &str| {
            let vals: Vec<&str> = array(&p["spec"]["containers"])
                .iter()
                .filter_map(|c| c["resources"]["requests"][r].as_str())
                .collect();
            if vals.is_empty() {
                "0 (0%)".to_string()
            } else {
                vals.join("+")
            }
        };
        w.line(&format!(
            "  {}\t{}\t{}\t{}\t{}",
            text(&p["metadata"]["namespace"]),
            text(&p["metadata"]["name"]),
            requests("cpu"),
            requests("memory"),
            age(p, now)
        ));
    }
}

fn describe_slice(w: &mut Lines, o: &Value) {
    w.field("AddressType", text(&o["addressType"]));
    w.line("Ports:");
    w.line("  Name\tPort\tProtocol");
    w.line("  ----\t----\t--------");
    for p in array(&o["ports"]) {
        let name = p["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("<unset>");
        let port = p["port"]
            .as_i64()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "<unset>".into());
        w.line(&format!(
            "  {name}\t{port}\t{}",
            p["protocol"].as_str().unwrap_or("TCP")
        ));
    }
    w.line("Endpoints:");
    for e in array(&o["endpoints"]) {
        let addrs: Vec<&str> = array(&e["addresses"]).iter().map(text).collect();
        w.line(&format!("  - Addresses:\t{}", addrs.join(",")));
        let cond = &e["conditions"];
        w.line("    Conditions:");
        for c in ["ready", "serving", "terminating"] {
            let v = match &cond[c] {
                Value::Bool(b) => b.to_string(),
                _ => "<unset>".into(),
            };
            let mut label = c.to_string();
            label[..1].make_ascii_uppercase();
            w.line(&format!("      {label}:\t{v}"));
        }
        w.line(&format!(
            "    Hostname:\t{}",
            or_unset(text(&e["hostname"]))
        ));
        let target = &e["targetRef"];
        if target.is_object() {
            w.line(&format!(
                "    TargetRef:\t{}/{}",
                text(&target["kind"]),
                text(&target["name"])
            ));
        }
        w.line(&format!(
            "    NodeName:\t{}",
            or_unset(text(&e["nodeName"]))
        ));
        w.line(&format!("    Zone:\t{}", or_unset(text(&e["zone"]))));
        let zones: Vec<&str> = array(&e["hints"]["forZones"])
            .iter()
            .map(|z| text(&z["name"]))
            .collect();
        if !zones.is_empty() {
            w.line(&format!("    Hints:\tfor zones {}", zones.join(",")));
        }
    }
}

fn or_unset(s: &str) -> String {
    if s.is_empty() { "<unset>" } else { s }.to_string()
}

/// describe's lines, with `Field:\tvalue` aligned as kubectl's tab writer does.
#[derive(Default)]
struct Lines(Vec<String>);

impl Lines {
    fn line(&mut self, s: &str) {
        self.0.push(s.to_string());
    }

    fn field(&mut self, name: &str, value: &str) {
        self.0.push(format!("{name}:\t{value}"));
    }

    /// A map, one `key=value` per line, `<none>` when empty.
    fn map(&mut self, name: &str, v: &Value) {
        let entries: Vec<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        self.list(name, &entries);
    }

    fn list(&mut self, name: &str, items: &[String]) {
        match items.split_first() {
            None => self.field(name, "<none>"),
            Some((first, rest)) => {
                self.field(name, first);
                for item in rest {
                    self.0.push(format!("\t{item}"));
                }
            }
        }
    }

    fn render(&self) -> String {
        align(&self.0, 0, 2)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn opts() -> TableOptions {
        TableOptions {
            all_namespaces: false,
            wide: false,
            header: true,
            now: now(),
        }
    }

    #[test]
    fn ages_round_like_kubectl() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 600, "3h10m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (730 * 86400, "2y"),
            (740 * 86400, "2y10d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn service_table() {
        let svcs = [
            json!({"metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "2026-11-22T11:55:00Z"},
                   "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
            json!({"metadata": {"name": "front", "namespace": "shop", "creationTimestamp": "2026-11-20T12:00:00Z"},
                   "spec": {"type": "NodePort", "clusterIP": "10.96.0.11",
                            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "db", "namespace": "shop"},
                   "spec": {"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 5432}]}}),
            json!({"metadata": {"name": "ext", "namespace": "shop"},
                   "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        ];
        let out = table(Kind::Service, &svcs, &opts());
        assert_eq!(
            out,
            "NAME    TYPE           CLUSTER-IP   EXTERNAL-IP      PORT(S)         AGE\n\
             web     ClusterIP      10.96.0.10   <none>           80/TCP,53/UDP   5m\n\
             front   NodePort       10.96.0.11   <none>           80:30080/TCP    2d\n\
             db      ClusterIP      None         <none>           5432/TCP        <unknown>\n\
             ext     ExternalName   <none>       db.example.com   <none>          <unknown>\n"
        );
        let wide = table(
            Kind::Service,
            &svcs[..1],
            &TableOptions {
                wide: true,
                all_namespaces: true,
                ..opts()
            },
        );
        assert_eq!(
            wide,
            "NAMESPACE   NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)         AGE   SELECTOR\n\
             shop        web    ClusterIP   10.96.0.10   <none>        80/TCP,53/UDP   5m    app=web\n"
        );
    }

    #[test]
    fn pod_table_and_status() {
        let pods = [
            json!({"metadata": {"name": "web-0", "creationTimestamp": "2026-11-22T11:59:00Z"},
                   "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
                   "status": {"phase": "Running", "podIP": "10.0.0.5",
                              "containerStatuses": [
                                  {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                                  {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
            json!({"metadata": {"name": "web-1", "deletionTimestamp": "2026-11-22T12:00:30Z"},
                   "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}}),
            json!({"metadata": {"name": "web-2"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}}),
        ];
        let out = table(
            Kind::Pod,
            &pods,
            &TableOptions {
                wide: true,
                ..opts()
            },
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    READY   STATUS             RESTARTS   AGE         IP         NODE     NOMINATED NODE   READINESS GATES"
        );
        assert_eq!(
            lines[1],
            "web-0   1/2     CrashLoopBackOff   3          60s         10.0.0.5   n1       <none>           <none>"
        );
        assert!(lines[2].starts_with("web-1   0/1     Terminating"), "{out}");
        assert!(lines[3].starts_with("web-2   0/1     Pending"), "{out}");
    }

    #[test]
    fn other_kinds() {
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        let out = table(Kind::EndpointSlice, &[slice], &opts());
        assert!(
            out.contains("web-abc   IPv4          8080    10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...   <unknown>"),
            "{out}"
        );
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.37.0"}}});
        let out = table(Kind::Node, &[node], &opts());
        assert!(
            out.contains("n1     Ready,SchedulingDisabled   control-plane   <unknown>   v1.37.0"),
            "{out}"
        );
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}});
        assert!(table(Kind::ConfigMap, &[cm], &opts()).contains("cfg    2      <unknown>"));
        let ip = json!({"metadata": {"name": "10.96.0.10"}, "spec": {"parentRef": {"resource": "services", "namespace": "shop", "name": "web"}}});
        assert!(table(Kind::IpAddress, &[ip], &opts()).contains("10.96.0.10   services/shop/web"));
        assert_eq!(
            no_resources(Some("shop")),
            "No resources found in shop namespace."
        );
    }

    #[test]
    fn describe_service_lists_endpoints() {
        let svc = json!({"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web", "tier": "front"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "selector": {"app": "web"},
                     "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                          {"addresses": ["10.0.0.2"], "conditions": {"ready": false}}]});
        let out = describe(
            Kind::Service,
            &svc,
            &Related {
                endpoint_slices: vec![slice],
                ..Related::default()
            },
            now(),
        );
        let expected_start = "Name:                     web\n\
                              Namespace:                shop\n\
                              Labels:                   app=web\n\
                              \x20                         tier=front\n\
                              Annotations:              <none>\n\
                              Selector:                 app=web\n";
        assert!(out.starts_with(expected_start), "{out}");
        assert!(
            out.contains("Endpoints:                10.0.0.1:8080\n"),
            "{out}"
        );
        assert!(
            out.contains("Port:                     http  80/TCP\n"),
            "{out}"
        );
        assert!(out.ends_with("Events:                   <none>\n"), "{out}");
    }

    #[test]
    fn events_table_and_describe_section() {
        let ev = json!({"metadata": {"name": "web.1a2b", "namespace": "shop"},
            "involvedObject": {"kind": "Service", "name": "web", "namespace": "shop"},
            "type": "Warning", "reason": "TopologyAwareHintsDisabled",
            "message": "Insufficient number of endpoints, addressType: IPv4",
            "source": {"component": "endpoint-slice-controller"},
            "firstTimestamp": "2026-11-22T11:50:00Z", "lastTimestamp": "2026-11-22T11:59:00Z", "count": 4});
        let out = table(Kind::Event, std::slice::from_ref(&ev), &opts());
        assert_eq!(
            out,
            "LAST SEEN   TYPE      REASON                       OBJECT        MESSAGE\n\
             60s         Warning   TopologyAwareHintsDisabled   service/web   Insufficient number of endpoints, addressType: IPv4\n"
        );
        let svc = json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "ClusterIP"}});
        let out = describe(
            Kind::Service,
            &svc,
            &Related {
                events: vec![ev],
                ..Related::default()
            },
            now(),
        );
        assert!(
            out.ends_with(
                "Events:\n  Type     Reason                      Age                From                       Message\n\
                 \x20 ----     ------                      ----               ----                       -------\n\
                 \x20 Warning  TopologyAwareHintsDisabled  60s (x4 over 10m)  endpoint-slice-controller  Insufficient number of endpoints, addressType: IPv4\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn describe_survives_odd_shapes() {
        for kind in Kind::ALL {
            let odd = json!({"metadata": {"name": 5, "labels": "x"}, "spec": [], "status": 3});
            let out = describe(kind, &odd, &Related::default(), now());
            assert!(out.contains("Events:"));
            let _ = table(kind, &[odd], &opts());
        }
    }
}
