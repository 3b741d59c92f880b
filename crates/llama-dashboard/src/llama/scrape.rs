//! Generation throughput from llama-server's Prometheus `/metrics` (served when it runs with
//! `--metrics`, the `llama_server_metrics` setting). In router mode each loaded model has its
//! own counters, read at `/metrics?model=ID`. The figure is the growth of
//! `llamacpp:tokens_predicted_total` summed over the models, per second of wall time between
//! two samples: what llama-server actually produced, for every client, not only the proxy's.
//! llama-server adds a request's tokens when the request ends, so a long generation shows up as
//! a step when it finishes; over a chart's span the rate is right.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::router;
use super::upstream::Upstream;

/// The counter of generated tokens.
const PREDICTED: &str = "llamacpp:tokens_predicted_total";

/// How long one scrape may take; the sampler must not stall on a busy server.
const SCRAPE: Duration = Duration::from_secs(1);

/// The value of an unlabelled sample in Prometheus text, if present.
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            // The name must end here: a space, or labels.
            let rest = rest.strip_prefix(' ').or_else(|| {
                rest.starts_with('{')
                    .then(|| rest.split_once('}').map(|(_, v)| v))
                    .flatten()
            })?;
            rest.split_ascii_whitespace().next()?.parse().ok()
        })
}

/// Tokens per second from successive counter readings per model.
#[derive(Debug, Default)]
pub struct Throughput {
    totals: HashMap<String, f64>,
    at: Option<Instant>,
}

impl Throughput {
    /// Takes the counters read at `now`; returns tokens per second since the previous reading
    /// (0 on the first). A counter that went down restarted with its model, so all of it is new.
    pub fn update(&mut self, readings: &[(String, f64)], now: Instant) -> f64 {
        let mut produced = 0.0;
        for (model, total) in readings {
            let before = self.totals.get(model).copied();
            produced += match before {
                Some(before) if *total >= before => total - before,
                Some(_) => *total,
                // First seen: only a model loaded since the last reading counts from zero.
                None if self.at.is_some() => *total,
                None => 0.0,
            };
        }
        self.totals = readings.iter().cloned().collect();
        let rate = match self.at {
            Some(at) => {
                let seconds = now.duration_since(at).as_secs_f64();
                if seconds > 0.0 {
                    produced / seconds
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.at = Some(now);
        rate
    }

    /// Forgets the readings (llama-server stopped).
    pub fn reset(&mut self) {
        self.totals.clear();
        self.at = None;
    }
}

/// Reads the generated-token counter of every loaded model (or of the server itself, when it
/// is not a router). Models whose metrics cannot be read are left out.
pub async fn read_counters(upstream: &Upstream) -> Vec<(String, f64)> {
    let Ok(listed) = router::list(upstream).await else {
        return Vec::new();
    };
    let mut readings = Vec::new();
    for model in listed.iter().filter(|m| m.catalog_status() == "loaded") {
        let path = format!("/metrics?model={}", percent_encode(&model.id));
        if let Ok((200, text)) = upstream.text(&path, SCRAPE).await
            && let Some(total) = sample_value(&text, PREDICTED)
        {
            readings.push((model.id.clone(), total));
        }
    }
    if readings.is_empty()
        && let Ok((200, text)) = upstream.text("/metrics", SCRAPE).await
        && let Some(total) = sample_value(&text, PREDICTED)
    {
        readings.push((String::new(), total));
    }
    readings
}

/// Escapes a query value (model ids are file and folder names).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn counters_are_read_by_their_exact_name() {
        let text = "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed\n\
                    # TYPE llamacpp:tokens_predicted_total counter\n\
                    llamacpp:tokens_predicted_total 10\n\
                    llamacpp:tokens_predicted_seconds_total 0.078597\n\
                    other{model=\"a b\"} 3.5\n";
        assert_eq!(sample_value(text, PREDICTED), Some(10.0));
        assert_eq!(
            sample_value(text, "llamacpp:tokens_predicted_seconds_total"),
            Some(0.078597)
        );
        assert_eq!(sample_value(text, "other"), Some(3.5));
        assert_eq!(sample_value(text, "llamacpp:tokens_predicted"), None);
    }

    #[test]
    fn throughput_is_the_growth_per_second_across_models() {
        let t0 = Instant::now();
        let mut throughput = Throughput::default();
        let read = |a: f64, b: f64| vec![("a".to_string(), a), ("b".to_string(), b)];
        assert_eq!(throughput.update(&read(100.0, 50.0), t0), 0.0);
        let rate = throughput.update(&read(140.0, 70.0), t0 + Duration::from_secs(2));
        assert!((rate - 30.0).abs() < 1e-9, "{rate}");
        // `b` was reloaded: its counter restarted at 8.
        let rate = throughput.update(&read(140.0, 8.0), t0 + Duration::from_secs(4));
        assert!((rate - 4.0).abs() < 1e-9, "{rate}");
        // A newly loaded model counts from zero.
        let mut readings = read(140.0, 8.0);
        readings.push(("c".into(), 10.0));
        let rate = throughput.update(&readings, t0 + Duration::from_secs(5));
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");
        throughput.reset();
        assert_eq!(
            throughput.update(&readings, t0 + Duration::from_secs(6)),
            0.0
        );
    }

    #[test]
    fn model_ids_are_escaped_in_the_query() {
        assert_eq!(percent_encode("SmolLM2 135M+x&y"), "SmolLM2%20135M%2Bx%26y");
    }
}
