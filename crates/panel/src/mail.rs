//! E-mail for the fleet's notifications: the store's notifications are an outbox, and
//! [`send_pending`] sends each one to the operator's admin contact and its panel users, then
//! marks it sent.
//!
//! Delivery is at least once: a notification is marked only after the relay accepted it, so a
//! worker that dies between the two sends that one notification again on its next round (at
//! most one duplicate per crash; nothing is ever lost). Several worker processes each run the
//! outbox, but only the holder of the store's outbox lease sends. A failed send is logged (the relay and its answer, never the password) and retried
//! on later rounds with an exponential backoff; an installation without an `[smtp]` section
//! only shows notifications in the panel.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use askama::Template;
use chrono::{DateTime, Utc};
use fediversity_engine::clock::{Clock, Millis, SystemClock};
use fediversity_fleet::rollout::ItemStatus;
use fediversity_model::infra::{SmtpInfra, SmtpTls};
use fediversity_model::operator::Maintenance;
use fediversity_model::{Infra, OperatorConfig};
use fediversity_store::{FleetLease, Notification, NotificationKind, Store};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::watch;

use crate::fleet::instant;

/// How often the outbox is looked at.
const ROUND: Duration = Duration::from_secs(60);
/// How many notifications one round sends at most.
const BATCH: u32 = 100;
/// How long the outbox lease lasts unless renewed: well over one message's send
/// ([`SMTP_TIMEOUT`]), which is the longest a holder goes without renewing it.
const OUTBOX_LEASE: Duration = Duration::from_secs(5 * 60);
/// The wait after a notification's first failed send; it doubles with every further failure.
const FIRST_RETRY: Millis = 60 * 1000;
/// The longest wait between two attempts.
const LONGEST_RETRY: Millis = 60 * 60 * 1000;
/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why e-mail cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The relay's password file cannot be read.
    #[error("the SMTP password file {path} cannot be read: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `[smtp]` section names no address for the platform to send from.
    #[error(
        "[smtp] has neither `platform_from` nor `from_domain`: the platform has no address to send from"
    )]
    NoFromAddress,
    /// An address cannot be used in an e-mail.
    #[error("`{address}` cannot be used as an e-mail address: {reason}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The relay's TLS settings cannot be made.
    #[error("SMTP relay {relay}: {reason}")]
    Relay {
        /// `host:port`.
        relay: String,
        /// Why.
        reason: String,
    },
    /// A template failed to render.
    #[error("the e-mail cannot be written: {0}")]
    Render(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fediversity_store::Error),
}

/// Where the SMTP relay is and how to talk to it.
#[derive(Clone)]
pub struct Relay {
    /// Its host name (or, in tests, a loopback address).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is encrypted.
    pub tls: SmtpTls,
    /// The user name and password, when the relay wants a login.
    pub login: Option<(String, String)>,
}

/// Never prints the password.
impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("login", &self.login.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl Relay {
    /// The relay of an `[smtp]` section, reading its password file.
    pub fn from_infra(smtp: &SmtpInfra) -> Result<Relay, MailError> {
        let login = match (&smtp.username, &smtp.password_file) {
            (Some(user), Some(path)) => {
                let password =
                    std::fs::read_to_string(path).map_err(|source| MailError::PasswordFile {
                        path: path.clone(),
                        source,
                    })?;
                Some((
                    user.clone(),
                    password.trim_end_matches(['\r', '\n']).to_owned(),
                ))
            }
            _ => None,
        };
        Ok(Relay {
            host: smtp.host.to_string(),
            port: smtp.port,
            tls: smtp.tls,
            login,
        })
    }

    fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
        let failed = |e: lettre::transport::smtp::Error| MailError::Relay {
            relay: self.name(),
            reason: e.to_string(),
        };
        let builder = match self.tls {
            SmtpTls::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host).map_err(failed)?
            }
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host).map_err(failed)?
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
        };
        let builder = builder.port(self.port).timeout(Some(SMTP_TIMEOUT));
        let builder = match &self.login {
            Some((user, password)) => {
                builder.credentials(Credentials::new(user.clone(), password.clone()))
            }
            None => builder,
        };
        Ok(builder.build())
    }
}

/// When a notification that failed may be tried again.
#[derive(Clone, Copy, Debug)]
struct Retry {
    failures: u32,
    not_before: Millis,
}

/// Sends the platform's e-mails through one relay.
pub struct Mailer {
    relay: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    panel_url: Option<String>,
    retries: Mutex<BTreeMap<i64, Retry>>,
}

impl Mailer {
    /// A mailer sending from `from` through `relay`; e-mails link to the panel at `panel_url`.
    pub fn new(relay: &Relay, from: &str, panel_url: Option<String>) -> Result<Mailer, MailError> {
        Ok(Mailer {
            relay: relay.name(),
            transport: relay.transport()?,
            from: mailbox(from)?,
            panel_url: panel_url.map(|url| url.trim_end_matches('/').to_owned()),
            retries: Mutex::default(),
        })
    }

    /// The mailer of an installation: `None` without an `[smtp]` section.
    pub fn from_infra(infra: &Infra) -> Result<Option<Mailer>, MailError> {
        let Some(smtp) = &infra.smtp else {
            return Ok(None);
        };
        let from = smtp.platform_from().ok_or(MailError::NoFromAddress)?;
        let panel_url = infra
            .panel
            .as_ref()
            .map(|panel| panel.public_url.to_string());
        Mailer::new(&Relay::from_infra(smtp)?, &from, panel_url).map(Some)
    }

    /// Whether notification `id` may be tried at `now`.
    fn due(&self, id: i64, now: Millis) -> bool {
        self.retries.lock().map_or(true, |retries| {
            retries.get(&id).is_none_or(|r| r.not_before <= now)
        })
    }

    /// Records a failed send of `id` at `now`; returns when it is tried again.
    fn failed(&self, id: i64, now: Millis) -> Millis {
        let Ok(mut retries) = self.retries.lock() else {
            return now;
        };
        let failures = retries.get(&id).map_or(0, |r| r.failures) + 1;
        let wait = FIRST_RETRY
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(LONGEST_RETRY);
        let not_before = now.saturating_add(wait);
        retries.insert(
            id,
            Retry {
                failures,
                not_before,
            },
        );
        not_before
    }

    fn sent(&self, id: i64) {
        if let Ok(mut retries) = self.retries.lock() {
            retries.remove(&id);
        }
    }
}

/// How a round of the outbox went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Notifications sent and marked.
    pub sent: usize,
    /// Notifications whose send failed (they are tried again later).
    pub failed: usize,
}

/// As `holder`, sends every due unsent notification and marks it sent. A notification whose
/// send fails waits (1 minute, doubling up to an hour) before it is tried again; when the
/// relay cannot be reached at all the round stops there, leaving the rest for the next one.
/// Only the store's failures are errors.
///
/// Every worker runs an outbox, but only the holder of the store's outbox lease sends: the
/// lease is renewed before each message (it outlasts one send by far), and a round that finds
/// it held elsewhere, or loses it, sends nothing more, so two workers never mail the same
/// notification.
pub async fn send_pending(
    store: &Store,
    mailer: &Mailer,
    clock: &dyn Clock,
    holder: &str,
) -> Result<Round, MailError> {
    let mut round = Round::default();
    for notification in store.unsent_notifications(BATCH).await? {
        if !mailer.due(notification.id, clock.now()) {
            continue;
        }
        if !store
            .try_fleet_lease(FleetLease::Outbox, holder, clock.now(), OUTBOX_LEASE)
            .await?
        {
            break;
        }
        let message = match compose(store, mailer, &notification).await {
            Ok(message) => message,
            Err(MailError::Store(error)) => return Err(MailError::Store(error)),
            // An address or template this notification cannot be sent with: it waits, and
            // the others go on.
            Err(error) => {
                round.failed += 1;
                let retry = mailer.failed(notification.id, clock.now());
                tracing::warn!(notification = notification.id, retry_at = %instant(retry), %error, "could not write a notification");
                continue;
            }
        };
        let Some(message) = message else {
            // Nobody to write to: the panel shows it, and the outbox forgets it.
            tracing::warn!(operator = %notification.operator, "no e-mail address for a notification");
            store.mark_emailed(notification.id, clock.now()).await?;
            continue;
        };
        match mailer.transport.send(message).await {
            Ok(_) => {
                mailer.sent(notification.id);
                store.mark_emailed(notification.id, clock.now()).await?;
                round.sent += 1;
            }
            Err(error) => {
                round.failed += 1;
                let retry = mailer.failed(notification.id, clock.now());
                tracing::warn!(
                    relay = %mailer.relay,
                    notification = notification.id,
                    retry_at = %instant(retry),
                    %error,
                    "could not send a notification"
                );
                // Not the relay's answer about this message: it is down or unreachable.
                if !error.is_permanent() && !error.is_transient() {
                    break;
                }
            }
        }
    }
    Ok(round)
}

/// Runs the outbox every minute until `stop` turns true; does nothing without an `[smtp]`
/// section, and only logs when it cannot be set up.
pub async fn run_outbox(
    store: Arc<Store>,
    infra: Infra,
    holder: String,
    mut stop: watch::Receiver<bool>,
) {
    let mailer = match Mailer::from_infra(&infra) {
        Ok(Some(mailer)) => mailer,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, "notifications are not e-mailed");
            return;
        }
    };
    while !*stop.borrow() {
        if let Err(error) = send_pending(&store, &mailer, &SystemClock, &holder).await {
            tracing::error!(%error, "could not read the notification outbox");
        }
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What an e-mail says, for both of its parts.
struct Notice {
    subject: String,
    body: String,
    title: String,
    severity: &'static str,
    /// The slot in the operator's time zone and in UTC, when there is one.
    local: Option<String>,
    utc: Option<String>,
    outside_windows: bool,
    reason: Option<String>,
    link: Option<String>,
}

#[derive(Template)]
#[template(path = "mail/notice.txt")]
struct TextPart<'a> {
    notice: &'a Notice,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct HtmlPart<'a> {
    notice: &'a Notice,
}

/// The e-mail for a notification; `None` when the operator has no address to write to.
async fn compose(
    store: &Store,
    mailer: &Mailer,
    notification: &Notification,
) -> Result<Option<Message>, MailError> {
    let config = store
        .configurations(&notification.operator)
        .await?
        .last()
        .and_then(|v| serde_json::from_value::<OperatorConfig>(v.config.clone()).ok());
    let mut recipients: Vec<String> = config
        .iter()
        .map(|c| c.admin.email.to_string().to_lowercase())
        .collect();
    for email in store.operator_emails(&notification.operator).await? {
        if !recipients.contains(&email) {
            recipients.push(email);
        }
    }
    if recipients.is_empty() {
        return Ok(None);
    }
    let notice = notice(store, mailer, notification, config.as_ref()).await?;
    let render =
        |result: askama::Result<String>| result.map_err(|e| MailError::Render(e.to_string()));
    let text = render(TextPart { notice: &notice }.render())?;
    let html = render(HtmlPart { notice: &notice }.render())?;
    let mut builder = Message::builder()
        .from(mailer.from.clone())
        .subject(notice.subject.clone());
    for recipient in &recipients {
        builder = builder.to(mailbox(recipient)?);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map(Some)
        .map_err(|e| MailError::Address {
            address: recipients.join(", "),
            reason: e.to_string(),
        })
}

/// The details of a notification: its release, slot (in the operator's zone) and reason.
async fn notice(
    store: &Store,
    mailer: &Mailer,
    notification: &Notification,
    config: Option<&OperatorConfig>,
) -> Result<Notice, MailError> {
    let release = store.release(notification.release).await?;
    let item = store
        .rollout(notification.release)
        .await?
        .into_iter()
        .map(|r| r.item)
        .find(|item| item.operator == notification.operator);
    let start = DateTime::parse_from_rfc3339(&notification.occasion)
        .ok()
        .map(|at| at.with_timezone(&Utc));
    let slot = item.as_ref().and_then(|item| item.slot);
    let outside_windows =
        slot.is_some_and(|slot| Some(slot.start) == start && slot.outside_windows);
    let local = start
        .zip(config)
        .and_then(|(start, config)| in_zone(start, &config.maintenance));
    let reason = match (notification.kind, item.map(|item| item.status)) {
        (NotificationKind::RolledBack, Some(ItemStatus::Failed(reason))) => Some(reason),
        _ => None,
    };
    Ok(Notice {
        subject: notification.subject.clone(),
        body: notification.body.clone(),
        title: release.release.title,
        severity: release.release.severity.as_str(),
        local,
        utc: start.map(in_utc),
        outside_windows,
        reason,
        link: mailer
            .panel_url
            .as_ref()
            .map(|url| format!("{url}/operators/{}", notification.operator)),
    })
}

/// An instant in the time zone of the operator's maintenance windows, e.g. `Sunday 29 March
/// 2026, 03:30 (Europe/Amsterdam)`; `None` for a zone this build does not know.
pub(crate) fn in_zone(at: DateTime<Utc>, maintenance: &Maintenance) -> Option<String> {
    let zone = fediversity_fleet::windows::time_zone(maintenance).ok()?;
    let local = at.with_timezone(&zone);
    Some(format!(
        "{} ({})",
        local.format("%A %-d %B %Y, %H:%M"),
        zone.name()
    ))
}

/// An instant in UTC, e.g. `Sunday 29 March 2026, 01:30 UTC`.
pub(crate) fn in_utc(at: DateTime<Utc>) -> String {
    at.format("%A %-d %B %Y, %H:%M UTC").to_string()
}

fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address
        .parse()
        .map_err(|e: lettre::address::AddressError| MailError::Address {
            address: address.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay() -> Relay {
        Relay {
            host: "127.0.0.1".to_owned(),
            port: 2525,
            tls: SmtpTls::None,
            login: Some(("fedi".to_owned(), "hunter2".to_owned())),
        }
    }

    #[test]
    fn failures_back_off_doubling_up_to_an_hour() {
        let mailer = Mailer::new(&relay(), "fediversity@mail.example.net", None).unwrap();
        assert!(mailer.due(7, 0));
        assert_eq!(mailer.failed(7, 0), FIRST_RETRY);
        assert!(!mailer.due(7, FIRST_RETRY - 1));
        assert!(mailer.due(7, FIRST_RETRY));
        assert!(mailer.due(8, 0), "other notifications are not held back");
        assert_eq!(mailer.failed(7, 1000), 1000 + 2 * FIRST_RETRY);
        for _ in 0..20 {
            mailer.failed(7, 0);
        }
        assert_eq!(mailer.failed(7, 0), LONGEST_RETRY);
        mailer.sent(7);
        assert!(mailer.due(7, 0));
    }

    #[test]
    fn the_password_is_read_from_its_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret-pass\n").unwrap();
        let smtp = SmtpInfra {
            host: "smtp.example.net".try_into().unwrap(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: Some("fedi".to_owned()),
            password_file: Some(path.clone()),
            from_domain: None,
            platform_from: None,
        };
        let relay = Relay::from_infra(&smtp).unwrap();
        assert_eq!(
            relay.login,
            Some(("fedi".to_owned(), "s3cret-pass".to_owned()))
        );
        assert!(!format!("{relay:?}").contains("s3cret"));
        std::fs::remove_file(&path).unwrap();
        let missing = Relay::from_infra(&smtp).unwrap_err().to_string();
        assert!(missing.contains("password file"), "{missing}");
    }

    #[test]
    fn no_smtp_section_means_no_mailer_and_no_from_address_is_an_error() {
        let mut infra = Infra::example().unwrap();
        let smtp = infra.smtp.take().unwrap();
        assert!(Mailer::from_infra(&infra).unwrap().is_none());
        infra.smtp = Some(SmtpInfra {
            username: None,
            password_file: None,
            from_domain: None,
            platform_from: None,
            ..smtp
        });
        assert!(matches!(
            Mailer::from_infra(&infra),
            Err(MailError::NoFromAddress)
        ));
    }
}
