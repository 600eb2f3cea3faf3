//! The PyPI `etcd3` client (python-etcd3 0.12, a third independent client) against one
//! capstan member: runs `tests/python/test_etcd3.py HOST:PORT` with the interpreter in
//! `CAPSTAN_TEST_PYTHON` (scripts/test.sh points it at the `.venv-test` venv that
//! scripts/deps.sh --test fills from tests/python/requirements.txt).
//!
//! Without `CAPSTAN_TEST_PYTHON` the test is skipped with a message on a developer's
//! machine and fails in CI.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{in_ci, output_text, run_bounded, Cluster};

/// The script's own waits are 10 s each; this bounds the whole run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn python_etcd3_client() {
    let python = match std::env::var("CAPSTAN_TEST_PYTHON") {
        Ok(p) if Path::new(&p).exists() => p,
        other => {
            let why = match other {
                Ok(p) => format!("CAPSTAN_TEST_PYTHON={p} does not exist"),
                Err(_) => "CAPSTAN_TEST_PYTHON is not set".to_owned(),
            };
            assert!(
                !in_ci(),
                "{why}; in CI it must name the venv interpreter (scripts/test.sh sets it \
                 after scripts/deps.sh --test)"
            );
            eprintln!(
                "SKIPPED python_etcd3_client: {why} (run scripts/deps.sh --test, then set \
                 CAPSTAN_TEST_PYTHON=$PWD/.venv-test/bin/python, or use scripts/test.sh)"
            );
            return;
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_etcd3.py");

    let c = Cluster::start(1);
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(c.members[0].client_addr())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run_bounded(cmd, None, SCRIPT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "tests/python/test_etcd3.py failed against capstan:\n{}",
        output_text(&out)
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "the script did not report its checks: {stdout:?}"
    );
}
