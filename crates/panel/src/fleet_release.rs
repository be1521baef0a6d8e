//! Publishing a fleet release, for `fediversity fleet release` and `POST /api/v1/fleet/releases`
//! alike: the request is checked, its fleet summary computed against the release's own
//! infra.toml (not the one the panel serves with), and, unless it is a dry run, the release is
//! stored with its rollout's waves for the workers' scheduler to carry out.
//!
//! The infra.toml arrives as text and is stored exactly as given: that text is what the
//! workers deploy with ([`crate::fleet_jobs::infra_for`]), so it is parsed and checked here
//! first, the way they will parse it.

use chrono::{DateTime, Utc};
use fediversity_engine::clock::Millis;
use fediversity_fleet::rollout::{Policy, waves};
use fediversity_fleet::schedule::Severity;
use fediversity_model::names::OperatorId;
use fediversity_model::{Infra, parse_infra};
use fediversity_store::{NewRelease, ReleaseId, Store};

use crate::Platform;
use crate::fleet_summary::{Summary, SummaryError, summarize};

/// How many operators deploy at once, at most, unless the request says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 5;
/// How many operators a wave after the canaries has, unless the request says otherwise.
pub const DEFAULT_BATCH: usize = 10;
/// The share of a wave's operators that may fail before the rollout halts, by default.
pub const DEFAULT_MAX_FAILURE_RATE: f64 = 0.1;
/// How long one operator's deployment is expected to take, in minutes, by default.
pub const DEFAULT_EXPECTED_MINUTES: u32 = 30;

/// A release the hosting provider asks to publish (or only to summarise, with `dry_run`).
#[derive(Clone, Debug)]
pub struct ReleaseRequest {
    /// The release's infra.toml, as written: it is stored as is.
    pub infra_toml: String,
    /// What the release is, as operators are told.
    pub title: String,
    /// How urgent it is.
    pub severity: Severity,
    /// When it must have been applied everywhere, if ever; it must lie in the future.
    pub deadline: Option<DateTime<Utc>>,
    /// The operators deployed first, in the canary wave.
    pub canaries: Vec<String>,
    /// How many operators a wave after the canaries has.
    pub batch: usize,
    /// How many operators deploy at once, at most.
    pub concurrency: usize,
    /// The share of a wave's operators that may fail before the rollout halts.
    pub max_failure_rate: f64,
    /// How long one operator's deployment is expected to take, in minutes.
    pub expected_minutes: u32,
    /// Only compute the summary; store nothing.
    pub dry_run: bool,
}

/// What publishing did.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// What the release changes across the fleet.
    pub summary: Summary,
    /// The stored release; `None` for a dry run.
    pub id: Option<ReleaseId>,
}

/// Why a release was not published. [`PublishError::is_bad_input`] tells the requester's
/// mistakes (answered as such, with the message) from the platform's failures.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The infra.toml does not parse or does not pass the checks `fediversity infra check` makes.
    #[error("the release's infra.toml is not valid: {}", .0.to_string().trim_end())]
    Infra(fediversity_model::Problems),
    /// The title is empty: operators would be told nothing.
    #[error("the release needs a title: operators are told what it is")]
    NoTitle,
    /// A canary is not a well-formed operator id.
    #[error("canary `{canary}` is not an operator id: {reason}")]
    BadCanary {
        /// The canary as given.
        canary: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A canary is no operator of this installation (a typo would silently mean no canary).
    #[error(
        "no operator `{0}` is recorded here: a canary must be one of this installation's operators"
    )]
    UnknownCanary(OperatorId),
    /// The batch size, concurrency or failure rate cannot work.
    #[error(transparent)]
    Policy(#[from] fediversity_fleet::Error),
    /// The deadline has already passed: the rollout could only miss it.
    #[error("the deadline {0} has already passed: give a time in the future")]
    DeadlinePassed(String),
    /// The store failed.
    #[error("the store failed while publishing the release: {0}")]
    Store(#[from] fediversity_store::Error),
    /// The summary could not be computed.
    #[error("the release's fleet summary could not be computed: {0}")]
    Summary(#[from] SummaryError),
}

impl PublishError {
    /// Whether the request itself is wrong (and the message says how), rather than the
    /// platform failing.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::Infra(_)
            | Self::NoTitle
            | Self::BadCanary { .. }
            | Self::UnknownCanary(_)
            | Self::Policy(_)
            | Self::DeadlinePassed(_) => true,
            Self::Store(_) | Self::Summary(_) => false,
        }
    }
}

/// A request that passed every check that needs no store.
#[derive(Debug)]
struct Checked {
    infra: Infra,
    policy: Policy,
    deadline: Option<Millis>,
    canaries: Vec<OperatorId>,
}

/// Checks what can be checked without the store, at `now`.
fn check(request: &ReleaseRequest, now: Millis) -> Result<Checked, PublishError> {
    if request.title.trim().is_empty() {
        return Err(PublishError::NoTitle);
    }
    let policy = Policy::new(request.batch, request.concurrency, request.max_failure_rate)?;
    if let Some(deadline) = request.deadline
        && deadline.timestamp_millis() <= now
    {
        return Err(PublishError::DeadlinePassed(deadline.to_rfc3339()));
    }
    let canaries = request
        .canaries
        .iter()
        .map(|canary| {
            OperatorId::try_from(canary.as_str()).map_err(|reason| PublishError::BadCanary {
                canary: canary.clone(),
                reason,
            })
        })
        .collect::<Result<_, _>>()?;
    let infra = parse_infra(&request.infra_toml).map_err(PublishError::Infra)?;
    Ok(Checked {
        infra,
        policy,
        deadline: request.deadline.map(|d| d.timestamp_millis()),
        canaries,
    })
}

/// Publishes `request` at `now`: checks it, computes its fleet summary over every operator
/// with a configuration (planned with `platform`'s providers against the release's infra),
/// and unless it is a dry run stores it with its waves (canaries first, then batches).
pub async fn publish(
    store: &Store,
    platform: &Platform,
    request: &ReleaseRequest,
    now: Millis,
) -> Result<Published, PublishError> {
    let checked = check(request, now)?;
    let known = store.operators().await?;
    if let Some(unknown) = checked.canaries.iter().find(|c| !known.contains(c)) {
        return Err(PublishError::UnknownCanary(unknown.clone()));
    }
    let mut operators = Vec::new();
    for operator in known {
        if !store.configurations(&operator).await?.is_empty() {
            operators.push(operator);
        }
    }
    let summary = summarize(store, platform, &checked.infra, &operators).await?;
    if request.dry_run {
        return Ok(Published { summary, id: None });
    }
    let release = NewRelease {
        title: request.title.clone(),
        severity: request.severity,
        deadline: checked.deadline,
        infra: request.infra_toml.clone(),
        policy: checked.policy,
        expected_minutes: request.expected_minutes,
    };
    let batches = waves(&operators, &checked.canaries, request.batch);
    let id = store.create_release(&release, &batches, now).await?;
    tracing::info!(release = id.0, title = %request.title, "fleet release published");
    Ok(Published {
        summary,
        id: Some(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFRA: &str = "version = 1\n\n[sizes.small]\ncores = 2\nmemory_mib = 6144\ndisk_gib = 40\nbucket_quota_gib = 100\n\n[limits.default]\nvms = 4\nvcpus = 16\nmemory_mib = 32768\ndisk_gib = 500\nbuckets = 8\n";

    /// 2026-11-24T00:00:00Z.
    const NOW: Millis = 1_795_478_400_000;

    fn request() -> ReleaseRequest {
        ReleaseRequest {
            infra_toml: INFRA.to_owned(),
            title: "Bigger VMs".to_owned(),
            severity: Severity::Security,
            deadline: None,
            canaries: vec!["alpha".to_owned()],
            batch: DEFAULT_BATCH,
            concurrency: DEFAULT_CONCURRENCY,
            max_failure_rate: DEFAULT_MAX_FAILURE_RATE,
            expected_minutes: DEFAULT_EXPECTED_MINUTES,
            dry_run: false,
        }
    }

    fn at(text: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(text).unwrap().to_utc())
    }

    #[test]
    fn a_good_request_gives_the_parsed_infra_policy_deadline_and_canaries() {
        let mut request = request();
        request.deadline = at("2026-12-01T00:00:00Z");
        let checked = check(&request, NOW).unwrap();
        assert_eq!(checked.infra, parse_infra(INFRA).unwrap());
        assert_eq!(checked.policy, Policy::new(10, 5, 0.1).unwrap());
        assert_eq!(checked.deadline, Some(1_796_083_200_000));
        assert_eq!(
            checked.canaries,
            vec![OperatorId::try_from("alpha").unwrap()]
        );
    }

    #[test]
    fn infra_that_does_not_parse_is_refused_with_its_line() {
        let mut request = request();
        request.infra_toml = "version = 1\n[sizes.small\n".to_owned();
        let error = check(&request, NOW).unwrap_err();
        assert!(error.is_bad_input());
        let message = error.to_string();
        assert!(message.contains("not valid TOML"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn infra_that_does_not_validate_is_refused() {
        let mut request = request();
        request.infra_toml = INFRA.replace("version = 1", "version = 9");
        let error = check(&request, NOW).unwrap_err();
        assert!(matches!(error, PublishError::Infra(_)), "{error}");
    }

    #[test]
    fn a_deadline_now_or_past_is_refused() {
        let mut request = request();
        request.deadline = at("2026-11-24T00:00:00Z");
        let error = check(&request, NOW).unwrap_err();
        assert!(error.is_bad_input());
        assert_eq!(
            error.to_string(),
            "the deadline 2026-11-24T00:00:00+00:00 has already passed: give a time in the future"
        );
    }

    #[test]
    fn bad_policy_numbers_are_refused() {
        for (batch, concurrency, rate) in [(0, 5, 0.1), (10, 0, 0.1), (10, 5, 1.5)] {
            let mut request = request();
            (request.batch, request.concurrency, request.max_failure_rate) =
                (batch, concurrency, rate);
            let error = check(&request, NOW).unwrap_err();
            assert!(matches!(error, PublishError::Policy(_)), "{error}");
            assert!(error.is_bad_input());
        }
    }

    #[test]
    fn a_malformed_canary_or_an_empty_title_is_refused() {
        let mut request = request();
        request.canaries = vec!["Not An Id".to_owned()];
        let error = check(&request, NOW).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("canary `Not An Id` is not an operator id"),
            "{error}"
        );
        let mut request = self::request();
        request.title = "  ".to_owned();
        assert!(matches!(check(&request, NOW), Err(PublishError::NoTitle)));
    }

    #[test]
    fn store_failures_are_not_bad_input() {
        let error = PublishError::Store(fediversity_store::Error::UnknownRelease(7));
        assert!(!error.is_bad_input());
    }
}
