//! The panel in headless Chromium, driven by playwright-core (crates/panel/e2e/panel.mjs):
//! the whole life of an account, with a screenshot of every page kept as a test artefact.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::Panel;

/// The browser the script drives: Debian's, installed by scripts/setup-test.
const CHROMIUM: &str = "/usr/bin/chromium";

fn e2e_dir() -> PathBuf {
    fediversity_testkit::workspace_root().join("crates/panel/e2e")
}

/// Fails, naming the set-up script, when the browser, node or playwright-core is missing.
fn check_prerequisites() {
    let setup = "run scripts/setup-test to install it";
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: {setup}"
    );
    assert!(
        std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success()),
        "node is missing: {setup}"
    );
    assert!(
        e2e_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is missing from crates/panel/e2e/node_modules: {setup} (it runs npm ci there)"
    );
}

/// Where the screenshots go, emptied first so that only this run's are there.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("panel-e2e-screenshots");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_s_whole_life_in_a_real_browser() {
    check_prerequisites();
    let panel = Panel::start().await;
    let shots = screenshot_dir();
    eprintln!("screenshots in {}", shots.display());
    let script = tokio::process::Command::new("node")
        .arg(e2e_dir().join("panel.mjs"))
        .current_dir(e2e_dir())
        .env("PANEL_URL", &panel.base)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), script)
        .await
        .expect("the browser test finishes within 10 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed ({}); screenshots in {}\n{stdout}\n{stderr}",
        output.status,
        shots.display()
    );
    assert!(stdout.contains("ok: "), "{stdout}");

    let mut names: Vec<String> = std::fs::read_dir(&shots)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for page in [
        "sign-up",
        "configure",
        "plan",
        "deploy-progress",
        "deploy-succeeded",
        "dashboard-deployed",
        "plan-pixelfed-off",
        "pixelfed-off-succeeded",
        "delete-confirm",
        "delete-report",
        "signed-out",
    ] {
        let name = names
            .iter()
            .find(|name| name.ends_with(&format!("-{page}.png")))
            .unwrap_or_else(|| panic!("no screenshot of {page} in {names:?}"));
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{name} is not a real screenshot"
        );
    }
    panel.stop().await;
}
