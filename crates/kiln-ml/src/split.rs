//! Train/test splits and k-fold cross-validation.
//!
//! Every function returns row indices, sorted ascending within each part, and
//! is a pure function of its inputs and seed: randomness comes only from
//! [`Rng`], so equal seeds give equal splits on every machine.
//!
//! * [`random`], [`kfold`]: rows are exchangeable.
//! * [`stratified`], [`stratified_kfold`]: keep each class's share of rows on
//!   both sides.
//! * [`group`], [`group_kfold`]: rows of one group (a customer, a patient)
//!   never sit on both sides, so the model cannot memorise a group.
//! * [`time_ordered`], [`time_series_folds`]: test rows come after training
//!   rows, and no order key is on both sides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Row indices of a training part and a test part, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Split {
    /// Rows to fit on.
    pub train: Vec<usize>,
    /// Rows to evaluate on.
    pub test: Vec<usize>,
}

/// Why a split could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// The test fraction is not strictly between 0 and 1.
    #[error(
        "Test fraction must be strictly between 0 and 1, got `{0}`; use e.g. `0.2` for a 20% test set"
    )]
    InvalidFraction(f64),
    /// Too few rows for the split asked for.
    #[error(
        "Cannot split `{rows}` rows: this split needs at least `{needed}`; add rows or use fewer folds"
    )]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// Rows needed.
        needed: usize,
    },
    /// Fewer than two folds.
    #[error("Cross-validation needs at least 2 folds, got `{0}`; use `k >= 2`")]
    TooFewFolds(usize),
    /// More folds than rows.
    #[error("Cannot make `{k}` folds from `{rows}` rows; use at most `{rows}` folds")]
    TooManyFolds {
        /// Folds asked for.
        k: usize,
        /// Rows given.
        rows: usize,
    },
    /// Fewer distinct groups than the split needs.
    #[error(
        "This split needs at least `{needed}` distinct groups, got `{groups}`; use fewer folds, a finer group column, or a non-group split"
    )]
    TooFewGroups {
        /// Groups needed.
        needed: usize,
        /// Distinct groups given.
        groups: usize,
    },
    /// Fewer distinct order-key values than the split needs.
    #[error(
        "The order key has `{distinct}` distinct values but this split needs at least `{needed}`; use fewer folds or a finer-grained key"
    )]
    TooFewDistinctKeys {
        /// Distinct values needed.
        needed: usize,
        /// Distinct values given.
        distinct: usize,
    },
    /// Every class has a single row, so no stratified test set exists.
    #[error(
        "Every class has a single row, so a stratified split cannot put any row in the test set; use a random split or gather more rows per class"
    )]
    NoClassToSplit,
}

/// Splits `0..n` at random, `round(n × test_fraction)` rows (at least 1, at
/// most `n − 1`) going to test.
pub fn random(n: usize, test_fraction: f64, seed: u64) -> Result<Split, SplitError> {
    check_fraction(test_fraction)?;
    check_rows(n, 2)?;
    let n_test = test_count(n, test_fraction);
    let mut rows: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut rows);
    let mut in_test = vec![false; n];
    for &r in &rows[..n_test] {
        in_test[r] = true;
    }
    Ok(split_by_mask(&in_test))
}

/// Splits rows so each class keeps its share on both sides.
///
/// The test set holds `round(n × test_fraction)` rows where the constraints
/// allow, shared out between classes in proportion to their size (largest
/// remainder). A class with at least two rows puts at least one on each
/// side; a class with a single row keeps it in train.
pub fn stratified(classes: &[u32], test_fraction: f64, seed: u64) -> Result<Split, SplitError> {
    check_fraction(test_fraction)?;
    let n = classes.len();
    check_rows(n, 2)?;
    let by_class = rows_by_class(classes);
    let sizes: Vec<usize> = by_class.values().map(Vec::len).collect();
    let quota: Vec<f64> = sizes.iter().map(|&s| s as f64 * test_fraction).collect();
    let bounds: Vec<(usize, usize)> = sizes
        .iter()
        .map(|&s| if s >= 2 { (1, s - 1) } else { (0, 0) })
        .collect();
    let take = largest_remainder(&quota, &bounds, test_count(n, test_fraction));
    if take.iter().all(|&t| t == 0) {
        return Err(SplitError::NoClassToSplit);
    }
    let mut in_test = vec![false; n];
    for ((&class, rows), &t) in by_class.iter().zip(&take) {
        let mut rows = rows.clone();
        Rng::derive(seed, u64::from(class)).shuffle(&mut rows);
        for &r in &rows[..t] {
            in_test[r] = true;
        }
    }
    Ok(split_by_mask(&in_test))
}

/// Splits rows so that no group has rows on both sides, with the test set
/// holding about `test_fraction` of the rows.
///
/// Groups are visited in a seeded random order; each joins the test set if
/// that brings the test size closer to `n × test_fraction` (and leaves train
/// non-empty). If none does, the first group visited goes to test. Needs at
/// least two distinct groups.
pub fn group(groups: &[u64], test_fraction: f64, seed: u64) -> Result<Split, SplitError> {
    check_fraction(test_fraction)?;
    let n = groups.len();
    check_rows(n, 2)?;
    let index = GroupIndex::new(groups);
    let g = index.sizes.len();
    if g < 2 {
        return Err(SplitError::TooFewGroups {
            needed: 2,
            groups: g,
        });
    }
    let mut order: Vec<usize> = (0..g).collect();
    Rng::new(seed).shuffle(&mut order);
    let target = n as f64 * test_fraction;
    let mut group_in_test = vec![false; g];
    let mut test_rows = 0usize;
    for &gi in &order {
        let size = index.sizes[gi];
        let closer = ((test_rows + size) as f64 - target).abs() < (test_rows as f64 - target).abs();
        if closer && test_rows + size < n {
            group_in_test[gi] = true;
            test_rows += size;
        }
    }
    if test_rows == 0 {
        group_in_test[order[0]] = true;
    }
    let in_test: Vec<bool> = index.of_row.iter().map(|&gi| group_in_test[gi]).collect();
    Ok(split_by_mask(&in_test))
}

/// Puts the last `test_fraction` of rows by `order_key` in test, so the
/// model is evaluated on data that comes after what it learned from.
///
/// Rows are ordered by key, then by row index. The cut aims at
/// `round(n × test_fraction)` test rows but always falls between two
/// distinct keys, so no key value is on both sides: where the aim lands
/// inside a run of equal keys, the whole run goes to whichever side keeps
/// the test size nearer the aim (train on a tie). Needs two distinct keys.
pub fn time_ordered(order_key: &[i64], test_fraction: f64) -> Result<Split, SplitError> {
    check_fraction(test_fraction)?;
    let n = order_key.len();
    check_rows(n, 2)?;
    let sorted = sorted_by_key(order_key);
    let cuts = key_changes(order_key, &sorted);
    let target = n - test_count(n, test_fraction);
    let chosen = choose_cuts(&cuts, &[target]).ok_or(SplitError::TooFewDistinctKeys {
        needed: 2,
        distinct: cuts.len() + 1,
    })?;
    let mut in_test = vec![false; n];
    for &r in &sorted[chosen[0]..] {
        in_test[r] = true;
    }
    Ok(split_by_mask(&in_test))
}

/// `k` folds of `0..n` at random; fold sizes differ by at most one (the
/// first `n mod k` folds get the extra row). Fold `i`'s test part is its
/// rows, its train part everything else.
pub fn kfold(n: usize, k: usize, seed: u64) -> Result<Vec<Split>, SplitError> {
    check_folds(k, n)?;
    let mut rows: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut rows);
    let mut fold_of = vec![0usize; n];
    let (base, extra) = (n / k, n % k);
    let mut start = 0;
    for fold in 0..k {
        let len = base + usize::from(fold < extra);
        for &r in &rows[start..start + len] {
            fold_of[r] = fold;
        }
        start += len;
    }
    Ok(folds_from_assignment(&fold_of, k))
}

/// `k` folds that keep each class's share in every fold: each class's rows
/// are shuffled and dealt round-robin, carrying on from where the previous
/// class stopped. So every class's count per fold differs by at most one,
/// and so do fold sizes.
pub fn stratified_kfold(classes: &[u32], k: usize, seed: u64) -> Result<Vec<Split>, SplitError> {
    let n = classes.len();
    check_folds(k, n)?;
    let mut fold_of = vec![0usize; n];
    let mut next = 0usize;
    for (&class, rows) in &rows_by_class(classes) {
        let mut rows = rows.clone();
        Rng::derive(seed, u64::from(class)).shuffle(&mut rows);
        for r in rows {
            fold_of[r] = next;
            next = (next + 1) % k;
        }
    }
    Ok(folds_from_assignment(&fold_of, k))
}

/// `k` folds in which every group's rows share one fold, balanced by row
/// count: groups are shuffled, stably sorted largest first, and each goes to
/// the fold with the fewest rows so far (the lowest-numbered on a tie).
/// Needs at least `k` distinct groups.
pub fn group_kfold(groups: &[u64], k: usize, seed: u64) -> Result<Vec<Split>, SplitError> {
    let n = groups.len();
    check_folds(k, n)?;
    let index = GroupIndex::new(groups);
    let g = index.sizes.len();
    if g < k {
        return Err(SplitError::TooFewGroups {
            needed: k,
            groups: g,
        });
    }
    let mut order: Vec<usize> = (0..g).collect();
    Rng::new(seed).shuffle(&mut order);
    // Stable: equal-sized groups keep their shuffled order.
    order.sort_by_key(|&gi| std::cmp::Reverse(index.sizes[gi]));
    let mut fold_rows = vec![0usize; k];
    let mut fold_of_group = vec![0usize; g];
    for gi in order {
        let fold = (0..k).min_by_key(|&f| fold_rows[f]).unwrap_or(0);
        fold_of_group[gi] = fold;
        fold_rows[fold] += index.sizes[gi];
    }
    let fold_of: Vec<usize> = index.of_row.iter().map(|&gi| fold_of_group[gi]).collect();
    Ok(folds_from_assignment(&fold_of, k))
}

/// `k` expanding-window folds over rows ordered by `order_key` (then row
/// index), like scikit-learn's `TimeSeriesSplit`: the rows are cut into a
/// first training block and `k` test blocks of `n / (k + 1)` rows, and fold
/// `i` tests on block `i` after training on everything before it.
///
/// Each cut is moved to the nearest boundary between distinct keys, so no
/// key value is on both sides of a fold. Needs `k + 1` distinct keys.
pub fn time_series_folds(order_key: &[i64], k: usize) -> Result<Vec<Split>, SplitError> {
    if k < 2 {
        return Err(SplitError::TooFewFolds(k));
    }
    let n = order_key.len();
    check_rows(n, k + 1)?;
    let sorted = sorted_by_key(order_key);
    let cuts = key_changes(order_key, &sorted);
    let block = n / (k + 1);
    let targets: Vec<usize> = (0..k).map(|i| n - (k - i) * block).collect();
    let chosen = choose_cuts(&cuts, &targets).ok_or(SplitError::TooFewDistinctKeys {
        needed: k + 1,
        distinct: cuts.len() + 1,
    })?;
    Ok((0..k)
        .map(|i| {
            let end = chosen.get(i + 1).copied().unwrap_or(n);
            let mut train = sorted[..chosen[i]].to_vec();
            let mut test = sorted[chosen[i]..end].to_vec();
            train.sort_unstable();
            test.sort_unstable();
            Split { train, test }
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn check_fraction(fraction: f64) -> Result<(), SplitError> {
    // Written so NaN fails too.
    if fraction > 0.0 && fraction < 1.0 {
        Ok(())
    } else {
        Err(SplitError::InvalidFraction(fraction))
    }
}

fn check_rows(rows: usize, needed: usize) -> Result<(), SplitError> {
    if rows < needed {
        Err(SplitError::TooFewRows { rows, needed })
    } else {
        Ok(())
    }
}

fn check_folds(k: usize, rows: usize) -> Result<(), SplitError> {
    if k < 2 {
        return Err(SplitError::TooFewFolds(k));
    }
    if k > rows {
        return Err(SplitError::TooManyFolds { k, rows });
    }
    Ok(())
}

/// Test rows for `n` rows at `fraction`: rounded, and leaving both sides
/// non-empty. `n` is at least 2.
fn test_count(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
}

fn split_by_mask(in_test: &[bool]) -> Split {
    let mut split = Split::default();
    for (row, &t) in in_test.iter().enumerate() {
        if t {
            split.test.push(row);
        } else {
            split.train.push(row);
        }
    }
    split
}

fn folds_from_assignment(fold_of: &[usize], k: usize) -> Vec<Split> {
    (0..k)
        .map(|fold| {
            let in_test: Vec<bool> = fold_of.iter().map(|&f| f == fold).collect();
            split_by_mask(&in_test)
        })
        .collect()
}

/// Rows of each class, ascending, classes in ascending order.
fn rows_by_class(classes: &[u32]) -> BTreeMap<u32, Vec<usize>> {
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (row, &c) in classes.iter().enumerate() {
        by_class.entry(c).or_default().push(row);
    }
    by_class
}

/// Integer shares close to `quota` that sum to `total` where the bounds
/// allow, by largest remainder: start from the floors, then hand out (or
/// take back) one row at a time in order of remainder, ties to the earlier
/// entry.
fn largest_remainder(quota: &[f64], bounds: &[(usize, usize)], total: usize) -> Vec<usize> {
    let mut take: Vec<usize> = quota
        .iter()
        .zip(bounds)
        .map(|(&q, &(lo, hi))| (q.floor() as usize).clamp(lo, hi))
        .collect();
    let remainder = |i: usize, take: &[usize]| quota[i] - take[i] as f64;
    let mut assigned: usize = take.iter().sum();
    let mut order: Vec<usize> = (0..quota.len()).collect();
    if assigned < total {
        order.sort_by(|&a, &b| remainder(b, &take).total_cmp(&remainder(a, &take)));
    } else {
        order.sort_by(|&a, &b| remainder(a, &take).total_cmp(&remainder(b, &take)));
    }
    while assigned != total {
        let mut progressed = false;
        for &i in &order {
            if assigned == total {
                break;
            }
            let (lo, hi) = bounds[i];
            if assigned < total && take[i] < hi {
                take[i] += 1;
                assigned += 1;
                progressed = true;
            } else if assigned > total && take[i] > lo {
                take[i] -= 1;
                assigned -= 1;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    take
}

/// Dense group numbers: `of_row[r]` is row `r`'s group, `sizes[g]` its row
/// count. Groups are numbered in ascending id order, so the numbering does
/// not depend on row order.
struct GroupIndex {
    of_row: Vec<usize>,
    sizes: Vec<usize>,
}

impl GroupIndex {
    fn new(groups: &[u64]) -> Self {
        let mut ids = groups.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut sizes = vec![0usize; ids.len()];
        let of_row: Vec<usize> = groups
            .iter()
            .map(|g| {
                let gi = ids.binary_search(g).unwrap_or_default();
                sizes[gi] += 1;
                gi
            })
            .collect();
        Self { of_row, sizes }
    }
}

/// Rows ordered by key, then by row index.
fn sorted_by_key(order_key: &[i64]) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..order_key.len()).collect();
    // Stable, so equal keys stay in row order.
    rows.sort_by_key(|&r| order_key[r]);
    rows
}

/// Positions `p` in `sorted` (0 < p < n) where the key changes between
/// `sorted[p - 1]` and `sorted[p]`: the places a cut may go.
fn key_changes(order_key: &[i64], sorted: &[usize]) -> Vec<usize> {
    (1..sorted.len())
        .filter(|&p| order_key[sorted[p - 1]] != order_key[sorted[p]])
        .collect()
}

/// Picks one cut from `cuts` (ascending) per target (ascending), strictly
/// increasing, each as near its target as possible while leaving enough
/// cuts for the targets after it; on a tie the later cut wins. `None` when
/// there are fewer cuts than targets.
fn choose_cuts(cuts: &[usize], targets: &[usize]) -> Option<Vec<usize>> {
    if cuts.len() < targets.len() {
        return None;
    }
    let mut chosen = Vec::with_capacity(targets.len());
    let mut lo = 0;
    for (j, &target) in targets.iter().enumerate() {
        let hi = cuts.len() - (targets.len() - j); // inclusive
        let window = &cuts[lo..=hi];
        // First cut at or after the target, and the one before it.
        let after = window.partition_point(|&c| c < target);
        let best = match (after.checked_sub(1), after < window.len()) {
            (Some(before), true) => {
                if target - window[before] < window[after] - target {
                    before
                } else {
                    after
                }
            }
            (Some(before), false) => before,
            (None, _) => after,
        };
        chosen.push(window[best]);
        lo += best + 1;
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts are sorted, disjoint and together cover `0..n`.
    fn assert_partition(split: &Split, n: usize) {
        assert!(split.train.is_sorted(), "train not sorted");
        assert!(split.test.is_sorted(), "test not sorted");
        let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "not a partition of 0..{n}");
    }

    /// Every row is in exactly one test fold, and each fold's train part is
    /// the complement of its test part.
    fn assert_folds(folds: &[Split], n: usize) {
        let mut seen = vec![0; n];
        for f in folds {
            assert_partition(f, n);
            for &r in &f.test {
                seen[r] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
    }

    fn count_where<T: PartialEq>(rows: &[usize], values: &[T], value: T) -> usize {
        rows.iter().filter(|&&r| values[r] == value).count()
    }

    // ---- random ----------------------------------------------------------

    #[test]
    fn random_puts_the_rounded_fraction_in_test() {
        let s = random(100, 0.2, 7).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (80, 20));
        assert_partition(&s, 100);
        // 10 × 0.25 = 2.5 rounds to 3.
        assert_eq!(random(10, 0.25, 7).unwrap().test.len(), 3);
    }

    #[test]
    fn random_keeps_both_sides_non_empty() {
        assert_eq!(random(2, 0.01, 1).unwrap().test.len(), 1);
        assert_eq!(random(2, 0.99, 1).unwrap().train.len(), 1);
    }

    #[test]
    fn random_is_deterministic_in_the_seed() {
        assert_eq!(
            random(1000, 0.3, 42).unwrap(),
            random(1000, 0.3, 42).unwrap()
        );
        assert_ne!(
            random(1000, 0.3, 42).unwrap(),
            random(1000, 0.3, 43).unwrap()
        );
    }

    // ---- stratified ------------------------------------------------------

    #[test]
    fn stratified_keeps_each_class_share() {
        // 60 / 30 / 10 rows at 20%: exactly 12 / 6 / 2 in test.
        let classes: Vec<u32> = (0..100)
            .map(|i| {
                if i < 60 {
                    0
                } else if i < 90 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let s = stratified(&classes, 0.2, 3).unwrap();
        assert_partition(&s, 100);
        assert_eq!(count_where(&s.test, &classes, 0), 12);
        assert_eq!(count_where(&s.test, &classes, 1), 6);
        assert_eq!(count_where(&s.test, &classes, 2), 2);
    }

    #[test]
    fn stratified_hands_out_remainders_to_hit_the_total() {
        // Sizes 15 / 15 / 20 at 10%: quotas 1.5 / 1.5 / 2 for a total of 5.
        // Floors give 4; the spare row goes to the first of the tied
        // remainders, not to both.
        let classes: Vec<u32> = (0..50)
            .map(|i| {
                if i < 15 {
                    0
                } else if i < 30 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let s = stratified(&classes, 0.1, 3).unwrap();
        let per_class: Vec<usize> = (0..3).map(|c| count_where(&s.test, &classes, c)).collect();
        assert_eq!(per_class, vec![2, 1, 2]);
    }

    #[test]
    fn stratified_puts_a_row_of_each_small_class_on_each_side() {
        // Class 1 has two rows: one each side even at 10%. Class 2 has one
        // row: it stays in train.
        let mut classes = vec![0u32; 20];
        classes[3] = 1;
        classes[11] = 1;
        classes[7] = 2;
        let s = stratified(&classes, 0.1, 9).unwrap();
        assert_partition(&s, 20);
        assert_eq!(count_where(&s.test, &classes, 1), 1);
        assert_eq!(count_where(&s.train, &classes, 1), 1);
        assert_eq!(count_where(&s.test, &classes, 2), 0);
        assert!(count_where(&s.test, &classes, 0) >= 1);
    }

    #[test]
    fn stratified_is_deterministic_in_the_seed() {
        let classes: Vec<u32> = (0..500).map(|i| (i % 7 % 3) as u32).collect();
        assert_eq!(
            stratified(&classes, 0.25, 1).unwrap(),
            stratified(&classes, 0.25, 1).unwrap()
        );
        assert_ne!(
            stratified(&classes, 0.25, 1).unwrap(),
            stratified(&classes, 0.25, 2).unwrap()
        );
    }

    #[test]
    fn stratified_with_only_singleton_classes_is_an_error() {
        assert_eq!(
            stratified(&[0, 1, 2], 0.5, 0),
            Err(SplitError::NoClassToSplit)
        );
    }

    // ---- group -----------------------------------------------------------

    #[test]
    fn group_never_puts_a_group_on_both_sides() {
        // Groups of uneven size, rows interleaved.
        let groups: Vec<u64> = (0..300u64)
            .map(|i| (i * 7919) % 37 % (1 + i % 11))
            .collect();
        for seed in 0..5 {
            let s = group(&groups, 0.25, seed).unwrap();
            assert_partition(&s, groups.len());
            for &t in &s.test {
                assert!(
                    s.train.iter().all(|&r| groups[r] != groups[t]),
                    "group {} leaks",
                    groups[t]
                );
            }
        }
    }

    #[test]
    fn group_test_size_is_close_to_the_fraction_of_rows() {
        // 40 groups of 5 rows: 20% is exactly 8 groups.
        let groups: Vec<u64> = (0..200u64).map(|i| i % 40).collect();
        let s = group(&groups, 0.2, 11).unwrap();
        assert_eq!(s.test.len(), 40);
        // Uneven groups: within one largest group of the aim.
        let groups: Vec<u64> = (0..1000u64).map(|i| (i * i) % 97).collect();
        let largest = (0..97)
            .map(|g| groups.iter().filter(|&&x| x == g).count())
            .max()
            .unwrap();
        let s = group(&groups, 0.3, 11).unwrap();
        assert!(
            (s.test.len() as f64 - 300.0).abs() <= largest as f64,
            "{}",
            s.test.len()
        );
    }

    #[test]
    fn group_with_one_big_group_still_tests_on_some_group() {
        // The aim (1 row) is nearer 0 than either group, but test must not
        // be empty.
        let groups = [1, 1, 1, 2, 2, 2];
        let s = group(&groups, 0.1, 0).unwrap();
        assert_eq!(s.test.len(), 3);
        assert_eq!(
            group(&[5, 5, 5], 0.5, 0),
            Err(SplitError::TooFewGroups {
                needed: 2,
                groups: 1
            })
        );
    }

    #[test]
    fn group_is_deterministic_in_the_seed() {
        let groups: Vec<u64> = (0..400u64).map(|i| i / 4).collect();
        assert_eq!(
            group(&groups, 0.2, 5).unwrap(),
            group(&groups, 0.2, 5).unwrap()
        );
        assert_ne!(
            group(&groups, 0.2, 5).unwrap(),
            group(&groups, 0.2, 6).unwrap()
        );
    }

    // ---- time_ordered ----------------------------------------------------

    // Sorted by key: 1(r2) 2(r7) 3(r5) 4(r1) 4(r4) 4(r8) 5(r6) 6(r3) 7(r9) 8(r0).
    const KEYS: [i64; 10] = [8, 4, 1, 6, 4, 3, 5, 2, 4, 7];

    #[test]
    fn time_ordered_tests_on_the_latest_rows() {
        // 30%: the last three keys 6, 7, 8 are rows 3, 9, 0.
        let s = time_ordered(&KEYS, 0.3).unwrap();
        assert_eq!(s.test, vec![0, 3, 9]);
        assert_partition(&s, 10);
    }

    #[test]
    fn time_ordered_keeps_tied_keys_on_one_side() {
        // 50% aims at a cut after the second of three 4s; moving it past the
        // last 4 (test of 4 rows) is nearer than before the first (6 rows).
        let s = time_ordered(&KEYS, 0.5).unwrap();
        assert_eq!(s.test, vec![0, 3, 6, 9]);
        let max_train = s.train.iter().map(|&r| KEYS[r]).max().unwrap();
        let min_test = s.test.iter().map(|&r| KEYS[r]).min().unwrap();
        assert!(max_train < min_test);
    }

    #[test]
    fn time_ordered_needs_two_distinct_keys() {
        assert_eq!(
            time_ordered(&[3, 3, 3], 0.5),
            Err(SplitError::TooFewDistinctKeys {
                needed: 2,
                distinct: 1
            })
        );
    }

    // ---- k-fold ----------------------------------------------------------

    #[test]
    fn kfold_covers_every_row_once_with_balanced_folds() {
        let folds = kfold(10, 3, 1).unwrap();
        assert_folds(&folds, 10);
        let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
        assert_eq!(sizes, vec![4, 3, 3]);
    }

    #[test]
    fn kfold_is_deterministic_in_the_seed() {
        assert_eq!(kfold(50, 5, 8).unwrap(), kfold(50, 5, 8).unwrap());
        assert_ne!(kfold(50, 5, 8).unwrap(), kfold(50, 5, 9).unwrap());
    }

    #[test]
    fn stratified_kfold_spreads_each_class_evenly() {
        let classes: Vec<u32> = (0..103)
            .map(|i| {
                if i < 70 {
                    0
                } else if i < 95 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let folds = stratified_kfold(&classes, 4, 2).unwrap();
        assert_folds(&folds, classes.len());
        for class in 0..3 {
            let per_fold: Vec<usize> = folds
                .iter()
                .map(|f| count_where(&f.test, &classes, class))
                .collect();
            let (lo, hi) = (
                per_fold.iter().min().unwrap(),
                per_fold.iter().max().unwrap(),
            );
            assert!(hi - lo <= 1, "class {class}: {per_fold:?}");
        }
        let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        assert_eq!(stratified_kfold(&classes, 4, 2).unwrap(), folds);
        assert_ne!(stratified_kfold(&classes, 4, 3).unwrap(), folds);
    }

    #[test]
    fn group_kfold_balances_rows_without_splitting_groups() {
        // Group sizes 10, 9, 8, 2, 2, 1, 1, 1 into 3 folds, largest first
        // into the smallest fold: 10 | 9 | 8, then 2 → 8, 2 → 9, 1 → 10,
        // 1 → 10, 1 → 11: sizes 12, 11, 11 in some order.
        let sizes = [10usize, 9, 8, 2, 2, 1, 1, 1];
        let groups: Vec<u64> = sizes
            .iter()
            .enumerate()
            .flat_map(|(g, &s)| std::iter::repeat_n(100 + g as u64, s))
            .collect();
        let folds = group_kfold(&groups, 3, 4).unwrap();
        assert_folds(&folds, groups.len());
        let mut fold_sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
        fold_sizes.sort_unstable();
        assert_eq!(fold_sizes, vec![11, 11, 12]);
        for f in &folds {
            for &t in &f.test {
                assert!(f.train.iter().all(|&r| groups[r] != groups[t]));
            }
        }
        assert_eq!(group_kfold(&groups, 3, 4).unwrap(), folds);
    }

    #[test]
    fn group_kfold_breaks_size_ties_by_the_seeded_order() {
        // Twelve equal groups: which fold a group lands in depends on the
        // seed, but each fold always gets four groups.
        let groups: Vec<u64> = (0..48u64).map(|i| i % 12).collect();
        let a = group_kfold(&groups, 3, 1).unwrap();
        let b = group_kfold(&groups, 3, 2).unwrap();
        assert!(a.iter().all(|f| f.test.len() == 16));
        assert_ne!(a, b);
        assert_eq!(
            group_kfold(&groups, 13, 1),
            Err(SplitError::TooFewGroups {
                needed: 13,
                groups: 12
            })
        );
    }

    #[test]
    fn time_series_folds_expand_the_training_window() {
        // Keys 0..12 in scrambled row order; 3 folds of 3 rows after a first
        // training block of 3.
        let keys: Vec<i64> = (0..12).map(|i| (i * 5) % 12).collect();
        let folds = time_series_folds(&keys, 3).unwrap();
        assert_eq!(folds.len(), 3);
        for (i, f) in folds.iter().enumerate() {
            assert_eq!((f.train.len(), f.test.len()), (3 * (i + 1), 3));
            let max_train = f.train.iter().map(|&r| keys[r]).max().unwrap();
            let min_test = f.test.iter().map(|&r| keys[r]).min().unwrap();
            assert!(max_train < min_test, "fold {i}");
            if let Some(next) = folds.get(i + 1) {
                let mut grown: Vec<usize> = f.train.iter().chain(&f.test).copied().collect();
                grown.sort_unstable();
                assert_eq!(
                    next.train,
                    grown,
                    "fold {} trains on fold {i}'s rows",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn time_series_folds_never_split_a_key() {
        // Many ties: every cut must fall between distinct keys.
        let keys: Vec<i64> = (0..40).map(|i| (i * 3 % 40) / 6).collect();
        let folds = time_series_folds(&keys, 4).unwrap();
        for f in &folds {
            assert!(!f.test.is_empty());
            let max_train = f.train.iter().map(|&r| keys[r]).max().unwrap();
            let min_test = f.test.iter().map(|&r| keys[r]).min().unwrap();
            assert!(max_train < min_test);
        }
        assert_eq!(
            time_series_folds(&[1, 1, 2, 2, 2, 3], 3),
            Err(SplitError::TooFewDistinctKeys {
                needed: 4,
                distinct: 3
            })
        );
    }

    // ---- errors ----------------------------------------------------------

    #[test]
    fn bad_fractions_and_fold_counts_are_errors() {
        for f in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
            assert!(
                matches!(random(10, f, 0), Err(SplitError::InvalidFraction(_))),
                "{f}"
            );
            assert!(matches!(
                stratified(&[0, 1, 0, 1], f, 0),
                Err(SplitError::InvalidFraction(_))
            ));
            assert!(matches!(
                group(&[0, 1], f, 0),
                Err(SplitError::InvalidFraction(_))
            ));
            assert!(matches!(
                time_ordered(&[0, 1], f),
                Err(SplitError::InvalidFraction(_))
            ));
        }
        assert_eq!(
            random(1, 0.5, 0),
            Err(SplitError::TooFewRows { rows: 1, needed: 2 })
        );
        assert_eq!(kfold(10, 1, 0), Err(SplitError::TooFewFolds(1)));
        assert_eq!(
            kfold(3, 4, 0),
            Err(SplitError::TooManyFolds { k: 4, rows: 3 })
        );
        assert_eq!(
            stratified_kfold(&[0, 1], 3, 0),
            Err(SplitError::TooManyFolds { k: 3, rows: 2 })
        );
        assert_eq!(
            time_series_folds(&[1, 2, 3], 3),
            Err(SplitError::TooFewRows { rows: 3, needed: 4 })
        );
        assert_eq!(
            time_series_folds(&[1, 2, 3], 1),
            Err(SplitError::TooFewFolds(1))
        );
        let msg = SplitError::InvalidFraction(1.5).to_string();
        assert!(msg.contains("`1.5`") && msg.contains("0.2"), "{msg}");
    }
}
