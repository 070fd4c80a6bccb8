//! JUnit XML, the test report Jenkins, GitLab and GitHub show natively.

use std::fmt::Write as _;
use std::path::Path;

use crate::{PipelineError, Result};

/// One test case.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub classname: String,
    pub seconds: f64,
    pub outcome: CaseOutcome,
}

#[derive(Clone, Debug)]
pub enum CaseOutcome {
    Passed,
    Failed { message: String, detail: String },
    Skipped { message: String },
}

/// A suite of cases as one `<testsuites>` document.
pub fn render(suite: &str, cases: &[Case]) -> String {
    let failures = cases
        .iter()
        .filter(|c| matches!(c.outcome, CaseOutcome::Failed { .. }))
        .count();
    let skipped = cases
        .iter()
        .filter(|c| matches!(c.outcome, CaseOutcome::Skipped { .. }))
        .count();
    let time: f64 = cases.iter().map(|c| c.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{0}\" tests=\"{1}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">\n  <testsuite name=\"{0}\" tests=\"{1}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        escape(suite),
        cases.len()
    );
    for c in cases {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
            escape(&c.name),
            escape(&c.classname),
            c.seconds
        );
        match &c.outcome {
            CaseOutcome::Passed => out.push_str("/>\n"),
            CaseOutcome::Failed { message, detail } => {
                let _ = write!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"failure\">{}</failure>\n    </testcase>\n",
                    escape(message),
                    escape(detail)
                );
            }
            CaseOutcome::Skipped { message } => {
                let _ = write!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    escape(message)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Writes the report atomically (a temporary file beside it, renamed).
pub fn write(path: &Path, xml: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(PipelineError::io("write", path))?;
    std::io::Write::write_all(&mut tmp, xml.as_bytes())
        .map_err(PipelineError::io("write", path))?;
    tmp.persist(path)
        .map_err(|e| PipelineError::io("write", path)(e.error))?;
    Ok(())
}

/// XML-escapes text for attributes and content; drops characters XML 1.0
/// cannot carry.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_counts_and_escaping_are_in_the_document() {
        let xml = render(
            "kiln gate fraud@3",
            &[
                Case {
                    name: "roc_auc >= 0.8".into(),
                    classname: "kiln.gate".into(),
                    seconds: 0.5,
                    outcome: CaseOutcome::Passed,
                },
                Case {
                    name: "p99 < 5 && \"x\"".into(),
                    classname: "kiln.gate".into(),
                    seconds: 0.25,
                    outcome: CaseOutcome::Failed {
                        message: "7 < 5 is false".into(),
                        detail: "a\u{1}b".into(),
                    },
                },
                Case {
                    name: "c".into(),
                    classname: "kiln.gate".into(),
                    seconds: 0.0,
                    outcome: CaseOutcome::Skipped {
                        message: "no champion".into(),
                    },
                },
            ],
        );
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"0.750\"")
        );
        assert!(xml.contains("name=\"roc_auc &gt;= 0.8\""), "{xml}");
        assert!(xml.contains("p99 &lt; 5 &amp;&amp; &quot;x&quot;"), "{xml}");
        assert!(
            xml.contains("<failure message=\"7 &lt; 5 is false\" type=\"failure\">ab</failure>")
        );
        assert!(xml.contains("<skipped message=\"no champion\"/>"));
    }
}
