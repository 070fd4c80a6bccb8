use std::fmt;
use std::str::FromStr;

/// The logical type of a column, as kiln shows it and as checks name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Integer,
    Float,
    Boolean,
    String,
    /// A string column with few distinct values.
    Categorical,
    Date,
    Timestamp,
}

/// A type name that is not one of kiln's column types.
#[derive(Debug, thiserror::Error)]
#[error(
    "Unknown column type `{0}`; expected one of integer, float, boolean, string, categorical, date, timestamp"
)]
pub struct UnknownColumnType(pub String);

impl ColumnType {
    pub const ALL: [ColumnType; 7] = [
        Self::Integer,
        Self::Float,
        Self::Boolean,
        Self::String,
        Self::Categorical,
        Self::Date,
        Self::Timestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Categorical => "categorical",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
        }
    }

    /// Whether a column of type `self` satisfies a declared type `declared`:
    /// an integer is a valid float and a categorical a valid string.
    pub fn satisfies(self, declared: ColumnType) -> bool {
        self == declared
            || (self == Self::Integer && declared == Self::Float)
            || (self == Self::Categorical && declared == Self::String)
            || (self == Self::String && declared == Self::Categorical)
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Integer | Self::Float)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ColumnType {
    type Err = UnknownColumnType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownColumnType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_satisfies_float_but_not_the_reverse() {
        assert!(ColumnType::Integer.satisfies(ColumnType::Float));
        assert!(!ColumnType::Float.satisfies(ColumnType::Integer));
        assert!(ColumnType::Categorical.satisfies(ColumnType::String));
        assert!(!ColumnType::Date.satisfies(ColumnType::Timestamp));
    }

    #[test]
    fn names_round_trip() {
        for t in ColumnType::ALL {
            assert_eq!(t.as_str().parse::<ColumnType>().unwrap(), t);
        }
        assert!("decimal".parse::<ColumnType>().is_err());
    }
}
