//! Prometheus metrics: the gateway's own (requests, latency, streams, Redis errors,
//! circuit state) and, at each scrape, the module's `MAILBOX.STATS` figures.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub open_streams: IntGaugeVec,
    pub redis_errors: IntCounterVec,
    pub circuit_open: IntGauge,
    pub delivered: IntCounterVec,
}

/// `MAILBOX.STATS` names that are levels, not running totals.
const MODULE_GAUGES: &[&str] =
    &["blocked_readers", "mailboxes", "messages", "bytes", "eviction_policy_warning"];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mailbox_gateway_requests_total",
                "HTTP requests answered, by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("mailbox_gateway_request_duration_seconds", "time to answer an HTTP request")
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            &["route", "method"],
        )?;
        let open_streams = IntGaugeVec::new(
            Opts::new("mailbox_gateway_open_streams", "real-time streams open now, by kind (sse, ws)"),
            &["kind"],
        )?;
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "mailbox_gateway_redis_errors_total",
                "failed Redis calls, by kind (connection, timeout, reply)",
            ),
            &["kind"],
        )?;
        let circuit_open = IntGauge::new(
            "mailbox_gateway_circuit_open",
            "1 while the circuit to Redis is open (Redis unreachable)",
        )?;
        let delivered = IntCounterVec::new(
            Opts::new(
                "mailbox_gateway_stream_messages_total",
                "messages pushed to real-time streams, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(open_streams.clone()))?;
        registry.register(Box::new(redis_errors.clone()))?;
        registry.register(Box::new(circuit_open.clone()))?;
        registry.register(Box::new(delivered.clone()))?;
        for kind in ["sse", "ws"] {
            open_streams.with_label_values(&[kind]).set(0);
            delivered.with_label_values(&[kind]);
        }
        for kind in ["connection", "timeout", "reply"] {
            redis_errors.with_label_values(&[kind]);
        }
        Ok(Metrics { registry, requests, latency, open_streams, redis_errors, circuit_open, delivered })
    }

    /// The text exposition of the gateway's metrics, then the module's figures
    /// (`stats`: `MAILBOX.STATS` name/value pairs, absent while Redis is down).
    pub fn render(&self, stats: Option<&[(String, i64)]>, redis_up: bool) -> String {
        let mut families = self.registry.gather();
        let module = Registry::new();
        let up = IntGauge::new("mailbox_gateway_redis_up", "1 when the last call to Redis got an answer");
        if let Ok(up) = up {
            up.set(i64::from(redis_up));
            let _ = module.register(Box::new(up));
        }
        for (name, value) in stats.unwrap_or_default() {
            let clean: String =
                name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
            let help = format!("MAILBOX.STATS {name}");
            if MODULE_GAUGES.contains(&name.as_str()) {
                if let Ok(g) = IntGauge::new(format!("mailbox_{clean}"), help) {
                    g.set(*value);
                    let _ = module.register(Box::new(g));
                }
            } else if let Ok(c) = IntCounter::new(format!("mailbox_{clean}_total"), help) {
                c.inc_by(u64::try_from(*value).unwrap_or(0));
                let _ = module.register(Box::new(c));
            }
        }
        families.extend(module.gather());
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_figures_get_their_types() {
        let m = Metrics::new().unwrap();
        let stats = vec![("sent".to_string(), 7), ("messages".to_string(), 3)];
        let text = m.render(Some(&stats), true);
        assert!(text.contains("# TYPE mailbox_sent_total counter"), "{text}");
        assert!(text.contains("mailbox_sent_total 7"), "{text}");
        assert!(text.contains("# TYPE mailbox_messages gauge"), "{text}");
        assert!(text.contains("mailbox_messages 3"), "{text}");
        assert!(text.contains("mailbox_gateway_redis_up 1"), "{text}");
    }
}
