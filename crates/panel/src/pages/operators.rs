//! An operator's pages: the dashboard, the configuration form and the history; and the
//! administrators' list of operators.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use fediversity_engine::clock::{Clock, SystemClock};
use fediversity_model::names::OperatorId;
use fediversity_model::{Infra, OperatorConfig};
use fediversity_store::{Deployment, DeploymentStatus, Role, StoredConfiguration};

use super::maintenance::{DashboardQuery, Outcome};
use crate::AppState;
use crate::auth::{Posted, SignedIn};
use crate::error::PanelError;
use crate::fleet::instant;
use crate::forms::{self, FieldErrors, Fields, WindowRow};

/// What every signed-in page shows in its header.
pub struct Chrome {
    /// Who is signed in.
    pub email: String,
    /// The token of the sign-out form (and every other form on the page).
    pub csrf: String,
    /// Whether the user is an administrator of the hosting provider.
    pub admin: bool,
}

impl Chrome {
    pub fn of(user: &SignedIn) -> Self {
        Self {
            email: user.0.user.email.clone(),
            csrf: user.csrf().to_owned(),
            admin: user.0.user.role == Role::Admin,
        }
    }
}

/// Renders a page, or says why it could not.
pub fn page(status: StatusCode, template: &impl Template) -> Result<Response, PanelError> {
    template
        .render()
        .map(|html| (status, Html(html)).into_response())
        .map_err(|e| PanelError::internal(format!("rendering a page: {e}")))
}

/// The operator's latest configuration, if it has saved one.
pub async fn latest(
    state: &AppState,
    operator: &OperatorId,
) -> Result<Option<(StoredConfiguration, OperatorConfig)>, PanelError> {
    latest_of(state.store().configurations(operator).await?)
}

/// The last of an operator's configuration versions, read.
fn latest_of(
    mut configurations: Vec<StoredConfiguration>,
) -> Result<Option<(StoredConfiguration, OperatorConfig)>, PanelError> {
    let Some(stored) = configurations.pop() else {
        return Ok(None);
    };
    let config = serde_json::from_value(stored.config.clone()).map_err(|e| {
        PanelError::internal(format!("configuration {} unreadable: {e}", stored.version))
    })?;
    Ok(Some((stored, config)))
}

#[derive(Template)]
#[template(path = "operators.html")]
struct OperatorsPage {
    chrome: Chrome,
    operators: Vec<OperatorRow>,
    releases: Vec<super::maintenance::ReleaseRow>,
    invitations: Vec<super::invitations::InvitationRow>,
}

struct OperatorRow {
    id: String,
    versions: usize,
    last_deployment: String,
    usage: String,
}

/// Every operator, for the hosting provider's administrators; an operator's member is sent
/// to their own.
pub async fn list(State(state): State<AppState>, user: SignedIn) -> Result<Response, PanelError> {
    if let Role::Operator(own) = &user.0.user.role {
        return Ok(Redirect::to(&format!("/operators/{own}")).into_response());
    }
    let mut operators = Vec::new();
    for id in state.store().operators().await? {
        let configurations = state.store().configurations(&id).await?;
        let versions = configurations.len();
        // A deleted account's last version is a marker, not a configuration: it uses nothing.
        let infra = state.infra_of(&id).await?;
        let usage = configurations
            .last()
            .and_then(|c| serde_json::from_value::<OperatorConfig>(c.config.clone()).ok())
            .map_or_else(
                || "nothing configured".to_owned(),
                |config| describe_usage(&config, &infra),
            );
        let last_deployment = state
            .store()
            .deployments(&id)
            .await?
            .first()
            .map_or_else(|| "never deployed".to_owned(), describe_deployment);
        operators.push(OperatorRow {
            id: id.to_string(),
            versions,
            last_deployment,
            usage,
        });
    }
    let view = OperatorsPage {
        chrome: Chrome::of(&user),
        operators,
        releases: super::maintenance::releases(state.store()).await?,
        invitations: super::invitations::rows(&state, state.now()).await?,
    };
    page(StatusCode::OK, &view)
}

/// `2 of 8 VMs, 4 of 32 vCPUs, …`: what the latest configuration uses of each limit.
fn describe_usage(config: &OperatorConfig, infra: &fediversity_model::Infra) -> String {
    fediversity_configurator::usage_against_limits(config, infra)
        .iter()
        .map(|u| format!("{} of {} {}", u.used, u.limit, u.what))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `deployment 3 of version 2: succeeded`
fn describe_deployment(deployment: &Deployment) -> String {
    format!(
        "deployment {} of version {}: {}",
        deployment.id,
        deployment.configuration_version,
        deployment.status.as_str()
    )
}

/// The operator's dashboard.
#[derive(Template)]
#[template(path = "dashboard.html")]
pub(super) struct DashboardPage {
    chrome: Chrome,
    operator: String,
    name: String,
    services: Vec<ServiceRow>,
    configured: bool,
    undeployed: Option<i64>,
    deployments: Vec<DeploymentRow>,
    identity_sync: Option<crate::identity::SyncView>,
    maintenance: Vec<super::maintenance::UpcomingRow>,
    /// What the maintenance form did, and whether it was refused.
    maintenance_outcome: Option<(String, bool)>,
    notices: Vec<super::maintenance::NoticeRow>,
}

struct ServiceRow {
    title: &'static str,
    url: String,
    state: String,
}

pub struct DeploymentRow {
    pub id: i64,
    pub version: i64,
    pub status: &'static str,
}

impl From<&Deployment> for DeploymentRow {
    fn from(deployment: &Deployment) -> Self {
        Self {
            id: deployment.id.0,
            version: deployment.configuration_version,
            status: deployment.status.as_str(),
        }
    }
}

/// The operator's services, with their state and addresses, its maintenance and its recent
/// deployments.
pub async fn dashboard(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let view = dashboard_view(&state, &user, &operator, query.outcome()).await?;
    page(StatusCode::OK, &view)
}

/// The dashboard of `operator`, saying what the maintenance form did (`outcome`).
pub(super) async fn dashboard_view(
    state: &AppState,
    user: &SignedIn,
    operator: &OperatorId,
    outcome: Option<Outcome>,
) -> Result<DashboardPage, PanelError> {
    let configurations = state.store().configurations(operator).await?;
    let deployments = state.store().deployments(operator).await?;
    let deployed = deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Succeeded)
        .and_then(|d| {
            configurations
                .iter()
                .find(|c| c.version == d.configuration_version)
        })
        .and_then(|c| serde_json::from_value::<OperatorConfig>(c.config.clone()).ok());
    let under_way = deployments.iter().find(|d| {
        matches!(
            d.status,
            DeploymentStatus::Queued | DeploymentStatus::Running
        )
    });
    let latest = latest_of(configurations)?;
    let services = latest
        .as_ref()
        .map(|(_, config)| {
            config
                .services
                .iter()
                .map(|(kind, service)| {
                    let live = deployed
                        .as_ref()
                        .and_then(|d| d.services.get(kind))
                        .is_some_and(|s| s.enable);
                    let state = match (live, service.enable, under_way) {
                        (_, _, Some(d)) => format!("deployment {} under way", d.id),
                        (true, true, None) => "running".to_owned(),
                        (true, false, None) => {
                            "running; turned off in a change not deployed yet".to_owned()
                        }
                        (false, true, None) => "not deployed yet".to_owned(),
                        (false, false, None) => "off".to_owned(),
                    };
                    ServiceRow {
                        title: kind.title(),
                        url: format!("https://{}", config.service_fqdn(kind, service)),
                        state,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let deployed_version = deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Succeeded)
        .map(|d| d.configuration_version);
    let latest_version = latest.as_ref().map(|(stored, _)| stored.version);
    let windows = latest.as_ref().map(|(_, config)| &config.maintenance);
    let now = instant(state.now());
    let maintenance = super::maintenance::upcoming(state.store(), operator, windows, now).await?;
    let maintenance_outcome = super::maintenance::describe(outcome, &maintenance);
    let notices = super::maintenance::notices(state.store(), operator).await?;
    Ok(DashboardPage {
        chrome: Chrome::of(user),
        operator: operator.to_string(),
        name: latest
            .as_ref()
            .map(|(_, config)| config.operator.name.clone())
            .unwrap_or_default(),
        services,
        configured: latest.is_some(),
        undeployed: latest_version.filter(|v| Some(*v) != deployed_version),
        deployments: deployments
            .iter()
            .take(5)
            .map(DeploymentRow::from)
            .collect(),
        identity_sync: crate::identity::last_sync(state.store(), operator).await?,
        maintenance,
        maintenance_outcome,
        notices,
    })
}

#[derive(Template)]
#[template(path = "configure.html")]
struct ConfigurePage {
    chrome: Chrome,
    operator: String,
    fields: Fields,
    errors: FieldErrors,
    services: Vec<ServiceField>,
    /// Every maintenance window as a row, then an empty row to add one.
    windows: Vec<WindowRow>,
    sizes: Vec<String>,
    /// The identity provider of the latest configuration, described, if it has one.
    identity: Option<String>,
    /// What "Check identity provider" found: whether it passed, and what to show.
    identity_check: Option<(bool, String)>,
}

struct ServiceField {
    key: &'static str,
    title: &'static str,
    enabled: bool,
    size: String,
    keep: bool,
    errors: Vec<String>,
}

impl ConfigurePage {
    fn new(
        infra: &Infra,
        user: &SignedIn,
        operator: &OperatorId,
        fields: Fields,
        errors: FieldErrors,
    ) -> Self {
        let services = fediversity_model::ServiceKind::ALL
            .into_iter()
            .map(|kind| ServiceField {
                key: kind.as_str(),
                title: kind.title(),
                enabled: fields.contains_key(&format!("{kind}_enable")),
                size: fields
                    .get(&format!("{kind}_size"))
                    .cloned()
                    .unwrap_or_default(),
                keep: fields
                    .get(&format!("{kind}_retention"))
                    .is_none_or(|r| r != "delete"),
                errors: errors.get(kind.as_str()).cloned().unwrap_or_default(),
            })
            .collect();
        Self {
            chrome: Chrome::of(user),
            operator: operator.to_string(),
            services,
            windows: forms::window_rows(&fields),
            sizes: infra.sizes.keys().cloned().collect(),
            fields,
            errors,
            identity: None,
            identity_check: None,
        }
    }

    /// A field's value as sent or saved.
    fn value(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    /// The problems with a field.
    fn errors_of(&self, name: &str) -> &[String] {
        self.errors.get(name).map_or(&[], Vec::as_slice)
    }

    /// The problems with field `part` of a window row (`""` for the row as a whole).
    fn row_errors(&self, row: &WindowRow, part: &str) -> &[String] {
        if part.is_empty() {
            self.errors_of(&row.prefix)
        } else {
            self.errors_of(&format!("{}_{part}", row.prefix))
        }
    }
}

/// The configuration form, filled in with the latest version.
pub async fn configure_page(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let config = latest(&state, &operator).await?.map(|(_, config)| config);
    let infra = state.infra_of(&operator).await?;
    let view = configure_view(&infra, &user, &operator, config.as_ref());
    page(StatusCode::OK, &view)
}

/// The configuration form filled in with `config`, and its identity provider.
fn configure_view(
    infra: &Infra,
    user: &SignedIn,
    operator: &OperatorId,
    config: Option<&OperatorConfig>,
) -> ConfigurePage {
    let fields = config.map_or_else(|| forms::blank(""), forms::fields_of);
    let mut view = ConfigurePage::new(infra, user, operator, fields, FieldErrors::new());
    view.identity = config
        .and_then(|c| c.identity.as_ref())
        .map(crate::identity::describe);
    view
}

/// "Check identity provider": checks the latest configuration's identity provider with the
/// operator's stored secret, as a deployment would, and shows the result on the form.
pub async fn check_identity(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
    Posted(_): Posted<Fields>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let config = latest(&state, &operator).await?.map(|(_, config)| config);
    let checked =
        crate::identity::check_identity(state.platform(), &operator, config.as_ref()).await;
    let infra = state.infra_of(&operator).await?;
    let mut view = configure_view(&infra, &user, &operator, config.as_ref());
    view.identity_check = Some(checked);
    page(StatusCode::OK, &view)
}

/// Saves the form as the next configuration version and shows its plan, or shows the form
/// again with every problem next to its field.
pub async fn configure(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
    Posted(mut fields): Posted<Fields>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    fields.remove("csrf");
    let previous = latest(&state, &operator).await?;
    let infra = state.infra_of(&operator).await?;
    match forms::parse(
        &fields,
        &operator,
        previous.as_ref().map(|(_, c)| c),
        &infra,
    ) {
        Ok(config) => {
            let document = serde_json::to_value(&config)
                .map_err(|e| PanelError::internal(format!("serialising a configuration: {e}")))?;
            let unchanged = previous.is_some_and(|(stored, _)| stored.config == document);
            if !unchanged {
                let now = SystemClock.now();
                if let Err(taken) = state
                    .store()
                    .claim_domain(&operator, &config.domain, now)
                    .await
                {
                    let errors =
                        FieldErrors::from([("domain".to_owned(), vec![taken.to_string()])]);
                    let view = ConfigurePage::new(&infra, &user, &operator, fields, errors);
                    return page(StatusCode::CONFLICT, &view);
                }
                state
                    .store()
                    .save_configuration(&operator, &document, now)
                    .await?;
            }
            Ok(Redirect::to(&format!("/operators/{operator}/plan")).into_response())
        }
        Err(errors) => {
            let view = ConfigurePage::new(&infra, &user, &operator, fields, errors);
            page(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
    }
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    chrome: Chrome,
    operator: String,
    versions: Vec<VersionRow>,
}

struct VersionRow {
    version: i64,
    saved: String,
    services: String,
    maintenance: String,
    /// What changed from the version before, one line per field.
    changes: Vec<String>,
    deployments: Vec<DeploymentRow>,
}

/// Every configuration version, newest first, with what changed from the one before and the
/// deployments of each.
pub async fn history(
    State(state): State<AppState>,
    user: SignedIn,
    Path(operator): Path<String>,
) -> Result<Response, PanelError> {
    let operator = user.operator(&operator)?;
    let deployments = state.store().deployments(&operator).await?;
    let stored = state.store().configurations(&operator).await?;
    let mut versions: Vec<VersionRow> = stored
        .iter()
        .enumerate()
        .map(|(index, this)| {
            let previous = index.checked_sub(1).and_then(|i| stored.get(i));
            version_row(this, previous, &deployments)
        })
        .collect();
    versions.reverse();
    let view = HistoryPage {
        chrome: Chrome::of(&user),
        operator: operator.to_string(),
        versions,
    };
    page(StatusCode::OK, &view)
}

/// One version of the history: what it turns on, its maintenance, what changed from the
/// version before (secrets masked), and its deployments.
fn version_row(
    stored: &StoredConfiguration,
    previous: Option<&StoredConfiguration>,
    deployments: &[Deployment],
) -> VersionRow {
    let config = serde_json::from_value::<OperatorConfig>(stored.config.clone()).ok();
    let services = config.as_ref().map_or_else(String::new, |config| {
        let on: Vec<&str> = config.services.enabled().map(|(k, _)| k.title()).collect();
        if on.is_empty() {
            "none".to_owned()
        } else {
            on.join(", ")
        }
    });
    let maintenance = config.as_ref().map_or_else(String::new, |config| {
        config
            .maintenance
            .windows
            .iter()
            .map(|w| {
                let days = forms::day_names(&w.days);
                format!("{days} from {} for {} min", w.start, w.duration_minutes)
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    let changes = previous.map_or_else(Vec::new, |previous| {
        fediversity_engine::diff::changes(&previous.config, &stored.config)
            .iter()
            .map(|change| {
                let change = change.masked();
                format!(
                    "{}: {} → {}",
                    change.path,
                    shown(change.before.as_ref()),
                    shown(change.after.as_ref())
                )
            })
            .collect()
    });
    VersionRow {
        version: stored.version,
        saved: format_time(stored.created_at),
        services,
        maintenance,
        changes,
        deployments: deployments
            .iter()
            .filter(|d| d.configuration_version == stored.version)
            .map(DeploymentRow::from)
            .collect(),
    }
}

/// A value in a change: text as is, anything else as compact JSON, absent as `(none)`.
fn shown(value: Option<&serde_json::Value>) -> String {
    match value {
        None => "(none)".to_owned(),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// Milliseconds since the epoch as `2026-11-24 03:15 UTC`.
pub fn format_time(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000);
    let (days, minute_of_day) = (minutes.div_euclid(1440), minutes.rem_euclid(1440));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, a public-domain algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_795_922_100_000), "2026-11-29 03:15 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
