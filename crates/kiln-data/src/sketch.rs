//! Small streaming sketches for profiles: a HyperLogLog for distinct counts
//! and a seeded reservoir sample for quantiles and histograms. Both use
//! bounded memory whatever the row count, and both are deterministic, so the
//! same content always gets the same profile.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// 64-bit mixer (splitmix64's finaliser): spreads similar keys apart.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a over bytes, then mixed: fast for the short strings of tables.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h ^ b.len() as u64)
}

const HLL_P: u32 = 12;
const HLL_M: usize = 1 << HLL_P;

/// HyperLogLog with 4,096 registers (standard error about 1.6 %), with
/// linear counting for small cardinalities, where it is near exact.
#[derive(Clone)]
pub struct Hll {
    registers: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Self {
            registers: vec![0; HLL_M],
        }
    }
}

impl Hll {
    pub fn insert_hash(&mut self, h: u64) {
        let idx = (h >> (64 - HLL_P)) as usize;
        let rest = (h << HLL_P) | (1 << (HLL_P - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.registers[idx] {
            self.registers[idx] = rank;
        }
    }

    pub fn estimate(&self) -> u64 {
        let m = HLL_M as f64;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            (m * (m / zeros as f64).ln()).round() as u64
        } else {
            raw.round() as u64
        }
    }
}

/// A uniform sample of at most `cap` values, seeded. Once full it uses
/// Li's Algorithm L: it draws how many values to skip before the next
/// replacement, so most values cost a comparison, not a random number.
pub struct Reservoir {
    cap: usize,
    seen: u64,
    pub values: Vec<f64>,
    rng: SmallRng,
    /// Algorithm L's running weight and the 1-based index of the next value to keep.
    w: f64,
    next: u64,
}

impl Reservoir {
    pub fn new(cap: usize, seed: u64) -> Self {
        Self {
            cap,
            seen: 0,
            values: Vec::new(),
            rng: SmallRng::seed_from_u64(seed),
            w: 1.0,
            next: 0,
        }
    }

    fn uniform(&mut self) -> f64 {
        // In (0, 1]: ln() stays finite.
        1.0 - self.rng.random::<f64>()
    }

    fn schedule(&mut self) {
        let skip = (self.uniform().ln() / (1.0 - self.w).ln()).floor();
        self.next = self.seen
            + 1
            + if skip.is_finite() {
                skip as u64
            } else {
                u64::MAX / 2
            };
    }

    pub fn push(&mut self, v: f64) {
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(v);
            if self.values.len() == self.cap {
                self.w = (self.uniform().ln() / self.cap as f64).exp();
                self.schedule();
            }
        } else if self.seen == self.next {
            let slot = self.rng.random_range(0..self.cap);
            self.values[slot] = v;
            self.w *= (self.uniform().ln() / self.cap as f64).exp();
            self.schedule();
        }
    }

    pub fn extend(&mut self, values: &[f64]) {
        let mut rest = values;
        // Fill, then jump from one kept value to the next.
        while !rest.is_empty() && self.values.len() < self.cap {
            self.push(rest[0]);
            rest = &rest[1..];
        }
        while !rest.is_empty() {
            let gap = self.next - self.seen - 1;
            if gap >= rest.len() as u64 {
                self.seen += rest.len() as u64;
                return;
            }
            self.seen += gap;
            rest = &rest[gap as usize..];
            self.push(rest[0]);
            rest = &rest[1..];
        }
    }

    /// How many values were pushed in all.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether the sample holds every value pushed.
    pub fn is_exact(&self) -> bool {
        self.seen as usize == self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hll_is_near_exact_for_small_and_within_5_percent_for_large() {
        let mut h = Hll::default();
        for i in 0..3u64 {
            h.insert_hash(mix64(i));
        }
        assert_eq!(h.estimate(), 3);
        let mut h = Hll::default();
        for i in 0..200_000u64 {
            h.insert_hash(mix64(i % 100_000));
        }
        let e = h.estimate() as f64;
        assert!((e - 100_000.0).abs() / 100_000.0 < 0.05, "estimate {e}");
    }

    #[test]
    fn reservoir_keeps_everything_until_full_then_stays_bounded() {
        let mut r = Reservoir::new(10, 1);
        for i in 0..10 {
            r.push(f64::from(i));
        }
        assert!(r.is_exact());
        for i in 10..1000 {
            r.push(f64::from(i));
        }
        assert_eq!(r.values.len(), 10);
        assert!(!r.is_exact());
    }

    #[test]
    fn reservoir_sample_is_uniform_and_extend_matches_counts() {
        let mut r = Reservoir::new(1000, 3);
        let values: Vec<f64> = (0..100_000).map(f64::from).collect();
        for chunk in values.chunks(7_777) {
            r.extend(chunk);
        }
        assert_eq!(r.seen(), 100_000);
        assert_eq!(r.values.len(), 1000);
        let mean = r.values.iter().sum::<f64>() / 1000.0;
        assert!((mean - 50_000.0).abs() < 3_000.0, "mean {mean}");
        let late = r.values.iter().filter(|&&v| v >= 50_000.0).count();
        assert!(
            (400..600).contains(&late),
            "{late} of 1000 from the second half"
        );
    }
}
