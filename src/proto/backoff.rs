//! When to try a connection again: jittered exponential backoff, and which
//! endings retrying cannot fix. Pure policy: it takes the attempt number
//! and a random number, and returns the delay; the caller sleeps and
//! connects.

use std::time::Duration;

/// Jittered exponential backoff: the delay before attempt `n` (1, 2, ...)
/// is `initial × factor^(n-1)`, at most `max`, less a random part of up to
/// `jitter` of it (so that many clients that lost the same server do not
/// all come back at once); no delay past `max_attempts`.
///
/// ```
/// use airws::proto::backoff::Backoff;
/// use std::time::Duration;
///
/// let b = Backoff::default();
/// assert_eq!(b.delay(1, 0.0), Some(Duration::from_millis(500)));
/// assert_eq!(b.delay(2, 0.0), Some(Duration::from_secs(1)));
/// // A random number of 1 takes the whole jitter (half) off.
/// assert_eq!(b.delay(2, 1.0), Some(Duration::from_millis(500)));
/// assert_eq!(b.delay(40, 0.0), Some(Duration::from_secs(30)));
/// let b = b.max_attempts(Some(3));
/// assert_eq!(b.delay(4, 0.0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    max_attempts: Option<u32>,
    jitter: f64,
}

impl Default for Backoff {
    /// 500 ms first, doubling up to 30 s, jitter one half, attempts
    /// unlimited.
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            max_attempts: None,
            jitter: 0.5,
        }
    }
}

/// Why a [`Backoff`] setting was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackoffError(&'static str);

impl std::fmt::Display for BackoffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BackoffError {}

impl Backoff {
    /// The delay before the first attempt and the largest: `initial` above
    /// zero and at most `max`.
    pub fn delays(mut self, initial: Duration, max: Duration) -> Result<Backoff, BackoffError> {
        if initial.is_zero() || initial > max {
            return Err(BackoffError(
                "the initial delay must be above zero and at most the largest delay",
            ));
        }
        self.initial = initial;
        self.max = max;
        Ok(self)
    }

    /// How much each delay grows over the one before: at least 1.
    pub fn factor(mut self, factor: f64) -> Result<Backoff, BackoffError> {
        if !(factor >= 1.0 && factor.is_finite()) {
            return Err(BackoffError(
                "the factor must be a finite number, at least 1",
            ));
        }
        self.factor = factor;
        Ok(self)
    }

    /// The part of each delay that randomness may take off: 0 (none) to 1.
    pub fn jitter(mut self, jitter: f64) -> Result<Backoff, BackoffError> {
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError("the jitter must be between 0 and 1"));
        }
        self.jitter = jitter;
        Ok(self)
    }

    /// How many attempts at most (`None`: no limit).
    #[must_use]
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Backoff {
        self.max_attempts = attempts;
        self
    }

    /// The delay before attempt `attempt` (counted from 1), with `random`
    /// in `0.0..=1.0` (clamped) choosing how much of the jitter is taken
    /// off; `None` past the last attempt.
    pub fn delay(&self, attempt: u32, random: f64) -> Option<Duration> {
        if attempt == 0 || self.max_attempts.is_some_and(|m| attempt > m) {
            return None;
        }
        let grown = self.initial.as_secs_f64() * self.factor.powf(f64::from(attempt - 1));
        let capped = grown.min(self.max.as_secs_f64());
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        let delay = capped * (1.0 - self.jitter * random);
        Some(Duration::from_secs_f64(delay.max(0.0)))
    }
}

/// Whether trying again can help after the peer closed, or this end failed
/// the connection, with `code`: not after 1002 (protocol error), 1003
/// (unsupported data), 1007 (invalid payload), 1008 (policy), 1009 (too
/// big), 1010 (extension), 1015 (TLS, a refused certificate); every other
/// code may be a passing state (1001 going away, 1006 dropped, 1011, 1012
/// restart, 1013 try again later, application codes).
///
/// ```
/// use airws::proto::backoff::retryable_close;
/// assert!(retryable_close(1006));
/// assert!(retryable_close(1012));
/// assert!(!retryable_close(1008));
/// assert!(!retryable_close(1015));
/// ```
pub fn retryable_close(code: u16) -> bool {
    !matches!(code, 1002 | 1003 | 1007 | 1008 | 1009 | 1010 | 1015)
}

/// Whether trying again can help after the server refused the upgrade
/// with HTTP `status`: yes for 408 (timeout), 429 (too many requests) and
/// every 5xx; no for any other 4xx (the request itself is wrong: 401, 403,
/// 404, ...) nor for a 3xx or a 101 that was not a valid upgrade.
///
/// ```
/// use airws::proto::backoff::retryable_status;
/// assert!(retryable_status(503));
/// assert!(retryable_status(429));
/// assert!(!retryable_status(403));
/// ```
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_factor_up_to_the_largest() {
        let b = Backoff::default()
            .delays(Duration::from_millis(100), Duration::from_secs(1))
            .unwrap()
            .factor(3.0)
            .unwrap()
            .jitter(0.0)
            .unwrap();
        let ms: Vec<u128> = (1..=5)
            .map(|n| b.delay(n, 0.7).unwrap().as_millis())
            .collect();
        assert_eq!(ms, [100, 300, 900, 1000, 1000]);
        assert_eq!(b.delay(0, 0.0), None);
        assert_eq!(b.delay(u32::MAX, 0.0), Some(Duration::from_secs(1)));
    }

    #[test]
    fn jitter_takes_off_at_most_its_part() {
        let b = Backoff::default();
        for r in [0.0, 0.25, 0.5, 1.0, -3.0, 7.0, f64::NAN] {
            let d = b.delay(3, r).unwrap();
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{r}: {d:?}"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused_and_attempts_end() {
        let b = Backoff::default();
        assert!(b.delays(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(b
            .delays(Duration::from_secs(2), Duration::from_secs(1))
            .is_err());
        assert!(b.factor(0.5).is_err());
        assert!(b.factor(f64::INFINITY).is_err());
        assert!(b.jitter(1.5).is_err());
        let b = b.max_attempts(Some(2));
        assert!(b.delay(2, 0.0).is_some());
        assert_eq!(b.delay(3, 0.0), None);
    }

    #[test]
    fn what_retrying_cannot_fix() {
        for code in [1002, 1003, 1007, 1008, 1009, 1010, 1015] {
            assert!(!retryable_close(code), "{code}");
        }
        for code in [1000, 1001, 1005, 1006, 1011, 1012, 1013, 4000] {
            assert!(retryable_close(code), "{code}");
        }
        for status in [408, 429, 500, 502, 503, 599] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [101, 301, 400, 401, 403, 404, 426] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
