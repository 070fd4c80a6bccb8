//! Which format a file is in: by `--format`, else by extension, else by content.

use std::io::Read;
use std::path::Path;

use crate::{DataError, Result};

/// A tabular file format kiln reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv { delimiter: u8 },
    Parquet,
    JsonLines,
}

/// A format and whether the bytes are gzip-compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detected {
    pub format: Format,
    pub gzip: bool,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv { delimiter: b'\t' } => "tsv",
            Self::Csv { .. } => "csv",
            Self::Parquet => "parquet",
            Self::JsonLines => "jsonl",
        }
    }

    /// Parses a `--format` value.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv { delimiter: b',' }),
            "tsv" => Some(Self::Csv { delimiter: b'\t' }),
            "parquet" => Some(Self::Parquet),
            "jsonl" | "ndjson" | "json" => Some(Self::JsonLines),
            _ => None,
        }
    }
}

/// Detects the format of `path`. `forced` (from `--format`) wins; a forced
/// CSV still has its delimiter sniffed unless `delimiter` is given.
pub fn detect(path: &Path, forced: Option<Format>, delimiter: Option<u8>) -> Result<Detected> {
    let mut head = Vec::with_capacity(8192);
    std::fs::File::open(path)
        .and_then(|f| f.take(8192).read_to_end(&mut head))
        .map_err(DataError::io("read", path))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    let text_head = || -> Vec<u8> {
        if !gzip {
            return head.clone();
        }
        let mut out = Vec::with_capacity(8192);
        if let Ok(f) = std::fs::File::open(path) {
            let _ = flate2::read::MultiGzDecoder::new(f.take(1 << 20))
                .take(8192)
                .read_to_end(&mut out);
        }
        out
    };
    let format = match forced {
        Some(Format::Csv { delimiter: d }) => Format::Csv {
            delimiter: delimiter.unwrap_or(d),
        },
        Some(f) => f,
        None if head.starts_with(b"PAR1")
            || stem.ends_with(".parquet")
            || stem.ends_with(".pq") =>
        {
            Format::Parquet
        }
        None if stem.ends_with(".tsv") || stem.ends_with(".tab") => Format::Csv {
            delimiter: delimiter.unwrap_or(b'\t'),
        },
        None if stem.ends_with(".jsonl")
            || stem.ends_with(".ndjson")
            || stem.ends_with(".json") =>
        {
            Format::JsonLines
        }
        None => {
            let text = text_head();
            let first = text.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'{') && !stem.ends_with(".csv") {
                Format::JsonLines
            } else {
                Format::Csv {
                    delimiter: delimiter.unwrap_or_else(|| sniff_delimiter(&text)),
                }
            }
        }
    };
    if format == Format::Parquet && gzip {
        return Err(DataError::Unreadable {
            path: path.into(),
            format: "parquet".into(),
            message: "gzip-compressed Parquet is not supported; Parquet compresses internally"
                .into(),
        });
    }
    Ok(Detected { format, gzip })
}

/// The most frequent of `,` `;` `\t` `|` in the first line (outside quotes).
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut counts = [(b',', 0usize), (b'\t', 0), (b';', 0), (b'|', 0)];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            for c in &mut counts {
                if c.0 == b {
                    c.1 += 1;
                }
            }
        }
    }
    counts
        .iter()
        .max_by_key(|c| c.1)
        .filter(|c| c.1 > 0)
        .map_or(b',', |c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_delimiter_of_the_header_line() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1;2;3"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\n"), b'\t');
        assert_eq!(sniff_delimiter(b"\"x,y\";b;c\n"), b';');
        assert_eq!(sniff_delimiter(b"single\n"), b',');
    }

    #[test]
    fn detects_by_extension_and_magic() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.data");
        std::fs::write(&csv, "x|y\n1|2\n").unwrap();
        assert_eq!(
            detect(&csv, None, None).unwrap().format,
            Format::Csv { delimiter: b'|' }
        );
        let jl = dir.path().join("b.log");
        std::fs::write(&jl, "{\"a\": 1}\n").unwrap();
        assert_eq!(detect(&jl, None, None).unwrap().format, Format::JsonLines);
        let pq = dir.path().join("c.bin");
        std::fs::write(&pq, b"PAR1....").unwrap();
        assert_eq!(detect(&pq, None, None).unwrap().format, Format::Parquet);
    }
}
