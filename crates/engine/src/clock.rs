//! Time as an input: the engine asks a [`Clock`] for the time and for sleeps, so that lease
//! expiry, retry backoff and maintenance windows can be tested without waiting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

/// Milliseconds since the Unix epoch: how the engine and the store write instants.
pub type Millis = i64;

/// The source of time.
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Millis;
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
}

/// The system clock and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock that only moves when a test moves it: sleeping on it waits until the test has
/// advanced it past the sleep's end.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<Millis>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn at(now: Millis) -> Self {
        Self {
            now: tokio::sync::watch::Sender::new(now),
        }
    }

    /// Moves the clock forward, waking the sleeps that are over.
    pub fn advance(&self, duration: Duration) {
        let step = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        self.now.send_modify(|now| *now = now.saturating_add(step));
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Millis {
        *self.now.borrow()
    }

    async fn sleep(&self, duration: Duration) {
        let end = self
            .now()
            .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        let mut changes = self.now.subscribe();
        while *changes.borrow_and_update() < end {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}
