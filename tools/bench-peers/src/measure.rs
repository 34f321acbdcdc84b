//! The sampling loop shared by every peer.

use std::hint::black_box;
use std::time::Instant;

use crate::{PeerError, Plan, Samples};

/// Runs `op` in batches of `batch`: `plan.warmup` batches thrown away, then up to
/// `plan.samples` batches timed, each sample being the batch time divided by `batch`, in ns.
/// Stops early once `plan.max_time` has passed with [`Plan::MIN_SAMPLES`] samples kept. The
/// first error of `op` ends the measurement.
pub(crate) fn batches(
    plan: &Plan,
    batch: u32,
    mut op: impl FnMut() -> Result<(), PeerError>,
) -> Result<Samples, PeerError> {
    let batch = batch.max(1);
    for _ in 0..plan.warmup {
        for _ in 0..batch {
            op()?;
        }
    }
    let mut samples = Vec::with_capacity(plan.samples);
    let start = Instant::now();
    while samples.len() < plan.samples {
        let t0 = Instant::now();
        for _ in 0..batch {
            op()?;
        }
        let dt = black_box(t0.elapsed());
        samples.push(dt.as_nanos() as f64 / f64::from(batch));
        if samples.len() >= Plan::MIN_SAMPLES && start.elapsed() > plan.max_time {
            break;
        }
    }
    Ok(samples)
}

/// Encodes a result as one line for a child's report: `ok V V V...` or `err REASON`.
pub(crate) fn encode(tag: &str, r: &Result<Samples, PeerError>) -> String {
    match r {
        Ok(s) => {
            let mut line = format!("{tag} ok");
            for v in s {
                line.push(' ');
                line.push_str(&v.to_string());
            }
            line.push('\n');
            line
        }
        Err(e) => format!("{tag} err {}\n", e.to_string().replace('\n', " ")),
    }
}

/// Finds the line tagged `tag` in a child's report and decodes it (see [`encode`]).
pub(crate) fn decode(tag: &str, text: &str) -> Option<Result<Samples, PeerError>> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(tag)?.strip_prefix(' '))?;
    if let Some(reason) = line.strip_prefix("err ") {
        return Some(Err(PeerError::Unavailable(reason.to_owned())));
    }
    let values = line.strip_prefix("ok")?;
    let parsed: Result<Vec<f64>, _> = values.split_whitespace().map(str::parse).collect();
    Some(match parsed {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(PeerError::ChildDied("sent a malformed report".to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn encode_decode_round_trip() {
        let ok: Result<Samples, PeerError> = Ok(vec![1.5, 2.0, 1e6]);
        let err: Result<Samples, PeerError> = Err(PeerError::Unavailable("no\nway".to_owned()));
        let text = format!("{}{}", encode("a", &ok), encode("b", &err));
        assert_eq!(decode("a", &text), Some(ok));
        assert_eq!(
            decode("b", &text),
            Some(Err(PeerError::Unavailable("no way".to_owned())))
        );
        assert_eq!(decode("c", &text), None);
        assert!(matches!(decode("x", "x ok 1 zz"), Some(Err(_))));
    }

    #[test]
    fn batches_respects_plan() {
        let plan = Plan {
            warmup: 2,
            samples: 50,
            max_time: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
        };
        let mut calls = 0;
        let s = batches(&plan, 4, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(s.len(), 50);
        assert_eq!(calls, (2 + 50) * 4);
        assert!(s.iter().all(|v| v.is_finite() && *v >= 0.0));
        let e = batches(&plan, 1, || Err(PeerError::Unavailable("x".into())));
        assert_eq!(e, Err(PeerError::Unavailable("x".into())));
    }
}
