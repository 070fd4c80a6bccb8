//! How the CLI prints: data to stdout (tables or `--json`), everything else
//! (notes, progress) to stderr.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_core::Progress;

/// Where and how output goes, resolved once from the global flags.
#[derive(Clone, Copy)]
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    /// `-v` given: show more detail.
    pub verbose: bool,
}

impl Printer {
    /// A note for people, on stderr (silent with `-q`).
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Prints a value as pretty JSON on stdout.
    pub fn json(&self, value: &impl serde::Serialize) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("output serializes")
        );
    }

    /// A progress bar on stderr, drawn only on a terminal and without `-q`.
    pub fn progress(&self) -> Bar {
        let target = if self.quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bar {
            bar: ProgressBar::with_draw_target(None, target),
        }
    }
}

/// An indicatif bar behind kiln's [`Progress`] interface.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn begin(&self, message: &str, total: Option<u64>, counts: &str) {
        self.bar.reset();
        self.bar.set_message(message.to_string());
        match total {
            Some(n) => {
                self.bar.set_length(n);
                self.bar.set_style(
                    ProgressStyle::with_template(&format!(
                        "{{spinner}} {{msg:<26}} [{{bar:30}}] {counts} {{elapsed}}"
                    ))
                    .expect("valid template")
                    .progress_chars("=> "),
                );
            }
            None => self.bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
            ),
        }
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }
}

impl Progress for Bar {
    fn start(&self, message: &str, total: Option<u64>) {
        self.begin(message, total, "{bytes}/{total_bytes} {bytes_per_sec}");
    }

    fn start_items(&self, message: &str, total: Option<u64>) {
        self.begin(message, total, "{human_pos}/{human_len}");
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

const HEADER_RULE_ONLY: &str = "     ─ ─           ";

/// A table in kiln's style: horizontal rules only, fitted to the terminal.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    // Only a rule under the header: rows stay dense and easy to scan.
    t.load_preset(HEADER_RULE_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if !std::io::stdout().is_terminal() {
        t.set_width(120);
    }
    t
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Bytes in KB/MB/GB (powers of 1,000, as `ls -h --si`).
pub fn bytes(n: i64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A histogram as a row of block characters.
pub fn sparkline(counts: &[u64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                ' '
            } else {
                BLOCKS[((c * 7) / max) as usize]
            }
        })
        .collect()
}

/// A float with at most `digits` significant decimals, trimmed.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    };
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A JSON scalar as shown in a table.
pub fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map_or_else(|| num(n.as_f64().unwrap_or(f64::NAN)), |i| i.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
        assert_eq!(bytes(637_171), "637.2 KB");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(3.0), "3");
        assert_eq!(sparkline(&[0, 1, 7]), " ▂█");
    }
}
