//! Shows a run's events as they happen: progress bars on a terminal, one line per finished
//! resource otherwise, or JSON lines (`--json`) for scripts. Events are already masked, so
//! nothing printed here can hold a secret.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use fediversity_engine::Action;
use fediversity_engine::clock::Millis;
use fediversity_engine::events::{Event, EventRecord, EventSink};
use fediversity_model::graph::ResourceAddress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const OK: Style = AnsiColor::Green.on_default();
const FAILED: Style = AnsiColor::Red.on_default().bold();
const QUIET: Style = Style::new().dimmed();

/// How events are shown.
pub enum Display {
    /// Progress bar and a line per finished resource, for people.
    Human,
    /// One JSON object per line, for scripts.
    Json,
}

/// An [`EventSink`] that prints, and numbers events as the store will.
pub struct Printer {
    display: Display,
    /// The desired graph whose plan is shown when the run makes it (runs nobody is asked about).
    plans_of: Option<fediversity_model::graph::DesiredGraph>,
    state: Mutex<PrinterState>,
}

struct PrinterState {
    seq: u64,
    bar: Option<ProgressBar>,
    started: HashMap<ResourceAddress, Instant>,
}

impl Printer {
    /// A printer writing to standard output (progress bars go to standard error).
    pub fn new(display: Display) -> Self {
        Self {
            display,
            plans_of: None,
            state: Mutex::new(PrinterState {
                seq: 0,
                bar: None,
                started: HashMap::new(),
            }),
        }
    }

    /// Shows the plan of `desired` as soon as the run has made it.
    pub fn showing_plans_of(mut self, desired: fediversity_model::graph::DesiredGraph) -> Self {
        self.plans_of = Some(desired);
        self
    }

    fn line(state: &PrinterState, text: &str) {
        match &state.bar {
            Some(bar) => bar.println(text),
            None => anstream::println!("{text}"),
        }
    }

    fn human(&self, state: &mut PrinterState, event: &Event) {
        match event {
            Event::Planned { plan } => {
                if let Some(desired) = &self.plans_of {
                    crate::render::plan(&mut anstream::stdout().lock(), plan, desired).ok();
                }
                let total: usize = plan.steps.len();
                if total > 0 && std::io::stderr().is_terminal() {
                    let bar = ProgressBar::with_draw_target(
                        Some(total as u64),
                        ProgressDrawTarget::stderr(),
                    );
                    if let Ok(style) = ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
                    ) {
                        bar.set_style(style);
                    }
                    bar.enable_steady_tick(Duration::from_millis(120));
                    state.bar = Some(bar);
                }
            }
            Event::Started { address, action } => {
                state.started.insert(address.clone(), Instant::now());
                if let Some(bar) = &state.bar {
                    bar.set_message(format!("{} {address}", action.verb()));
                }
            }
            Event::Progress {
                address,
                message,
                fraction,
            } => {
                if let Some(bar) = &state.bar {
                    let percent = fraction
                        .map(|f| format!(" ({:.0}%)", f * 100.0))
                        .unwrap_or_default();
                    bar.set_message(format!("{address}: {message}{percent}"));
                }
            }
            Event::Succeeded {
                address, action, ..
            } => {
                let elapsed = Self::elapsed(state, address);
                Self::line(
                    state,
                    &format!(
                        "  {OK}✓{OK:#} {} {address} {QUIET}({elapsed}){QUIET:#}",
                        done_verb(*action)
                    ),
                );
                if let Some(bar) = &state.bar {
                    bar.inc(1);
                }
            }
            Event::Failed {
                address,
                action,
                error,
            } => {
                Self::line(
                    state,
                    &format!("  {FAILED}✗{FAILED:#} {} {address}: {error}", action.verb()),
                );
                if let Some(bar) = &state.bar {
                    bar.inc(1);
                }
            }
            Event::Finished { .. } => {
                if let Some(bar) = state.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    fn elapsed(state: &mut PrinterState, address: &ResourceAddress) -> String {
        state.started.remove(address).map_or_else(String::new, |t| {
            format!("{:.1}s", t.elapsed().as_secs_f64())
        })
    }
}

fn done_verb(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace => "replaced",
        Action::Delete => "deleted",
        Action::Keep => "kept the data of",
        Action::Unchanged => "left",
    }
}

impl EventSink for Printer {
    fn emit(&self, event: &Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.seq += 1;
        match self.display {
            Display::Json => {
                let record = EventRecord {
                    seq: state.seq,
                    at: now_millis(),
                    event: event.clone(),
                };
                if let Ok(line) = serde_json::to_string(&record) {
                    let mut out = std::io::stdout().lock();
                    // A closed pipe ends the output, not the run.
                    let _ = writeln!(out, "{line}");
                }
            }
            Display::Human => self.human(&mut state, event),
        }
    }
}

fn now_millis() -> Millis {
    use fediversity_engine::clock::{Clock, SystemClock};
    SystemClock.now()
}
