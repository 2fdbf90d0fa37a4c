//! The report of `scripts/bench-peers`: percentiles, the table of each system's figures and the
//! module's ratios to its peers, `docs/bench/peers.md` and `docs/bench/peers.svg`.
//!
//! Plain std, no client library: the root crate's `tests/peers_report.rs` compiles this file on
//! its own, so `scripts/test` checks it without building lapin or async-nats.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Nearest-rank percentile of sorted values; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// The five configurations, in the table's column order: (results prefix, column heading).
pub const CONFIGS: [(&str, &str); 5] = [
    ("mod_everysec", "module, AOF everysec"),
    ("mod_always", "module, AOF always"),
    ("js", "JetStream, file"),
    ("rmq_classic", "RabbitMQ classic"),
    ("rmq_quorum", "RabbitMQ quorum"),
];

/// One row of the table: a figure measured on every configuration.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Throughput: more is better. Otherwise (time, memory) less is better.
    pub higher_better: bool,
    /// The moonshot ratios (vs JetStream, vs RabbitMQ), where the issue sets one.
    pub moonshot: Option<(f64, f64)>,
}

pub const METRICS: [Metric; 11] = [
    Metric {
        key: "send.256.msgs_per_sec",
        label: "durable send, 256 B",
        unit: "msg/s",
        higher_better: true,
        moonshot: Some((2.0, 5.0)),
    },
    Metric {
        key: "send.4096.msgs_per_sec",
        label: "durable send, 4 KiB",
        unit: "msg/s",
        higher_better: true,
        moonshot: Some((2.0, 5.0)),
    },
    Metric {
        key: "consume.256.msgs_per_sec",
        label: "consume + ack backlog, 256 B",
        unit: "msg/s",
        higher_better: true,
        moonshot: Some((2.0, 5.0)),
    },
    Metric {
        key: "consume.4096.msgs_per_sec",
        label: "consume + ack backlog, 4 KiB",
        unit: "msg/s",
        higher_better: true,
        moonshot: Some((2.0, 5.0)),
    },
    Metric {
        key: "latency.p50_usec",
        label: "send → waiting consumer, p50",
        unit: "µs",
        higher_better: false,
        moonshot: None,
    },
    Metric {
        key: "latency.p99_usec",
        label: "send → waiting consumer, p99",
        unit: "µs",
        higher_better: false,
        moonshot: Some((0.5, 0.5)),
    },
    Metric {
        key: "latency.p999_usec",
        label: "send → waiting consumer, p99.9",
        unit: "µs",
        higher_better: false,
        moonshot: None,
    },
    Metric {
        key: "mem.rss_bytes_per_msg",
        label: "memory per stored message (RSS)",
        unit: "B",
        higher_better: false,
        moonshot: None,
    },
    Metric {
        key: "restart.secs",
        label: "restart to serving the backlog",
        unit: "s",
        higher_better: false,
        moonshot: None,
    },
    Metric {
        key: "fan.usec_per_delivery",
        label: "fan-out to 1,000: time per delivery",
        unit: "µs",
        higher_better: false,
        moonshot: None,
    },
    Metric {
        key: "fan.rss_bytes_per_receiver",
        label: "fan-out to 1,000: memory per receiver (RSS)",
        unit: "B",
        higher_better: false,
        moonshot: None,
    },
];

/// The results file: `key value` lines; `info.*` values are text. A key given more than once
/// counts with its median.
pub struct Results {
    nums: BTreeMap<String, Vec<f64>>,
    info: BTreeMap<String, String>,
}

impl Results {
    pub fn parse(text: &str) -> Results {
        let mut nums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut info = BTreeMap::new();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else { continue };
            if let Some(k) = key.strip_prefix("info.") {
                info.insert(k.to_string(), value.trim().to_string());
            } else if let Ok(v) = value.trim().parse::<f64>() {
                nums.entry(key.to_string()).or_default().push(v);
            }
        }
        Results { nums, info }
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        let mut v: Vec<f64> = self.nums.get(key)?.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
    }

    pub fn info(&self, key: &str) -> String {
        self.info.get(key).cloned().unwrap_or_else(|| "?".to_string())
    }
}

/// The module's figure divided by the peer's; None when either is missing or the peer's is not
/// positive (a memory delta lost in the noise).
pub fn ratio(module: Option<f64>, peer: Option<f64>) -> Option<f64> {
    match (module, peer) {
        (Some(m), Some(p)) if p > 0.0 && m.is_finite() => Some(m.max(0.0) / p),
        _ => None,
    }
}

/// Whether a ratio meets a target: at least `goal` when more is better, at most when less is.
pub fn meets(ratio: f64, goal: f64, higher_better: bool) -> bool {
    if higher_better {
        ratio >= goal
    } else {
        ratio <= goal
    }
}

/// "1.23×", or "—" for no ratio.
pub fn ratio_text(r: Option<f64>) -> String {
    match r {
        Some(v) if v >= 100.0 => format!("{v:.0}×"),
        Some(v) if v >= 10.0 => format!("{v:.1}×"),
        Some(v) => format!("{v:.2}×"),
        None => "—".to_string(),
    }
}

/// A figure with thousands separators and a sensible number of decimals.
pub fn figure(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else { return "—".to_string() };
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), format!(".{f}")),
        None => (s.clone(), String::new()),
    };
    let (sign, int) = match int.strip_prefix('-') {
        Some(rest) => ("-", rest.to_string()),
        None => ("", int),
    };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac} {unit}")
}

/// The better of RabbitMQ's two queue types for this metric.
fn best_rabbit(r: &Results, m: &Metric) -> (Option<f64>, &'static str) {
    let c = r.get(&format!("rmq_classic.{}", m.key));
    let q = r.get(&format!("rmq_quorum.{}", m.key));
    match (c, q) {
        (Some(c), Some(q)) => {
            let classic_better = if m.higher_better { c >= q } else { c <= q };
            if classic_better {
                (Some(c), "classic")
            } else {
                (Some(q), "quorum")
            }
        }
        (Some(c), None) => (Some(c), "classic"),
        (None, Some(q)) => (Some(q), "quorum"),
        (None, None) => (None, ""),
    }
}

/// One computed row: the ratios to each peer and what they meet.
pub struct Row {
    pub label: &'static str,
    pub figures: Vec<String>,
    pub vs_js: Option<f64>,
    pub vs_rmq: Option<f64>,
    pub rmq_kind: &'static str,
    /// For reference (no target): the module with AOF everysec ÷ the better RabbitMQ.
    pub everysec_vs_rmq: Option<f64>,
    pub ahead: Option<bool>,
    pub moonshot: Option<(f64, f64, Option<bool>)>,
    pub higher_better: bool,
}

pub fn rows(r: &Results) -> Vec<Row> {
    METRICS
        .iter()
        .map(|m| {
            let figures =
                CONFIGS.iter().map(|(c, _)| figure(r.get(&format!("{c}.{}", m.key)), m.unit)).collect();
            let vs_js = ratio(r.get(&format!("mod_everysec.{}", m.key)), r.get(&format!("js.{}", m.key)));
            let (rabbit, rmq_kind) = best_rabbit(r, m);
            let vs_rmq = ratio(r.get(&format!("mod_always.{}", m.key)), rabbit);
            let everysec_vs_rmq = ratio(r.get(&format!("mod_everysec.{}", m.key)), rabbit);
            let ahead = match (vs_js, vs_rmq) {
                (Some(a), Some(b)) => Some(meets(a, 1.0, m.higher_better) && meets(b, 1.0, m.higher_better)),
                _ => None,
            };
            let moonshot = m.moonshot.map(|(gj, gr)| {
                let met = match (vs_js, vs_rmq) {
                    (Some(a), Some(b)) => {
                        Some(meets(a, gj, m.higher_better) && meets(b, gr, m.higher_better))
                    }
                    _ => None,
                };
                (gj, gr, met)
            });
            Row {
                label: m.label,
                figures,
                vs_js,
                vs_rmq,
                rmq_kind,
                everysec_vs_rmq,
                ahead,
                moonshot,
                higher_better: m.higher_better,
            }
        })
        .collect()
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "missed",
        None => "—",
    }
}

/// The markdown table (also printed on the terminal).
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| what |");
    for (_, heading) in CONFIGS {
        let _ = write!(s, " {heading} |");
    }
    s.push_str(" everysec ÷ JetStream | always ÷ RabbitMQ | ahead of both | moonshot | for reference: everysec ÷ RabbitMQ |\n");
    s.push_str("| --- |");
    for _ in CONFIGS {
        s.push_str(" ---: |");
    }
    s.push_str(" ---: | ---: | --- | --- | ---: |\n");
    for row in rows {
        let _ = write!(s, "| {} |", row.label);
        for f in &row.figures {
            let _ = write!(s, " {f} |");
        }
        let rmq = match row.vs_rmq {
            Some(_) => format!("{} ({})", ratio_text(row.vs_rmq), row.rmq_kind),
            None => "—".to_string(),
        };
        let cmp = if row.higher_better { "≥" } else { "≤" };
        let moon = match row.moonshot {
            Some((gj, gr, met)) => format!("{}: {cmp} {gj}× / {cmp} {gr}×", met_text(met)),
            None => "—".to_string(),
        };
        let _ = writeln!(
            s,
            " {} | {rmq} | {}: {cmp} 1× | {moon} | {} |",
            ratio_text(row.vs_js),
            met_text(row.ahead),
            ratio_text(row.everysec_vs_rmq)
        );
    }
    s
}

/// `report --results FILE [--md FILE] [--svg FILE]`: prints the table, writes the files.
pub fn run(opts: &BTreeMap<String, String>) -> Res<()> {
    let path = opts.get("results").ok_or("--results is required")?;
    let r = Results::parse(&std::fs::read_to_string(path)?);
    let rows = rows(&r);
    let t = table(&rows);
    print!("{t}");
    let ahead = rows.iter().filter(|x| x.ahead == Some(true)).count();
    let moons: Vec<&Row> = rows.iter().filter(|x| x.moonshot.is_some()).collect();
    let moon_met = moons.iter().filter(|x| matches!(x.moonshot, Some((_, _, Some(true))))).count();
    println!("ahead of both peers: {ahead} of {} rows; moonshot: {moon_met} of {}", rows.len(), moons.len());
    if let Some(md) = opts.get("md") {
        std::fs::write(md, markdown(&r, &t, ahead, rows.len(), moon_met, moons.len()))?;
    }
    if let Some(svg) = opts.get("svg") {
        std::fs::write(svg, ratio_svg(&rows, &r))?;
    }
    Ok(())
}

fn markdown(r: &Results, table: &str, ahead: usize, rows: usize, moon_met: usize, moons: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# redis-mailbox beside NATS JetStream and RabbitMQ\n");
    let _ = writeln!(
        s,
        "`{}` ({} run), {}. One client (`bench/peers`, binary `peers-bench`) drives the three with \
         their own clients (`redis` {}, `async-nats` {}, `lapin` {}).\n",
        r.info("command"),
        r.info("mode"),
        r.info("date"),
        r.info("redis_crate"),
        r.info("nats_crate"),
        r.info("lapin_crate"),
    );
    let _ = writeln!(s, "| | |\n| --- | --- |");
    for (k, label) in [
        ("machine", "machine"),
        ("pinning", "cores"),
        ("load_start", "load average at start / end"),
        ("redis", "module"),
        ("nats", "JetStream"),
        ("rabbitmq", "RabbitMQ"),
        ("counts", "counts"),
        ("clients", "clients"),
    ] {
        let mut v = r.info(k);
        if k == "load_start" {
            v = format!("{} / {}", v, r.info("load_end"));
        }
        let _ = writeln!(s, "| {label} | {v} |");
    }
    let _ = writeln!(s, "\n{table}");
    let _ = writeln!(
        s,
        "Ahead of both peers on {ahead} of {rows} rows; moonshot met on {moon_met} of {moons}. \
         Ratios are the module's figure ÷ the peer's: for throughput more is better (ahead: ≥ 1×), for time \
         and memory less is better (ahead: ≤ 1×). The module with AOF `everysec` is set against JetStream \
         (neither syncs to disk before it acknowledges), the module with AOF `always` against the better of \
         RabbitMQ's two queue types (both sync before they acknowledge).\n"
    );
    let _ = writeln!(s, "![ratios](peers.svg)\n");
    s.push_str(DURABILITY);
    s.push_str(METHOD);
    s
}

/// What an acknowledged send survives on each configuration.
pub const DURABILITY: &str = "\
## What an acknowledged send survives

| configuration | acknowledged when | survives a crash of the server process | survives a power loss or kernel crash |
| --- | --- | --- | --- |
| module, AOF `everysec` | the command is applied and written to the AOF (`write(2)` before the reply), fsync once a second | yes | no: the last ~1 s (up to 2 s) may be lost |
| module, AOF `always` | written and fsynced (one fsync per event-loop turn for every client's commands) | yes | yes |
| JetStream, file storage | stored in the stream's file store (written to the file as it is stored, not fsynced); the files are fsynced every 2 minutes (the default `sync_interval`, left as it is) | yes | no: up to the last 2 minutes may be lost |
| RabbitMQ classic durable queue, persistent messages, publisher confirms | the confirm is sent once the message is written and fsynced by the message store (batched) | yes | yes |
| RabbitMQ quorum queue, publisher confirms | the Raft log entry is fsynced on a majority (here the only node) | yes | yes |

";

const METHOD: &str = "\
## How each row is measured

- **Durable send**: `--conns` connections, one queue each (module: a mailbox, `MAILBOX.SEND`;
  JetStream: a subject of a work-queue stream, `publish` then await its ack; RabbitMQ: a durable queue,
  persistent `basic.publish` on a confirm-mode channel, await the confirm), `--window` sends awaiting
  their ack on each connection. Messages per second over the whole run.
- **Consume + ack**: the backlog the send left, drained by one consumer per queue with `--window`
  messages unacknowledged at a time (module: `MAILBOX.READ COUNT window`, then one `MAILBOX.ACK` of
  those ids, pipelined ahead of the next read; JetStream: a durable pull consumer, batches of `window`,
  an ack per message; RabbitMQ: `basic.consume` with prefetch `window`, an ack with `multiple` every
  `window/2` deliveries).
- **Latency**: one sender at a fixed rate (each send awaits its ack without holding the next), one
  consumer already waiting (module: a blocked `MAILBOX.READ`; JetStream: a pull consumer's message
  stream; RabbitMQ: `basic.consume`), from just before the send to the consumer's receipt, 256 B.
- **Memory per stored message**: the server's resident set size (VmRSS) after the 256 B send minus before
  it, divided by the messages; the server was just started. For the module, `INFO memory`'s `used_memory`
  per message is in the raw results too.
- **Restart**: the server is stopped (SIGTERM) with the 256 B backlog stored and started again; the time
  from starting the process to its first answer that counts every stored message. RabbitMQ's includes the
  Erlang VM's boot.
- **Fan-out**: 1,000 subscribers of one topic (module: `MAILBOX.SUB` of 1,000 mailboxes, `MAILBOX.PUBLISH`;
  JetStream: an interest-retention stream with 1,000 durable pull consumers; RabbitMQ: a durable topic
  exchange, 1,000 durable queues bound to it, persistent messages with confirms). Time per delivery: from
  the first publish until every subscriber has read and acked every message, divided by publishes ×
  subscribers. Memory per receiver: RSS after the publishes minus before the subscriptions, ÷ 1,000 (so it
  counts a subscription and the publishes' messages held for it). Run on a freshly started server.
";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Two bars a row (vs JetStream, vs RabbitMQ) of the module's advantage on a log axis: the ratio
/// turned so that right of 1× is always the module ahead (peer ÷ module where less is better),
/// with the moonshot as a tick.
pub fn ratio_svg(rows: &[Row], r: &Results) -> String {
    let (label_w, plot_w, bar_h, gap, top) = (270.0, 480.0, 12.0, 10.0, 60.0);
    let width = label_w + plot_w + 170.0;
    let row_h = 2.0 * bar_h + gap;
    let height = top + rows.len() as f64 * row_h + 50.0;
    let adv = |v: Option<f64>, higher: bool| v.filter(|x| *x > 0.0).map(|x| if higher { x } else { 1.0 / x });
    let (mut lo, mut hi) = (0.1f64, 10.0f64);
    for row in rows {
        for v in [adv(row.vs_js, row.higher_better), adv(row.vs_rmq, row.higher_better)].into_iter().flatten()
        {
            lo = lo.min(v / 1.5);
            hi = hi.max(v * 1.5);
        }
    }
    let (llo, lhi) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| label_w + (v.max(10f64.powf(llo)).log10() - llo) / (lhi - llo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="10" y="20" font-size="15" font-weight="bold">redis-mailbox's advantage over each peer (same run; log scale; right of 1× = module ahead)</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#555">{} — {} — blue: AOF everysec vs JetStream; orange: AOF always vs RabbitMQ (better queue type); tick: moonshot</text>"##,
        esc(&r.info("mode")),
        esc(&r.info("date"))
    );
    let plot_bottom = top + rows.len() as f64 * row_h;
    let mut decade = llo;
    while decade <= lhi {
        for m in [1.0, 2.0, 5.0] {
            let v = 10f64.powf(decade) * m;
            if v > 10f64.powf(lhi) * 1.0001 {
                break;
            }
            let xv = x(v);
            let stroke = if (v - 1.0).abs() < 1e-9 { "#333" } else { "#ddd" };
            let _ = writeln!(
                s,
                r##"<line x1="{xv:.1}" y1="{}" x2="{xv:.1}" y2="{plot_bottom}" stroke="{stroke}"/>"##,
                top - 4.0
            );
            let _ = writeln!(
                s,
                r##"<text x="{xv:.1}" y="{}" text-anchor="middle" fill="#555">{}×</text>"##,
                plot_bottom + 16.0,
                trim_num(v)
            );
        }
        decade += 1.0;
    }
    for (i, row) in rows.iter().enumerate() {
        let y0 = top + i as f64 * row_h;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            label_w - 8.0,
            y0 + bar_h + 4.0,
            esc(row.label)
        );
        let goals = row.moonshot.map(|(gj, gr, _)| (gj, gr));
        for (k, (v, color, goal)) in
            [(row.vs_js, "#1e88e5", goals.map(|g| g.0)), (row.vs_rmq, "#fb8c00", goals.map(|g| g.1))]
                .into_iter()
                .enumerate()
        {
            let y = y0 + k as f64 * bar_h;
            let Some(a) = adv(v, row.higher_better) else { continue };
            let (x1, x2) = (x(1.0).min(x(a)), x(1.0).max(x(a)));
            let _ = writeln!(
                s,
                r##"<rect x="{x1:.1}" y="{y:.1}" width="{:.1}" height="{}" fill="{color}"/>"##,
                (x2 - x1).max(1.0),
                bar_h - 1.0
            );
            if let Some(g) = goal {
                let tx = x(if row.higher_better { g } else { 1.0 / g });
                let _ = writeln!(
                    s,
                    r##"<line x1="{tx:.1}" y1="{y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black" stroke-width="3"/>"##,
                    y + bar_h - 1.0
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10">{} ({})</text>"##,
                label_w + plot_w + 8.0,
                y + bar_h - 2.0,
                trim_num((a * 100.0).round() / 100.0) + "×",
                ratio_text(v)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
