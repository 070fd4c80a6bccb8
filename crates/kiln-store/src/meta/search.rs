//! Run search: compiles MLflow's `filter_string` and `order_by` (the body of
//! `POST /api/2.0/mlflow/runs/search`) into SQL fragments over `runs r`.
//!
//! The grammar and its quirks follow MLflow's `SearchUtils` (a conjunction of
//! comparisons, `AND` in any case, no `OR` and no parentheses), and the SQL
//! follows its SQLAlchemy store: runs missing an ordering key sort last, NaN
//! metrics sort after numbers but before missing ones, and the tie-breakers
//! are `start_time DESC, run_id ASC`. Every value, key included, is bound to a
//! `$N` placeholder, so the fragments are the same on SQLite and PostgreSQL.
//!
//! Architecture Invariant: the SQL text depends only on the shape of the
//! query, never on a user's string; user text only ever reaches [`Bind`]s.
//!
//! `LIKE` must be case-sensitive, as on PostgreSQL. SQLite's is not unless
//! the connection runs `PRAGMA case_sensitive_like = ON` (MLflow sets it too);
//! `ILIKE` is `LOWER(x) LIKE LOWER($n)`, which is what SQLAlchemy emits for
//! MLflow on SQLite. Patterns are passed through as MLflow does: `%` and `_`
//! are wildcards and there is no `ESCAPE` clause.

use std::collections::HashSet;
use std::fmt::Write as _;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Float(f64),
    Int(i64),
}

/// SQL pieces for `SELECT ... FROM runs r WHERE <my conditions> AND
/// <conditions...> ORDER BY <order_by...>`.
///
/// The fragments use scalar subqueries in `ORDER BY`, so the query they go
/// into must not be `SELECT DISTINCT` (PostgreSQL would want them in the
/// select list); they never multiply rows, so it need not be.
#[derive(Debug, Clone, Default)]
pub struct CompiledSearch {
    /// `LEFT JOIN …` clauses to put after `FROM runs r` (one per metric
    /// ordered by: a join is cheaper than a subquery per run).
    pub joins: Vec<String>,
    /// Boolean SQL expressions over alias `r`, to be ANDed.
    pub conditions: Vec<String>,
    /// ORDER BY terms, complete (including tie-breakers r.start_time DESC, r.id ASC at the end).
    pub order_by: Vec<String>,
    /// Values for placeholders `$first_bind`, `$first_bind+1`, ... in order of appearance.
    pub binds: Vec<Bind>,
}

/// A filter or order_by MLflow would reject, with MLflow-like message text (e.g.
/// "Invalid clause(s) in filter string: ..." / "Invalid order_by clause ...").
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

/// Compiles a run search. Placeholders are numbered from `first_bind`:
/// first those of the conditions, then those of the ORDER BY terms.
pub fn compile_run_search(
    filter: &str,
    order_by: &[String],
    first_bind: usize,
) -> Result<CompiledSearch, SearchError> {
    let clauses = parse_filter(filter)?;
    let orders = parse_order_bys(order_by)?;
    let mut sql = Builder {
        next: first_bind,
        binds: Vec::new(),
        joins: Vec::new(),
    };
    let conditions = clauses.iter().map(|c| sql.condition(c)).collect();
    let mut terms = Vec::new();
    for order in &orders {
        sql.order_terms(order, &mut terms);
    }
    if !orders
        .iter()
        .any(|o| o.field == Field::Attr(Attr::StartTime))
    {
        terms.push("r.start_time DESC".to_string());
    }
    terms.push("r.id ASC".to_string());
    Ok(CompiledSearch {
        joins: sql.joins,
        conditions,
        order_by: terms,
        binds: sql.binds,
    })
}

// ---------------------------------------------------------------------------
// What a search is made of.

/// Something a run can be filtered or ordered on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Field {
    Metric(String),
    Param(String),
    Tag(String),
    Attr(Attr),
    Dataset(DatasetKey),
}

impl Field {
    /// MLflow's name for the entity type, as its messages spell it.
    fn entity_name(&self) -> &'static str {
        match self {
            Self::Metric(_) => "metric",
            Self::Param(_) => "parameter",
            Self::Tag(_) => "tag",
            Self::Attr(_) => "attribute",
            Self::Dataset(_) => "dataset",
        }
    }
}

/// A run attribute, after MLflow's aliases (`created`, `run name`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Attr {
    RunId,
    RunName,
    UserId,
    Status,
    StartTime,
    EndTime,
    ArtifactUri,
}

/// Attribute keys MLflow accepts in a filter (`RunInfo`'s searchable
/// attributes and their aliases), sorted.
const FILTER_ATTRIBUTE_KEYS: &[&str] = &[
    "Created",
    "Run Name",
    "Run name",
    "artifact_uri",
    "created",
    "end_time",
    "run name",
    "run_id",
    "run_name",
    "start_time",
    "status",
    "user_id",
];

/// Attribute keys MLflow accepts in `order_by`: the same, less the spellings
/// of `run name`.
const ORDER_ATTRIBUTE_KEYS: &[&str] = &[
    "Created",
    "artifact_uri",
    "created",
    "end_time",
    "run_id",
    "run_name",
    "start_time",
    "status",
    "user_id",
];

impl Attr {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "run_id" => Self::RunId,
            "run_name" | "run name" | "Run name" | "Run Name" => Self::RunName,
            "user_id" => Self::UserId,
            "status" => Self::Status,
            "start_time" | "created" | "Created" => Self::StartTime,
            "end_time" => Self::EndTime,
            "artifact_uri" => Self::ArtifactUri,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Self::RunId => "r.id",
            Self::RunName => "r.name",
            Self::UserId => "r.author",
            Self::Status => "r.status",
            Self::StartTime => "r.start_time",
            Self::EndTime => "r.end_time",
            Self::ArtifactUri => "r.artifact_uri",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Self::StartTime | Self::EndTime)
    }

    fn is_nullable(self) -> bool {
        matches!(self, Self::StartTime | Self::EndTime | Self::ArtifactUri)
    }
}

/// A field of the datasets a run read; MLflow's `context` is kiln's `role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DatasetKey {
    Name,
    Digest,
    Context,
}

impl DatasetKey {
    fn column(self) -> &'static str {
        match self {
            Self::Name => "ri.name",
            Self::Digest => "ri.digest",
            Self::Context => "ri.role",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Op {
    /// Reads a comparator as MLflow does after upper-casing it. Operators it
    /// tokenises but never accepts (`==`, `<>`, `NOT LIKE`, `RLIKE`, ...)
    /// give `None`.
    fn from_mlflow(upper: &str) -> Option<Self> {
        Some(match upper {
            "=" => Self::Eq,
            "!=" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            "LIKE" => Self::Like,
            "ILIKE" => Self::ILike,
            "IN" => Self::In,
            "NOT IN" => Self::NotIn,
            "IS NULL" => Self::IsNull,
            "IS NOT NULL" => Self::IsNotNull,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Like => "LIKE",
            Self::ILike => "ILIKE",
            Self::In => "IN",
            Self::NotIn => "NOT IN",
            Self::IsNull => "IS NULL",
            Self::IsNotNull => "IS NOT NULL",
        }
    }
}

/// Comparators per entity type, in MLflow's spelling (for messages).
const NUMERIC_OPS: &[&str] = &[">", ">=", "!=", "=", "<", "<="];
const KEY_VALUE_OPS: &[&str] = &["!=", "=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"];
const STRING_OPS: &[&str] = &["!=", "=", "LIKE", "ILIKE", "IN", "NOT IN"];

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Int(i64),
    Float(f64),
    List(Vec<String>),
    /// `IS NULL` and `IS NOT NULL` take none.
    None,
}

/// One comparison of a filter.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    field: Field,
    op: Op,
    value: Value,
}

/// One `order_by` entry.
#[derive(Debug, Clone, PartialEq)]
struct Order {
    field: Field,
    ascending: bool,
}

fn err(message: impl Into<String>) -> SearchError {
    SearchError(message.into())
}

/// Formats like a Python list or set of strings, as MLflow's messages do.
fn py_strings(items: &[&str], open: char, close: char) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("{open}{}{close}", inner.join(", "))
}

// ---------------------------------------------------------------------------
// Lexing.

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A cursor over a filter or order_by string.
struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn at_end(&self) -> bool {
        self.pos == self.src.len()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        self.pos > start
    }

    fn word(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_word) {
            self.bump();
        }
        (self.pos > start).then(|| &self.src[start..self.pos])
    }

    /// Consumes `keyword` (any case) when it is a whole word here.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let save = self.pos;
        match self.word() {
            Some(w) if w.eq_ignore_ascii_case(keyword) => true,
            _ => {
                self.pos = save;
                false
            }
        }
    }

    /// A literal quoted with `q`, lexed as sqlparse does and kept raw, as
    /// MLflow keeps it: a doubled quote (and, unless `q` is a backtick, a
    /// backslash-quote) does not end it, but when that leaves the literal
    /// unterminated it ends at the last such quote instead (regex
    /// backtracking). `None` when there is no closing quote at all.
    fn quoted(&mut self, q: char) -> Option<&'a str> {
        let start = self.pos;
        let mut chars = self.src[start..].char_indices().skip(1).peekable();
        let mut fallback = None;
        while let Some((i, c)) = chars.next() {
            if c == '\\' && q != '`' && chars.peek().is_some_and(|&(_, n)| n == q) {
                let (j, _) = chars.next().unwrap_or_default();
                fallback = Some(start + j);
            } else if c == q {
                if chars.peek().is_some_and(|&(_, n)| n == q) {
                    fallback = Some(start + i);
                    chars.next();
                } else {
                    self.pos = start + i + 1;
                    return Some(&self.src[start + 1..start + i]);
                }
            }
        }
        let end = fallback?;
        self.pos = end + 1;
        Some(&self.src[start + 1..end])
    }

    /// `entity.key` or a lone `key`; each may be quoted. Returns the entity
    /// (if any) and the key with their quotes removed. An entity may be in
    /// double quotes only where `dq_entity` (MLflow takes `"tags".a` in
    /// `order_by`, whose quotes `shlex` removes, but not in a filter).
    fn identifier(&mut self, dq_entity: bool) -> Option<(Option<&'a str>, &'a str)> {
        let save = self.pos;
        let first = match self.peek()? {
            '`' => self.quoted('`'),
            '"' if dq_entity => self.quoted('"').filter(|_| self.peek() == Some('.')),
            c if is_word(c) => self.word(),
            _ => None,
        };
        let Some(first) = first else {
            self.pos = save;
            return None;
        };
        if self.peek() != Some('.') {
            return Some((None, first));
        }
        self.bump();
        let key = match self.peek() {
            Some(q @ ('`' | '"' | '\'')) => self.quoted(q),
            Some(c) if is_word(c) => {
                let start = self.pos;
                self.word();
                while self.peek() == Some('.') && self.peek2().is_some_and(is_word) {
                    self.bump();
                    self.word();
                }
                Some(&self.src[start..self.pos])
            }
            _ => None,
        };
        match key {
            Some(key) => Some((Some(first), key)),
            None => {
                self.pos = save;
                None
            }
        }
    }

    /// A number as sqlparse lexes one (`-?`, digits with an optional
    /// fraction, an optional `E-?digits`); `true` when it is an integer.
    /// Fails when a word character follows, as in `1AND`.
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.pos;
        let digits = |c: &mut Self| {
            let s = c.pos;
            while c.peek().is_some_and(|c| c.is_ascii_digit()) {
                c.bump();
            }
            c.pos - s
        };
        if self.peek() == Some('-') {
            self.bump();
        }
        let whole = digits(self);
        let mut integer = true;
        if self.peek() == Some('.') {
            self.bump();
            integer = false;
            if digits(self) == 0 && whole == 0 {
                self.pos = start;
                return None;
            }
        } else if whole == 0 {
            self.pos = start;
            return None;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mantissa_end = self.pos;
            self.bump();
            if self.peek() == Some('-') {
                self.bump();
            }
            if digits(self) == 0 {
                self.pos = mantissa_end;
            } else {
                integer = false;
            }
        }
        if self.peek().is_some_and(|c| is_word(c) || c == '.') {
            self.pos = start;
            return None;
        }
        Some((&self.src[start..self.pos], integer))
    }
}

// ---------------------------------------------------------------------------
// Parsing the filter.

/// What stands right of a comparator, before it is checked against the
/// field.
enum RawValue<'a> {
    /// A quoted string (single or double quotes), unquoted.
    Quoted(&'a str),
    Number(&'a str, bool),
    List(Vec<String>),
    /// An unquoted word, which MLflow never accepts as a value.
    Bare,
    None,
}

fn parse_filter(filter: &str) -> Result<Vec<Clause>, SearchError> {
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    if filter.trim().is_empty() {
        return Err(err(format!(
            "Invalid filter '{filter}'. Could not be parsed."
        )));
    }
    let mut c = Cursor::new(filter);
    let mut clauses = Vec::new();
    loop {
        c.skip_ws();
        if c.at_end() {
            break;
        }
        // MLflow also takes leading, trailing, repeated and missing ANDs.
        if c.eat_keyword("AND") {
            continue;
        }
        clauses.push(comparison(&mut c)?);
    }
    Ok(clauses)
}

fn comparison(c: &mut Cursor<'_>) -> Result<Clause, SearchError> {
    let start = c.pos;
    let invalid = |c: &Cursor<'_>| {
        err(format!(
            "Invalid clause(s) in filter string: '{}'",
            c.src[start..].trim_end()
        ))
    };
    let (entity, key) = c.identifier(false).ok_or_else(|| invalid(c))?;
    let field = resolve_field(entity, key, FILTER_ATTRIBUTE_KEYS)?;
    c.skip_ws();

    let op_raw = if c.peek().is_some_and(|ch| "<>=~!".contains(ch)) {
        let s = c.pos;
        while c.peek().is_some_and(|ch| "<>=~!".contains(ch)) {
            c.bump();
        }
        c.src[s..c.pos].to_string()
    } else {
        let first = c.word().ok_or_else(|| invalid(c))?.to_ascii_uppercase();
        match first.as_str() {
            "NOT" => {
                c.skip_ws();
                let second = c.word().ok_or_else(|| invalid(c))?.to_ascii_uppercase();
                format!("NOT {second}")
            }
            "IS" => {
                c.skip_ws();
                if c.eat_keyword("NULL") {
                    "IS NULL".to_string()
                } else if c.eat_keyword("NOT") && {
                    c.skip_ws();
                    c.eat_keyword("NULL")
                } {
                    "IS NOT NULL".to_string()
                } else {
                    return Err(invalid(c));
                }
            }
            _ => first,
        }
    };
    let op_upper = op_raw.to_ascii_uppercase();

    c.skip_ws();
    let value_start = c.pos;
    let value = match op_upper.as_str() {
        "IS NULL" | "IS NOT NULL" => RawValue::None,
        "IN" | "NOT IN" if c.peek() != Some('(') => return Err(invalid(c)),
        _ => match c.peek() {
            Some(q @ ('\'' | '"')) => RawValue::Quoted(c.quoted(q).ok_or_else(|| invalid(c))?),
            Some('(') => RawValue::List(list(c).ok_or_else(|| invalid(c))??),
            Some(_) => match c.number() {
                Some((text, integer)) => RawValue::Number(text, integer),
                None if c.word().is_some() => RawValue::Bare,
                None => return Err(invalid(c)),
            },
            None => return Err(invalid(c)),
        },
    };
    let value_text = c.src[value_start..c.pos].trim_end();
    check_clause(field, key, &op_upper, value, value_text)
}

/// The list right of `IN`: Python string literals (single or double quotes,
/// backslash escapes, adjacent literals concatenated), comma separated, as
/// MLflow reads them with `ast.literal_eval`. `None` when the parenthesis is
/// not closed.
fn list(c: &mut Cursor<'_>) -> Option<Result<Vec<String>, SearchError>> {
    let start = c.pos;
    c.bump();
    let mut items = Vec::new();
    let mut after_item = false;
    loop {
        c.skip_ws();
        match c.peek()? {
            ')' => {
                c.bump();
                break;
            }
            ',' if after_item => {
                c.bump();
                after_item = false;
            }
            '\'' | '"' if !after_item => {
                let mut item = String::new();
                while let Some(q) = c.peek().filter(|&ch| ch == '\'' || ch == '"') {
                    item.push_str(&python_string(c, q)?);
                    c.skip_ws();
                }
                items.push(item);
                after_item = true;
            }
            other => {
                // Skip to the closing parenthesis to quote the whole list.
                let kind_error = is_word(other) || other == '-' || other == '.';
                while c.peek()? != ')' {
                    if let Some(q @ ('\'' | '"')) = c.peek() {
                        python_string(c, q)?;
                    } else {
                        c.bump();
                    }
                }
                c.bump();
                let text = &c.src[start..c.pos];
                return Some(Err(err(if kind_error {
                    format!(
                        "While parsing a list in the query, expected string value, punctuation, \
                         or whitespace, but got different type in list: {text}"
                    )
                } else {
                    "While parsing a list in the query, expected a non-empty list of string \
                     values, but got ill-formed list."
                        .to_string()
                })));
            }
        }
    }
    if items.is_empty() {
        return Some(Err(err(
            "While parsing a list in the query, expected a non-empty list of string values, \
             but got empty list",
        )));
    }
    Some(Ok(items))
}

/// One Python string literal with its common escapes; `None` when it is not
/// terminated.
fn python_string(c: &mut Cursor<'_>, q: char) -> Option<String> {
    let save = c.pos;
    c.bump();
    let mut out = String::new();
    loop {
        let Some(ch) = c.bump() else {
            c.pos = save;
            return None;
        };
        match ch {
            ch if ch == q => return Some(out),
            '\\' => {
                let Some(e) = c.bump() else {
                    c.pos = save;
                    return None;
                };
                match e {
                    '\\' | '\'' | '"' => out.push(e),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    '\n' => {}
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            other => out.push(other),
        }
    }
}

/// Resolves `entity.key` with MLflow's aliases, rejecting unknown entities
/// and attribute or dataset keys.
fn resolve_field(
    entity: Option<&str>,
    key: &str,
    attribute_keys: &[&str],
) -> Result<Field, SearchError> {
    let entity = entity.unwrap_or("attribute");
    // MLflow maps the attribute aliases before it looks at the entity type,
    // so `metrics.created` is the metric `start_time`; do the same.
    let aliased = match key {
        "created" | "Created" => "start_time",
        "run name" | "Run name" | "Run Name" => "run_name",
        other => other,
    };
    Ok(match entity {
        "metric" | "metrics" => Field::Metric(aliased.to_string()),
        "parameter" | "parameters" | "param" | "params" => Field::Param(aliased.to_string()),
        "tag" | "tags" => Field::Tag(aliased.to_string()),
        "attribute" | "attributes" | "attr" | "run" => {
            match Attr::from_key(key).filter(|_| attribute_keys.contains(&key)) {
                Some(attr) => Field::Attr(attr),
                None => {
                    return Err(err(format!(
                        "Invalid attribute key '{key}' specified. Valid keys are '{}'",
                        py_strings(attribute_keys, '{', '}')
                    )));
                }
            }
        }
        "dataset" | "datasets" => Field::Dataset(match key {
            "name" => DatasetKey::Name,
            "digest" => DatasetKey::Digest,
            "context" => DatasetKey::Context,
            _ => {
                return Err(err(format!(
                    "Invalid dataset key '{key}' specified. Valid keys are \
                     '{{'context', 'digest', 'name'}}'"
                )));
            }
        }),
        other => {
            return Err(err(format!(
                "Invalid entity type '{other}'. Valid values are \
                 ['metric', 'parameter', 'tag', 'attribute', 'dataset']"
            )));
        }
    })
}

/// Checks a comparison's value and comparator against its field, in
/// MLflow's order: the value's type first, then the comparator.
fn check_clause(
    field: Field,
    key: &str,
    op_upper: &str,
    value: RawValue<'_>,
    value_text: &str,
) -> Result<Clause, SearchError> {
    let null_op = matches!(op_upper, "IS NULL" | "IS NOT NULL");
    if null_op && !matches!(field, Field::Param(_) | Field::Tag(_)) {
        return Err(err(format!(
            "IS NULL / IS NOT NULL is only supported for tags and params, not for '{}' '{key}'",
            field.entity_name()
        )));
    }
    let quoted_expected = |what: &str| {
        err(format!(
            "Expected a quoted string value for {what}. Got value {value_text}"
        ))
    };
    let (value, ops) = match &field {
        Field::Metric(_) => match value {
            RawValue::Number(text, _) => (Value::Float(parse_f64(text)?), NUMERIC_OPS),
            _ => {
                return Err(err(format!(
                    "Expected numeric value type for metric. Found {value_text}"
                )));
            }
        },
        Field::Param(_) | Field::Tag(_) => match value {
            RawValue::Quoted(s) => (Value::Text(s.to_string()), KEY_VALUE_OPS),
            RawValue::None => (Value::None, KEY_VALUE_OPS),
            _ => {
                let what = format!("{} (e.g. 'my-value')", field.entity_name());
                return Err(quoted_expected(&what));
            }
        },
        Field::Attr(attr) if attr.is_numeric() => match value {
            RawValue::Number(text, true) => match text.parse::<i64>() {
                Ok(n) => (Value::Int(n), NUMERIC_OPS),
                // Python's integers are unbounded; compare as a float.
                Err(_) => (Value::Float(parse_f64(text)?), NUMERIC_OPS),
            },
            RawValue::Number(text, false) => (Value::Float(parse_f64(text)?), NUMERIC_OPS),
            _ => {
                return Err(err(format!(
                    "Expected numeric value type for numeric attribute: {key}. Found {value_text}"
                )));
            }
        },
        Field::Attr(attr) => match value {
            RawValue::Quoted(s) => (Value::Text(s.to_string()), STRING_OPS),
            RawValue::List(items) if *attr == Attr::RunId => (Value::List(items), STRING_OPS),
            RawValue::List(_) => {
                return Err(err(
                    "Only ['run_id'] attributes support comparison with a list of quoted string \
                     values.",
                ));
            }
            _ => return Err(quoted_expected("attributes")),
        },
        Field::Dataset(_) => match value {
            RawValue::Quoted(s) => (Value::Text(s.to_string()), STRING_OPS),
            RawValue::List(items) => (Value::List(items), STRING_OPS),
            _ => return Err(quoted_expected("dataset attributes")),
        },
    };
    let op = Op::from_mlflow(op_upper)
        .filter(|_| ops.contains(&op_upper))
        .ok_or_else(|| {
            err(format!(
                "Invalid comparator '{op_upper}' not one of '{}'",
                py_strings(ops, '{', '}')
            ))
        })?;
    // MLflow parses `run_id = ('a', 'b')` but cannot run it; a list goes
    // with IN and NOT IN only, and they only with a list.
    if matches!(value, Value::List(_)) != matches!(op, Op::In | Op::NotIn) {
        return Err(err(format!(
            "Invalid comparator '{op_upper}' for value {value_text}: lists go with IN and NOT IN"
        )));
    }
    Ok(Clause { field, op, value })
}

fn parse_f64(text: &str) -> Result<f64, SearchError> {
    text.parse()
        .map_err(|_| err(format!("Expected numeric value. Found {text}")))
}

// ---------------------------------------------------------------------------
// Parsing order_by.

fn parse_order_bys(order_by: &[String]) -> Result<Vec<Order>, SearchError> {
    let orders = order_by
        .iter()
        .map(|s| parse_order_by(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    for order in &orders {
        if let Field::Dataset(_) = order.field {
            return Err(err("Invalid identifier type 'dataset'"));
        }
        if !seen.insert(&order.field) {
            let list: Vec<&str> = order_by.iter().map(String::as_str).collect();
            return Err(err(format!(
                "`order_by` contains duplicate fields: {}",
                py_strings(&list, '[', ']')
            )));
        }
    }
    Ok(orders)
}

/// `identifier [ASC|DESC]`, with nothing around it (MLflow rejects even
/// surrounding whitespace).
fn parse_order_by(s: &str) -> Result<Order, SearchError> {
    let unparsable = || {
        err(format!(
            "Invalid order_by clause '{s}'. Could not be parsed."
        ))
    };
    let mut c = Cursor::new(s);
    let (entity, key) = c.identifier(true).ok_or_else(unparsable)?;
    let mut ascending = true;
    if c.at_end() {
        // MLflow unquotes (with `shlex`) only an entry that has a direction.
        if let Some(entity) = entity.filter(|_| s.starts_with('"')) {
            return resolve_field(Some(&format!("\"{entity}\"")), key, ORDER_ATTRIBUTE_KEYS)
                .map(|field| Order { field, ascending });
        }
    } else {
        if !c.skip_ws() {
            return Err(unparsable());
        }
        let word = c.word().ok_or_else(unparsable)?;
        if !c.at_end() {
            return Err(unparsable());
        }
        if word.eq_ignore_ascii_case("desc") {
            ascending = false;
        } else if !word.eq_ignore_ascii_case("asc") {
            return Err(err(format!(
                "Invalid ordering key in order_by clause '{s}'."
            )));
        }
    }
    let field = resolve_field(entity, key, ORDER_ATTRIBUTE_KEYS)?;
    Ok(Order { field, ascending })
}

// ---------------------------------------------------------------------------
// Generating SQL.

struct Builder {
    next: usize,
    binds: Vec<Bind>,
    joins: Vec<String>,
}

impl Builder {
    /// Binds a value; returns its placeholder.
    fn bind(&mut self, value: Bind) -> String {
        let placeholder = format!("${}", self.next);
        self.next += 1;
        self.binds.push(value);
        placeholder
    }

    fn bind_value(&mut self, value: &Value) -> String {
        match value {
            Value::Text(s) => self.bind(Bind::Text(s.clone())),
            Value::Int(n) => self.bind(Bind::Int(*n)),
            Value::Float(x) => self.bind(Bind::Float(*x)),
            Value::List(items) => {
                let placeholders: Vec<String> = items
                    .iter()
                    .map(|s| self.bind(Bind::Text(s.clone())))
                    .collect();
                format!("({})", placeholders.join(", "))
            }
            Value::None => unreachable!("IS NULL and IS NOT NULL bind no value"),
        }
    }

    /// `column op value` for a string column.
    fn compare(&mut self, column: &str, op: Op, value: &Value) -> String {
        let rhs = self.bind_value(value);
        match op {
            // SQLAlchemy's `ilike` on SQLite; the same on PostgreSQL.
            Op::ILike => format!("LOWER({column}) LIKE LOWER({rhs})"),
            _ => format!("{column} {} {rhs}", op.sql()),
        }
    }

    /// A boolean expression over `r`. Metric filters select matching run ids
    /// through the `(key, value)` index; the others probe each candidate
    /// run's rows through the `(run_id, ...)` primary keys.
    fn condition(&mut self, clause: &Clause) -> String {
        let Clause { field, op, value } = clause;
        match field {
            Field::Metric(key) => {
                let key = self.bind(Bind::Text(key.clone()));
                let rhs = self.bind_value(value);
                // NaN is stored as value NULL, is_nan 1: it fails every
                // comparison but `!=`, as in MLflow.
                let test = if *op == Op::Ne {
                    format!("(lm.value <> {rhs} OR lm.is_nan = 1)")
                } else {
                    format!("lm.value {} {rhs}", op.sql())
                };
                format!(
                    "r.id IN (SELECT lm.run_id FROM latest_metrics lm \
                     WHERE lm.key = {key} AND {test})"
                )
            }
            Field::Param(key) | Field::Tag(key) => {
                let (table, alias) = match field {
                    Field::Param(_) => ("run_params", "rp"),
                    _ => ("run_tags", "rt"),
                };
                let key = self.bind(Bind::Text(key.clone()));
                let mut sql = format!(
                    "EXISTS (SELECT 1 FROM {table} {alias} \
                     WHERE {alias}.run_id = r.id AND {alias}.key = {key}"
                );
                match op {
                    Op::IsNull => sql.insert_str(0, "NOT "),
                    Op::IsNotNull => {}
                    _ => {
                        let test = self.compare(&format!("{alias}.value"), *op, value);
                        let _ = write!(sql, " AND {test}");
                    }
                }
                sql.push(')');
                sql
            }
            Field::Attr(attr) => self.compare(attr.column(), *op, value),
            Field::Dataset(key) => {
                let test = self.compare(key.column(), *op, value);
                format!("EXISTS (SELECT 1 FROM run_inputs ri WHERE ri.run_id = r.id AND {test})")
            }
        }
    }

    /// Appends the terms for one `order_by` entry: first a rank that puts
    /// missing values (and NaN metrics, just before them) last in either
    /// direction, then the value.
    fn order_terms(&mut self, order: &Order, terms: &mut Vec<String>) {
        let direction = if order.ascending { "ASC" } else { "DESC" };
        match &order.field {
            Field::Attr(attr) => {
                let column = attr.column();
                if attr.is_nullable() {
                    terms.push(format!("CASE WHEN {column} IS NULL THEN 1 ELSE 0 END"));
                }
                terms.push(format!("{column} {direction}"));
            }
            Field::Metric(key) => {
                let k = self.bind(Bind::Text(key.clone()));
                let alias = format!("om{}", self.joins.len());
                self.joins.push(format!(
                    "LEFT JOIN latest_metrics {alias} ON {alias}.run_id = r.id AND {alias}.key = {k}"
                ));
                // 0 a number, 1 NaN, 2 no such metric.
                terms.push(format!("COALESCE({alias}.is_nan, 2)"));
                terms.push(format!("{alias}.value {direction}"));
            }
            Field::Param(key) | Field::Tag(key) => {
                let (table, alias) = match order.field {
                    Field::Param(_) => ("run_params", "rp"),
                    _ => ("run_tags", "rt"),
                };
                let from =
                    format!("FROM {table} {alias} WHERE {alias}.run_id = r.id AND {alias}.key");
                let k = self.bind(Bind::Text(key.clone()));
                terms.push(format!(
                    "CASE WHEN EXISTS (SELECT 1 {from} = {k}) THEN 0 ELSE 1 END"
                ));
                let k = self.bind(Bind::Text(key.clone()));
                terms.push(format!("(SELECT {alias}.value {from} = {k}) {direction}"));
            }
            Field::Dataset(_) => unreachable!("rejected by parse_order_bys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::any::AnyPoolOptions;
    use sqlx::{AnyPool, AssertSqlSafe, Row};

    fn clause(field: Field, op: Op, value: Value) -> Clause {
        Clause { field, op, value }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    #[test]
    fn mlflow_spellings_parse_to_the_same_clauses() {
        let metric_gt =
            |key: &str, x: f64| clause(Field::Metric(key.into()), Op::Gt, Value::Float(x));
        let cases: Vec<(&str, Vec<Clause>)> = vec![
            ("", vec![]),
            ("metrics.acc > 0.9", vec![metric_gt("acc", 0.9)]),
            ("metric.acc>0.9", vec![metric_gt("acc", 0.9)]),
            ("`metrics`.`acc` > .5", vec![metric_gt("acc", 0.5)]),
            (
                "metrics.\"val acc\" > 1e-3",
                vec![metric_gt("val acc", 1e-3)],
            ),
            ("metrics.acc > -1", vec![metric_gt("acc", -1.0)]),
            (
                "tags.mlflow.runName = 'x' and params.lr like 'a%' AND param.b ILIKE \"B\"",
                vec![
                    clause(Field::Tag("mlflow.runName".into()), Op::Eq, text("x")),
                    clause(Field::Param("lr".into()), Op::Like, text("a%")),
                    clause(Field::Param("b".into()), Op::ILike, text("B")),
                ],
            ),
            // MLflow keeps a doubled quote as it is and tolerates stray ANDs.
            (
                "AND tags.`a b` != 'it''s' AND AND",
                vec![clause(Field::Tag("a b".into()), Op::Ne, text("it''s"))],
            ),
            (
                "parameters.lr IS NULL AND tags.t is not null",
                vec![
                    clause(Field::Param("lr".into()), Op::IsNull, Value::None),
                    clause(Field::Tag("t".into()), Op::IsNotNull, Value::None),
                ],
            ),
            (
                "status = 'FINISHED' AND attr.`Run Name` = 'n' AND run.user_id != 'u'",
                vec![
                    clause(Field::Attr(Attr::Status), Op::Eq, text("FINISHED")),
                    clause(Field::Attr(Attr::RunName), Op::Eq, text("n")),
                    clause(Field::Attr(Attr::UserId), Op::Ne, text("u")),
                ],
            ),
            (
                "attributes.created >= 5 AND end_time < 1.5",
                vec![
                    clause(Field::Attr(Attr::StartTime), Op::Ge, Value::Int(5)),
                    clause(Field::Attr(Attr::EndTime), Op::Lt, Value::Float(1.5)),
                ],
            ),
            (
                "attributes.run_id in ('a', \"b\",) AND run_id NOT IN ('c' 'd')",
                vec![
                    clause(
                        Field::Attr(Attr::RunId),
                        Op::In,
                        Value::List(vec!["a".into(), "b".into()]),
                    ),
                    clause(
                        Field::Attr(Attr::RunId),
                        Op::NotIn,
                        Value::List(vec!["cd".into()]),
                    ),
                ],
            ),
            (
                "datasets.context = 'train' AND dataset.digest IN ('x')",
                vec![
                    clause(Field::Dataset(DatasetKey::Context), Op::Eq, text("train")),
                    clause(
                        Field::Dataset(DatasetKey::Digest),
                        Op::In,
                        Value::List(vec!["x".into()]),
                    ),
                ],
            ),
        ];
        // MLflow maps the attribute aliases whatever the entity.
        assert_eq!(
            parse_filter("metrics.created > 1").unwrap(),
            [metric_gt("start_time", 1.0)]
        );
        assert_eq!(
            parse_order_by("\"tags\".`run name` DESC").unwrap(),
            Order {
                field: Field::Tag("run_name".into()),
                ascending: false
            }
        );
        for (filter, expected) in cases {
            let parsed = parse_filter(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
            assert_eq!(parsed, expected, "{filter:?}");
        }
    }

    #[test]
    fn bad_filters_are_rejected_with_mlflows_messages() {
        let cases = [
            ("foo.a = 'x'", "Invalid entity type 'foo'"),
            ("Metrics.a > 1", "Invalid entity type 'Metrics'"),
            (
                "attributes.lifecycle_stage = 'active'",
                "Invalid attribute key 'lifecycle_stage'",
            ),
            ("datasets.size = 'x'", "Invalid dataset key 'size'"),
            ("metrics.acc LIKE 1", "Invalid comparator 'LIKE'"),
            ("metrics.acc == 1", "Invalid comparator '=='"),
            ("params.lr > 'a'", "Invalid comparator '>'"),
            ("tags.t NOT LIKE 'a'", "Invalid comparator 'NOT LIKE'"),
            ("attributes.status > 'A'", "Invalid comparator '>'"),
            ("attributes.start_time LIKE 5", "Invalid comparator 'LIKE'"),
            ("datasets.name < 'x'", "Invalid comparator '<'"),
            ("metrics.acc IS NULL", "only supported for tags and params"),
            (
                "attributes.status IN ('A')",
                "Only ['run_id'] attributes support",
            ),
            (
                "params.lr IN ('a')",
                "Expected a quoted string value for parameter",
            ),
            (
                "attributes.run_id = ('a', 'b')",
                "lists go with IN and NOT IN",
            ),
            ("attributes.run_id IN ()", "but got empty list"),
            (
                "attributes.run_id IN (1, 2)",
                "got different type in list: (1, 2)",
            ),
            (
                "attributes.run_id IN 'a'",
                "Invalid clause(s) in filter string",
            ),
            (
                "tags.t = 'unterminated",
                "Invalid clause(s) in filter string: 'tags.t = 'unterminated'",
            ),
            (
                "attributes.run_id IN ('a'",
                "Invalid clause(s) in filter string",
            ),
            (
                "metrics.acc > 'x'",
                "Expected numeric value type for metric. Found 'x'",
            ),
            (
                "metrics.acc > \"1\"",
                "Expected numeric value type for metric. Found \"1\"",
            ),
            (
                "metrics.acc > abc",
                "Expected numeric value type for metric. Found abc",
            ),
            ("metrics.acc > 1AND tags.a = 'b'", "Found 1AND"),
            (
                "attributes.start_time > '5'",
                "Expected numeric value type for numeric attribute",
            ),
            (
                "params.lr = 0.1",
                "Expected a quoted string value for parameter",
            ),
            ("tags.a = 'x' OR tags.b = 'y'", "Invalid"),
            (
                "(tags.a = 'x')",
                "Invalid clause(s) in filter string: '(tags.a = 'x')'",
            ),
            ("tags.a = 'x';", "Invalid clause(s) in filter string"),
            (
                "metrics.acc >",
                "Invalid clause(s) in filter string: 'metrics.acc >'",
            ),
            ("metrics.acc", "Invalid clause(s) in filter string"),
            ("  ", "Invalid filter '  '. Could not be parsed."),
        ];
        for (filter, expected) in cases {
            match compile_run_search(filter, &[], 1) {
                Ok(c) => panic!("{filter:?} was accepted: {c:?}"),
                Err(e) => assert!(e.0.contains(expected), "{filter:?}: got `{e}`"),
            }
        }
    }

    #[test]
    fn bad_order_bys_are_rejected_with_mlflows_messages() {
        let cases: [(&[&str], &str); 10] = [
            (
                &["metrics.acc DOWN"],
                "Invalid ordering key in order_by clause",
            ),
            (&["metrics.acc DESC DESC"], "Could not be parsed"),
            (&["metrics.acc, params.lr"], "Could not be parsed"),
            (&[" metrics.acc"], "Could not be parsed"),
            (&[""], "Invalid order_by clause ''. Could not be parsed."),
            (&["foo.bar"], "Invalid entity type 'foo'"),
            (
                &["attributes.`run name`"],
                "Invalid attribute key 'run name'",
            ),
            (&["datasets.name"], "Invalid identifier type 'dataset'"),
            (
                &["created", "start_time DESC"],
                "`order_by` contains duplicate fields",
            ),
            // MLflow unquotes `"tags"` only when a direction follows.
            (&["\"tags\".acc"], "Invalid entity type '\"tags\"'"),
        ];
        for (order_by, expected) in cases {
            let order_by: Vec<String> = order_by.iter().map(|s| s.to_string()).collect();
            match compile_run_search("", &order_by, 1) {
                Ok(c) => panic!("{order_by:?} was accepted: {c:?}"),
                Err(e) => assert!(e.0.contains(expected), "{order_by:?}: got `{e}`"),
            }
        }
    }

    #[test]
    fn placeholders_count_from_first_bind_through_conditions_then_order_by() {
        let c = compile_run_search(
            "metrics.acc > 0.5 AND attributes.run_id IN ('a', 'b') AND start_time > 7",
            &["params.lr DESC".to_string()],
            3,
        )
        .unwrap();
        assert_eq!(
            c.binds,
            [
                Bind::Text("acc".into()),
                Bind::Float(0.5),
                Bind::Text("a".into()),
                Bind::Text("b".into()),
                Bind::Int(7),
                Bind::Text("lr".into()),
                Bind::Text("lr".into()),
            ]
        );
        assert_eq!(
            c.conditions[0],
            "r.id IN (SELECT lm.run_id FROM latest_metrics lm WHERE lm.key = $3 AND lm.value > $4)"
        );
        assert_eq!(c.conditions[1], "r.id IN ($5, $6)");
        assert_eq!(c.conditions[2], "r.start_time > $7");
        assert!(c.order_by[0].contains("rp.key = $8"), "{:?}", c.order_by);
        assert!(c.order_by[1].contains("rp.key = $9"), "{:?}", c.order_by);
        assert_eq!(c.order_by[2..], ["r.start_time DESC", "r.id ASC"]);

        let by_start = compile_run_search("", &["created".to_string()], 1).unwrap();
        assert_eq!(
            by_start.order_by,
            [
                "CASE WHEN r.start_time IS NULL THEN 1 ELSE 0 END",
                "r.start_time ASC",
                "r.id ASC"
            ]
        );
    }

    // --- The compiled SQL on real databases. ------------------------------

    const SCHEMA: &str = "
        CREATE TABLE runs (
            project_id TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
            status TEXT NOT NULL, author TEXT NOT NULL, start_time BIGINT,
            end_time BIGINT, artifact_uri TEXT,
            lifecycle_stage TEXT NOT NULL DEFAULT 'active',
            experiment_id TEXT NOT NULL DEFAULT '0',
            PRIMARY KEY (project_id, id));
        CREATE TABLE latest_metrics (
            run_id TEXT NOT NULL, key TEXT NOT NULL, step BIGINT NOT NULL,
            timestamp BIGINT NOT NULL, value DOUBLE PRECISION,
            is_nan BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (run_id, key));
        CREATE INDEX latest_metrics_by_value ON latest_metrics (key, value);
        CREATE TABLE run_params (
            run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (run_id, key));
        CREATE TABLE run_tags (
            run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (run_id, key));
        CREATE TABLE run_inputs (
            run_id TEXT NOT NULL, position BIGINT NOT NULL, name TEXT NOT NULL,
            digest TEXT NOT NULL, source_type TEXT NOT NULL, source TEXT NOT NULL,
            role TEXT, PRIMARY KEY (run_id, name, digest));

        INSERT INTO runs (project_id, id, name, status, author, start_time, end_time, artifact_uri)
        VALUES
            ('p1', 'r1', 'alpha-one', 'FINISHED', 'alice', 1000, 2000, 's3://b/1'),
            ('p1', 'r2', 'Alpha-two', 'FINISHED', 'bob', 2000, 3000, 's3://b/2'),
            ('p1', 'r3', 'beta', 'FAILED', 'alice', 3000, NULL, NULL),
            ('p1', 'r4', 'gamma', 'RUNNING', 'carol', 4000, NULL, NULL),
            ('p1', 'r5', 'delta', 'KILLED', 'bob', 5000, 6000, 'file:///tmp/5'),
            ('p1', 'r6', 'epsilon', 'FINISHED', 'alice', 6000, 7000, 's3://b/6'),
            ('p1', 'r7', 'zeta', 'SCHEDULED', 'dave', 7000, NULL, NULL),
            ('p1', 'r8', 'eta', 'FINISHED', 'alice', 8000, 9000, 's3://b/8'),
            ('p2', 'x1', 'alpha-one', 'FINISHED', 'alice', 9000, 9500, 's3://b/x');
        -- r3's acc is NaN; r4 and r7 have none.
        INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan) VALUES
            ('r1', 'acc', 0, 0, 0.5, 0), ('r2', 'acc', 0, 0, 0.9, 0),
            ('r3', 'acc', 0, 0, NULL, 1), ('r5', 'acc', 0, 0, 0.7, 0),
            ('r6', 'acc', 0, 0, 0.95, 0), ('r8', 'acc', 0, 0, 0.9, 0),
            ('x1', 'acc', 0, 0, 0.99, 0), ('r4', 'loss', 0, 0, 1.5, 0);
        INSERT INTO run_params (run_id, key, value) VALUES
            ('r1', 'lr', '0.1'), ('r2', 'lr', '0.01'), ('r3', 'lr', '0.1'),
            ('r5', 'lr', '0.001'), ('r6', 'lr', '0.1'),
            ('r1', 'optimizer', 'adam'), ('r4', 'optimizer', 'sgd');
        INSERT INTO run_tags (run_id, key, value) VALUES
            ('r1', 'team', 'Vision'), ('r2', 'team', 'vision'), ('r3', 'team', 'NLP'),
            ('r5', 'team', 'vision-core'), ('r8', 'team', 'VISION_X'),
            ('r1', 'priority', 'b'), ('r2', 'priority', 'a'), ('r5', 'priority', 'c');
        INSERT INTO run_inputs (run_id, position, name, digest, source_type, source, role) VALUES
            ('r1', 0, 'iris', 'd1', 'kiln', 'iris@1', 'training'),
            ('r2', 0, 'iris', 'd2', 'kiln', 'iris@2', 'eval'),
            ('r2', 1, 'wine', 'd3', 'kiln', 'wine@1', NULL);
    ";

    async fn fill(pool: AnyPool) -> AnyPool {
        sqlx::raw_sql(SCHEMA).execute(&pool).await.unwrap();
        pool
    }

    async fn sqlite() -> AnyPool {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // What MLflow sets too: SQLite's LIKE ignores case otherwise.
                    sqlx::raw_sql("PRAGMA case_sensitive_like = ON")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect("sqlite::memory:")
            .await
            .unwrap();
        fill(pool).await
    }

    async fn postgres() -> AnyPool {
        let url = kiln_test::postgres_url().await;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        fill(pool).await
    }

    /// The ids of project `p1`'s runs that a search returns, in order.
    async fn check(pool: &AnyPool, filter: &str, order_by: &[&str], expected: &[&str]) {
        let order_by: Vec<String> = order_by.iter().map(|s| s.to_string()).collect();
        let compiled = compile_run_search(filter, &order_by, 2)
            .unwrap_or_else(|e| panic!("{filter:?} {order_by:?}: {e}"));
        let mut sql = format!(
            "SELECT r.id FROM runs r {} WHERE r.project_id = $1",
            compiled.joins.join(" ")
        );
        for condition in &compiled.conditions {
            sql.push_str(" AND ");
            sql.push_str(condition);
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(&compiled.order_by.join(", "));
        let mut query = sqlx::query(AssertSqlSafe(sql.clone())).bind("p1");
        for bind in compiled.binds {
            query = match bind {
                Bind::Text(s) => query.bind(s),
                Bind::Float(x) => query.bind(x),
                Bind::Int(n) => query.bind(n),
            };
        }
        let rows = query
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let ids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        assert_eq!(ids, expected, "{filter:?} {order_by:?}\n{sql}");
    }

    async fn filters_select_the_matching_runs(pool: AnyPool) {
        let cases: &[(&str, &[&str])] = &[
            ("", &["r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1"]),
            ("metrics.acc > 0.8", &["r8", "r6", "r2"]),
            ("metrics.acc = 0.9", &["r8", "r2"]),
            // NaN fails every comparison but `!=`; a missing metric fails all.
            ("metrics.acc != 0.9", &["r6", "r5", "r3", "r1"]),
            ("metrics.acc >= 0.5 and metrics.acc < 0.9", &["r5", "r1"]),
            ("params.lr = '0.1'", &["r6", "r3", "r1"]),
            ("params.lr != '0.1'", &["r5", "r2"]),
            ("params.lr IS NULL", &["r8", "r7", "r4"]),
            ("params.optimizer IS NOT NULL", &["r4", "r1"]),
            ("tags.team = 'vision'", &["r2"]),
            ("attributes.status = 'FINISHED'", &["r8", "r6", "r2", "r1"]),
            ("status != 'FINISHED'", &["r7", "r5", "r4", "r3"]),
            ("attributes.start_time > 5000", &["r8", "r7", "r6"]),
            ("attributes.created >= 7000", &["r8", "r7"]),
            ("attributes.end_time < 5000", &["r2", "r1"]),
            ("attributes.run_id IN ('r1', 'r3', 'x1')", &["r3", "r1"]),
            (
                "run_id NOT IN ('r1', 'r2', 'r3', 'r4')",
                &["r8", "r7", "r6", "r5"],
            ),
            (
                "attributes.user_id = 'alice' AND metrics.acc > 0.6",
                &["r8", "r6"],
            ),
            (
                "attributes.artifact_uri LIKE 's3://%'",
                &["r8", "r6", "r2", "r1"],
            ),
            ("attributes.`Run Name` = 'beta'", &["r3"]),
            ("datasets.name = 'iris'", &["r2", "r1"]),
            ("datasets.context = 'eval'", &["r2"]),
            (
                "datasets.name IN ('wine') AND datasets.digest != 'd1'",
                &["r2"],
            ),
        ];
        for (filter, expected) in cases {
            check(&pool, filter, &[], expected).await;
        }
    }

    async fn like_is_case_sensitive_and_ilike_is_not(pool: AnyPool) {
        let cases: &[(&str, &[&str])] = &[
            ("tags.team LIKE 'vision%'", &["r5", "r2"]),
            ("tags.team LIKE 'Vision'", &["r1"]),
            ("tags.team ILIKE 'vision%'", &["r8", "r5", "r2", "r1"]),
            ("attributes.run_name LIKE 'alpha%'", &["r1"]),
            ("run_name ILIKE 'ALPHA%'", &["r2", "r1"]),
            ("datasets.context ILIKE 'EVAL'", &["r2"]),
        ];
        for (filter, expected) in cases {
            check(&pool, filter, &[], expected).await;
        }
    }

    async fn order_by_puts_missing_values_last(pool: AnyPool) {
        let cases: &[(&[&str], &[&str])] = &[
            // Ties (r8 and r2 at 0.9) fall back to start_time DESC; NaN
            // (r3) sorts after numbers and before runs without the metric.
            (
                &["metrics.acc DESC"],
                &["r6", "r8", "r2", "r5", "r1", "r3", "r7", "r4"],
            ),
            (
                &["metrics.acc"],
                &["r1", "r5", "r8", "r2", "r6", "r3", "r7", "r4"],
            ),
            (
                &["params.lr"],
                &["r5", "r2", "r6", "r3", "r1", "r8", "r7", "r4"],
            ),
            (
                &["params.lr DESC"],
                &["r6", "r3", "r1", "r2", "r5", "r8", "r7", "r4"],
            ),
            (
                &["tags.priority DESC"],
                &["r5", "r1", "r2", "r8", "r7", "r6", "r4", "r3"],
            ),
            (
                &["attributes.start_time ASC"],
                &["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"],
            ),
            (
                &["created DESC"],
                &["r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1"],
            ),
            (
                &["attributes.end_time"],
                &["r1", "r2", "r5", "r6", "r8", "r7", "r4", "r3"],
            ),
            (
                &["attributes.end_time DESC"],
                &["r8", "r6", "r5", "r2", "r1", "r7", "r4", "r3"],
            ),
            (
                &["attributes.status", "metrics.acc DESC"],
                &["r3", "r6", "r8", "r2", "r1", "r5", "r4", "r7"],
            ),
        ];
        for (order_by, expected) in cases {
            check(&pool, "", order_by, expected).await;
        }
        check(
            &pool,
            "metrics.acc > 0",
            &["metrics.acc"],
            &["r1", "r5", "r8", "r2", "r6"],
        )
        .await;
    }

    /// Runs each suite function on SQLite and on PostgreSQL (`scripts/test`).
    macro_rules! on_both {
        ($($name:ident),* $(,)?) => {
            $(mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(super::sqlite().await).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name(super::postgres().await).await
                }
            })*
        };
    }

    on_both!(
        filters_select_the_matching_runs,
        like_is_case_sensitive_and_ilike_is_not,
        order_by_puts_missing_values_last,
    );
}
