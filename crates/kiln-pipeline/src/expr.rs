//! The gate language: arithmetic over named metrics, comparisons, `&&`,
//! `||` and `!`.
//!
//! ```text
//! roc_auc >= 0.80 && roc_auc >= champion.roc_auc - 0.005 && p99_latency_ms < 5
//! ```
//!
//! A name (letters, digits, `_`) is a metric of the candidate (`roc_auc`) or of another version
//! (`champion.roc_auc`: the part before the dot names the alias). The
//! top-level `&&` splits a requirement into clauses, each reported on its
//! own.

use std::fmt;

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Number(f64),
    Bool(bool),
    /// A metric: `scope` is `None` for the candidate, else an alias.
    Metric {
        scope: Option<String>,
        name: String,
    },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(Box<Expr>, Op, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::And => "&&",
            Op::Or => "||",
        }
    }

    /// Binding power: higher binds tighter.
    fn power(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::And => 2,
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => 3,
            Op::Add | Op::Sub => 4,
            Op::Mul | Op::Div => 5,
        }
    }
}

/// A syntax error with the character position it was found at.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} at character {at} of `{text}`")]
pub struct ParseError {
    pub text: String,
    pub at: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Op(Op),
    Not,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let err = |at: usize, message: String| ParseError {
        text: text.to_string(),
        at,
        message,
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = chars.get(i + 1).copied();
        let token = match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '(' => Token::Open,
            ')' => Token::Close,
            '+' => Token::Op(Op::Add),
            '-' => Token::Op(Op::Sub),
            '*' => Token::Op(Op::Mul),
            '/' => Token::Op(Op::Div),
            '<' | '>' | '=' | '!' if two == Some('=') => {
                i += 1;
                Token::Op(match c {
                    '<' => Op::Le,
                    '>' => Op::Ge,
                    '=' => Op::Eq,
                    _ => Op::Ne,
                })
            }
            '<' => Token::Op(Op::Lt),
            '>' => Token::Op(Op::Gt),
            '!' => Token::Not,
            '&' if two == Some('&') => {
                i += 1;
                Token::Op(Op::And)
            }
            '|' if two == Some('|') => {
                i += 1;
                Token::Op(Op::Or)
            }
            '=' => return Err(err(i, "`=` compares as `==`".into())),
            '&' | '|' => return Err(err(i, format!("`{c}` is written `{c}{c}`"))),
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || chars[i] == 'e'
                        || chars[i] == 'E'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n = s
                    .parse::<f64>()
                    .map_err(|_| err(start, format!("`{s}` is not a number")))?;
                out.push((start, Token::Number(n)));
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.'))
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                out.push((start, Token::Ident(s)));
                continue;
            }
            other => return Err(err(i, format!("unexpected `{other}`"))),
        };
        out.push((start, token));
        i += 1;
    }
    Ok(out)
}

/// Parses an expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
    };
    if p.tokens.is_empty() {
        return Err(p.error(0, "the expression is empty".into()));
    }
    let e = p.expr(0)?;
    if let Some((at, t)) = p.tokens.get(p.pos) {
        let what = match t {
            Token::Close => "a `)` without its `(`".to_string(),
            _ => "more after a complete expression (missing `&&`?)".to_string(),
        };
        return Err(p.error(*at, what));
    }
    Ok(e)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, at: usize, message: String) -> ParseError {
        ParseError {
            text: self.text.to_string(),
            at,
            message,
        }
    }

    fn end(&self) -> usize {
        self.text.chars().count()
    }

    fn expr(&mut self, min_power: u8) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while let Some((_, Token::Op(op))) = self.tokens.get(self.pos) {
            let op = *op;
            if op.power() <= min_power {
                break;
            }
            self.pos += 1;
            let right = self.expr(op.power())?;
            left = Expr::Binary(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let Some((at, token)) = self.tokens.get(self.pos).cloned() else {
            return Err(self.error(self.end(), "the expression ends too soon".into()));
        };
        self.pos += 1;
        match token {
            Token::Number(n) => Ok(Expr::Number(n)),
            Token::Ident(s) if s == "true" || s == "false" => Ok(Expr::Bool(s == "true")),
            Token::Ident(s) => {
                let (scope, name) = match s.split_once('.') {
                    Some((scope, name)) if !scope.is_empty() && !name.is_empty() => {
                        (Some(scope.to_string()), name.to_string())
                    }
                    Some(_) => return Err(self.error(at, format!("`{s}` is not a metric name"))),
                    None => (None, s),
                };
                Ok(Expr::Metric { scope, name })
            }
            Token::Not => Ok(Expr::Not(Box::new(self.unary()?))),
            Token::Op(Op::Sub) => Ok(Expr::Neg(Box::new(self.unary()?))),
            Token::Open => {
                let e = self.expr(0)?;
                match self.tokens.get(self.pos) {
                    Some((_, Token::Close)) => {
                        self.pos += 1;
                        Ok(e)
                    }
                    Some((at, _)) => Err(self.error(*at, "expected `)`".into())),
                    None => Err(self.error(self.end(), "a `(` is not closed".into())),
                }
            }
            Token::Close => Err(self.error(at, "expected a value before `)`".into())),
            Token::Op(op) => {
                Err(self.error(at, format!("expected a value before `{}`", op.symbol())))
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) => write!(f, "{n}"),
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Metric { scope: None, name } => write!(f, "{name}"),
            Expr::Metric {
                scope: Some(s),
                name,
            } => write!(f, "{s}.{name}"),
            Expr::Not(e) => write!(f, "!{}", paren(e)),
            Expr::Neg(e) => write!(f, "-{}", paren(e)),
            Expr::Binary(l, op, r) => {
                let side = |e: &Expr, right: bool| match e {
                    Expr::Binary(_, inner, _)
                        if inner.power() < op.power() || (right && inner.power() == op.power()) =>
                    {
                        format!("({e})")
                    }
                    _ => e.to_string(),
                };
                write!(f, "{} {} {}", side(l, false), op.symbol(), side(r, true))
            }
        }
    }
}

fn paren(e: &Expr) -> String {
    match e {
        Expr::Binary(..) => format!("({e})"),
        _ => e.to_string(),
    }
}

impl Expr {
    /// The top-level `&&` operands: the clauses reported one by one.
    pub fn clauses(&self) -> Vec<&Expr> {
        match self {
            Expr::Binary(l, Op::And, r) => {
                let mut out = l.clauses();
                out.extend(r.clauses());
                out
            }
            e => vec![e],
        }
    }

    /// Every metric the expression reads, in order, once each.
    pub fn metrics(&self) -> Vec<(Option<&str>, &str)> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Metric { scope, name } = e {
                let m = (scope.as_deref(), name.as_str());
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::Neg(e) => e.walk(f),
            Expr::Binary(l, _, r) => {
                l.walk(f);
                r.walk(f);
            }
            _ => {}
        }
    }

    /// Evaluates with `lookup` giving each metric's value (`None`: not
    /// recorded). The error names the first metric missing, or a type
    /// mistake (`roc_auc && 1`).
    pub fn eval(
        &self,
        lookup: &dyn Fn(Option<&str>, &str) -> Option<f64>,
    ) -> Result<Value, EvalError> {
        Ok(match self {
            Expr::Number(n) => Value::Number(*n),
            Expr::Bool(b) => Value::Bool(*b),
            Expr::Metric { scope, name } => match lookup(scope.as_deref(), name) {
                Some(v) => Value::Number(v),
                None => {
                    return Err(EvalError::Missing {
                        scope: scope.clone(),
                        name: name.clone(),
                    });
                }
            },
            Expr::Not(e) => Value::Bool(!e.eval(lookup)?.boolean(e)?),
            Expr::Neg(e) => Value::Number(-e.eval(lookup)?.number(e)?),
            Expr::Binary(l, op, r) => {
                let a = l.eval(lookup)?;
                match op {
                    Op::And => {
                        return Ok(Value::Bool(a.boolean(l)? && r.eval(lookup)?.boolean(r)?));
                    }
                    Op::Or => {
                        return Ok(Value::Bool(a.boolean(l)? || r.eval(lookup)?.boolean(r)?));
                    }
                    _ => {}
                }
                let b = r.eval(lookup)?;
                if matches!(op, Op::Eq | Op::Ne)
                    && let (Value::Bool(x), Value::Bool(y)) = (a, b)
                {
                    return Ok(Value::Bool((x == y) == (*op == Op::Eq)));
                }
                let (x, y) = (a.number(l)?, b.number(r)?);
                match op {
                    Op::Add => Value::Number(x + y),
                    Op::Sub => Value::Number(x - y),
                    Op::Mul => Value::Number(x * y),
                    Op::Div => Value::Number(x / y),
                    Op::Lt => Value::Bool(x < y),
                    Op::Le => Value::Bool(x <= y),
                    Op::Gt => Value::Bool(x > y),
                    Op::Ge => Value::Bool(x >= y),
                    Op::Eq => Value::Bool(x == y),
                    Op::Ne => Value::Bool(x != y),
                    Op::And | Op::Or => unreachable!("handled above"),
                }
            }
        })
    }

    /// The expression with each metric replaced by its value, for reports:
    /// `0.8612 >= 0.80`.
    pub fn substituted(&self, lookup: &dyn Fn(Option<&str>, &str) -> Option<f64>) -> String {
        match self {
            Expr::Metric { scope, name } => match lookup(scope.as_deref(), name) {
                Some(v) => format_number(v),
                None => "?".into(),
            },
            Expr::Not(e) | Expr::Neg(e) => {
                let sign = if matches!(self, Expr::Not(_)) {
                    "!"
                } else {
                    "-"
                };
                match **e {
                    Expr::Binary(..) => format!("{sign}({})", e.substituted(lookup)),
                    _ => format!("{sign}{}", e.substituted(lookup)),
                }
            }
            Expr::Binary(l, op, r) => {
                let side = |e: &Expr| match e {
                    Expr::Binary(_, inner, _) if inner.power() <= op.power() => {
                        format!("({})", e.substituted(lookup))
                    }
                    _ => e.substituted(lookup),
                };
                format!("{} {} {}", side(l), op.symbol(), side(r))
            }
            other => other.to_string(),
        }
    }
}

/// Four significant digits, no trailing zeros.
pub fn format_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let digits = (4 - 1 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// What an expression evaluates to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Bool(bool),
}

impl Value {
    fn number(self, e: &Expr) -> Result<f64, EvalError> {
        match self {
            Value::Number(n) => Ok(n),
            Value::Bool(_) => Err(EvalError::Type(format!(
                "`{e}` is true or false, where a number is needed"
            ))),
        }
    }

    fn boolean(self, e: &Expr) -> Result<bool, EvalError> {
        match self {
            Value::Bool(b) => Ok(b),
            Value::Number(_) => Err(EvalError::Type(format!(
                "`{e}` is a number, where a comparison is needed (e.g. `{e} >= 0.8`)"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("no metric `{}`", display_metric(.scope, .name))]
    Missing { scope: Option<String>, name: String },
    #[error("{0}")]
    Type(String),
}

fn display_metric(scope: &Option<String>, name: &str) -> String {
    match scope {
        Some(s) => format!("{s}.{name}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(scope: Option<&str>, name: &str) -> Option<f64> {
        match (scope, name) {
            (None, "roc_auc") => Some(0.86),
            (Some("champion"), "roc_auc") => Some(0.862),
            (None, "p99_latency_ms") => Some(3.2),
            _ => None,
        }
    }

    fn eval(text: &str) -> Result<Value, EvalError> {
        parse(text).unwrap().eval(&metrics)
    }

    #[test]
    fn the_issue_example_splits_into_three_clauses_that_each_evaluate() {
        let e =
            parse("roc_auc >= 0.80 && roc_auc >= champion.roc_auc - 0.005 && p99_latency_ms < 5")
                .unwrap();
        let clauses = e.clauses();
        assert_eq!(clauses.len(), 3);
        assert_eq!(
            clauses[1].to_string(),
            "roc_auc >= champion.roc_auc - 0.005"
        );
        for c in &clauses {
            assert_eq!(c.eval(&metrics), Ok(Value::Bool(true)), "{c}");
        }
        assert_eq!(clauses[1].substituted(&metrics), "0.86 >= 0.862 - 0.005",);
        assert_eq!(
            e.metrics(),
            vec![
                (None, "roc_auc"),
                (Some("champion"), "roc_auc"),
                (None, "p99_latency_ms")
            ]
        );
    }

    #[test]
    fn precedence_is_arithmetic_then_comparison_then_and_then_or() {
        assert_eq!(eval("1 + 2 * 3 == 7"), Ok(Value::Bool(true)));
        assert_eq!(eval("(1 + 2) * 3 == 9"), Ok(Value::Bool(true)));
        assert_eq!(eval("10 - 4 - 3 == 3"), Ok(Value::Bool(true)));
        assert_eq!(eval("8 / 4 / 2 == 1"), Ok(Value::Bool(true)));
        assert_eq!(eval("false && true || true"), Ok(Value::Bool(true)));
        assert_eq!(eval("false && (true || true)"), Ok(Value::Bool(false)));
        assert_eq!(eval("!(roc_auc < 0.5)"), Ok(Value::Bool(true)));
        assert_eq!(eval("-roc_auc < 0"), Ok(Value::Bool(true)));
        assert_eq!(eval("1e-3 * 1000 == 1"), Ok(Value::Bool(true)));
        assert_eq!(eval("roc_auc-0.06 >= 0.8"), Ok(Value::Bool(true)));
        assert_eq!(eval("roc_auc - 1 < 0"), Ok(Value::Bool(true)));
    }

    #[test]
    fn display_round_trips_through_parse() {
        for text in [
            "a >= 1 && (b < 2 || c == 3)",
            "a - (b - c) > 0",
            "!(a > 1)",
            "x.y * 2 + 1 != 3",
        ] {
            let e = parse(text).unwrap();
            assert_eq!(parse(&e.to_string()).unwrap(), e, "{text} → {e}");
        }
    }

    #[test]
    fn a_missing_metric_names_itself_and_type_mistakes_say_what_was_meant() {
        assert_eq!(
            eval("accuracy > 0.5"),
            Err(EvalError::Missing {
                scope: None,
                name: "accuracy".into()
            })
        );
        assert_eq!(
            eval("staging.roc_auc > 0.5").unwrap_err().to_string(),
            "no metric `staging.roc_auc`"
        );
        let e = eval("roc_auc && true").unwrap_err().to_string();
        assert!(e.contains("roc_auc >= 0.8"), "{e}");
        assert!(eval("(1 < 2) + 1 > 0").is_err());
    }

    #[test]
    fn syntax_errors_point_at_the_character() {
        for (text, at, needle) in [
            ("roc_auc >= ", 11, "ends too soon"),
            ("roc_auc = 0.8", 8, "`==`"),
            ("a > 1 & b", 6, "`&&`"),
            ("(a > 1", 6, "not closed"),
            ("a > 1)", 5, "without its `(`"),
            ("a > 1 b < 2", 6, "missing `&&`"),
            ("a > 1.2.3", 4, "not a number"),
            ("a > #", 4, "unexpected `#`"),
            ("", 0, "empty"),
            ("&& a", 0, "before `&&`"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn numbers_print_with_four_significant_digits() {
        assert_eq!(format_number(0.861_234), "0.8612");
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(1234.567), "1235");
        assert_eq!(format_number(0.000_123_46), "0.0001235");
    }
}
