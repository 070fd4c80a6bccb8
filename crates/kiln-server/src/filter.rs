//! The small filter language MLflow's clients send to the registry and to
//! experiment and logged-model searches: clauses `FIELD OP VALUE` joined by
//! `AND`, e.g. ``name = 'fraud' AND tag.`mlflow.prompt.is_prompt` != 'true'``.
//! These listings are small, so clauses are evaluated in memory.

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A plain attribute: `name`, `run_id`, `source_path`, …
    Attr(String),
    /// `tags.KEY` (also `tag.KEY`).
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Like,
    ILike,
    In,
    NotIn,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub field: Field,
    pub op: Op,
    pub values: Vec<String>,
}

/// Parses a filter; the empty filter has no clauses.
pub fn parse(filter: &str) -> Result<Vec<Clause>, ApiError> {
    let bad =
        |why: String| ApiError::invalid("filter", format!("Invalid filter '{filter}': {why}"));
    let mut tokens = tokenize(filter).map_err(bad)?.into_iter().peekable();
    let mut clauses = Vec::new();
    while tokens.peek().is_some() {
        if !clauses.is_empty() {
            match tokens.next() {
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("and") => {}
                other => return Err(bad(format!("expected AND, found {other:?}"))),
            }
        }
        let field = match tokens.next() {
            Some(Tok::Word(w)) => w,
            other => return Err(bad(format!("expected a field name, found {other:?}"))),
        };
        let field = match field.split_once('.') {
            Some((p, key)) if ["tag", "tags"].contains(&p.to_ascii_lowercase().as_str()) => {
                Field::Tag(key.trim_matches('`').trim_matches('"').to_string())
            }
            Some((p, key))
                if ["attribute", "attributes", "attr"]
                    .contains(&p.to_ascii_lowercase().as_str()) =>
            {
                Field::Attr(key.to_string())
            }
            _ => Field::Attr(field),
        };
        let op = match tokens.next() {
            Some(Tok::Op(o)) if o == "=" || o == "==" => Op::Eq,
            Some(Tok::Op(o)) if o == "!=" || o == "<>" => Op::Ne,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => Op::Like,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("ilike") => Op::ILike,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => Op::In,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") => match tokens.next() {
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => Op::NotIn,
                other => return Err(bad(format!("expected IN after NOT, found {other:?}"))),
            },
            other => return Err(bad(format!("expected a comparator, found {other:?}"))),
        };
        let values = match (&op, tokens.next()) {
            (Op::In | Op::NotIn, Some(Tok::List(items))) => items,
            (Op::In | Op::NotIn, other) => {
                return Err(bad(format!(
                    "expected a list like ('a', 'b'), found {other:?}"
                )));
            }
            (_, Some(Tok::Str(s))) => vec![s],
            (_, Some(Tok::Word(w))) if w.parse::<f64>().is_ok() => vec![w],
            (_, other) => return Err(bad(format!("expected a quoted value, found {other:?}"))),
        };
        clauses.push(Clause { field, op, values });
    }
    Ok(clauses)
}

/// Whether a record passes every clause; `get` reads a field (None when
/// the record lacks it: a missing tag is "not equal" to anything).
pub fn matches(clauses: &[Clause], get: impl Fn(&Field) -> Option<String>) -> bool {
    clauses.iter().all(|c| {
        let v = get(&c.field);
        match (&c.op, v) {
            (Op::Eq, Some(v)) => v == c.values[0],
            (Op::Ne, Some(v)) => v != c.values[0],
            (Op::Ne, None) => true,
            (Op::Like, Some(v)) => like(&c.values[0], &v, false),
            (Op::ILike, Some(v)) => like(&c.values[0], &v, true),
            (Op::In, Some(v)) => c.values.contains(&v),
            (Op::NotIn, Some(v)) => !c.values.contains(&v),
            (Op::NotIn, None) => true,
            (_, None) => false,
        }
    })
}

/// SQL LIKE: `%` any run, `_` one character.
pub fn like(pattern: &str, s: &str, case_insensitive: bool) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            pattern.to_lowercase().chars().collect(),
            s.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), s.chars().collect())
    };
    // Greedy matching with backtracking to the last `%`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && (p[i] == '_' || (p[i] != '%' && p[i] == s[j])) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '%' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '%')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    List(Vec<String>),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let quoted = |i: &mut usize, q: char| -> Result<String, String> {
        let mut v = String::new();
        *i += 1;
        while *i < chars.len() && chars[*i] != q {
            v.push(chars[*i]);
            *i += 1;
        }
        if *i >= chars.len() {
            return Err(format!("unterminated {q} quote"));
        }
        *i += 1;
        Ok(v)
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            out.push(Tok::Str(quoted(&mut i, c)?));
        } else if c == '(' {
            i += 1;
            let mut items = Vec::new();
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    Some(')') => {
                        i += 1;
                        break;
                    }
                    Some(&q) if q == '\'' || q == '"' => items.push(quoted(&mut i, q)?),
                    _ => return Err("a list holds quoted values, like ('a', 'b')".into()),
                }
            }
            out.push(Tok::List(items));
        } else if "=!<>".contains(c) {
            let mut op = String::from(c);
            i += 1;
            while i < chars.len() && "=<>".contains(chars[i]) {
                op.push(chars[i]);
                i += 1;
            }
            if !["=", "==", "!=", "<>"].contains(&op.as_str()) {
                return Err(format!("unsupported comparator `{op}`"));
            }
            out.push(Tok::Op(op));
        } else {
            // A word: an identifier, possibly with a back-quoted part.
            let mut w = String::new();
            while i < chars.len() && !chars[i].is_whitespace() && !"=!<>('\"".contains(chars[i]) {
                if chars[i] == '`' {
                    w.push_str(&quoted(&mut i, '`')?);
                } else {
                    w.push(chars[i]);
                    i += 1;
                }
            }
            out.push(Tok::Word(w));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(
        name: &'a str,
        tags: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&Field) -> Option<String> + 'a {
        move |f| match f {
            Field::Attr(a) if a == "name" => Some(name.to_string()),
            Field::Attr(_) => None,
            Field::Tag(k) => tags
                .iter()
                .find(|(t, _)| t == k)
                .map(|(_, v)| v.to_string()),
        }
    }

    #[test]
    fn the_registry_filter_mlflow_sends_matches_models_without_the_prompt_tag() {
        let c = parse("name = 'fraud' AND tag.`mlflow.prompt.is_prompt` != 'true'").unwrap();
        assert!(matches(&c, get("fraud", &[])));
        assert!(!matches(
            &c,
            get("fraud", &[("mlflow.prompt.is_prompt", "true")])
        ));
        assert!(!matches(&c, get("other", &[])));
    }

    #[test]
    fn like_and_in_clauses_match_as_sql_does() {
        assert!(like("fr%d", "fraud", false));
        assert!(!like("FR%", "fraud", false));
        assert!(like("FR%", "fraud", true));
        assert!(like("_raud", "fraud", false));
        assert!(!like("%x%", "fraud", false));
        let c = parse("name IN ('a', 'b')").unwrap();
        assert!(matches(&c, get("b", &[])));
        assert!(!matches(&c, get("c", &[])));
        assert!(parse("name='x'").is_ok());
    }

    #[test]
    fn malformed_filters_are_rejected() {
        for bad in [
            "name = 'x",
            "name >>> 'x'",
            "name = 'x' OR name = 'y'",
            "name IN 'x'",
            "name",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
