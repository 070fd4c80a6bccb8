//! Self-contained HTML reports with inline SVG charts.
//!
//! `kiln monitor drift --html`, `kiln monitor report --html` and `kiln explain
//! --html` build a [`Page`] from summary [cards](Page::card) and
//! [sections](Page::section) whose bodies come from the helpers here:
//! [`table`], [`badge`], [`callout`], [`grid`] and the charts
//! ([`histogram_overlay`], [`line_chart`], [`bar_chart`],
//! [`bar_chart_with_error`]; and for model explanations, after the `shap`
//! package's plots, [`beeswarm`], [`waterfall`], the dependence plots
//! [`scatter`] and [`category_scatter`], and partial dependence with ICE
//! [`curves`]). [`Page::render`] returns one HTML document with inline CSS,
//! inline SVG and a few lines of inline script that sort tables on a header
//! click. Nothing is fetched when the file is opened, and a
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
//! use kiln_html::{self as html, Page, Tone};
//!
//! let mut page = Page::new("Drift: reference vs current", "2 of 3 columns drifted");
//! page.card("Columns drifted", "2 / 3", Tone::Bad);
//! let labels: Vec<String> = ["0-10", "10-20", "20-30"].map(String::from).to_vec();
//! let chart = html::histogram_overlay("age", &labels, &[0.2, 0.5, 0.3], &[0.1, 0.4, 0.5]);
//! page.section("Distributions", html::grid(&[chart]));
//! let doc = page.render();
//! assert!(doc.starts_with("<!doctype html>"));
//! ```

use std::collections::{BTreeMap, HashMap};
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
/// Dark text, and the category means of a [`category_scatter`].
const INK: &str = "#0f172a";
/// The `shap` package's colours: red for attributions that raise the output
/// and for high feature values, blue for those that lower it and low values.
const POSITIVE_COLOUR: &str = "#ff0051";
const NEGATIVE_COLOUR: &str = "#008bfb";
const HIGH_RGB: [u8; 3] = [0xff, 0x00, 0x51];
const LOW_RGB: [u8; 3] = [0x00, 0x8b, 0xfb];
/// Points without a colour value: categories, missing values.
const NO_VALUE_COLOUR: &str = "#a3acb9";
/// Shades from low to high; dots are drawn one path per shade.
const RAMP_STEPS: usize = 11;
const ICE_COLOUR: &str = "#64748b";
const AVERAGE_COLOUR: &str = "#f97316";
/// Diameter of a scatter or beeswarm dot, in `viewBox` units.
const DOT: f64 = 2.6;
/// Height of the scatter and curve `viewBox`es.
const PLOT_H: f64 = 220.0;
/// Most points drawn per beeswarm row, per scatter, and ICE curves per chart.
const MAX_BEE_POINTS: usize = 1000;
const MAX_SCATTER_POINTS: usize = 2000;
const MAX_ICE_CURVES: usize = 200;
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
    brand: String,
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
            brand: "kiln".to_owned(),
            title: title.to_owned(),
            subtitle: subtitle.to_owned(),
            cards: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// Sets the small line above the title, e.g. `kiln monitor` (`kiln` by
    /// default); escaped.
    pub fn brand(&mut self, brand: &str) {
        self.brand = brand.to_owned();
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
             <header class=\"top\"><div class=\"brand\">{brand}</div><h1>{title}</h1>",
            version = env!("CARGO_PKG_VERSION"),
            brand = escape(&self.brand),
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
    bars(title, labels, values, &[], threshold)
}

/// Horizontal bar chart with error bars, e.g. permutation importance: the
/// mean worsening of a metric per column with ± one standard deviation.
///
/// Like [`bar_chart`] without a threshold: bars in the given order, top to
/// bottom, from zero. Each bar gets a whisker from `value - error` to
/// `value + error` (the error's sign is ignored) and is labelled
/// "value ± error". A missing or non-finite error draws no whisker; a
/// non-finite value shows "n/a".
pub fn bar_chart_with_error(
    title: &str,
    labels: &[String],
    values: &[f64],
    errors: &[f64],
) -> String {
    bars(title, labels, values, errors, None)
}

/// [`bar_chart`] and [`bar_chart_with_error`]: `errors` may be empty.
fn bars(
    title: &str,
    labels: &[String],
    values: &[f64],
    errors: &[f64],
    threshold: Option<f64>,
) -> String {
    let rows = labels.len().max(values.len());
    let threshold = threshold.filter(|&t| usable(t));
    // The error of row `i`, if both it and the value can be drawn.
    let error_of = |i: usize| {
        let v = values.get(i).copied().filter(|&v| usable(v))?;
        let e = errors.get(i).copied().filter(|&e| usable(e))?.abs();
        (usable(v - e) && usable(v + e)).then_some(e)
    };
    let whiskers = (0..rows).filter_map(|i| error_of(i).map(|e| (values[i], e)));
    let ends = whiskers.flat_map(|(v, e)| [v - e, v + e]);
    let Some((lo, hi)) = finite_range(values.iter().copied().chain(ends)) else {
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
    // Room on the right for the value labels.
    let right = VIEW_W - if errors.is_empty() { 40.0 } else { 72.0 };
    let bottom = TOP + rows as f64 * ROW;
    let x_at = |v: f64| left + (right - left) * axis.frac(v);

    let mut svg = svg_open(title, height);
    x_grid(&mut svg, &axis, x_at, TOP, bottom);

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
        let error = error_of(i);
        let text = escape(&match error {
            Some(e) => format!("{} ± {}", format_value(v), format_value(e)),
            None => format_value(v),
        });
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
        let mut text_x = zero.max(end);
        if let Some(e) = error {
            let (x0, x1) = (x_at(v - e), x_at(v + e));
            let (top, bottom) = (Px(mid - 3.5), Px(mid + 3.5));
            let _ = write!(
                svg,
                "<path class=\"err\" d=\"M{a} {top}V{bottom}M{a} {m}H{b}M{b} {top}V{bottom}\" \
                 stroke=\"#1e293b\" stroke-width=\"1\" fill=\"none\"/>",
                a = Px(x0),
                b = Px(x1),
                m = Px(mid),
            );
            text_x = text_x.max(x1);
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"{FONT}\" fill=\"{}\">{text}</text>",
            Px(text_x + 4.0),
            Px(mid + 3.5),
            if over { BAD_COLOUR } else { "#334155" },
        );
    }
    zero_line(&mut svg, zero, TOP, bottom);
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

/// One row of a [`beeswarm`]: a label and one `(attribution, colour)` point per
/// explained row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BeeRow {
    /// Text at the left of the row (e.g. a column name); escaped.
    pub label: String,
    /// The x position (an attribution) and a colour value already scaled to
    /// 0..1 (low to high), or `None` to draw the point grey (a category, a
    /// missing value).
    pub points: Vec<(f64, Option<f64>)>,
}

/// The summary plot of the `shap` package: one horizontal band per row, first
/// row on top, with every point at its attribution on a shared x axis.
///
/// Points are spread vertically by local density, so the band shows the shape
/// of the distribution: x is binned every dot width and the points of a bin are
/// stacked alternately above and below the band's centre (deterministic, no
/// randomness), squeezed to fit the band. A point is coloured by its second
/// value from blue (0, low) to red (1, high), or grey when `None`, with a
/// legend. A vertical line marks zero, which the axis always includes.
///
/// Non-finite attributions are skipped, and a row keeps at most 1,000 points,
/// evenly thinned, so the file stays small. The SVG grows by one band per row.
pub fn beeswarm(title: &str, rows: &[BeeRow]) -> String {
    let kept: Vec<Vec<(f64, Option<f64>)>> = rows
        .iter()
        .map(|row| {
            let drawable = row.points.iter().copied().filter(|&(x, _)| usable(x));
            thin(drawable.collect(), MAX_BEE_POINTS)
        })
        .collect();
    let Some((lo, hi)) = finite_range(kept.iter().flatten().map(|&(x, _)| x)) else {
        return placeholder(title);
    };
    let axis = Axis::nice(lo.min(0.0), hi.max(0.0), 4);

    const ROW: f64 = 24.0;
    const TOP: f64 = 6.0;
    const BOTTOM: f64 = 34.0;
    let bottom = TOP + rows.len() as f64 * ROW;
    let names: Vec<String> = rows.iter().map(|r| truncate(&r.label, 22)).collect();
    let widest = names.iter().map(|n| text_width(n)).fold(0.0, f64::max);
    let left = (widest + 12.0).clamp(36.0, 150.0);
    let right = VIEW_W - 14.0;
    let x_at = |v: f64| left + (right - left) * axis.frac(v);

    let mut svg = svg_open(title, bottom + BOTTOM);
    x_grid(&mut svg, &axis, x_at, TOP, bottom);
    zero_line(&mut svg, x_at(0.0), TOP, bottom);
    let mut greys = false;
    let mut shades = false;
    for (i, (row, points)) in rows.iter().zip(&kept).enumerate() {
        let mid = TOP + (i as f64 + 0.5) * ROW;
        let _ = write!(
            svg,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{GRID_COLOUR}\" \
             stroke-dasharray=\"2 3\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"{FONT}\" fill=\"#334155\">\
             <title>{}</title>{}</text>",
            Px(left),
            Px(right),
            Px(left - 6.0),
            Px(mid + 3.5),
            escape(&row.label),
            escape(&names[i]),
            y = Px(mid),
        );
        let xs: Vec<f64> = points.iter().map(|&(x, _)| x_at(x)).collect();
        let offsets = swarm(&xs, DOT, DOT * 0.75, ROW * 0.42);
        greys |= points.iter().any(|&(_, c)| shade(c).is_none());
        shades |= points.iter().any(|&(_, c)| shade(c).is_some());
        let dots = points
            .iter()
            .zip(xs.iter().zip(&offsets))
            .map(|(&(_, c), (&x, &dy))| (x, mid + dy, value_colour(c)));
        dot_paths(&mut svg, "dot", dots);
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{FONT}\" \
         fill=\"{TEXT_COLOUR}\">SHAP value (impact on model output)</text></svg>",
        Px((left + right) / 2.0),
        Px(bottom + 28.0),
    );
    figure(title, &svg, &colour_legend(shades, greys))
}

/// The waterfall plot of the `shap` package for one prediction: how the
/// output goes from `base` (the expected output, E\[f(x)\]) to `total` (the
/// row's output, f(x)) one step at a time.
///
/// Steps are drawn top to bottom in the given order, one horizontal bar each
/// with its label on the left (e.g. "temp = 31.2") and its signed value
/// beside it; each bar starts where the previous one ended, red going right
/// for a positive step and blue going left for a negative one, joined by thin
/// connectors. A dashed line at `base` is labelled E\[f(x)\] above the bars and
/// a solid line at `total` is labelled f(x) below them (`total` is drawn where
/// given, even if the steps do not add up to it).
///
/// A non-finite step shows "n/a" and does not move the running sum; a
/// non-finite `total` draws no f(x) line. A non-finite `base` or no steps
/// render the "No data" placeholder.
pub fn waterfall(title: &str, base: f64, steps: &[(String, f64)], total: f64) -> String {
    if !usable(base) || steps.is_empty() {
        return placeholder(title);
    }
    // Where each step starts, and where it ends if it can be drawn.
    let mut spans: Vec<(f64, Option<f64>)> = Vec::with_capacity(steps.len());
    let mut at = base;
    for &(_, v) in steps {
        let end = Some(at + v).filter(|&end| usable(v) && usable(end));
        spans.push((at, end));
        at = end.unwrap_or(at);
    }
    let total = Some(total).filter(|&t| usable(t));
    let ends = spans.iter().filter_map(|&(_, end)| end);
    let Some((lo, hi)) = finite_range([base].into_iter().chain(total).chain(ends)) else {
        return placeholder(title);
    };
    let axis = Axis::nice(lo, hi, 4);

    const ROW: f64 = 20.0;
    const TOP: f64 = 22.0;
    const BOTTOM: f64 = 34.0;
    let bottom = TOP + steps.len() as f64 * ROW;
    let names: Vec<String> = steps.iter().map(|(l, _)| truncate(l, 24)).collect();
    let widest = names.iter().map(|n| text_width(n)).fold(0.0, f64::max);
    let left = (widest + 12.0).clamp(36.0, 160.0);
    let right = VIEW_W - 14.0;
    let x_at = |v: f64| left + (right - left) * axis.frac(v);
    // A label centred on `x`, kept inside the `viewBox`.
    let centred = |x: f64, text: &str| {
        let half = text_width(text) / 2.0;
        x.min(VIEW_W - 2.0 - half).max(2.0 + half)
    };

    let mut svg = svg_open(title, bottom + BOTTOM);
    x_grid(&mut svg, &axis, x_at, TOP, bottom);
    let base_x = x_at(base);
    let base_text = format!("E[f(x)] = {}", format_value(base));
    let _ = write!(
        svg,
        "<line class=\"base\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{AXIS_COLOUR}\" \
         stroke-dasharray=\"3 3\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{FONT}\" fill=\"#334155\" \
         {HALO}>{}</text>",
        Px(TOP - 4.0),
        Px(bottom),
        Px(centred(base_x, &base_text)),
        Px(TOP - 8.0),
        escape(&base_text),
        x = Px(base_x),
    );
    for (i, ((label, v), span)) in steps.iter().zip(&spans).enumerate() {
        let y = TOP + i as f64 * ROW;
        let mid = y + ROW / 2.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"{FONT}\" fill=\"#334155\">\
             <title>{}</title>{}</text>",
            Px(left - 6.0),
            Px(mid + 3.5),
            escape(label),
            escape(&names[i]),
        );
        let &(start, end) = span;
        let Some(end) = end else {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" font-size=\"{FONT}\" fill=\"{TEXT_COLOUR}\">n/a</text>",
                Px(x_at(start) + 4.0),
                Px(mid + 3.5),
            );
            continue;
        };
        let (x0, x1) = (x_at(start), x_at(end));
        let (class, colour) = if *v >= 0.0 {
            ("step pos", POSITIVE_COLOUR)
        } else {
            ("step neg", NEGATIVE_COLOUR)
        };
        let text = signed_value(*v);
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"1.5\" \
             fill=\"{colour}\"><title>{}: {}</title></rect>",
            Px(x0.min(x1)),
            Px(y + 4.0),
            Px((x1 - x0).abs()),
            Px(ROW - 8.0),
            escape(label),
            escape(&text),
        );
        // The value goes past the bar's end, or before its start when that
        // would leave the plot.
        let width = text_width(&text);
        let (text_x, anchor) = if *v >= 0.0 {
            if x1 + 4.0 + width <= VIEW_W - 2.0 {
                (x1 + 4.0, "start")
            } else {
                (x0 - 4.0, "end")
            }
        } else if x1 - 4.0 - width >= left {
            (x1 - 4.0, "end")
        } else {
            (x0 + 4.0, "start")
        };
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" font-size=\"{FONT}\" \
             fill=\"{colour}\" {HALO}>{}</text>",
            Px(text_x),
            Px(mid + 3.5),
            escape(&text),
        );
        if i + 1 < steps.len() {
            let _ = write!(
                svg,
                "<line class=\"connector\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" \
                 stroke=\"{AXIS_COLOUR}\" stroke-width=\"0.8\"/>",
                Px(y + ROW - 4.0),
                Px(y + ROW + 4.0),
                x = Px(x1),
            );
        }
    }
    if let Some(t) = total {
        let x = x_at(t);
        let text = format!("f(x) = {}", format_value(t));
        let _ = write!(
            svg,
            "<line class=\"total\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#0f172a\" \
             stroke-width=\"1.4\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{FONT}\" \
             font-weight=\"600\" fill=\"#0f172a\" {HALO}>{}</text>",
            Px(TOP),
            Px(bottom + 4.0),
            Px(centred(x, &text)),
            Px(bottom + 28.0),
            escape(&text),
            x = Px(x),
        );
    }
    svg.push_str("</svg>");
    figure(
        title,
        &svg,
        &legend(&[
            (Key::Swatch(POSITIVE_COLOUR, 1.0), "raises the output"),
            (Key::Swatch(NEGATIVE_COLOUR, 1.0), "lowers the output"),
        ]),
    )
}

/// A dependence plot: one dot per `(x, y, colour)` point, e.g. a feature's
/// value against its attribution, with a horizontal line at y = 0 (which the
/// axis always includes) and both axes named.
///
/// Colours work as in [`beeswarm`] (a value scaled to 0..1, blue to red, grey
/// for `None`); when no point has a colour, all are blue and there is no
/// legend. Points with a non-finite coordinate are skipped and at most 2,000
/// are drawn, evenly thinned.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, Option<f64>)],
) -> String {
    let drawable = points
        .iter()
        .copied()
        .filter(|&(x, y, _)| usable(x) && usable(y));
    let points = thin(drawable.collect(), MAX_SCATTER_POINTS);
    let (Some((x_lo, x_hi)), Some((y_lo, y_hi))) = (
        finite_range(points.iter().map(|p| p.0)),
        finite_range(points.iter().map(|p| p.1)),
    ) else {
        return placeholder(title);
    };
    let x_axis = Axis::nice(x_lo, x_hi, 4);
    let y_axis = Axis::nice(y_lo.min(0.0), y_hi.max(0.0), 4);
    let tick_labels = tick_labels(&y_axis);
    let frame = Frame::new(PLOT_H, &tick_labels, 34.0, 8.0, 14.0).with_y_title(y_label);
    let x_at = |v: f64| frame.left + frame.width() * x_axis.frac(v);
    let y_at = |v: f64| frame.bottom - frame.height() * y_axis.frac(v);

    let mut svg = svg_open(title, PLOT_H);
    frame.y_grid(&mut svg, &y_axis, &tick_labels);
    x_grid(&mut svg, &x_axis, x_at, frame.top, frame.bottom);
    frame.baseline(&mut svg);
    frame.zero(&mut svg, y_at(0.0));
    let shades = points.iter().any(|&(_, _, c)| shade(c).is_some());
    let greys = shades && points.iter().any(|&(_, _, c)| shade(c).is_none());
    let dots = points.iter().map(|&(x, y, c)| {
        let colour = if shades {
            value_colour(c)
        } else {
            NEGATIVE_COLOUR.to_owned()
        };
        (x_at(x), y_at(y), colour)
    });
    dot_paths(&mut svg, "dot", dots);
    frame.axis_titles(&mut svg, x_label, y_label);
    svg.push_str("</svg>");
    figure(title, &svg, &colour_legend(shades, greys))
}

/// A dependence plot for a categorical feature: one band per category along
/// x (labels under the axis), one dot per `(category index, y)` point, spread
/// horizontally by local density within its band like a [`beeswarm`]
/// (deterministic), a dark tick at each category's mean and a horizontal line
/// at y = 0 (which the axis always includes).
///
/// Points whose index is out of range or whose y is non-finite are skipped,
/// and at most 2,000 are drawn, evenly thinned.
pub fn category_scatter(
    title: &str,
    y_label: &str,
    categories: &[String],
    points: &[(usize, f64)],
) -> String {
    let drawable = points
        .iter()
        .copied()
        .filter(|&(c, y)| c < categories.len() && usable(y));
    let points = thin(drawable.collect(), MAX_SCATTER_POINTS);
    let Some((lo, hi)) = finite_range(points.iter().map(|p| p.1)) else {
        return placeholder(title);
    };
    let axis = Axis::nice(lo.min(0.0), hi.max(0.0), 4);
    let tick_labels = tick_labels(&axis);
    let frame = Frame::new(PLOT_H, &tick_labels, 22.0, 8.0, 10.0).with_y_title(y_label);
    let slot = frame.width() / categories.len() as f64;
    let centre = |c: usize| frame.left + (c as f64 + 0.5) * slot;
    let y_at = |v: f64| frame.bottom - frame.height() * axis.frac(v);

    let mut svg = svg_open(title, PLOT_H);
    frame.y_grid(&mut svg, &axis, &tick_labels);
    frame.baseline(&mut svg);
    frame.zero(&mut svg, y_at(0.0));
    let mut by_category = vec![Vec::new(); categories.len()];
    for &(c, y) in &points {
        by_category[c].push(y);
    }
    let mut means = String::new();
    for (c, ys) in by_category.iter().enumerate() {
        if ys.is_empty() {
            continue;
        }
        let at: Vec<f64> = ys.iter().map(|&y| y_at(y)).collect();
        let offsets = swarm(&at, DOT, DOT * 0.75, slot * 0.38);
        let dots = at
            .iter()
            .zip(&offsets)
            .map(|(&y, &dx)| (centre(c) + dx, y, NEGATIVE_COLOUR.to_owned()));
        dot_paths(&mut svg, "dot", dots);
        let mean = ys.iter().sum::<f64>() / ys.len() as f64;
        let half = (slot * 0.3).min(16.0);
        let _ = write!(
            means,
            "<line class=\"mean\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{INK}\" \
             stroke-width=\"2\"><title>{}: mean {} over {} rows</title></line>",
            Px(centre(c) - half),
            Px(centre(c) + half),
            escape(&categories[c]),
            escape(&format_value(mean)),
            ys.len(),
            y = Px(y_at(mean)),
        );
    }
    svg.push_str(&means);
    frame.x_labels(&mut svg, categories, slot, centre);
    frame.axis_titles(&mut svg, "", y_label);
    svg.push_str("</svg>");
    figure(title, &svg, &legend(&[(Key::Line(INK), "mean")]))
}

/// The x positions of [`curves`].
#[derive(Clone, Copy, Debug)]
pub enum XAxis<'a> {
    /// Numbers on a linear axis, e.g. a feature's grid of values (ascending).
    Numbers(&'a [f64]),
    /// Categories in equal slots, labelled under the axis; escaped.
    Labels(&'a [String]),
}

impl XAxis<'_> {
    fn len(self) -> usize {
        match self {
            XAxis::Numbers(v) => v.len(),
            XAxis::Labels(l) => l.len(),
        }
    }
}

/// Partial dependence with ICE curves: one thin, translucent grey line per
/// `ice` curve (an individual row as one feature is set to each x) and one
/// thick orange line for `average` (the partial dependence), with `y_label`
/// naming the y axis.
///
/// Values are matched to x positions by index; extra values are ignored, and a
/// non-finite value (or numeric x) leaves a gap. With [`XAxis::Labels`] there
/// are no lines between categories: each curve is a short horizontal tick per
/// category, and the average a thick tick with a dot. At most 200 ICE curves
/// are drawn, evenly thinned. The y axis spans the values; it does not force
/// zero in.
pub fn curves(
    title: &str,
    y_label: &str,
    x: XAxis<'_>,
    average: &[f64],
    ice: &[Vec<f64>],
) -> String {
    let n = x.len();
    let x_ok = |i: usize| match x {
        XAxis::Numbers(v) => usable(v[i]),
        XAxis::Labels(_) => true,
    };
    let ice = thin(ice.iter().map(Vec::as_slice).collect(), MAX_ICE_CURVES);
    let in_view = |values: &[f64]| -> Vec<f64> {
        (0..values.len().min(n))
            .filter(|&i| x_ok(i))
            .map(|i| values[i])
            .collect()
    };
    let shown = in_view(average)
        .into_iter()
        .chain(ice.iter().flat_map(|c| in_view(c)));
    let Some((lo, hi)) = finite_range(shown) else {
        return placeholder(title);
    };
    let axis = Axis::nice(lo, hi, 4);
    let tick_labels = tick_labels(&axis);
    let frame = Frame::new(PLOT_H, &tick_labels, 22.0, 8.0, 14.0).with_y_title(y_label);
    let y_at = |v: f64| frame.bottom - frame.height() * axis.frac(v);

    let mut svg = svg_open(title, PLOT_H);
    frame.y_grid(&mut svg, &axis, &tick_labels);
    // Each x position in viewBox units (`None`: a non-finite number), and the
    // half-width of a category's tick.
    let (xs, half): (Vec<Option<f64>>, f64) = match x {
        XAxis::Numbers(values) => {
            let (x_lo, x_hi) = finite_range(values.iter().copied()).unwrap_or((0.0, 1.0));
            let x_axis = Axis::nice(x_lo, x_hi, 4);
            let x_at = |v: f64| frame.left + frame.width() * x_axis.frac(v);
            x_grid(&mut svg, &x_axis, x_at, frame.top, frame.bottom);
            let xs = values.iter().map(|&v| usable(v).then(|| x_at(v)));
            (xs.collect(), 0.0)
        }
        XAxis::Labels(labels) => {
            let slot = frame.width() / n as f64;
            let centre = |i: usize| frame.left + (i as f64 + 0.5) * slot;
            frame.x_labels(&mut svg, labels, slot, centre);
            (
                (0..n).map(|i| Some(centre(i))).collect(),
                (slot * 0.3).min(18.0),
            )
        }
    };
    frame.baseline(&mut svg);
    let point = |values: &[f64], i: usize| -> Option<(f64, f64)> {
        let v = values.get(i).copied().filter(|&v| usable(v))?;
        Some((xs[i]?, y_at(v)))
    };
    // A numeric curve is a polyline; a categorical one a tick per category.
    let categorical = matches!(x, XAxis::Labels(_));
    let path = |values: &[f64]| -> String {
        let points = (0..n).map(|i| point(values, i));
        if categorical {
            let mut d = String::new();
            for (x, y) in points.flatten() {
                let _ = write!(d, "M{} {}h{}", Px(x - half), Px(y), Px(2.0 * half));
            }
            d
        } else {
            polyline(points)
        }
    };

    if !ice.is_empty() {
        let opacity = (8.0 / ice.len() as f64).clamp(0.08, 0.5);
        let _ = write!(
            svg,
            "<g class=\"ice\" fill=\"none\" stroke=\"{ICE_COLOUR}\" stroke-width=\"0.8\" \
             stroke-opacity=\"{opacity:.2}\" stroke-linecap=\"round\" stroke-linejoin=\"round\">"
        );
        for curve in &ice {
            let d = path(curve);
            if !d.is_empty() {
                let _ = write!(svg, "<path d=\"{d}\"/>");
            }
        }
        svg.push_str("</g>");
    }
    let d = path(average);
    if !d.is_empty() {
        let _ = write!(
            svg,
            "<path class=\"average\" d=\"{d}\" fill=\"none\" stroke=\"{AVERAGE_COLOUR}\" \
             stroke-width=\"2.4\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/>"
        );
    }
    if categorical || n <= 60 {
        let label = |i: usize| match x {
            XAxis::Numbers(v) => format_value(v[i]),
            XAxis::Labels(l) => l[i].clone(),
        };
        let _ = write!(svg, "<g fill=\"{AVERAGE_COLOUR}\">");
        for i in 0..n {
            if let Some((cx, cy)) = point(average, i) {
                let _ = write!(
                    svg,
                    "<circle class=\"avg\" cx=\"{}\" cy=\"{}\" r=\"2.4\"><title>{}: {}</title>\
                     </circle>",
                    Px(cx),
                    Px(cy),
                    escape(&label(i)),
                    escape(&format_value(average[i])),
                );
            }
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    let mut keys = vec![(Key::Line(AVERAGE_COLOUR), "average (partial dependence)")];
    if !ice.is_empty() {
        keys.push((Key::Line(ICE_COLOUR), "individual rows (ICE)"));
    }
    figure(title, &svg, &legend(&keys))
}

/// A highlighted note, e.g. a caveat at the top of a report: `heading` in bold
/// (left out when empty), then `text`, on a background coloured by `tone`.
/// Both texts are escaped.
pub fn callout(tone: Tone, heading: &str, text: &str) -> String {
    let heading = if heading.is_empty() {
        String::new()
    } else {
        format!("<strong>{}</strong> ", escape(heading))
    };
    format!(
        "<div class=\"callout {}\">{heading}{}</div>",
        tone.class(),
        escape(text)
    )
}

/// Vertical grid lines at the axis ticks from `top` to `bottom`, labelled
/// under `bottom`.
fn x_grid(svg: &mut String, axis: &Axis, x_at: impl Fn(f64) -> f64, top: f64, bottom: f64) {
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
            Px(top),
            Px(bottom),
            Px(bottom + 13.0),
            escape(&format_tick(t, axis.step)),
        );
    }
    svg.push_str("</g>");
}

/// A vertical line at x = `x`, e.g. zero on a horizontal chart.
fn zero_line(svg: &mut String, x: f64, top: f64, bottom: f64) {
    let _ = write!(
        svg,
        "<line class=\"zero\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{AXIS_COLOUR}\"/>",
        Px(top),
        Px(bottom),
        x = Px(x),
    );
}

/// The labels of an axis's ticks.
fn tick_labels(axis: &Axis) -> Vec<String> {
    axis.ticks
        .iter()
        .map(|&t| format_tick(t, axis.step))
        .collect()
}

/// At most `cap` of `items`, evenly spaced, in order.
fn thin<T: Copy>(items: Vec<T>, cap: usize) -> Vec<T> {
    if items.len() <= cap {
        return items;
    }
    (0..cap).map(|k| items[k * items.len() / cap]).collect()
}

/// Offsets across the axis that spread points out by local density, as in a
/// beeswarm: `positions` are binned every `bin` units and, in order of
/// position, the points of a bin take layers 0, +1, −1, +2, −2, …, `spacing`
/// apart, squeezed so that the outermost layer stays within ±`half`.
/// Deterministic: the same positions always give the same offsets.
fn swarm(positions: &[f64], bin: f64, spacing: f64, half: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..positions.len()).collect();
    order.sort_by(|&a, &b| positions[a].total_cmp(&positions[b]));
    let mut filled: HashMap<i64, i64> = HashMap::new();
    let mut layers = vec![0_i64; positions.len()];
    for i in order {
        let k = filled
            .entry((positions[i] / bin).floor() as i64)
            .or_default();
        layers[i] = if *k % 2 == 1 { (*k + 1) / 2 } else { -(*k / 2) };
        *k += 1;
    }
    let outermost = layers.iter().map(|l| l.unsigned_abs()).max().unwrap_or(0);
    let step = if outermost == 0 {
        0.0
    } else {
        spacing.min(half / outermost as f64)
    };
    layers.iter().map(|&l| l as f64 * step).collect()
}

/// A colour value's shade: `RAMP_STEPS` steps from low (0) to high (1), or
/// `None` for no value.
fn shade(v: Option<f64>) -> Option<usize> {
    let v = v.filter(|v| v.is_finite())?;
    Some((v.clamp(0.0, 1.0) * (RAMP_STEPS - 1) as f64).round() as usize)
}

/// Blue for low values to red for high ones (the `shap` package's colours),
/// grey for none.
fn value_colour(v: Option<f64>) -> String {
    let Some(step) = shade(v) else {
        return NO_VALUE_COLOUR.to_owned();
    };
    let t = step as f64 / (RAMP_STEPS - 1) as f64;
    let mix = |low: u8, high: u8| (f64::from(low) + (f64::from(high) - f64::from(low)) * t).round();
    let [r, g, b] = [0, 1, 2].map(|k| mix(LOW_RGB[k], HIGH_RGB[k]) as u8);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The legend of value colours: the blue-to-red ramp when some point has a
/// value, grey when some has none (and some has one).
fn colour_legend(shades: bool, greys: bool) -> String {
    let mut keys = Vec::new();
    if shades {
        keys.push((Key::Ramp, "feature value"));
        if greys {
            keys.push((
                Key::Swatch(NO_VALUE_COLOUR, 1.0),
                "no value (category or missing)",
            ));
        }
    }
    legend(&keys)
}

/// Draws dots as zero-length, round-capped path segments, one `<path>` per
/// colour: a few bytes a dot, so thousands of them keep the file small.
fn dot_paths(svg: &mut String, class: &str, dots: impl Iterator<Item = (f64, f64, String)>) {
    let mut by_colour: BTreeMap<String, String> = BTreeMap::new();
    for (x, y, colour) in dots {
        let _ = write!(
            by_colour.entry(colour).or_default(),
            "M{} {}h0",
            Px(x),
            Px(y)
        );
    }
    for (colour, d) in by_colour {
        let _ = write!(
            svg,
            "<path class=\"{class}\" d=\"{d}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"{DOT}\" stroke-linecap=\"round\" stroke-opacity=\"0.85\"/>"
        );
    }
}

/// Path data through the points, broken at each `None`; a point alone
/// between gaps is a zero-length segment (a dot with round caps).
fn polyline(points: impl Iterator<Item = Option<(f64, f64)>>) -> String {
    let mut d = String::new();
    let mut run = 0;
    for point in points.chain([None]) {
        match point {
            Some((x, y)) => {
                let cmd = if run == 0 { 'M' } else { 'L' };
                let _ = write!(d, "{cmd}{} {}", Px(x), Px(y));
                run += 1;
            }
            None => {
                if run == 1 {
                    d.push_str("h0");
                }
                run = 0;
            }
        }
    }
    d
}

/// A value with its sign: `+0.25`, `-1.2k`.
fn signed_value(v: f64) -> String {
    let text = format_value(v);
    if v > 0.0 { format!("+{text}") } else { text }
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

    /// Makes room on the left for a y axis title, if there is one.
    fn with_y_title(mut self, y_label: &str) -> Frame {
        if !y_label.is_empty() {
            self.left += 14.0;
        }
        self
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

    /// A horizontal line across the plot at `y`, e.g. at zero.
    fn zero(&self, svg: &mut String, y: f64) {
        let y = Px(y);
        let _ = write!(
            svg,
            "<line class=\"zero\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" \
             stroke=\"{AXIS_COLOUR}\"/>",
            Px(self.left),
            Px(self.right),
        );
    }

    /// Names the axes: `x_label` under the x tick labels (the frame needs a
    /// bottom margin of 34), `y_label` turned up along the left edge (see
    /// [`Frame::with_y_title`]). Empty labels are left out.
    fn axis_titles(&self, svg: &mut String, x_label: &str, y_label: &str) {
        if !x_label.is_empty() {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{FONT}\" \
                 fill=\"{TEXT_COLOUR}\"><title>{}</title>{}</text>",
                Px((self.left + self.right) / 2.0),
                Px(self.bottom + 28.0),
                escape(x_label),
                escape(&truncate(x_label, 48)),
            );
        }
        if !y_label.is_empty() {
            let (x, y) = (Px(11.0), Px((self.top + self.bottom) / 2.0));
            let fits = (self.height() / CHAR_W) as usize;
            let _ = write!(
                svg,
                "<text x=\"{x}\" y=\"{y}\" transform=\"rotate(-90 {x} {y})\" \
                 text-anchor=\"middle\" font-size=\"{FONT}\" fill=\"{TEXT_COLOUR}\">\
                 <title>{}</title>{}</text>",
                escape(y_label),
                escape(&truncate(y_label, fits)),
            );
        }
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
    /// The blue-to-red ramp of feature values, between "low" and "high".
    Ramp,
}

fn legend(keys: &[(Key<'_>, &str)]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let mut out = String::from("<div class=\"legend\">");
    for (key, name) in keys {
        let name = escape(name);
        let _ = match key {
            Key::Swatch(c, opacity) => write!(
                out,
                "<span><i style=\"background:{c};opacity:{opacity}\"></i>{name}</span>"
            ),
            Key::Line(c) => write!(
                out,
                "<span><i class=\"line\" style=\"background:{c}\"></i>{name}</span>"
            ),
            Key::Dash => write!(out, "<span><i class=\"dash\"></i>{name}</span>"),
            Key::Dot => write!(out, "<span><i class=\"dot\"></i>{name}</span>"),
            Key::Ramp => write!(
                out,
                "<span>{name}: low<i class=\"ramp\" style=\"background:linear-gradient(90deg,\
                 {NEGATIVE_COLOUR},{POSITIVE_COLOUR})\"></i>high</span>"
            ),
        };
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
.legend i.ramp{width:64px;height:8px;margin:0 6px;vertical-align:0}
.panel p{margin:0 0 12px;max-width:92ch}.panel p.muted{color:var(--muted)}
.panel ul{margin:0 0 12px;padding-left:22px;max-width:92ch}
.panel .grid+p,.panel .table-wrap+p,.panel .grid+.table-wrap{margin-top:14px}
.callout{--tone:#94a3b8;border:1px solid var(--line);border-left:4px solid var(--tone);border-radius:8px;padding:10px 14px;background:#f8fafc}
.callout.good{--tone:var(--good);background:#f0fdf4}.callout.bad{--tone:var(--bad);background:#fef2f2}.callout.warn{--tone:var(--warn);background:#fffbeb}
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

    /// The centres of the dots drawn by [`dot_paths`] with class `class`,
    /// with each dot's colour.
    fn dots(html: &str, class: &str) -> Vec<(f64, f64, String)> {
        let mut out = Vec::new();
        for path in html.split(&format!("<path class=\"{class}\" d=\"")).skip(1) {
            let d = &path[..path.find('"').unwrap()];
            let at = path.find("stroke=\"").unwrap() + 8;
            let colour = &path[at..at + path[at..].find('"').unwrap()];
            for dot in d.split('M').skip(1) {
                let xy = dot.strip_suffix("h0").expect("a zero-length segment");
                let (x, y) = xy.split_once(' ').unwrap();
                out.push((x.parse().unwrap(), y.parse().unwrap(), colour.to_owned()));
            }
        }
        out
    }

    fn bee(label: &str, points: &[(f64, Option<f64>)]) -> BeeRow {
        BeeRow {
            label: label.to_owned(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn swarm_example() {
        // Three points share a bin and take layers 0, +1, -1; the fourth is alone.
        assert_eq!(
            swarm(&[0.2, 0.1, 0.3, 10.0], 1.0, 2.0, 10.0),
            [2.0, 0.0, -2.0, 0.0]
        );
        // Squeezed to fit: the outermost layer (2) lands on ±half.
        let spread = swarm(&[0.0; 5], 1.0, 2.0, 1.0);
        assert_eq!(spread, [0.0, 0.5, -0.5, 1.0, -1.0]);
        assert!(swarm(&[], 1.0, 1.0, 1.0).is_empty());
    }

    #[test]
    fn thin_keeps_evenly_spaced_items() {
        assert_eq!(thin((0..10).collect(), 5), [0, 2, 4, 6, 8]);
        assert_eq!(thin(vec![1, 2], 5), [1, 2]);
    }

    #[test]
    fn value_colour_runs_from_blue_to_red() {
        assert_eq!(value_colour(Some(0.0)), NEGATIVE_COLOUR);
        assert_eq!(value_colour(Some(-3.0)), NEGATIVE_COLOUR);
        assert_eq!(value_colour(Some(1.0)), POSITIVE_COLOUR);
        assert_eq!(value_colour(Some(0.5)), "#8046a6");
        assert_eq!(value_colour(None), NO_VALUE_COLOUR);
        assert_eq!(value_colour(Some(f64::NAN)), NO_VALUE_COLOUR);
    }

    #[test]
    fn beeswarm_draws_one_band_per_row_on_a_shared_axis() {
        let rows = [
            bee(
                "<temp & hum>",
                &[(-1.0, Some(0.0)), (2.0, Some(1.0)), (f64::NAN, Some(0.5))],
            ),
            bee("city", &[(0.5, None), (0.5, None), (0.5, None)]),
        ];
        let html = beeswarm("summary", &rows);
        let points = dots(&html, "dot");
        assert_eq!(points.len(), 5, "the NaN attribution is skipped");
        let first: Vec<_> = points.iter().filter(|p| p.2 != NO_VALUE_COLOUR).collect();
        let second: Vec<_> = points.iter().filter(|p| p.2 == NO_VALUE_COLOUR).collect();
        assert_eq!((first.len(), second.len()), (2, 3));
        // The first row is on top; low is blue, high red.
        assert!(first.iter().all(|a| second.iter().all(|b| a.1 < b.1)));
        let low = first.iter().find(|p| p.2 == NEGATIVE_COLOUR).unwrap();
        let high = first.iter().find(|p| p.2 == POSITIVE_COLOUR).unwrap();
        assert!(low.0 < high.0);
        // Equal attributions in a row are spread vertically, not stacked.
        let mut ys: Vec<f64> = second.iter().map(|p| p.1).collect();
        ys.sort_by(f64::total_cmp);
        ys.dedup();
        assert_eq!(ys.len(), 3, "{ys:?}");
        assert!(second.iter().all(|p| (p.0 - second[0].0).abs() < 0.01));
        // The city points sit at 0.5, right of zero and left of 2.
        let zero = attrs(&html, "line", "zero", "x1")[0];
        assert!(low.0 < zero && zero < second[0].0 && second[0].0 < high.0);
        assert!(html.contains("&lt;temp &amp; hum&gt;"));
        assert!(html.contains("feature value: low<i class=\"ramp\""));
        assert!(html.contains("no value (category or missing)"));
        assert_clean(&html);
        assert_geometry_finite(&html);

        let taller = beeswarm(
            "summary",
            &[rows[0].clone(), rows[1].clone(), rows[1].clone()],
        );
        let height = |html: &str| {
            let view = &html[html.find("viewBox=\"").unwrap() + 9..];
            let view = &view[..view.find('"').unwrap()];
            view.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        };
        assert!(height(&taller) > height(&html));
    }

    #[test]
    fn beeswarm_caps_points_per_row_deterministically() {
        let points: Vec<(f64, Option<f64>)> = (0..5000)
            .map(|i| {
                (
                    ((i * 37) % 101) as f64 / 10.0 - 5.0,
                    Some((i % 7) as f64 / 6.0),
                )
            })
            .collect();
        let rows = [bee("x", &points)];
        let html = beeswarm("t", &rows);
        let drawn = dots(&html, "dot");
        assert_eq!(drawn.len(), MAX_BEE_POINTS);
        assert_eq!(html, beeswarm("t", &rows), "no randomness");
        // Dense bins are squeezed into the band.
        let ys: Vec<f64> = drawn.iter().map(|p| p.1).collect();
        let (lo, hi) = finite_range(ys.iter().copied()).unwrap();
        assert!(hi - lo > 5.0 && hi - lo <= 24.0 * 0.84 + 0.2, "{lo}..{hi}");
        assert!(html.len() < 40_000, "{} bytes", html.len());
    }

    #[test]
    fn waterfall_steps_start_where_the_previous_ended() {
        let steps = [
            ("temp = 31.2".to_owned(), 2.0),
            ("broken".to_owned(), f64::NAN),
            ("<hour> = 7".to_owned(), -0.5),
        ];
        let html = waterfall("row 3", 1.0, &steps, 2.5);
        let (px, pw) = (
            attrs(&html, "rect", "step pos", "x")[0],
            attrs(&html, "rect", "step pos", "width")[0],
        );
        let (nx, nw) = (
            attrs(&html, "rect", "step neg", "x")[0],
            attrs(&html, "rect", "step neg", "width")[0],
        );
        let base = attrs(&html, "line", "base", "x1")[0];
        let total = attrs(&html, "line", "total", "x1")[0];
        // The positive bar runs right from the base, the negative one runs left
        // from where it ended, to the total.
        assert!((px - base).abs() < 0.11, "{px} {base}");
        assert!((nx + nw - (px + pw)).abs() < 0.11);
        assert!((nx - total).abs() < 0.11);
        assert!((pw / nw - 4.0).abs() < 0.05, "{pw} {nw}");
        assert!(html.contains(&format!("fill=\"{POSITIVE_COLOUR}\"")));
        assert!(html.contains(&format!("fill=\"{NEGATIVE_COLOUR}\"")));
        for text in [
            ">E[f(x)] = 1</text>",
            ">f(x) = 2.5</text>",
            ">+2</text>",
            ">-0.5</text>",
        ] {
            assert!(html.contains(text), "{text} missing");
        }
        assert!(html.contains(">n/a</text>"));
        assert!(html.contains("&lt;hour&gt; = 7"));
        // Only a drawn step joins the next one.
        assert_eq!(html.matches("class=\"connector\"").count(), 1);
        assert_clean(&html);
        assert_geometry_finite(&html);

        let no_total = waterfall("row", 1.0, &steps, f64::NAN);
        assert!(!no_total.contains("class=\"total\""));
    }

    #[test]
    fn scatter_has_a_zero_line_and_colours_only_when_given() {
        let points = [
            (1.0, -0.5, Some(0.0)),
            (2.0, 0.25, None),
            (3.0, 1.0, Some(1.0)),
            (f64::NAN, 1.0, Some(1.0)),
            (4.0, f64::INFINITY, None),
        ];
        let html = scatter("temp", "temp", "SHAP value for temp", &points);
        let drawn = dots(&html, "dot");
        assert_eq!(drawn.len(), 3);
        let mut by_x = drawn.clone();
        by_x.sort_by(|a, b| a.0.total_cmp(&b.0));
        let colours: Vec<&str> = by_x.iter().map(|p| p.2.as_str()).collect();
        assert_eq!(colours, [NEGATIVE_COLOUR, NO_VALUE_COLOUR, POSITIVE_COLOUR]);
        // y grows upwards: the zero line lies between -0.5 and 0.25.
        let zero = attrs(&html, "line", "zero", "y1")[0];
        let mut ys: Vec<f64> = drawn.iter().map(|p| p.1).collect();
        ys.sort_by(f64::total_cmp);
        assert!(
            ys[0] < ys[1] && ys[1] < zero && zero < ys[2],
            "{ys:?} {zero}"
        );
        assert!(html.contains(">SHAP value for temp</text>"));
        assert!(html.contains("rotate(-90"));
        assert!(html.contains("feature value: low"));
        assert_geometry_finite(&html);

        let plain = scatter("t", "x", "y", &[(1.0, 1.0, None), (2.0, 3.0, None)]);
        assert!(dots(&plain, "dot").iter().all(|p| p.2 == NEGATIVE_COLOUR));
        assert!(!plain.contains("class=\"legend\""));

        let many: Vec<(f64, f64, Option<f64>)> = (0..10_000)
            .map(|i| (i as f64, (i % 13) as f64, None))
            .collect();
        assert_eq!(
            dots(&scatter("t", "x", "y", &many), "dot").len(),
            MAX_SCATTER_POINTS
        );
    }

    #[test]
    fn category_scatter_keeps_points_in_their_band() {
        let categories = labels(3);
        let points = [
            (0, 1.0),
            (0, 1.0),
            (0, 1.0),
            (2, -1.0),
            (7, 0.0),
            (1, f64::NAN),
        ];
        let html = category_scatter("city", "SHAP value", &categories, &points);
        let drawn = dots(&html, "dot");
        assert_eq!(drawn.len(), 4, "out of range and NaN points are skipped");
        let means = attrs(&html, "line", "mean", "x1");
        assert_eq!(means.len(), 2, "one mean per category with points");
        let (first, third): (Vec<_>, Vec<_>) = drawn.iter().partition(|p| p.1 < drawn[3].1);
        assert_eq!((first.len(), third.len()), (3, 1));
        // Equal values in a category are spread sideways around its centre.
        let xs: Vec<f64> = first.iter().map(|p| p.0).collect();
        assert!(xs[0] != xs[1] && xs[1] != xs[2] && xs[0] != xs[2], "{xs:?}");
        assert!(xs.iter().all(|&x| x > means[0] - 20.0 && x < third[0].0));
        assert!(html.contains(">b0</text>") && html.contains(">b2</text>"));
        assert!(html.contains("<title>b0: mean 1 over 3 rows</title>"));
        assert_clean(&html);
        assert_geometry_finite(&html);
    }

    #[test]
    fn curves_draw_ice_lines_under_a_thick_average() {
        let grid = [1.0, 2.0, 3.0, f64::NAN];
        let ice = vec![vec![0.0, 1.0, 2.0, 9.0], vec![1.0, f64::NAN, 3.0, 9.0]];
        let html = curves(
            "temp",
            "prediction",
            XAxis::Numbers(&grid),
            &[0.5, 1.0, 2.5],
            &ice,
        );
        assert!(html.contains("<g class=\"ice\""));
        let ice_group = &html[html.find("<g class=\"ice\"").unwrap()..];
        let ice_group = &ice_group[..ice_group.find("</g>").unwrap()];
        assert_eq!(ice_group.matches("<path ").count(), 2);
        // The NaN breaks the second curve into a dot and a point: "M…h0M…".
        assert!(ice_group.contains("h0M"), "{ice_group}");
        assert_eq!(html.matches("<path class=\"average\"").count(), 1);
        assert_eq!(attrs(&html, "circle", "avg", "cx").len(), 3);
        // 9.0 sits at the NaN grid value, so it is not on the axis.
        assert!(!html.contains(">9</text>") && !html.contains(">8</text>"));
        assert!(html.contains("individual rows (ICE)"));
        assert_clean(&html);
        assert_geometry_finite(&html);

        let names = vec!["<a>".to_owned(), "b".to_owned()];
        let html = curves(
            "city",
            "",
            XAxis::Labels(&names),
            &[1.0, 2.0],
            &[vec![0.5, 2.5]],
        );
        assert!(html.contains(">&lt;a&gt;</text>"));
        let ice_group = &html[html.find("<g class=\"ice\"").unwrap()..];
        let ice = &ice_group[ice_group.find("<path d=\"").unwrap() + 9..];
        let ice = &ice[..ice.find('"').unwrap()];
        let average = &html[html.find("<path class=\"average\" d=\"").unwrap() + 28..];
        let average = &average[..average.find('"').unwrap()];
        for d in [ice, average] {
            assert!(!d.contains('L'), "no lines between categories: {d}");
            assert_eq!(d.matches('h').count(), 2, "a tick per category: {d}");
        }
        assert_eq!(attrs(&html, "circle", "avg", "cx").len(), 2);
        assert_geometry_finite(&html);
    }

    #[test]
    fn bar_chart_with_error_draws_whiskers() {
        let html = bar_chart_with_error(
            "importance",
            &["a".into(), "b".into(), "c".into()],
            &[0.4, 0.1, f64::NAN],
            &[0.1, f64::NAN],
        );
        assert_eq!(html.matches("<path class=\"err\"").count(), 1);
        assert!(html.contains(">0.4 ± 0.1</text>"));
        assert!(html.contains(">0.1</text>"));
        assert!(html.contains(">n/a</text>"));
        // The whisker spans 0.3..0.5 on the bars' scale.
        let w = attrs(&html, "rect", "bar", "width");
        let x = attrs(&html, "rect", "bar", "x")[0];
        let d = &html[html.find("class=\"err\" d=\"M").unwrap() + 16..];
        let from: f64 = d[..d.find(' ').unwrap()].parse().unwrap();
        assert!((from - x - w[0] * 0.75).abs() < 0.2, "{from} {x} {w:?}");
        assert_clean(&html);
        assert_geometry_finite(&html);
    }

    #[test]
    fn callout_and_brand_are_escaped() {
        assert_eq!(
            callout(Tone::Warn, "Note:", "<b>"),
            "<div class=\"callout warn\"><strong>Note:</strong> &lt;b&gt;</div>"
        );
        assert_eq!(
            callout(Tone::Good, "", "ok"),
            "<div class=\"callout good\">ok</div>"
        );
        let mut page = Page::new("t", "");
        assert!(page.render().contains("<div class=\"brand\">kiln</div>"));
        page.brand("kiln <monitor>");
        assert!(
            page.render()
                .contains("<div class=\"brand\">kiln &lt;monitor&gt;</div>")
        );
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
            bar_chart_with_error("b", none, &[], &[]),
            beeswarm("s", &[]),
            beeswarm("s", &[bee("a", &[]), bee("b", &[(f64::NAN, Some(1.0))])]),
            waterfall("w", 1.0, &[], 1.0),
            waterfall("w", f64::NAN, &[("a".into(), 1.0)], 2.0),
            scatter("s", "x", "y", &[]),
            scatter(
                "s",
                "x",
                "y",
                &[(f64::NAN, 1.0, None), (1.0, f64::INFINITY, None)],
            ),
            category_scatter("c", "y", none, &[(0, 1.0)]),
            category_scatter("c", "y", &labels(2), &[]),
            curves("c", "y", XAxis::Numbers(&[]), &[1.0], &[vec![1.0]]),
            curves("c", "y", XAxis::Numbers(&[f64::NAN]), &[1.0], &[]),
            curves("c", "y", XAxis::Labels(&labels(2)), &[f64::NAN], &[vec![]]),
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
            let steps: Vec<(String, f64)> =
                names.iter().cloned().zip(values.iter().copied()).collect();
            let points: Vec<(f64, Option<f64>)> = values.iter().map(|&v| (v, Some(v))).collect();
            all.extend([
                bar_chart_with_error("b", &names, values, values),
                beeswarm("s", &[bee("a", &points), bee("b", &[])]),
                waterfall("w", values[0], &steps, *values.last().unwrap()),
                waterfall("w", 0.0, &steps, inf),
                scatter(
                    "s",
                    "x",
                    "y",
                    &values
                        .iter()
                        .map(|&v| (v, v, Some(v)))
                        .chain(values.iter().map(|&v| (v, 0.0, None)))
                        .collect::<Vec<_>>(),
                ),
                category_scatter(
                    "c",
                    "y",
                    &names,
                    &values.iter().copied().enumerate().collect::<Vec<_>>(),
                ),
                curves("c", "y", XAxis::Numbers(values), values, &[values.to_vec()]),
                curves("c", "y", XAxis::Numbers(values), &[1.0; 20], &[]),
                curves("c", "y", XAxis::Labels(&names), values, &[values.to_vec()]),
            ]);
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
