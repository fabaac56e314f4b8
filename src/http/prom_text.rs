//! The Prometheus text exposition format (0.0.4), written: [`PromWriter`] lays out
//! one `# HELP`/`# TYPE` per family and its samples, with `counter`/`gauge`/`histogram`
//! helpers so a family is one call, label values escaped and special floats spelled as
//! Prometheus spells them (docs/HTTP.md, "/metrics").
//!
//! Every exposition of the agent is written with it: `/metrics` ([`super::metrics`]),
//! the agent's own `process_*` families and the tap's counters.

use std::fmt::Write;

use crate::stats::HistogramSnapshot;

/// Writes Prometheus text exposition: one `# HELP`/`# TYPE` per family, then samples.
#[derive(Default)]
pub struct PromWriter {
    out: String,
}

impl PromWriter {
    /// Starts a family; follow with its samples.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// A whole counter family from `(labels, value)` rows.
    pub fn counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
    ) {
        self.family(name, "counter", help);
        for (labels, value) in rows {
            self.sample(name, &labels, value as f64);
        }
    }

    /// A whole gauge family from `(labels, value)` rows.
    pub fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
    ) {
        self.family(name, "gauge", help);
        for (labels, value) in rows {
            self.sample(name, &labels, value);
        }
    }

    /// A whole histogram family from `(labels, histogram)` rows.
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, &'a HistogramSnapshot)>,
    ) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (labels, h) in rows {
            for (bound, count) in &h.buckets {
                let le = format_value(*bound);
                let mut with_le = labels.clone();
                with_le.push(("le", &le));
                self.sample(&bucket, &with_le, *count as f64);
            }
            let mut with_le = labels.clone();
            with_le.push(("le", "+Inf"));
            self.sample(&bucket, &with_le, h.count as f64);
            self.sample(&format!("{name}_sum"), &labels, h.sum);
            self.sample(&format!("{name}_count"), &labels, h.count as f64);
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::PromWriter;

    #[test]
    fn escapes_label_values() {
        let mut w = PromWriter::default();
        w.counter("x_total", "help", [(vec![("a", "q\"b\\s\nn")], 3u64)]);
        assert_eq!(
            w.finish(),
            "# HELP x_total help\n# TYPE x_total counter\nx_total{a=\"q\\\"b\\\\s\\nn\"} 3\n"
        );
    }
}
