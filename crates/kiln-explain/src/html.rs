//! The HTML page of an [`Explanation`](crate::report::Explanation).

use crate::report::Explanation;

/// A self-contained HTML page for `e`.
pub fn page(e: &Explanation) -> String {
    kiln_html::Page::new(&format!("Explanation: {}", e.model), "").render()
}
