//! Renumber, order, deduplicate and split: raw ratings -> per-user train items + one test item.

use crate::RawRatings;
use rayon::prelude::*;
use spec_dataset::IdMap;
use std::collections::HashMap;

/// Ratings after the reference's steps 1-4: ids renumbered to `0..n` by first appearance in the
/// raw file, each user's ratings in time order (ties keep file order), repeated (user, item)
/// pairs dropped keeping the earliest, and each user's last rating held out as its test positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveLastOut {
    /// Raw user id of each user index.
    pub user_ids: IdMap,
    /// Raw item id of each item index.
    pub item_ids: IdMap,
    /// User `u`'s train items are `train_items[train_offsets[u]..train_offsets[u + 1]]`.
    pub train_offsets: Vec<usize>,
    /// Train items, grouped by user in user order, each user's in time order.
    pub train_items: Vec<u32>,
    /// Each user's test positive (its latest rating).
    pub test_items: Vec<u32>,
    pub stats: Stats,
}

/// Each user's second-latest interaction, held out for model selection
/// ([`LeaveLastOut::hold_out_validation`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationSplit {
    /// Users with a validation positive, in user order.
    pub users: Vec<u32>,
    /// Their validation positives.
    pub items: Vec<u32>,
}

impl ValidationSplit {
    /// User `u`'s validation positive, if it has one (`users` is sorted).
    pub fn item_of(&self, u: usize) -> Option<u32> {
        self.users.binary_search(&(u as u32)).ok().map(|k| self.items[k])
    }
}

/// Counts for the summary line and the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Rows of the raw file.
    pub ratings: usize,
    /// Repeated (user, item) rows dropped.
    pub duplicates: usize,
    /// Users with a single rating: a test positive and no train row.
    pub single_rating_users: usize,
    pub first_timestamp: i64,
    pub last_timestamp: i64,
}

impl LeaveLastOut {
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// User `u`'s train items, in time order.
    pub fn train_of(&self, u: usize) -> &[u32] {
        &self.train_items[self.train_offsets[u]..self.train_offsets[u + 1]]
    }

    /// Holds out each user's second-latest interaction (the latest train item: the same time order
    /// and tie rule as the test positive) as its validation positive, removing it from train.
    /// **Rule for short histories:** a user with fewer than three distinct items (at most one
    /// train item) keeps it in train and gets no validation positive, so every user that had train
    /// rows still has one; such users are simply absent from the validation lists.
    pub fn hold_out_validation(&mut self) -> ValidationSplit {
        let mut split = ValidationSplit::default();
        let mut offsets = Vec::with_capacity(self.train_offsets.len());
        let mut items = Vec::with_capacity(self.train_items.len());
        offsets.push(0);
        for u in 0..self.n_users() {
            let train = self.train_of(u);
            match train.split_last() {
                Some((&last, rest)) if !rest.is_empty() => {
                    items.extend_from_slice(rest);
                    split.users.push(u as u32);
                    split.items.push(last);
                }
                _ => items.extend_from_slice(train),
            }
            offsets.push(items.len());
        }
        self.train_offsets = offsets;
        self.train_items = items;
        split
    }

    /// Runs steps 1-4 on raw ratings (consumed to free their memory early).
    pub fn from_raw(raw: RawRatings) -> LeaveLastOut {
        let RawRatings { users, items, timestamps, user_names, item_names } = raw;
        let ratings = users.len();
        let (users, user_ids) = factorize(users);
        let (items, item_ids) = factorize(items);
        let (user_ids, item_ids) = (id_map(user_ids, user_names), id_map(item_ids, item_names));
        let n_users = user_ids.len();
        let order = order_by_user_then_time(&users, &timestamps, n_users);
        let (first_timestamp, last_timestamp) = timestamps
            .par_iter()
            .fold(|| (i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)))
            .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
        drop(timestamps);

        // Steps 3-4, one user at a time: `seen[item] == u` marks items user u already rated.
        let mut seen = vec![u32::MAX; item_ids.len()];
        let mut train_offsets = Vec::with_capacity(n_users + 1);
        let mut train_items = Vec::with_capacity(ratings.saturating_sub(n_users));
        let mut test_items = Vec::with_capacity(n_users);
        let mut duplicates = 0;
        let mut single_rating_users = 0;
        let mut start = 0;
        train_offsets.push(0);
        for u in 0..n_users {
            let end = start + order.counts[u];
            let segment_start = train_items.len();
            for &row in &order.rows[start..end] {
                let item = items[row as usize];
                if seen[item as usize] == u as u32 {
                    duplicates += 1;
                } else {
                    seen[item as usize] = u as u32;
                    train_items.push(item);
                }
            }
            // Every user has at least one row, so the segment is never empty.
            let last = train_items.pop().expect("a user has at least one rating");
            test_items.push(last);
            if train_items.len() == segment_start {
                single_rating_users += 1;
            }
            train_offsets.push(train_items.len());
            start = end;
        }
        LeaveLastOut {
            user_ids,
            item_ids,
            train_offsets,
            train_items,
            test_items,
            stats: Stats { ratings, duplicates, single_rating_users, first_timestamp, last_timestamp },
        }
    }
}

/// The raw ids of the codes `factorize` handed out: the integers themselves, or the text ids they
/// point to (text ids come already numbered by first appearance, so `ids` is then `0..n`).
fn id_map(ids: Vec<i64>, names: Option<Vec<String>>) -> IdMap {
    match names {
        None => IdMap::Int(ids),
        Some(mut names) => IdMap::Text(ids.iter().map(|&k| std::mem::take(&mut names[k as usize])).collect()),
    }
}

/// Renumbers values to `0..n` in order of first appearance (pandas `factorize` on the unsorted
/// file); returns the codes and the value of each code.
pub fn factorize(values: Vec<i64>) -> (Vec<u32>, Vec<i64>) {
    let (min, max) = values.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mut uniques = Vec::new();
    let codes = if !values.is_empty() && min >= 0 && max < (1 << 28) {
        // MovieLens ids are small non-negative integers: a direct table beats hashing.
        let mut table = vec![u32::MAX; max as usize + 1];
        values
            .iter()
            .map(|&v| {
                let slot = &mut table[v as usize];
                if *slot == u32::MAX {
                    *slot = uniques.len() as u32;
                    uniques.push(v);
                }
                *slot
            })
            .collect()
    } else {
        let mut table: HashMap<i64, u32> = HashMap::new();
        values
            .iter()
            .map(|&v| {
                *table.entry(v).or_insert_with(|| {
                    uniques.push(v);
                    uniques.len() as u32 - 1
                })
            })
            .collect()
    };
    (codes, uniques)
}

/// Row indices grouped by user (users in index order), each user's rows sorted by timestamp with
/// ties in file order.
struct UserOrder {
    rows: Vec<u32>,
    counts: Vec<usize>,
}

fn order_by_user_then_time(users: &[u32], timestamps: &[i64], n_users: usize) -> UserOrder {
    // Counting sort by user: stable, so each user's rows stay in file order.
    let mut counts = vec![0usize; n_users];
    for &u in users {
        counts[u as usize] += 1;
    }
    let mut next = Vec::with_capacity(n_users);
    let mut acc = 0;
    for &c in &counts {
        next.push(acc);
        acc += c;
    }
    let mut rows = vec![0u32; users.len()];
    for (row, &u) in users.iter().enumerate() {
        rows[next[u as usize]] = row as u32;
        next[u as usize] += 1;
    }
    // Then a stable sort of each user's rows by time, users in parallel.
    let mut segments = Vec::with_capacity(n_users);
    let mut rest = rows.as_mut_slice();
    for &c in &counts {
        let (segment, tail) = rest.split_at_mut(c);
        segments.push(segment);
        rest = tail;
    }
    segments.par_iter_mut().for_each(|s| s.sort_by_key(|&r| timestamps[r as usize]));
    UserOrder { rows, counts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorize_numbers_by_first_appearance() {
        assert_eq!(factorize(vec![50, 7, 50, 3, 7]), (vec![0, 1, 0, 2, 1], vec![50, 7, 3]));
        assert_eq!(factorize(vec![-5, 1 << 40, -5]), (vec![0, 1, 0], vec![-5, 1 << 40]));
        assert_eq!(factorize(vec![]), (vec![], vec![]));
    }

    #[test]
    fn text_ids_keep_their_names() {
        // Text ids arrive as codes into their names, numbered by first appearance.
        let raw = RawRatings {
            users: vec![0, 1, 0],
            items: vec![0, 0, 1],
            timestamps: vec![1, 2, 3],
            user_names: Some(vec!["u7".into(), "alice@x".into()]),
            item_names: None,
        };
        let s = LeaveLastOut::from_raw(raw);
        assert_eq!(s.user_ids, IdMap::Text(vec!["u7".into(), "alice@x".into()]));
        assert_eq!(s.item_ids, IdMap::Int(vec![0, 1]));
    }

    #[test]
    fn leave_last_out_by_hand() {
        // raw rows (user, item, time) in file order
        let rows = [(10, 100, 5), (20, 200, 1), (10, 300, 2), (10, 100, 9), (20, 300, 1), (30, 100, 4), (10, 400, 5)];
        let raw = RawRatings {
            users: rows.iter().map(|r| r.0).collect(),
            items: rows.iter().map(|r| r.1).collect(),
            timestamps: rows.iter().map(|r| r.2).collect(),
            ..Default::default()
        };
        let s = LeaveLastOut::from_raw(raw);
        assert_eq!(s.user_ids, IdMap::Int(vec![10, 20, 30]));
        assert_eq!(s.item_ids, IdMap::Int(vec![100, 200, 300, 400]));
        // user 10: times 2 (300), 5 (100), 5 (400, after 100 in file order), 9 (100 again: dropped)
        assert_eq!(s.train_of(0), [2, 0]);
        assert_eq!(s.test_items[0], 3);
        // user 20: two rows at time 1, file order kept: 200 then 300
        assert_eq!(s.train_of(1), [1]);
        assert_eq!(s.test_items[1], 2);
        // user 30: a single rating: test only
        assert_eq!(s.train_of(2), [] as [u32; 0]);
        assert_eq!(s.test_items[2], 0);
        assert_eq!(
            s.stats,
            Stats { ratings: 7, duplicates: 1, single_rating_users: 1, first_timestamp: 1, last_timestamp: 9 }
        );
    }
}
