//! Retrying transient provider failures, with exponential backoff and jitter. The one place
//! the engine retries.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::clock::Clock;
use crate::provider::{ErrorKind, ProviderResult};

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the first retry; it doubles each time.
    pub base_delay: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `n` (1 for the first): `base · 2^(n-1)`, capped, times a random
    /// factor between 0.5 and 1.5 so that many clients do not retry in step.
    pub fn delay(&self, n: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
            .min(self.max_delay);
        exponential.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

/// Calls `call` until it succeeds, fails permanently, or `policy.attempts` are spent. Returns
/// the last result and how many attempts were made.
pub async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    clock: &dyn Clock,
    mut call: F,
) -> (ProviderResult<T>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ProviderResult<T>>,
{
    let mut attempt = 1;
    loop {
        let result = call().await;
        match &result {
            Err(error) if error.kind == ErrorKind::Transient && attempt < policy.attempts => {
                tracing::warn!(attempt, error = %error.message, "transient provider failure, retrying");
                clock.sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
            _ => return (result, attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::provider::ProviderError;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_and_are_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let first = policy.delay(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
        let late = policy.delay(9);
        assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_permanent_ones_are_not() {
        let clock = SystemClock;
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let (result, attempts) = with_retry(&policy, &clock, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(ProviderError::transient("503 from garage")),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!((result, attempts), (Ok(7), 3));

        let (result, attempts) = with_retry(&policy, &clock, || async {
            Err::<(), _>(ProviderError::permanent("403: bad token"))
        })
        .await;
        assert_eq!(
            (result, attempts),
            (Err(ProviderError::permanent("403: bad token")), 1)
        );

        let (result, attempts) = with_retry(&policy, &clock, || async {
            Err::<(), _>(ProviderError::transient("timeout"))
        })
        .await;
        assert_eq!((result.is_err(), attempts), (true, 5));
    }
}
