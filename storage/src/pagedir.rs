//! A table's page directory: the first key of every page, with what the
//! directory knows of it ([`PageMeta`]), in key order.
//!
//! Reads go through the ordered map, except the one every scan batch and
//! every fetched record makes, "which page covers this key", which a
//! [`Finder`] answers: a sorted array of each page's first 16 key bytes,
//! searched without following a pointer per comparison (a map of `Vec<u8>`
//! keys reads a separate allocation for each key it compares, a cache miss
//! each on a table of thousands of pages). The finder is built on the first
//! read after a change and dropped by the next change; changes come from bulk
//! loads and sweeps, a few per second at most, reads from every record
//! fetched. The directory also keeps its rows' total, which the planner asks
//! for on every statement.

use crate::table::PageMeta;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The pages of one table, by first key.
#[derive(Debug, Default)]
pub(crate) struct PageDir {
    map: BTreeMap<Vec<u8>, PageMeta>,
    rows: u64,
    finder: OnceLock<Finder>,
}

/// The directory as a sorted array, for finding the page of a key.
#[derive(Debug)]
struct Finder {
    /// Each page's first key's first 16 bytes (zero-padded), big-endian, so
    /// that they order as the keys do wherever they differ.
    prefixes: Vec<u128>,
    /// The pages, in the same order.
    pages: Vec<(Vec<u8>, PageMeta)>,
}

/// The first 16 bytes of `key` (zero-padded) as a number that orders as the
/// bytes do wherever they differ.
pub(crate) fn prefix(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    for (d, s) in b.iter_mut().zip(key) {
        *d = *s;
    }
    u128::from_be_bytes(b)
}

impl Finder {
    fn new(map: &BTreeMap<Vec<u8>, PageMeta>) -> Self {
        let pages: Vec<(Vec<u8>, PageMeta)> =
            map.iter().map(|(k, m)| (k.clone(), m.clone())).collect();
        Self {
            prefixes: pages.iter().map(|(k, _)| prefix(k)).collect(),
            pages,
        }
    }

    /// The position of the last page whose first key is at most `key`.
    fn at_or_before(&self, key: &[u8]) -> Option<usize> {
        let p = prefix(key);
        // Pages with a smaller prefix have a smaller first key; among those
        // with an equal prefix the full keys decide.
        let mut i = self.prefixes.partition_point(|x| *x <= p);
        while i > 0
            && self.prefixes.get(i - 1) == Some(&p)
            && self
                .pages
                .get(i - 1)
                .is_some_and(|(k, _)| k.as_slice() > key)
        {
            i -= 1;
        }
        i.checked_sub(1)
    }

    fn entry(&self, i: usize) -> Option<(&Vec<u8>, &PageMeta)> {
        self.pages.get(i).map(|(k, m)| (k, m))
    }
}

impl PageDir {
    /// A directory of `map`'s pages.
    pub(crate) fn from_map(map: BTreeMap<Vec<u8>, PageMeta>) -> Self {
        let rows = map.values().map(|m| u64::from(m.rows)).sum();
        Self {
            map,
            rows,
            finder: OnceLock::new(),
        }
    }

    /// Rows the pages hold, deleted or not.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds or replaces the page starting at `first`.
    pub(crate) fn insert(&mut self, first: Vec<u8>, meta: PageMeta) {
        self.rows += u64::from(meta.rows);
        if let Some(old) = self.map.insert(first, meta) {
            self.rows = self.rows.saturating_sub(u64::from(old.rows));
        }
        self.finder = OnceLock::new();
    }

    /// Removes the page starting at `first`.
    pub(crate) fn remove(&mut self, first: &[u8]) -> Option<PageMeta> {
        let old = self.map.remove(first)?;
        self.rows = self.rows.saturating_sub(u64::from(old.rows));
        self.finder = OnceLock::new();
        Some(old)
    }

    fn finder(&self) -> &Finder {
        self.finder.get_or_init(|| Finder::new(&self.map))
    }

    /// The page whose first key is the last at most `key`.
    pub(crate) fn at_or_before(&self, key: &[u8]) -> Option<(&Vec<u8>, &PageMeta)> {
        let f = self.finder();
        f.at_or_before(key).and_then(|i| f.entry(i))
    }

    /// The first page.
    pub(crate) fn first(&self) -> Option<(&Vec<u8>, &PageMeta)> {
        self.finder().entry(0)
    }

    /// The first key of the first page above `key`, if any.
    pub(crate) fn next_first(&self, key: &[u8]) -> Option<&Vec<u8>> {
        let f = self.finder();
        let i = f.at_or_before(key).map_or(0, |i| i + 1);
        f.entry(i).map(|(k, _)| k)
    }
}

impl std::ops::Deref for PageDir {
    type Target = BTreeMap<Vec<u8>, PageMeta>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<'a> IntoIterator for &'a PageDir {
    type Item = (&'a Vec<u8>, &'a PageMeta);
    type IntoIter = std::collections::btree_map::Iter<'a, Vec<u8>, PageMeta>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scratchbird_types::TxnId;
    use std::ops::Bound;

    fn meta(rows: u32) -> PageMeta {
        PageMeta {
            creator: TxnId(0),
            rows,
            bytes: 0,
            last_key: Vec::new(),
            generation: 0,
        }
    }

    /// Every lookup agrees with the ordered map's own, over keys that share
    /// long prefixes, differ only past 16 bytes, and are prefixes of one
    /// another.
    #[test]
    fn the_finder_answers_as_the_map_does() {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for a in 0u8..6 {
            keys.push(vec![a]);
            keys.push(vec![a, 0]);
            keys.push(vec![a, 0, 0]);
            let mut long = vec![a; 16];
            keys.push(long.clone());
            long.push(3);
            keys.push(long.clone());
            long.push(0);
            keys.push(long.clone());
            let mut other = vec![a; 16];
            other.push(9);
            keys.push(other);
        }
        let mut dir = PageDir::default();
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            dir.insert(k.clone(), meta(u32::try_from(i).unwrap_or(0)));
        }
        let mut probes = keys.clone();
        probes.push(Vec::new());
        probes.push(vec![255; 20]);
        for k in &probes {
            let want = dir
                .range::<[u8], _>((Bound::Unbounded, Bound::Included(k.as_slice())))
                .next_back()
                .map(|(f, _)| f.clone());
            assert_eq!(dir.at_or_before(k).map(|(f, _)| f.clone()), want, "{k:?}");
            let next = dir
                .range::<[u8], _>((Bound::Excluded(k.as_slice()), Bound::Unbounded))
                .next()
                .map(|(f, _)| f.clone());
            assert_eq!(dir.next_first(k).cloned(), next, "{k:?}");
        }
        let total: u64 = dir.values().map(|m| u64::from(m.rows)).sum();
        assert_eq!(dir.rows(), total);
        let first = dir.keys().next().cloned();
        if let Some(f) = &first {
            assert!(dir.remove(f).is_some());
        }
        let total: u64 = dir.values().map(|m| u64::from(m.rows)).sum();
        assert_eq!(dir.rows(), total);
        assert_eq!(
            dir.first().map(|(k, _)| k.clone()),
            dir.keys().next().cloned()
        );
    }
}
