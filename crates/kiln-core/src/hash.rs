use std::fmt;
use std::str::FromStr;

/// A BLAKE3 digest naming an immutable piece of content: an object in the
/// object store, and the id of a dataset version.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

/// A string that is not a 64-character hexadecimal BLAKE3 digest.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a BLAKE3 digest (64 hexadecimal characters)")]
pub struct HashParseError(String);

impl ContentHash {
    /// Hashes a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_blake3(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex characters, which is how versions are shown.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }

    pub fn parse(s: &str) -> Result<Self, HashParseError> {
        blake3::Hash::from_hex(s)
            .map(Self::from_blake3)
            .map_err(|_| HashParseError(s.to_string()))
    }
}

impl FromStr for ContentHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

impl serde::Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_short_prefix() {
        let h = ContentHash::of(b"kiln");
        let hex = h.to_hex();
        assert_eq!(ContentHash::parse(&hex).unwrap(), h);
        assert!(hex.starts_with(&h.short()));
        assert_eq!(h.short().len(), 12);
    }

    #[test]
    fn parse_rejects_short_and_non_hex() {
        assert!(ContentHash::parse("abc").is_err());
        assert!(ContentHash::parse(&"z".repeat(64)).is_err());
    }
}
