//! A running panel and the clients that use it.

use std::sync::Arc;
use std::time::Duration;

use fediversity_model::Infra;
use fediversity_panel::worker::Worker;
use fediversity_panel::{AppState, PanelOptions, Platform};
use fediversity_providers::{DirectoryOperatorSecrets, IdentityOptions};
use fediversity_store::{SealingKey, Store};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A panel and a worker on a free loopback port, with their own store and sandbox; stopped
/// (gracefully, as on SIGTERM) when dropped.
pub struct Panel {
    pub base: String,
    pub store: Arc<Store>,
    pub platform: Platform,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    worker: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl Panel {
    pub async fn start() -> Panel {
        Panel::start_with(|options| options).await
    }

    /// A panel whose options `adjust` changes from the defaults.
    pub async fn start_with(adjust: impl FnOnce(PanelOptions) -> PanelOptions) -> Panel {
        Panel::start_on(adjust, |platform| platform).await
    }

    /// A panel whose options `adjust` changes, deploying onto the sandbox platform as
    /// `adjust_platform` changes it.
    pub async fn start_on(
        adjust: impl FnOnce(PanelOptions) -> PanelOptions,
        adjust_platform: impl FnOnce(Platform) -> Platform,
    ) -> Panel {
        let dir = tempfile::tempdir().unwrap();
        let (store, platform) = platform_in(dir.path()).await;
        let platform = adjust_platform(platform);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let state = AppState::new(
            store.clone(),
            platform.clone(),
            adjust(PanelOptions::for_address(address)),
        );
        let worker =
            Worker::new(store.clone(), platform.clone()).with_metrics(state.metrics().clone());
        let worker = tokio::spawn(worker.run(stopped.clone()));
        let mut on_stop = stopped;
        let server = tokio::spawn(fediversity_panel::serve(listener, state, async move {
            on_stop.changed().await.ok();
        }));
        Panel {
            base: format!("http://{address}"),
            store,
            platform,
            stop,
            server: Some(server),
            worker: Some(worker),
            _dir: dir,
        }
    }

    /// A browser signed in as a new administrator of the hosting provider, `root@host.example`.
    pub async fn admin(&self) -> Browser {
        let hash = fediversity_panel::hash_password(PASSWORD.to_owned())
            .await
            .unwrap();
        self.store
            .create_admin("root@host.example", &hash, 1)
            .await
            .unwrap();
        let admin = self.visitor();
        admin.sign_in("root@host.example", PASSWORD).await;
        admin
    }

    /// Where the sandbox keeps its files (operators' secrets among them).
    pub fn sandbox(&self) -> std::path::PathBuf {
        self._dir.path().join("sandbox")
    }

    /// A browser with no cookies yet.
    pub fn visitor(&self) -> Browser {
        // reqwest is built without a TLS provider (the workspace picks ring once); these
        // clients only speak plain HTTP to loopback, but reqwest still wants one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Browser {
            base: self.base.clone(),
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// A browser signed up as a new operator `operator` (its first user).
    pub async fn operator(&self, operator: &str) -> Browser {
        let browser = self.visitor();
        let page = browser
            .sign_up(operator, &format!("admin@{operator}.example"), PASSWORD)
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        browser
    }

    /// Stops the server and the worker as SIGTERM would, and checks both end promptly.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        let server = self.server.take().unwrap();
        let worker = self.worker.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            server.await.unwrap().unwrap();
            worker.await.unwrap();
        })
        .await
        .expect("the panel and its worker stop within 10 s");
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A store and a sandbox platform in `dir`, as `fediversity serve` makes them by default.
pub async fn platform_in(dir: &std::path::Path) -> (Arc<Store>, Platform) {
    let key = SealingKey::write_new(dir.join("platform.key")).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("fediversity.db").display());
    let store = Arc::new(Store::connect(&url, key).await.unwrap());
    let sandbox = dir.join("sandbox");
    let platform = Platform {
        infra: Infra::sandbox(),
        operator_secrets: Arc::new(DirectoryOperatorSecrets::new(&sandbox)),
        identity: IdentityOptions::default(),
        providers: Arc::new(move |_| Ok(fediversity_providers::sandbox_providers(&sandbox))),
    };
    (store, platform)
}

/// The password every test account has.
pub const PASSWORD: &str = "correct horse battery staple";

/// A response, read.
pub struct Page {
    pub status: StatusCode,
    pub location: String,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// A client that keeps cookies and does not follow redirects (tests check them).
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
}

impl Browser {
    pub async fn get(&self, path: &str) -> Page {
        read(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Posts `fields` as a form, as is.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Posts `fields` with the CSRF token of the form on `page`, as a browser would.
    pub async fn submit(&self, page: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let form = self.get(page).await;
        let token = csrf_of(&form.body);
        let mut fields = fields.to_vec();
        fields.push(("csrf", &token));
        self.post(path, &fields).await
    }

    pub async fn sign_up(&self, operator: &str, email: &str, password: &str) -> Page {
        let fields = [
            ("operator", operator),
            ("email", email),
            ("password", password),
        ];
        self.submit("/sign-up", "/sign-up", &fields).await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Page {
        let fields = [("email", email), ("password", password)];
        self.submit("/sign-in", "/sign-in", &fields).await
    }
}

async fn read(response: reqwest::Response) -> Page {
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let set_cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = response.text().await.unwrap();
    Page {
        status,
        location,
        set_cookies,
        body,
    }
}

/// The CSRF token of the (first) form in `html`.
pub fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The fields of a valid configuration with Mastodon turned on.
pub fn mastodon_config(name: &str, domain: &str) -> Vec<(&'static str, String)> {
    vec![
        ("name", name.to_owned()),
        ("domain", domain.to_owned()),
        ("mastodon_enable", "on".to_owned()),
        ("mastodon_size", "small".to_owned()),
        ("mastodon_retention", "keep".to_owned()),
        ("admin_username", "boss".to_owned()),
        ("admin_email", "boss@example.org".to_owned()),
        ("time_zone", "Europe/Amsterdam".to_owned()),
        ("window_0_day_sun", "on".to_owned()),
        ("window_0_start", "02:00".to_owned()),
        ("window_0_duration", "120".to_owned()),
    ]
}

/// Posts a configuration form for `operator`.
pub async fn configure(
    browser: &Browser,
    operator: &str,
    fields: &[(&'static str, String)],
) -> Page {
    let path = format!("/operators/{operator}/configure");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.submit(&path, &path, &fields).await
}

/// Configures Mastodon for `operator`, deploys it from the plan page, and returns the
/// deployment's path.
pub async fn deploy_mastodon(browser: &Browser, operator: &str) -> String {
    let saved = configure(
        browser,
        operator,
        &mastodon_config("Org", &format!("{operator}.example.org")),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let plan_path = format!("/operators/{operator}/plan");
    let plan = browser.get(&plan_path).await;
    let version = value_of(&plan.body, "version");
    let deployed = browser
        .submit(
            &plan_path,
            &format!("/operators/{operator}/deployments"),
            &[("version", &version)],
        )
        .await;
    assert_eq!(deployed.status, StatusCode::SEE_OTHER, "{}", deployed.body);
    deployed.location
}

/// The value of the hidden field `name` in `html`.
pub fn value_of(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Reads a deployment's live stream to its end (the server ends it after the `done` event);
/// returns everything received.
pub async fn follow(browser: &Browser, deployment: &str) -> String {
    let mut response = browser
        .client
        .get(format!("{}{deployment}/events", browser.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the deployment did not finish within 120 s: {text}"));
    text
}
