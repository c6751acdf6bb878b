//! A finished run: the one-screen summary, the `--json` document and the data the HTML report
//! draws from.

use std::io::Write;

use serde::Serialize;

use crate::monitor::Sample;

/// One titled block of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    pub rows: Vec<(String, String)>,
}

impl Section {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.rows.push((name.to_owned(), value.into()));
        self
    }
}

/// One scenario's result. `result` is the scenario's own machine-readable figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub command: String,
    pub started_unix_s: u64,
    pub settings: serde_json::Value,
    pub result: serde_json::Value,
    /// What broke a promise (loss, duplicates, errors); empty when clean.
    pub problems: Vec<String>,
    #[serde(skip)]
    pub sections: Vec<Section>,
    pub samples: Vec<Sample>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The human summary, written to `out`.
    pub fn write_summary(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "== crier-loadtest {} ==", self.scenario)?;
        writeln!(out, "command: {}", self.command)?;
        for section in &self.sections {
            writeln!(out, "-- {}", section.title)?;
            let width = section.rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (name, value) in &section.rows {
                writeln!(out, "  {name:<width$}  {value}")?;
            }
        }
        if self.problems.is_empty() {
            writeln!(out, "result: OK (no loss, duplicate, reorder or error)")?;
        } else {
            writeln!(out, "result: PROBLEMS")?;
            for p in &self.problems {
                writeln!(out, "  - {p}")?;
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        let mut v = serde_json::to_value(self)?;
        v["passed"] = serde_json::Value::Bool(self.passed());
        serde_json::to_string_pretty(&v)
    }
}

/// `1234567` → `1.18 MiB`.
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", n / 1073741824.0)
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", n / 1048576.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

pub fn signed_bytes(n: i64) -> String {
    if n < 0 {
        format!("-{}", bytes(n.unsigned_abs()))
    } else {
        bytes(n as u64)
    }
}

pub fn ms(v: f64) -> String {
    format!("{v:.2} ms")
}

pub fn rate(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k/s", v / 1000.0)
    } else {
        format!("{v:.0}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_sections_and_problems() {
        let mut s = Section::new("latency");
        s.row("p99", ms(3.04159));
        let r = RunReport {
            scenario: "fanout".into(),
            command: "crier-loadtest fanout".into(),
            started_unix_s: 0,
            settings: serde_json::json!({}),
            result: serde_json::json!({"lost": 1}),
            problems: vec!["1 message lost".into()],
            sections: vec![s],
            samples: vec![],
        };
        let mut out = Vec::new();
        r.write_summary(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("p99  3.04 ms"), "{text}");
        assert!(text.contains("PROBLEMS"));
        let json: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(json["passed"], false);
        assert_eq!(json["result"]["lost"], 1);
    }

    #[test]
    fn formats_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(3 * 1048576), "3.00 MiB");
        assert_eq!(signed_bytes(-2048), "-2.0 KiB");
        assert_eq!(rate(12_345.0), "12.3k/s");
    }
}
