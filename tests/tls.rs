//! TLS between clients and members and between members: a 3-member cluster with https
//! client and peer URLs and certificate authentication on both, driven by `etcdctl
//! --cacert --cert --key`. A client without a certificate, with one from another CA, or
//! speaking plain HTTP gets nothing. Certificates are made by the `openssl` command for
//! each run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    etcdctl, etcdctl_ok, need_etcdctl, nonempty_lines, output_text, run_bounded, wait_for, Cluster,
    WAIT,
};

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    let out = run_bounded(cmd, None, WAIT);
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        output_text(&out)
    );
}

/// A CA and, signed by it, a certificate for 127.0.0.1 usable by servers and clients.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    );
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let cert = format!("{name}.pem");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth,clientAuth\n\
         basicConstraints=CA:FALSE\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    Pki {
        ca: dir.join(ca),
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

fn tls_args(p: &Pki) -> Vec<String> {
    vec![
        format!("--cacert={}", p.ca.display()),
        format!("--cert={}", p.cert.display()),
        format!("--key={}", p.key.display()),
    ]
}

fn with(args: &[String], rest: &[&str]) -> Vec<String> {
    let mut v = args.to_vec();
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn tls_cluster_serves_only_clients_with_valid_certificates() {
    if !need_etcdctl("tls_cluster_serves_only_clients_with_valid_certificates") {
        return;
    }
    let certs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = make_pki(certs.path(), "good");
    let rogue = make_pki(certs.path(), "rogue");
    let (ca, cert, key) = (
        good.ca.to_string_lossy().into_owned(),
        good.cert.to_string_lossy().into_owned(),
        good.key.to_string_lossy().into_owned(),
    );
    let c = Cluster::start_with(
        3,
        &[
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
            "--peer-cert-file",
            &cert,
            "--peer-key-file",
            &key,
            "--peer-trusted-ca-file",
            &ca,
            "--peer-client-cert-auth",
        ],
    );
    let all = c.endpoints();
    assert!(all.starts_with("https://"), "{all}");
    let ok = tls_args(&good);

    // Writes replicate over TLS peer links; every member serves them over TLS.
    let put = with(&ok, &["put", "/tls/a", "secret"]);
    wait_for("a write over TLS", WAIT, || {
        etcdctl(&all, &refs(&put)).status.success().then_some(())
    });
    for i in 0..3 {
        let get = with(&ok, &["get", "/tls/a", "--print-value-only"]);
        assert_eq!(
            nonempty_lines(&etcdctl_ok(c.endpoint(i), &refs(&get))),
            vec!["secret"],
            "member {i}"
        );
    }
    let list = with(&ok, &["member", "list"]);
    let members = etcdctl_ok(c.endpoint(0), &refs(&list));
    assert_eq!(nonempty_lines(&members).len(), 3, "{members}");
    assert!(members.contains("https://127.0.0.1"), "{members}");

    // No client certificate, a certificate from another CA, or plain HTTP: nothing.
    let get = ["get", "/tls/a", "--command-timeout=3s"];
    let cacert_only = vec![format!("--cacert={ca}")];
    let foreign = tls_args(&Pki {
        ca: good.ca.clone(),
        cert: rogue.cert.clone(),
        key: rogue.key.clone(),
    });
    for (what, args) in [
        ("no certificate", cacert_only),
        ("a foreign certificate", foreign),
    ] {
        let out = etcdctl(c.endpoint(0), &refs(&with(&args, &get)));
        assert!(
            !out.status.success(),
            "{what} was served: {}",
            output_text(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "{what} got data"
        );
    }
    let plain = c.endpoint(0).replace("https://", "http://");
    let out = etcdctl(&plain, &get);
    assert!(
        !out.status.success(),
        "plain HTTP was served: {}",
        output_text(&out)
    );
    // A client that does not trust the server's CA refuses it.
    let distrust = tls_args(&Pki {
        ca: rogue.ca.clone(),
        cert: good.cert.clone(),
        key: good.key.clone(),
    });
    let out = etcdctl(c.endpoint(0), &refs(&with(&distrust, &get)));
    assert!(!out.status.success(), "{}", output_text(&out));

    // The cluster is unharmed by all that.
    let put = with(&ok, &["put", "/tls/b", "still"]);
    etcdctl_ok(&all, &refs(&put));
}

#[test]
fn https_without_certificates_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = common::free_port();
    let mut cmd = common::server_command_for("server");
    cmd.args(["--data-dir"]).arg(dir.path().join("d")).args([
        "--listen-client-urls",
        &format!("https://127.0.0.1:{port}"),
        "--listen-peer-urls",
        &format!("http://127.0.0.1:{}", common::free_port()),
        "--listen-metrics-urls",
        &format!("http://127.0.0.1:{}", common::free_port()),
    ]);
    let out = run_bounded(cmd, None, WAIT);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains("--cert-file and --key-file are required"),
        "{text}"
    );
}
