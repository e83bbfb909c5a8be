//! The exposition: a snapshot of every metric family, encoded by `prometheus-client` in the
//! OpenMetrics text format, and the same text in Prometheus's classic text format (0.0.4).
//!
//! The metrics are plain numbers kept by [`super::Metrics`]; at each scrape they are copied into a
//! [`Snapshot`] (families in a fixed order, series sorted) that `prometheus-client` encodes
//! through its `Collector` interface: its names, `_total` suffixes, `# UNIT` lines and number
//! formats, never hand-written ones. Two things it leaves to the caller are done here:
//! - label values are escaped (`\\`, `\"`, `\n`, as both formats want): `prometheus-client`
//!   0.24 writes them as given;
//! - the classic format, which `promtool check metrics` and clients without OpenMetrics read:
//!   [`classic_text`] renames a counter's `# HELP`/`# TYPE` lines to its `_total` series and
//!   drops the `# UNIT` and `# EOF` lines, the only differences for counters and gauges.

use std::fmt::Write as _;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit},
};

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus's classic text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped when encoded.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelValue(pub String);

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The labels of one series, in order.
pub type Labels = Vec<(&'static str, LabelValue)>;

/// Whether a family counts up or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its name (without the `observer_` prefix, unit or `_total`), help, unit,
/// kind and series.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<Unit>,
    pub kind: Kind,
    pub series: Vec<(Labels, u64)>,
}

impl Family {
    pub fn new(kind: Kind, name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            unit: None,
            kind,
            series: Vec::new(),
        }
    }

    pub fn unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    /// Adds a series: `labels` as (name, value) pairs.
    pub fn push(&mut self, labels: &[(&'static str, &str)], value: u64) {
        let labels = labels
            .iter()
            .map(|(k, v)| (*k, LabelValue((*v).to_owned())))
            .collect();
        self.series.push((labels, value));
    }

    /// A family of one series without labels.
    pub fn single(mut self, value: u64) -> Self {
        self.series.push((Vec::new(), value));
        self
    }
}

/// Every family of one scrape, in the order they are written.
#[derive(Clone, Debug, Default)]
pub struct Snapshot(pub Vec<Family>);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), kind)?;
            for (labels, value) in &f.series {
                if labels.is_empty() {
                    // An unlabelled family has this one series.
                    encode_value(f.kind, *value, metric)?;
                    break;
                }
                let series = metric.encode_family(labels)?;
                encode_value(f.kind, *value, series)?;
            }
        }
        Ok(())
    }
}

fn encode_value(
    kind: Kind,
    value: u64,
    encoder: prometheus_client::encoding::MetricEncoder,
) -> Result<(), std::fmt::Error> {
    match kind {
        Kind::Counter => ConstCounter::new(value).encode(encoder),
        Kind::Gauge => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(encoder),
    }
}

/// The snapshot in the OpenMetrics text format, `observer_` prefixed, ending with `# EOF`.
pub fn openmetrics(snapshot: Snapshot) -> String {
    let mut registry = Registry::with_prefix("observer");
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    // Writing into a String cannot fail, and the collector's own writes are all into it.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.push_str("# EOF\n");
    }
    out
}

/// OpenMetrics text (as [`openmetrics`] writes it: counters and gauges) in Prometheus's classic
/// text format 0.0.4: a counter's `# HELP` and `# TYPE` lines name its `_total` series, and the
/// `# UNIT` and `# EOF` lines, which the classic format does not have, are left out.
pub fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(h) = help.take() {
                let _ = writeln!(out, "# HELP {h}");
            }
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" => (name.to_owned(), "gauge"),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut bytes = Family::new(Kind::Counter, "undeclared", "Bytes.").unit(Unit::Bytes);
        bytes.push(&[("destination", "a\"b\\c\nd")], 7);
        let mut status = Family::new(Kind::Gauge, "group_status", "Status.");
        status.push(&[("group", "essential"), ("status", "ok")], 1);
        Snapshot(vec![
            bytes,
            status,
            Family::new(Kind::Gauge, "capture_complete", "Complete.").single(1),
            Family::new(Kind::Counter, "jobs", "Jobs."),
        ])
    }

    #[test]
    fn openmetrics_escapes_label_values_and_ends_with_eof() {
        let text = openmetrics(sample());
        assert_eq!(
            text,
            "# HELP observer_undeclared_bytes Bytes.\n\
             # TYPE observer_undeclared_bytes counter\n\
             # UNIT observer_undeclared_bytes bytes\n\
             observer_undeclared_bytes_total{destination=\"a\\\"b\\\\c\\nd\"} 7\n\
             # HELP observer_group_status Status.\n\
             # TYPE observer_group_status gauge\n\
             observer_group_status{group=\"essential\",status=\"ok\"} 1\n\
             # HELP observer_capture_complete Complete.\n\
             # TYPE observer_capture_complete gauge\n\
             observer_capture_complete 1\n\
             # HELP observer_jobs Jobs.\n\
             # TYPE observer_jobs counter\n\
             # EOF\n"
        );
    }

    #[test]
    fn the_classic_text_names_counters_by_their_series() {
        let text = classic_text(&openmetrics(sample()));
        assert_eq!(
            text,
            "# HELP observer_undeclared_bytes_total Bytes.\n\
             # TYPE observer_undeclared_bytes_total counter\n\
             observer_undeclared_bytes_total{destination=\"a\\\"b\\\\c\\nd\"} 7\n\
             # HELP observer_group_status Status.\n\
             # TYPE observer_group_status gauge\n\
             observer_group_status{group=\"essential\",status=\"ok\"} 1\n\
             # HELP observer_capture_complete Complete.\n\
             # TYPE observer_capture_complete gauge\n\
             observer_capture_complete 1\n\
             # HELP observer_jobs_total Jobs.\n\
             # TYPE observer_jobs_total counter\n"
        );
    }
}
