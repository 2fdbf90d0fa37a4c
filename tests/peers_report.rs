//! The pure parts of the peers benchmark's client (`bench/peers/src/report.rs`: percentiles, ratios,
//! the table), compiled here on their own so that `scripts/test` checks them without building the
//! client's lapin and async-nats.

#[allow(dead_code)]
#[path = "../bench/peers/src/report.rs"]
mod report;

use report::{figure, meets, percentile, ratio, ratio_text, rows, table, Results};

#[test]
fn percentile_is_nearest_rank() {
    let v: Vec<f64> = (1..=1000).map(f64::from).collect();
    assert_eq!(percentile(&v, 50.0), 500.0);
    assert_eq!(percentile(&v, 99.0), 990.0);
    assert_eq!(percentile(&v, 99.9), 999.0);
    assert_eq!(percentile(&v, 100.0), 1000.0);
    assert_eq!(percentile(&[7.0], 99.9), 7.0);
    assert!(percentile(&[], 50.0).is_nan());
}

#[test]
fn ratios_and_targets() {
    assert_eq!(ratio(Some(300.0), Some(100.0)), Some(3.0));
    assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    assert_eq!(ratio(None, Some(1.0)), None);
    assert!(meets(2.0, 2.0, true) && !meets(1.9, 2.0, true));
    assert!(meets(0.5, 0.5, false) && !meets(0.51, 0.5, false));
    assert_eq!(ratio_text(Some(1.234)), "1.23×");
    assert_eq!(ratio_text(Some(12.34)), "12.3×");
    assert_eq!(ratio_text(Some(123.4)), "123×");
    assert_eq!(ratio_text(None), "—");
    assert_eq!(figure(Some(1234567.8), "msg/s"), "1,234,568 msg/s");
    assert_eq!(figure(Some(-1234.0), "B"), "-1,234 B");
    assert_eq!(figure(Some(12.345), "µs"), "12.3 µs");
    assert_eq!(figure(Some(0.5), "s"), "0.50 s");
    assert_eq!(figure(None, "s"), "—");
}

#[test]
fn table_compares_everysec_with_jetstream_and_always_with_the_better_rabbitmq() {
    let results = Results::parse(
        "info.mode quick\n\
         mod_everysec.send.256.msgs_per_sec 100000\n\
         mod_always.send.256.msgs_per_sec 40000\n\
         js.send.256.msgs_per_sec 40000\n\
         rmq_classic.send.256.msgs_per_sec 5000\n\
         rmq_quorum.send.256.msgs_per_sec 8000\n\
         mod_everysec.latency.p99_usec 300\n\
         mod_everysec.latency.p99_usec 500\n\
         mod_everysec.latency.p99_usec 400\n\
         mod_always.latency.p99_usec 900\n\
         js.latency.p99_usec 1000\n\
         rmq_classic.latency.p99_usec 1600\n\
         rmq_quorum.latency.p99_usec 2000\n",
    );
    assert_eq!(
        results.get("mod_everysec.latency.p99_usec"),
        Some(400.0),
        "repeated keys count with their median"
    );
    let rows = rows(&results);
    let send = &rows[0];
    assert_eq!(send.vs_js, Some(2.5));
    assert_eq!((send.vs_rmq, send.rmq_kind), (Some(5.0), "quorum"));
    assert_eq!(send.ahead, Some(true));
    assert!(matches!(send.moonshot, Some((_, _, Some(true)))));
    let p99 = rows.iter().find(|r| r.label.ends_with("p99")).unwrap();
    assert_eq!(p99.vs_js, Some(0.4));
    assert_eq!(p99.rmq_kind, "classic");
    assert_eq!(p99.ahead, Some(true));
    assert!(matches!(p99.moonshot, Some((_, _, Some(false)))), "0.56× RabbitMQ misses ≤ 0.5×");
    let t = table(&rows);
    assert!(t.contains("| durable send, 256 B | 100,000 msg/s | 40,000 msg/s | 40,000 msg/s | 5,000 msg/s | 8,000 msg/s | 2.50× | 5.00× (quorum) | met: ≥ 1× | met: ≥ 2× / ≥ 5× | 12.5× |"), "{t}");
    assert!(
        t.contains("| durable send, 4 KiB | — | — | — | — | — | — | — | —: ≥ 1× | —: ≥ 2× / ≥ 5× |"),
        "{t}"
    );
}
