//! Self-contained HTML reports with inline SVG charts.
//!
//! `kiln monitor drift --html` and `kiln monitor report --html` build a [`Page`]
//! from summary [cards](Page::card) and [sections](Page::section) whose bodies come
//! from the helpers here: [`table`], [`badge`], [`histogram_overlay`],
//! [`line_chart`], [`bar_chart`] and [`grid`]. [`Page::render`] returns one HTML
//! document with inline CSS, inline SVG and a few lines of inline script that sort
//! tables on a header click. Nothing is fetched when the file is opened, and a
//! `Content-Security-Policy` meta tag forbids the browser from trying.
//!
//! Every text argument (titles, labels, series names, card values) is escaped here;
//! only `body_html` and table cells are trusted, and those should come from
//! [`escape`], [`badge`] or the chart functions.
//!
//! Charts never panic and never write `NaN` or `inf` into the document: non-finite
//! values (and magnitudes above 1e300) are skipped, empty input renders a "No data"
//! placeholder, and a flat or single-point series gets a padded axis.
//!
//! ```
//! use kiln_monitor::html::{self, Page, Tone};
//!
//! let mut page = Page::new("Drift: reference vs current", "2 of 3 columns drifted");
//! page.card("Columns drifted", "2 / 3", Tone::Bad);
//! let labels: Vec<String> = ["0-10", "10-20", "20-30"].map(String::from).to_vec();
//! let chart = html::histogram_overlay("age", &labels, &[0.2, 0.5, 0.3], &[0.1, 0.4, 0.5]);
//! page.section("Distributions", html::grid(&[chart]));
//! let doc = page.render();
//! assert!(doc.starts_with("<!doctype html>"));
//! ```

use std::fmt::{self, Write as _};

/// Width of every chart's SVG `viewBox`; CSS scales the SVG to its container.
const VIEW_W: f64 = 360.0;
/// Height of the histogram and line chart `viewBox` (bar charts grow with rows).
const VIEW_H: f64 = 200.0;
/// Font size of axis text, in `viewBox` units.
const FONT: f64 = 10.0;
/// Rough average glyph width at [`FONT`], used to thin and truncate labels.
const CHAR_W: f64 = 5.8;
/// Values whose magnitude exceeds this are treated like infinities: their
/// differences would overflow when scaling an axis.
const MAX_MAGNITUDE: f64 = 1e300;
/// Longest axis label, in characters, before it is cut with an ellipsis.
const MAX_LABEL_CHARS: usize = 16;

const REFERENCE_COLOUR: &str = "#64748b";
const CURRENT_COLOUR: &str = "#f97316";
/// Reference bars sit behind current ones; both let the other show through.
const REFERENCE_OPACITY: f64 = 0.5;
const CURRENT_OPACITY: f64 = 0.6;
const BAD_COLOUR: &str = "#dc2626";
const BAR_COLOUR: &str = "#5b7fa6";
/// Draws a white outline under text so it stays legible over lines and bars.
const HALO: &str =
    "stroke=\"#fff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"";
const GRID_COLOUR: &str = "#e8edf3";
const AXIS_COLOUR: &str = "#94a3b8";
const TEXT_COLOUR: &str = "#64748b";
/// Line colours, in the order series are given; none is red, which marks
/// thresholds and alerts.
const PALETTE: [&str; 7] = [
    "#2563eb", "#f97316", "#0d9488", "#9333ea", "#db2777", "#65a30d", "#475569",
];

/// How a card or badge is coloured: a verdict, not a decoration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Informational; dark text on grey.
    Neutral,
    /// Healthy, e.g. no drift; green.
    Good,
    /// Needs attention, e.g. drifted or alerting; red.
    Bad,
    /// Borderline, e.g. close to a threshold; amber.
    Warn,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Neutral => "neutral",
            Tone::Good => "good",
            Tone::Bad => "bad",
            Tone::Warn => "warn",
        }
    }
}

/// One HTML report: a title, a subtitle, summary cards and sections, in the
/// order they were added.
#[derive(Clone, Debug)]
pub struct Page {
    title: String,
    subtitle: String,
    cards: Vec<(String, String, Tone)>,
    sections: Vec<(String, String)>,
}

impl Page {
    /// Starts a page. Both texts are escaped; put the generation time in
    /// `subtitle` if the report should show it.
    pub fn new(title: &str, subtitle: &str) -> Page {
        Page {
            title: title.to_owned(),
            subtitle: subtitle.to_owned(),
            cards: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// Adds a summary card to the header: a small `label` over a big `value`,
    /// coloured by `tone`. Both texts are escaped.
    pub fn card(&mut self, label: &str, value: &str, tone: Tone) {
        self.cards.push((label.to_owned(), value.to_owned(), tone));
    }

    /// Adds a section under `heading` (escaped; an empty heading is left out).
    /// `body_html` is inserted as is, so build it with [`table`], [`grid`], the
    /// chart functions, or [`escape`].
    pub fn section(&mut self, heading: &str, body_html: String) {
        self.sections.push((heading.to_owned(), body_html));
    }

    /// Renders the whole `<!doctype html>` document, footer included.
    pub fn render(&self) -> String {
        let mut out =
            String::with_capacity(8192 + self.sections.iter().map(|(_, b)| b.len()).sum::<usize>());
        let title = escape(&self.title);
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
             <meta name=\"generator\" content=\"kiln {version}\">\n\
             <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
             <header class=\"top\"><div class=\"brand\">kiln monitor</div><h1>{title}</h1>",
            version = env!("CARGO_PKG_VERSION"),
        );
        if !self.subtitle.is_empty() {
            let _ = write!(out, "<p class=\"sub\">{}</p>", escape(&self.subtitle));
        }
        out.push_str("</header>\n");
        if !self.cards.is_empty() {
            out.push_str("<div class=\"cards\">\n");
            for (label, value, tone) in &self.cards {
                let _ = writeln!(
                    out,
                    "<div class=\"card {}\"><div class=\"label\">{}</div>\
                     <div class=\"value\">{}</div></div>",
                    tone.class(),
                    escape(label),
                    escape(value),
                );
            }
            out.push_str("</div>\n");
        }
        for (heading, body) in &self.sections {
            out.push_str("<section class=\"panel\">\n");
            if !heading.is_empty() {
                let _ = writeln!(out, "<h2>{}</h2>", escape(heading));
            }
            out.push_str(body);
            out.push_str("\n</section>\n");
        }
        let _ = write!(
            out,
            "<footer>generated by kiln {}</footer>\n</main>\n<script>{SORT_SCRIPT}</script>\n\
             </body>\n</html>\n",
            env!("CARGO_PKG_VERSION"),
        );
        out
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'` so `s` is safe in element text and in
/// quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small rounded label, e.g. a "drifted" verdict in red or "ok" in green.
/// `text` is escaped.
pub fn badge(text: &str, tone: Tone) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        tone.class(),
        escape(text)
    )
}

/// A table: header cells and rows of already-rendered cell html (build cells
/// with [`escape`] or [`badge`]); `numeric` columns are right-aligned.
///
/// Headers are escaped; cells are inserted as is. Clicking a header sorts the
/// rows (numerically for `numeric` columns, reading a trailing `k`, `M` or `G`).
/// Short rows are padded with empty cells, and an empty `rows` renders a
/// "No rows" line.
pub fn table(headers: &[&str], rows: &[Vec<String>], numeric: &[bool]) -> String {
    let is_num = |i: usize| numeric.get(i).copied().unwrap_or(false);
    let columns = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(headers.len());
    let mut out = String::from("<div class=\"table-wrap\"><table class=\"sortable\">\n<thead><tr>");
    for i in 0..columns {
        let class = if is_num(i) { " class=\"num\"" } else { "" };
        let _ = write!(
            out,
            "<th{class}>{}</th>",
            escape(headers.get(i).copied().unwrap_or(""))
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td class=\"empty\" colspan=\"{}\">No rows</td></tr>",
            columns.max(1)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for i in 0..columns {
            let class = if is_num(i) { " class=\"num\"" } else { "" };
            let cell = row.get(i).map_or("", String::as_str);
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// Two distributions over the same bins as overlaid bars: reference (blue-grey)
/// behind, current (orange) in front, both semi-transparent, with a legend.
///
/// Expects `labels.len() == reference.len() == current.len()` and shares in
/// 0..1. Bin labels are thinned when they would overlap and cut at 16
/// characters (hover shows the whole label). The chart is a 360×200 `viewBox`
/// that CSS scales to its container.
///
/// The y axis runs from 0 to a nice number above the largest share and is
/// labelled in percent. Mismatched lengths do not panic: the
/// chart has as many bins as the longest slice, and missing or non-finite
/// values draw no bar. Negative shares draw an empty bar. Hovering a bar shows
/// its bin and share.
pub fn histogram_overlay(
    title: &str,
    labels: &[String],
    reference: &[f64],
    current: &[f64],
) -> String {
    let bins = labels.len().max(reference.len()).max(current.len());
    let Some((_, max)) = finite_range(reference.iter().chain(current).copied()) else {
        return placeholder(title);
    };
    let axis = Axis::nice(0.0, max.max(0.0), 4);
    let tick_labels: Vec<String> = axis
        .ticks
        .iter()
        .map(|&t| format_percent(t, axis.step))
        .collect();
    let frame = Frame::new(VIEW_H, &tick_labels, 22.0, 8.0, 6.0);
    let mut svg = svg_open(title, VIEW_H);
    frame.y_grid(&mut svg, &axis, &tick_labels);

    let slot = frame.width() / bins as f64;
    let gap = (slot * 0.14).min(6.0);
    let label_of = |i: usize| labels.get(i).map_or("", String::as_str);
    for (class, colour, opacity, name, values) in [
        (
            "ref",
            REFERENCE_COLOUR,
            REFERENCE_OPACITY,
            "reference",
            reference,
        ),
        ("cur", CURRENT_COLOUR, CURRENT_OPACITY, "current", current),
    ] {
        let _ = write!(svg, "<g fill=\"{colour}\" fill-opacity=\"{opacity}\">");
        for (i, &v) in values.iter().enumerate().take(bins) {
            if !usable(v) {
                continue;
            }
            let h = frame.height() * axis.frac(v.max(0.0));
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\">\
                 <title>{}: {name} {}</title></rect>",
                Px(frame.left + i as f64 * slot + gap / 2.0),
                Px(frame.bottom - h),
                Px(slot - gap),
                Px(h),
                escape(label_of(i)),
                format_percent_value(v),
            );
        }
        svg.push_str("</g>");
    }
    frame.baseline(&mut svg);
    let centres = |i: usize| frame.left + (i as f64 + 0.5) * slot;
    frame.x_labels(&mut svg, labels, slot, centres);
    svg.push_str("</svg>");
    figure(
        title,
        &svg,
        &legend(&[
            (
                Key::Swatch(REFERENCE_COLOUR, REFERENCE_OPACITY),
                "reference",
            ),
            (Key::Swatch(CURRENT_COLOUR, CURRENT_OPACITY), "current"),
        ]),
    )
}

/// One line of a [`line_chart`]: a name for the legend and one value per x label.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// Legend text; escaped.
    pub name: &'a str,
    /// One value per x position; `NaN` or infinite values leave a gap.
    pub values: &'a [f64],
}

/// Line chart of one or more series over a shared x axis (labels such as window
/// start times, thinned when they would overlap), with an optional dashed red
/// threshold line and optional highlighted indices (e.g. windows where an alert
/// fired) drawn as red dots. `NaN` and infinite values break the line.
///
/// The x axis has as many positions as the longest of `x_labels` and the
/// series. The y axis spans the finite values and the threshold, rounded out to
/// nice ticks; it does not force zero in. A highlighted index gets a faint red
/// band and a red dot on each series with a value there (or on the x axis when
/// none has). Out-of-range highlight indices and a non-finite threshold are
/// ignored. Points are hoverable for their value.
pub fn line_chart(
    title: &str,
    x_labels: &[String],
    series: &[Series<'_>],
    threshold: Option<f64>,
    highlight: &[usize],
) -> String {
    let points = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(x_labels.len());
    let threshold = threshold.filter(|&t| usable(t));
    let values = series.iter().flat_map(|s| s.values.iter().copied());
    let Some((lo, hi)) = finite_range(values) else {
        return placeholder(title);
    };
    let (lo, hi) = match threshold {
        Some(t) => (lo.min(t), hi.max(t)),
        None => (lo, hi),
    };
    let axis = Axis::nice(lo, hi, 4);
    let tick_labels: Vec<String> = axis
        .ticks
        .iter()
        .map(|&t| format_tick(t, axis.step))
        .collect();
    let frame = Frame::new(VIEW_H, &tick_labels, 22.0, 10.0, 12.0);
    let mut svg = svg_open(title, VIEW_H);
    frame.y_grid(&mut svg, &axis, &tick_labels);

    let slot = if points > 1 {
        frame.width() / (points - 1) as f64
    } else {
        frame.width()
    };
    let x_at = |i: usize| {
        if points > 1 {
            frame.left + i as f64 * slot
        } else {
            frame.left + frame.width() / 2.0
        }
    };
    let y_at = |v: f64| frame.bottom - frame.height() * axis.frac(v);
    let label_of = |i: usize| x_labels.get(i).map_or("", String::as_str);

    let mut alerts: Vec<usize> = highlight.iter().copied().filter(|&i| i < points).collect();
    alerts.sort_unstable();
    alerts.dedup();
    let band = if points > 1 {
        slot
    } else {
        frame.width() / 4.0
    };
    for &i in &alerts {
        let x0 = (x_at(i) - band / 2.0).max(frame.left);
        let x1 = (x_at(i) + band / 2.0).min(frame.right);
        let _ = write!(
            svg,
            "<rect class=\"alert-band\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" \
             fill=\"{BAD_COLOUR}\" fill-opacity=\"0.07\"/>",
            Px(x0),
            Px(frame.top),
            Px((x1 - x0).max(1.0)),
            Px(frame.height()),
        );
    }
    frame.baseline(&mut svg);

    if let Some(t) = threshold {
        let y = y_at(t);
        // Keep the label inside the plot: above the line unless that is the top.
        let label_y = if y - frame.top < 12.0 {
            y + 10.0
        } else {
            y - 4.0
        };
        let _ = write!(
            svg,
            "<line class=\"threshold\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" \
             stroke=\"{BAD_COLOUR}\" stroke-width=\"1.2\" stroke-dasharray=\"5 3\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"{FONT}\" \
             fill=\"{BAD_COLOUR}\" {HALO}>threshold {}</text>",
            Px(frame.left),
            Px(frame.right),
            Px(frame.right - 2.0),
            Px(label_y),
            escape(&format_value(t)),
            y = Px(y),
        );
    }

    let markers = points <= 40;
    for (k, s) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let name = escape(s.name);
        let mut segment: Vec<(f64, f64)> = Vec::new();
        let mut dots = String::new();
        for i in 0..=s.values.len() {
            match s.values.get(i).copied().filter(|&v| usable(v)) {
                Some(v) => {
                    let (x, y) = (x_at(i), y_at(v));
                    segment.push((x, y));
                    // A transparent dot still shows its tooltip on hover.
                    let (r, opacity) = if markers { (2.2, 1.0) } else { (3.0, 0.0) };
                    let _ = write!(
                        dots,
                        "<circle class=\"pt\" cx=\"{}\" cy=\"{}\" r=\"{r}\" fill-opacity=\"{opacity}\">\
                         <title>{}: {name} {}</title></circle>",
                        Px(x),
                        Px(y),
                        escape(label_of(i)),
                        escape(&format_value(v)),
                    );
                }
                None => {
                    if segment.len() >= 2 {
                        svg.push_str("<path class=\"line\" d=\"");
                        for (j, (x, y)) in segment.iter().enumerate() {
                            let cmd = if j == 0 { 'M' } else { 'L' };
                            let _ = write!(svg, "{cmd}{} {}", Px(*x), Px(*y));
                        }
                        let _ = write!(
                            svg,
                            "\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\" \
                             stroke-linejoin=\"round\" stroke-linecap=\"round\"/>"
                        );
                    } else if let (1, false) = (segment.len(), markers) {
                        // An isolated point between gaps has no line to show it.
                        let (x, y) = segment[0];
                        let _ = write!(
                            svg,
                            "<circle class=\"pt\" cx=\"{}\" cy=\"{}\" r=\"2.2\" fill=\"{colour}\"/>",
                            Px(x),
                            Px(y)
                        );
                    }
                    segment.clear();
                }
            }
        }
        let _ = write!(svg, "<g fill=\"{colour}\">{dots}</g>");
    }

    for &i in &alerts {
        let mut any = false;
        for s in series {
            if let Some(v) = s.values.get(i).copied().filter(|&v| usable(v)) {
                any = true;
                alert_dot(&mut svg, x_at(i), y_at(v), label_of(i), s.name, Some(v));
            }
        }
        if !any {
            alert_dot(&mut svg, x_at(i), frame.bottom, label_of(i), "", None);
        }
    }

    frame.x_labels(&mut svg, x_labels, slot, x_at);
    svg.push_str("</svg>");

    let mut keys: Vec<(Key, &str)> = series
        .iter()
        .enumerate()
        .map(|(k, s)| (Key::Line(PALETTE[k % PALETTE.len()]), s.name))
        .collect();
    if threshold.is_some() {
        keys.push((Key::Dash, "threshold"));
    }
    if !alerts.is_empty() {
        keys.push((Key::Dot, "alert"));
    }
    figure(title, &svg, &legend(&keys))
}

/// Horizontal bar chart (e.g. a drift statistic per column, sorted by the
/// caller), with an optional threshold line; bars over the threshold are red.
///
/// Bars are drawn in the given order, top to bottom, from zero (so negative
/// values point left), each labelled with its value. A bar strictly over the
/// threshold is red; the rest are blue-grey. The SVG grows by one row per
/// label, so it suits up to a few dozen bars. Rows with a non-finite value show
/// "n/a" and no bar.
pub fn bar_chart(title: &str, labels: &[String], values: &[f64], threshold: Option<f64>) -> String {
    let rows = labels.len().max(values.len());
    let threshold = threshold.filter(|&t| usable(t));
    let Some((lo, hi)) = finite_range(values.iter().copied()) else {
        return placeholder(title);
    };
    let (lo, hi) = match threshold {
        Some(t) => (lo.min(t).min(0.0), hi.max(t).max(0.0)),
        None => (lo.min(0.0), hi.max(0.0)),
    };
    let axis = Axis::nice(lo, hi, 4);

    const ROW: f64 = 20.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 20.0;
    let height = TOP + rows as f64 * ROW + BOTTOM;
    let names: Vec<String> = (0..rows)
        .map(|i| truncate(labels.get(i).map_or("", String::as_str), 22))
        .collect();
    let widest = names.iter().map(|n| text_width(n)).fold(0.0, f64::max);
    let left = (widest + 12.0).clamp(36.0, 150.0);
    let right = VIEW_W - 40.0;
    let bottom = TOP + rows as f64 * ROW;
    let x_at = |v: f64| left + (right - left) * axis.frac(v);

    let mut svg = svg_open(title, height);
    let _ = write!(
        svg,
        "<g font-size=\"{FONT}\" fill=\"{TEXT_COLOUR}\" text-anchor=\"middle\">"
    );
    for &t in &axis.ticks {
        let x = Px(x_at(t));
        let _ = write!(
            svg,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{GRID_COLOUR}\"/>\
             <text x=\"{x}\" y=\"{}\">{}</text>",
            Px(TOP),
            Px(bottom),
            Px(bottom + 13.0),
            escape(&format_tick(t, axis.step)),
        );
    }
    svg.push_str("</g>");

    let zero = x_at(0.0);
    for (i, name) in names.iter().enumerate() {
        let y = TOP + i as f64 * ROW;
        let mid = y + ROW / 2.0;
        let full = labels.get(i).map_or("", String::as_str);
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"{FONT}\" fill=\"#334155\">\
             <title>{}</title>{}</text>",
            Px(left - 6.0),
            Px(mid + 3.5),
            escape(full),
            escape(name),
        );
        let Some(v) = values.get(i).copied().filter(|&v| usable(v)) else {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" font-size=\"{FONT}\" fill=\"{TEXT_COLOUR}\">n/a</text>",
                Px(zero + 4.0),
                Px(mid + 3.5),
            );
            continue;
        };
        let over = threshold.is_some_and(|t| v > t);
        let (class, colour) = if over {
            ("bar over", BAD_COLOUR)
        } else {
            ("bar", BAR_COLOUR)
        };
        let end = x_at(v);
        let text = escape(&format_value(v));
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\" \
             fill=\"{colour}\"><title>{}: {text}</title></rect>",
            Px(zero.min(end)),
            Px(y + 3.5),
            Px((end - zero).abs()),
            Px(ROW - 7.0),
            escape(full),
        );
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"{FONT}\" fill=\"{}\">{text}</text>",
            Px(zero.max(end) + 4.0),
            Px(mid + 3.5),
            if over { BAD_COLOUR } else { "#334155" },
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{z}\" y1=\"{}\" x2=\"{z}\" y2=\"{}\" stroke=\"{AXIS_COLOUR}\"/>",
        Px(TOP),
        Px(bottom),
        z = Px(zero),
    );
    if let Some(t) = threshold {
        let x = x_at(t);
        let text = format!("threshold {}", format_value(t));
        let half = text_width(&text) / 2.0;
        let _ = write!(
            svg,
            "<line class=\"threshold\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" \
             stroke=\"{BAD_COLOUR}\" stroke-width=\"1.2\" stroke-dasharray=\"5 3\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{FONT}\" \
             fill=\"{BAD_COLOUR}\" {HALO}>{}</text>",
            Px(x),
            Px(TOP - 3.0),
            Px(x),
            Px(bottom),
            Px(x.min(VIEW_W - 2.0 - half).max(2.0 + half)),
            Px(TOP - 6.0),
            escape(&text),
        );
    }
    svg.push_str("</svg>");
    let mut keys = Vec::new();
    if threshold.is_some() {
        keys.push((Key::Swatch(BAR_COLOUR, 1.0), "within threshold"));
        keys.push((Key::Swatch(BAD_COLOUR, 1.0), "over threshold"));
    }
    figure(title, &svg, &legend(&keys))
}

/// A grid container wrapping several charts.
///
/// Columns are at least 340 CSS pixels wide and as many as fit; items keep
/// their order, left to right, top to bottom.
pub fn grid(items: &[String]) -> String {
    let mut out = String::from("<div class=\"grid\">\n");
    for item in items {
        out.push_str(item);
        out.push('\n');
    }
    out.push_str("</div>");
    out
}

/// Geometry of a plot area inside a chart's `viewBox`.
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    /// Leaves room on the left for the widest y tick label.
    fn new(view_h: f64, tick_labels: &[String], bottom: f64, top: f64, right: f64) -> Frame {
        let widest = tick_labels
            .iter()
            .map(|l| text_width(l))
            .fold(0.0, f64::max);
        Frame {
            // Room for the widest tick label, but never more than the plot itself.
            left: (widest + 10.0).clamp(24.0, 120.0),
            right: VIEW_W - right,
            top,
            bottom: view_h - bottom,
        }
    }

    fn width(&self) -> f64 {
        self.right - self.left
    }

    fn height(&self) -> f64 {
        self.bottom - self.top
    }

    /// Horizontal grid lines with their labels at the left.
    fn y_grid(&self, svg: &mut String, axis: &Axis, tick_labels: &[String]) {
        let _ = write!(
            svg,
            "<g font-size=\"{FONT}\" fill=\"{TEXT_COLOUR}\" text-anchor=\"end\">"
        );
        for (&t, label) in axis.ticks.iter().zip(tick_labels) {
            let y = Px(self.bottom - self.height() * axis.frac(t));
            let _ = write!(
                svg,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{GRID_COLOUR}\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                Px(self.left),
                Px(self.right),
                Px(self.left - 5.0),
                Px(self.bottom - self.height() * axis.frac(t) + 3.5),
                escape(label),
            );
        }
        svg.push_str("</g>");
    }

    fn baseline(&self, svg: &mut String) {
        let y = Px(self.bottom);
        let _ = write!(
            svg,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{AXIS_COLOUR}\"/>",
            Px(self.left),
            Px(self.right),
        );
    }

    /// Labels under the plot, thinned so they do not overlap, and kept inside
    /// the `viewBox`.
    fn x_labels(
        &self,
        svg: &mut String,
        labels: &[String],
        slot: f64,
        x_at: impl Fn(usize) -> f64,
    ) {
        let short: Vec<String> = labels
            .iter()
            .map(|l| truncate(l, MAX_LABEL_CHARS))
            .collect();
        let widest = short.iter().map(|l| text_width(l)).fold(0.0, f64::max);
        let every = if slot > 0.0 {
            ((widest + 10.0) / slot).ceil().max(1.0) as usize
        } else {
            1
        };
        let _ = write!(
            svg,
            "<g font-size=\"{FONT}\" fill=\"{TEXT_COLOUR}\" text-anchor=\"middle\">"
        );
        // Labels pushed inward at the edges can still collide with a neighbour.
        let mut free_from = f64::MIN;
        for (i, label) in short.iter().enumerate().step_by(every) {
            let half = text_width(label) / 2.0;
            let x = x_at(i).min(VIEW_W - 2.0 - half).max(2.0 + half);
            if x - half < free_from {
                continue;
            }
            free_from = x + half + 6.0;
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\"><title>{}</title>{}</text>",
                Px(x),
                Px(self.bottom + 14.0),
                escape(&labels[i]),
                escape(label),
            );
        }
        svg.push_str("</g>");
    }
}

/// A linear axis from `lo` to `hi` with ticks every `step`, all "nice" numbers.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
    ticks: Vec<f64>,
}

impl Axis {
    /// Rounds `[lo, hi]` out to multiples of a 1, 2 or 5 × 10^k step giving
    /// about `target` intervals. A zero-width range is padded; `hi > lo` after.
    fn nice(lo: f64, hi: f64, target: usize) -> Axis {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo.min(hi), lo.max(hi))
        } else {
            (0.0, 1.0)
        };
        let magnitude = lo.abs().max(hi.abs());
        // A range below float resolution (or subnormal) would make billions of
        // ticks or a zero step: pad a single value by 10%, and draw values that
        // are all practically zero on 0..1.
        if hi - lo <= magnitude * 1e-9 || hi - lo < 1e-200 {
            if magnitude < 1e-200 {
                (lo, hi) = (0.0, 1.0);
            } else {
                (lo, hi) = (lo - magnitude * 0.1, hi + magnitude * 0.1);
            }
        }
        let step = nice_step((hi - lo) / target.max(1) as f64);
        let first = (lo / step + 1e-9).floor();
        let last = (hi / step - 1e-9).ceil();
        let ticks: Vec<f64> = (0..=((last - first) as usize).min(50))
            .map(|k| (first + k as f64) * step)
            .collect();
        Axis {
            lo: first * step,
            hi: last * step,
            step,
            ticks,
        }
    }

    /// Where `v` falls between `lo` (0) and `hi` (1).
    fn frac(&self, v: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo)
    }
}

/// The smallest 1, 2 or 5 × 10^k that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 + 1e-9 {
        1.0
    } else if fraction <= 2.0 + 1e-9 {
        2.0
    } else if fraction <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Formats a tick value compactly with as many decimals as the step needs:
/// `0.05`, `1.2k`, `3.4M`.
fn format_tick(v: f64, step: f64) -> String {
    if !v.is_finite() || !step.is_finite() {
        return String::new();
    }
    if v.abs() < step * 1e-6 {
        return "0".to_owned();
    }
    let (divisor, suffix) = suffix_for(v.abs());
    if divisor == 0.0 || step < 1e-6 {
        return format!("{v:.1e}");
    }
    let decimals = decimals_for(step / divisor);
    let digits = format!("{:.*}", decimals, v / divisor);
    if suffix.is_empty() {
        // Same decimals on every tick of an axis: 0.88, 0.90, 0.92.
        digits
    } else {
        // 500, 1k, 1.5k reads better than 1.0k.
        format!("{}{suffix}", trim_zeros(digits))
    }
}

/// A share as a percent tick: `0.05` with step `0.05` is `5%`.
fn format_percent(v: f64, step: f64) -> String {
    format!("{}%", format_tick(v * 100.0, step * 100.0))
}

/// A share for a tooltip, to three significant digits: `0.25` is `25%`.
fn format_percent_value(v: f64) -> String {
    format!("{}%", format_value(v * 100.0))
}

/// A value to three significant digits, compact: `0.123`, `45.6`, `1.23k`.
fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let (divisor, suffix) = suffix_for(v.abs());
    if divisor == 0.0 || v.abs() < 1e-3 {
        return format!("{v:.2e}");
    }
    let scaled = v / divisor;
    let magnitude = scaled.abs().log10().floor();
    let decimals = (2.0 - magnitude).clamp(0.0, 6.0) as usize;
    format!("{}{suffix}", trim_zeros(format!("{scaled:.decimals$}")))
}

/// The divisor and suffix for a magnitude; a zero divisor means "use exponent
/// notation".
fn suffix_for(abs: f64) -> (f64, &'static str) {
    if abs >= 1e15 {
        (0.0, "")
    } else if abs >= 1e12 {
        (1e12, "T")
    } else if abs >= 1e9 {
        (1e9, "G")
    } else if abs >= 1e6 {
        (1e6, "M")
    } else if abs >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

fn decimals_for(step: f64) -> usize {
    if step >= 1.0 - 1e-9 {
        0
    } else {
        (-step.log10() - 1e-9).ceil().clamp(0.0, 12.0) as usize
    }
}

fn trim_zeros(s: String) -> String {
    let trimmed = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Whether a value can be drawn: finite and small enough to scale.
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_MAGNITUDE
}

/// The smallest and largest drawable values, if any.
fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|&v| usable(v))
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
        })
}

/// A coordinate, rounded to a tenth of a `viewBox` unit; never `NaN`.
struct Px(f64);

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() { self.0 } else { 0.0 };
        let tenths = (v * 10.0).round();
        if tenths == 0.0 {
            f.write_str("0")
        } else if tenths % 10.0 == 0.0 {
            write!(f, "{}", tenths / 10.0)
        } else {
            write!(f, "{:.1}", tenths / 10.0)
        }
    }
}

fn text_width(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn svg_open(title: &str, height: f64) -> String {
    format!(
        "<svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" \
         preserveAspectRatio=\"xMidYMid meet\">",
        Px(VIEW_W),
        Px(height),
        escape(title),
    )
}

fn alert_dot(svg: &mut String, x: f64, y: f64, label: &str, name: &str, v: Option<f64>) {
    let what = match v {
        Some(v) => format!("{} {}", escape(name), escape(&format_value(v))),
        None => String::new(),
    };
    let _ = write!(
        svg,
        "<circle class=\"alert\" cx=\"{}\" cy=\"{}\" r=\"3.6\" fill=\"{BAD_COLOUR}\" \
         stroke=\"#fff\" stroke-width=\"1.2\"><title>alert at {}: {what}</title></circle>",
        Px(x),
        Px(y),
        escape(label),
    );
}

fn figure(title: &str, svg: &str, legend: &str) -> String {
    let title = escape(title);
    format!(
        "<figure class=\"chart\"><figcaption title=\"{title}\">{title}</figcaption>\
         {svg}{legend}</figure>"
    )
}

fn placeholder(title: &str) -> String {
    let title = escape(title);
    format!(
        "<figure class=\"chart\"><figcaption title=\"{title}\">{title}</figcaption>\
         <div class=\"nodata\">No data</div></figure>"
    )
}

/// How a legend entry is drawn.
enum Key<'a> {
    /// A filled square of a colour at an opacity.
    Swatch(&'a str, f64),
    Line(&'a str),
    Dash,
    Dot,
}

fn legend(keys: &[(Key<'_>, &str)]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let mut out = String::from("<div class=\"legend\">");
    for (key, name) in keys {
        let mark = match key {
            Key::Swatch(c, opacity) => {
                format!("<i style=\"background:{c};opacity:{opacity}\"></i>")
            }
            Key::Line(c) => format!("<i class=\"line\" style=\"background:{c}\"></i>"),
            Key::Dash => "<i class=\"dash\"></i>".to_owned(),
            Key::Dot => "<i class=\"dot\"></i>".to_owned(),
        };
        let _ = write!(out, "<span>{mark}{}</span>", escape(name));
    }
    out.push_str("</div>");
    out
}

const CSS: &str = r#"
:root{--bg:#f4f6f9;--panel:#fff;--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--good:#16a34a;--bad:#dc2626;--warn:#d97706;--accent:#f97316}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1280px;margin:0 auto;padding:28px 24px 40px}
header.top{margin-bottom:22px}
.brand{font-size:12px;font-weight:700;letter-spacing:.1em;text-transform:uppercase;color:var(--accent)}
h1{margin:2px 0 0;font-size:26px;font-weight:700;letter-spacing:-.015em;line-height:1.25}
.sub{margin:4px 0 0;color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin-bottom:22px}
.card{--tone:#94a3b8;--tone-ink:var(--ink);background:var(--panel);border:1px solid var(--line);border-top:3px solid var(--tone);border-radius:10px;padding:12px 16px 14px;box-shadow:0 1px 2px rgba(15,23,42,.05)}
.card.good{--tone:var(--good);--tone-ink:#15803d}.card.bad{--tone:var(--bad);--tone-ink:#b91c1c}.card.warn{--tone:var(--warn);--tone-ink:#b45309}
.card .label{font-size:12px;font-weight:600;letter-spacing:.05em;text-transform:uppercase;color:var(--muted)}
.card .value{font-size:30px;font-weight:700;line-height:1.2;margin-top:4px;color:var(--tone-ink);font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
section.panel{background:var(--panel);border:1px solid var(--line);border-radius:12px;padding:18px 20px 20px;margin-bottom:20px;box-shadow:0 1px 2px rgba(15,23,42,.04)}
h2{margin:0 0 14px;font-size:16px;font-weight:650}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(340px,100%),1fr));gap:16px;align-items:start}
.chart{margin:0;border:1px solid var(--line);border-radius:10px;padding:12px 12px 10px;background:#fff;min-width:0}
.chart figcaption{font-size:13px;font-weight:600;margin:0 0 6px 2px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.chart svg{display:block;width:100%;height:auto;overflow:visible}
.chart text{font-variant-numeric:tabular-nums}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:6px 0 0 2px;font-size:12px;color:var(--muted)}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.legend i.line{height:3px;width:14px;vertical-align:3px}
.legend i.dash{height:0;width:16px;border-top:2px dashed var(--bad);border-radius:0;vertical-align:3px}
.legend i.dot{background:var(--bad);border-radius:50%}
.nodata{aspect-ratio:360/200;display:flex;align-items:center;justify-content:center;border-radius:8px;color:var(--muted);font-size:13px;background:repeating-linear-gradient(135deg,#f8fafc 0 10px,#f1f5f9 10px 20px)}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:8px 14px;text-align:left;border-bottom:1px solid var(--line);white-space:nowrap}
tbody tr:last-child td{border-bottom:0}
th{position:sticky;top:0;background:#f8fafc;color:var(--muted);font-size:12px;font-weight:600;letter-spacing:.04em;text-transform:uppercase;cursor:pointer;user-select:none}
th::after{content:"\2195";margin-left:6px;opacity:.35}
th[data-dir=asc]::after{content:"\25B2";opacity:.8}th[data-dir=desc]::after{content:"\25BC";opacity:.8}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfd}
tbody tr:hover{background:#f1f5f9}
td.empty{color:var(--muted);text-align:center}
.badge{display:inline-block;padding:1px 10px;border-radius:999px;font-size:12px;font-weight:600;line-height:18px;background:#f1f5f9;color:#334155;box-shadow:inset 0 0 0 1px rgba(51,65,85,.15)}
.badge.good{background:#dcfce7;color:#166534;box-shadow:inset 0 0 0 1px rgba(22,101,52,.18)}
.badge.bad{background:#fee2e2;color:#991b1b;box-shadow:inset 0 0 0 1px rgba(153,27,27,.18)}
.badge.warn{background:#fef3c7;color:#92400e;box-shadow:inset 0 0 0 1px rgba(146,64,14,.18)}
footer{margin-top:26px;text-align:center;font-size:12px;color:var(--muted)}
@media (max-width:600px){main{padding:18px 12px 28px}section.panel{padding:14px 12px}h1{font-size:22px}}
@media print{body{background:#fff}section.panel,.card{box-shadow:none;break-inside:avoid}}
"#;

/// Sorts a table's rows on a header click; the page reads fine without it.
const SORT_SCRIPT: &str = r#"
for(const th of document.querySelectorAll("table.sortable th"))th.onclick=()=>{
const t=th.closest("table"),i=th.cellIndex,up=th.dataset.dir!=="asc",num=th.classList.contains("num");
for(const h of th.parentNode.cells)delete h.dataset.dir;th.dataset.dir=up?"asc":"desc";
const key=r=>{const s=(r.cells[i]?r.cells[i].textContent:"").trim(),m=s.replace(/,/g,"").match(/^[-+]?\d*\.?\d+(e[-+]?\d+)?\s*([kMGT]?)/);
return num?(m?parseFloat(m[0])*({k:1e3,M:1e6,G:1e9,T:1e12}[m[2]]||1):-Number.MAX_VALUE):s.toLowerCase()};
const rows=[...t.tBodies[0].rows].sort((a,b)=>{const x=key(a),y=key(b);return(x<y?-1:x>y?1:0)*(up?1:-1)});
for(const r of rows)t.tBodies[0].appendChild(r)};
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("b{i}")).collect()
    }

    /// Every value of `attr="…"` in tags of `tag` with `class="class"`.
    fn attrs(html: &str, tag: &str, class: &str, attr: &str) -> Vec<f64> {
        html.split(&format!("<{tag} "))
            .skip(1)
            .filter(|t| t.starts_with(&format!("class=\"{class}\"")))
            .map(|t| {
                let start = t.find(&format!(" {attr}=\"")).expect("attribute") + attr.len() + 3;
                t[start..start + t[start..].find('"').unwrap()]
                    .parse()
                    .expect("number")
            })
            .collect()
    }

    fn assert_clean(html: &str) {
        for bad in ["NaN", "inf", "Infinity", "e308"] {
            assert!(!html.contains(bad), "{bad:?} in output:\n{html}");
        }
    }

    fn sample_page() -> Page {
        let mut page = Page::new(
            "Drift: churn-model v12 <reference> vs last 24h",
            "reference: train.parquet (48,210 rows) \u{b7} current: 2024-05-01 to 2024-05-02 (9,871 rows)",
        );
        page.card("Columns checked", "12", Tone::Neutral);
        page.card("Drifted", "3", Tone::Bad);
        page.card("Worst PSI", "0.41", Tone::Warn);
        page.card("Accuracy (24h)", "91.2%", Tone::Good);
        let cols = [
            ("tenure_months", 0.41, true),
            ("monthly_charges", 0.27, true),
            ("contract_type", 0.22, true),
            ("support_calls", 0.08, false),
            ("age", 0.03, false),
            ("region", 0.01, false),
        ];
        let rows: Vec<Vec<String>> = cols
            .iter()
            .map(|&(c, psi, drifted)| {
                vec![
                    escape(c),
                    escape("numeric"),
                    escape(&format!("{psi:.3}")),
                    escape(&format!("{:.4}", psi / 40.0)),
                    if drifted {
                        badge("drifted", Tone::Bad)
                    } else {
                        badge("ok", Tone::Good)
                    },
                ]
            })
            .collect();
        page.section(
            "Columns",
            table(
                &["column", "type", "PSI", "p-value", "verdict"],
                &rows,
                &[false, false, true, true, false],
            ),
        );
        let bins: Vec<String> = (0..12)
            .map(|i| format!("{}-{}", i * 6, i * 6 + 6))
            .collect();
        let reference = [
            0.02, 0.05, 0.09, 0.13, 0.16, 0.15, 0.13, 0.1, 0.08, 0.05, 0.03, 0.01,
        ];
        let current = [
            0.01, 0.02, 0.04, 0.07, 0.1, 0.13, 0.15, 0.15, 0.13, 0.1, 0.06, 0.04,
        ];
        let cats: Vec<String> = ["month-to-month", "one year", "two year"]
            .map(String::from)
            .to_vec();
        page.section(
            "Distributions",
            grid(&[
                histogram_overlay("tenure_months", &bins, &reference, &current),
                histogram_overlay(
                    "contract_type",
                    &cats,
                    &[0.55, 0.25, 0.2],
                    &[0.7, 0.18, 0.12],
                ),
                bar_chart(
                    "PSI per column",
                    &cols.iter().map(|c| c.0.to_owned()).collect::<Vec<_>>(),
                    &cols.iter().map(|c| c.1).collect::<Vec<_>>(),
                    Some(0.2),
                ),
                histogram_overlay("empty column", &[], &[], &[]),
            ]),
        );
        let windows: Vec<String> = (0..24).map(|h| format!("05-01 {h:02}:00")).collect();
        let drift: Vec<f64> = (0..24)
            .map(|h| {
                if h == 9 {
                    f64::NAN
                } else {
                    0.05 + 0.012 * h as f64 + 0.02 * ((h as f64) * 0.9).sin()
                }
            })
            .collect();
        let acc: Vec<f64> = (0..24)
            .map(|h| 0.93 - 0.002 * h as f64 + 0.006 * (h as f64).cos())
            .collect();
        let p50: Vec<f64> = (0..24)
            .map(|h| 12.0 + 3.0 * ((h as f64) / 3.0).sin())
            .collect();
        let p99: Vec<f64> = (0..24)
            .map(|h| 80.0 + 30.0 * ((h as f64) / 4.0).sin() + if h == 17 { 900.0 } else { 0.0 })
            .collect();
        let alerts: Vec<usize> = (0..24).filter(|&h| drift[h] > 0.25).collect();
        page.section(
            "Over time",
            grid(&[
                line_chart(
                    "Max PSI per window",
                    &windows,
                    &[Series {
                        name: "max PSI",
                        values: &drift,
                    }],
                    Some(0.25),
                    &alerts,
                ),
                line_chart(
                    "Accuracy",
                    &windows,
                    &[Series {
                        name: "accuracy",
                        values: &acc,
                    }],
                    Some(0.9),
                    &[],
                ),
                line_chart(
                    "Latency (ms)",
                    &windows,
                    &[
                        Series {
                            name: "p50",
                            values: &p50,
                        },
                        Series {
                            name: "p99",
                            values: &p99,
                        },
                    ],
                    Some(500.0),
                    &[17],
                ),
            ]),
        );
        page.section(
            "Alerts",
            table(
                &["window", "rule", "value", "state"],
                &[vec![
                    escape("05-01 17:00"),
                    escape("p99 latency > 500 ms"),
                    escape("1.1k"),
                    badge("firing", Tone::Bad),
                ]],
                &[false, false, true, false],
            ),
        );
        page
    }

    /// Every numeric geometry attribute in the output parses as a finite number,
    /// and no size is negative.
    fn assert_geometry_finite(html: &str) {
        for attr in [
            "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "width", "height",
        ] {
            let needle = format!(" {attr}=\"");
            for (at, _) in html.match_indices(&needle) {
                let rest = &html[at + needle.len()..];
                let value = &rest[..rest.find('"').unwrap()];
                let v: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{attr}={value:?} is not a number"));
                assert!(v.is_finite(), "{attr}={value}");
                if matches!(attr, "r" | "width" | "height") {
                    assert!(v >= 0.0, "{attr}={value}");
                }
            }
        }
    }

    #[test]
    fn escape_example() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn script_and_quotes_in_user_text_are_escaped_everywhere() {
        let evil = r#"<script>alert("x")</script>' onload='"#;
        let mut page = Page::new(evil, evil);
        page.card(evil, evil, Tone::Bad);
        let names = vec![evil.to_owned(), "b".to_owned()];
        page.section(
            evil,
            grid(&[
                histogram_overlay(evil, &names, &[0.5, 0.5], &[0.4, 0.6]),
                line_chart(
                    evil,
                    &names,
                    &[Series {
                        name: evil,
                        values: &[1.0, 2.0],
                    }],
                    Some(1.5),
                    &[0],
                ),
                bar_chart(evil, &names, &[0.3, 0.1], Some(0.2)),
                table(
                    &[evil],
                    &[vec![escape(evil)], vec![badge(evil, Tone::Bad)]],
                    &[false],
                ),
            ]),
        );
        let html = page.render();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("' onload='"), "{html}");
        assert!(!html.contains(r#""x""#), "{html}");
        assert_eq!(html.matches("<script").count(), 1, "only the sort script");
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onload=&#39;")
        );
    }

    #[test]
    fn rendered_page_is_self_contained() {
        let html = sample_page().render();
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.trim_end().ends_with("</html>"));
        for external in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "{external:?} in the page");
        }
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script>"), "the one script is inline");
        assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
        assert!(html.contains(&format!(
            "generated by kiln {}</footer>",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn page_keeps_cards_and_sections_in_order_with_tones() {
        let mut page = Page::new("T", "");
        page.card("first", "1", Tone::Good);
        page.card("second", "2", Tone::Warn);
        page.section("one", "<p>body one</p>".to_owned());
        page.section("", "<p>body two</p>".to_owned());
        let html = page.render();
        let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(at("card good") < at("card warn"));
        assert!(at("<h2>one</h2>") < at("<p>body one</p>"));
        assert!(at("<p>body one</p>") < at("<p>body two</p>"));
        assert_eq!(html.matches("<h2>").count(), 1, "empty heading is left out");
        assert!(
            !html.contains("class=\"sub\""),
            "empty subtitle is left out"
        );
        assert_eq!(
            badge("ok", Tone::Good),
            "<span class=\"badge good\">ok</span>"
        );
    }

    #[test]
    fn table_right_aligns_numeric_columns_and_pads_short_rows() {
        let html = table(
            &["column", "psi"],
            &[vec!["a".into(), "0.1".into()], vec!["b".into()]],
            &[false, true],
        );
        assert_eq!(html.matches("<th>column</th>").count(), 1);
        assert_eq!(html.matches("<th class=\"num\">psi</th>").count(), 1);
        assert_eq!(html.matches("<td class=\"num\">0.1</td>").count(), 1);
        assert_eq!(html.matches("<td class=\"num\"></td>").count(), 1);
        let empty = table(&["a", "b"], &[], &[]);
        assert!(empty.contains("colspan=\"2\">No rows</td>"));
    }

    #[test]
    fn histogram_overlay_draws_one_bar_per_bin_per_side_proportional_to_value() {
        let reference = [0.1, 0.2, 0.4, 0.3];
        let current = [0.3, 0.0, 0.15, 0.55];
        let html = histogram_overlay("x", &labels(4), &reference, &current);
        for (class, values) in [("ref", &reference), ("cur", &current)] {
            let heights = attrs(&html, "rect", class, "height");
            let ys = attrs(&html, "rect", class, "y");
            assert_eq!(heights.len(), 4, "{class}: one bar per bin");
            let per_unit = heights[0] / values[0];
            for ((h, y), v) in heights.iter().zip(&ys).zip(values.iter()) {
                assert!((h - v * per_unit).abs() < 0.2, "{class}: {h} vs {v}");
                // Every bar stands on the same baseline.
                assert!((y + h - (ys[0] + heights[0])).abs() < 0.2);
            }
        }
        // Both sides share one scale.
        let r = attrs(&html, "rect", "ref", "height");
        let c = attrs(&html, "rect", "cur", "height");
        assert!((c[0] - r[0] * 3.0).abs() < 0.2);
        // The axis runs from 0% to just above the largest share.
        assert!(
            html.contains(">0%</text>") && html.contains(">60%</text>"),
            "{html}"
        );
        assert!(html.contains("reference") && html.contains("current"));
    }

    #[test]
    fn histogram_overlay_thins_labels_when_many_bins() {
        let bins = labels(100);
        let values = vec![0.01; 100];
        let html = histogram_overlay("x", &bins, &values, &values);
        assert_eq!(attrs(&html, "rect", "ref", "height").len(), 100);
        let shown = html.matches("<text x=").count();
        assert!(shown < 30, "{shown} labels");
        assert!(html.contains(">b0</text>"));
    }

    #[test]
    fn line_chart_nan_makes_a_gap_of_two_segments() {
        let values = [1.0, 2.0, f64::NAN, 3.0, 4.0];
        let html = line_chart(
            "x",
            &labels(5),
            &[Series {
                name: "s",
                values: &values,
            }],
            None,
            &[],
        );
        assert_eq!(html.matches("<path class=\"line\"").count(), 2, "{html}");
        let segments: Vec<&str> = html
            .split("<path class=\"line\" d=\"")
            .skip(1)
            .map(|p| &p[..p.find('"').unwrap()])
            .collect();
        assert!(
            segments.iter().all(|d| d.matches('L').count() == 1),
            "{segments:?}"
        );
        assert!(!html.contains("NaN"));
        assert_geometry_finite(&html);

        let whole = line_chart(
            "x",
            &labels(5),
            &[Series {
                name: "s",
                values: &[1.0, 2.0, 2.5, 3.0, 4.0],
            }],
            None,
            &[],
        );
        assert_eq!(whole.matches("<path class=\"line\"").count(), 1);
    }

    #[test]
    fn line_chart_draws_threshold_only_when_given() {
        let series = [Series {
            name: "psi",
            values: &[0.1, 0.3, 0.2],
        }];
        let with = line_chart("x", &labels(3), &series, Some(0.25), &[]);
        assert_eq!(with.matches("<line class=\"threshold\"").count(), 1);
        assert!(with.contains("stroke-dasharray"));
        assert!(with.contains(">threshold 0.25</text>"));
        let y = attrs(&with, "line", "threshold", "y1")[0];
        // 0.25 sits between the points for 0.2 and 0.3.
        let ys = attrs(&with, "circle", "pt", "cy");
        assert!(ys[1] < y && y < ys[2], "{ys:?} {y}");

        let without = line_chart("x", &labels(3), &series, None, &[]);
        assert!(!without.contains("threshold"));
        let nan = line_chart("x", &labels(3), &series, Some(f64::NAN), &[]);
        assert!(!nan.contains("threshold"));
    }

    #[test]
    fn line_chart_highlights_alert_windows_with_red_dots() {
        let html = line_chart(
            "x",
            &labels(4),
            &[
                Series {
                    name: "a",
                    values: &[1.0, 2.0, 3.0, 4.0],
                },
                Series {
                    name: "b",
                    values: &[2.0, f64::NAN, 1.0, 0.0],
                },
            ],
            None,
            &[1, 3, 3, 99],
        );
        // Index 1: only "a" has a value; index 3: both; 99 is out of range.
        assert_eq!(html.matches("<circle class=\"alert\"").count(), 3);
        assert!(html.contains(&format!("fill=\"{BAD_COLOUR}\" stroke=\"#fff\"")));
        assert_eq!(html.matches("class=\"alert-band\"").count(), 2);
    }

    #[test]
    fn line_chart_axis_takes_negative_values() {
        let html = line_chart(
            "x",
            &labels(3),
            &[Series {
                name: "residual",
                values: &[-3.0, 1.0, 4.0],
            }],
            None,
            &[],
        );
        assert!(html.contains(">-4</text>"), "{html}");
        assert!(html.contains(">4</text>"), "{html}");
        assert_geometry_finite(&html);
    }

    #[test]
    fn bar_chart_marks_bars_over_threshold_bad() {
        let html = bar_chart(
            "psi",
            &["a".into(), "b".into(), "c".into()],
            &[0.4, 0.1, 0.2],
            Some(0.2),
        );
        let over: Vec<&str> = html
            .split("<rect ")
            .skip(1)
            .map(|r| &r[..r.find('>').unwrap()])
            .filter(|r| r.contains(&format!("fill=\"{BAD_COLOUR}\"")))
            .collect();
        assert_eq!(over.len(), 1, "only 0.4 is strictly over 0.2");
        assert!(over[0].starts_with("class=\"bar over\""));
        assert!(html.contains("<title>a: 0.4</title>"));
        assert_eq!(html.matches(&format!("fill=\"{BAR_COLOUR}\"")).count(), 2);
        assert_eq!(html.matches("<line class=\"threshold\"").count(), 1);
        // Widths are proportional to values from a shared zero.
        let w = attrs(&html, "rect", "bar over", "width")[0];
        let rest = attrs(&html, "rect", "bar", "width");
        assert!((w / rest[0] - 4.0).abs() < 0.05, "{w} {rest:?}");

        let plain = bar_chart("psi", &["a".into()], &[0.4], None);
        assert!(!plain.contains(BAD_COLOUR));
    }

    #[test]
    fn empty_inputs_render_a_placeholder() {
        let none: &[String] = &[];
        for html in [
            histogram_overlay("h", none, &[], &[]),
            histogram_overlay("h", &labels(2), &[f64::NAN, f64::INFINITY], &[]),
            line_chart("l", none, &[], Some(1.0), &[0]),
            line_chart(
                "l",
                &labels(3),
                &[Series {
                    name: "s",
                    values: &[],
                }],
                None,
                &[],
            ),
            line_chart(
                "l",
                &labels(2),
                &[Series {
                    name: "s",
                    values: &[f64::NAN, f64::NEG_INFINITY],
                }],
                None,
                &[],
            ),
            bar_chart("b", none, &[], Some(0.1)),
        ] {
            assert!(
                html.contains("<div class=\"nodata\">No data</div>"),
                "{html}"
            );
            assert!(!html.contains("<svg"), "{html}");
        }
        assert_eq!(grid(&[]), "<div class=\"grid\">\n</div>");
    }

    #[test]
    fn pathological_inputs_never_write_nan_or_inf() {
        let inf = f64::INFINITY;
        let cases: &[&[f64]] = &[
            &[0.0, 0.0, 0.0],
            &[5.0],
            &[-5.0],
            &[0.0],
            &[-2.0, -1.0, -3.0],
            &[inf, 1.0, -inf, f64::NAN, 2.0],
            &[f64::MAX, f64::MIN, 1.0],
            &[1e300, -1e300],
            &[5e-324, 0.0],
            &[1e-190, 2e-190],
            &[1.0, 1.0 + f64::EPSILON],
            &[1e9, 2.5e9],
            &[f64::MIN_POSITIVE],
        ];
        for values in cases {
            let names = labels(values.len() + 1);
            let mut all = vec![
                histogram_overlay("h", &names, values, values),
                histogram_overlay("h", &names[..1], values, &[]),
                bar_chart("b", &names, values, Some(0.5)),
                bar_chart("b", &names[..1], values, Some(inf)),
            ];
            for threshold in [None, Some(0.0), Some(f64::NAN), Some(-inf), Some(1e12)] {
                let series = [
                    Series { name: "a", values },
                    Series {
                        name: "b",
                        values: &[],
                    },
                ];
                all.push(line_chart(
                    "l",
                    &names,
                    &series,
                    threshold,
                    &[0, 1, usize::MAX],
                ));
                all.push(line_chart("l", &[], &series, threshold, &[0]));
            }
            for html in &all {
                assert_clean(html);
                assert_geometry_finite(html);
            }
        }
    }

    #[test]
    fn nice_axis_examples() {
        let check = |lo: f64, hi: f64, expect: &[f64]| {
            let axis = Axis::nice(lo, hi, 4);
            assert_eq!(axis.ticks.len(), expect.len(), "{lo}..{hi}: {axis:?}");
            for (t, e) in axis.ticks.iter().zip(expect) {
                assert!((t - e).abs() < 1e-12, "{lo}..{hi}: {axis:?}");
            }
        };
        check(0.0, 0.37, &[0.0, 0.1, 0.2, 0.3, 0.4]);
        check(0.0, 0.4, &[0.0, 0.1, 0.2, 0.3, 0.4]);
        check(0.0, 0.0, &[0.0, 0.5, 1.0]);
        check(-3.0, 4.0, &[-4.0, -2.0, 0.0, 2.0, 4.0]);
        check(12.0, 1180.0, &[0.0, 500.0, 1000.0, 1500.0]);
        check(5.0, 5.0, &[4.5, 5.0, 5.5]);
        check(0.881, 0.936, &[0.88, 0.9, 0.92, 0.94]);
    }

    #[test]
    fn tick_and_value_formatting_examples() {
        let check = |v: f64, step: f64, expect: &str| assert_eq!(format_tick(v, step), expect);
        check(0.05, 0.05, "0.05");
        check(0.1, 0.05, "0.10");
        check(0.3000000000000004, 0.1, "0.3");
        check(-1e-17, 0.1, "0");
        check(1200.0, 100.0, "1.2k");
        check(1000.0, 500.0, "1k");
        check(3_400_000.0, 200_000.0, "3.4M");
        check(500.0, 500.0, "500");
        check(-2.0, 2.0, "-2");
        assert_eq!(format_percent(0.15, 0.05), "15%");
        assert_eq!(format_percent(0.025, 0.005), "2.5%");
        for (v, expect) in [
            (0.0, "0"),
            (0.25, "0.25"),
            (0.41234, "0.412"),
            (45.67, "45.7"),
            (1234.0, "1.23k"),
            (-2_500_000.0, "-2.5M"),
            (0.00012, "1.20e-4"),
            (f64::NAN, "n/a"),
        ] {
            assert_eq!(format_value(v), expect);
        }
    }

    #[test]
    fn coordinates_are_rounded_and_never_nan() {
        for (v, expect) in [
            (1.0, "1"),
            (1.25, "1.3"),
            (-0.04, "0"),
            (f64::NAN, "0"),
            (-inf(), "0"),
            (359.96, "360"),
        ] {
            assert_eq!(Px(v).to_string(), expect);
        }
    }

    fn inf() -> f64 {
        f64::INFINITY
    }

    #[test]
    fn sample_page_is_clean() {
        let html = sample_page().render();
        assert_clean(&html);
        assert_geometry_finite(&html);
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<Page>();
        check::<Series<'static>>();
        check::<Tone>();
    }
}
