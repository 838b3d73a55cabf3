//! A map as one sorted vector: what the map writer keeps of each slot it wrote. Hundreds of
//! thousands of entries (every country's networks) cost their size and no more, and two
//! tables are compared by walking both once.

/// Entries sorted by key, each key once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedTable<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedTable<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedTable<K, V> {
    /// The last value given for a key wins, as with a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: equal keys keep their order, and the last one stays.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(K, V)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match kept.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => kept.push(entry),
            }
        }
        kept.shrink_to_fit();
        Self(kept)
    }
}

impl<K: Ord, V: PartialEq> SortedTable<K, V> {
    #[must_use]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.0
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.0.iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What turns `self` into `new`: the keys to remove, then the entries to write (new keys
    /// and changed values).
    #[must_use]
    pub fn changes<'a>(&'a self, new: &'a Self) -> (Vec<&'a K>, Vec<&'a (K, V)>) {
        let (mut removed, mut written) = (Vec::new(), Vec::new());
        let (mut old, mut new) = (self.0.iter().peekable(), new.0.iter().peekable());
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some((k, _)), None) => {
                    removed.push(k);
                    old.next();
                }
                (None, Some(entry)) => {
                    written.push(*entry);
                    new.next();
                }
                (Some((ok, ov)), Some(entry)) => match ok.cmp(&entry.0) {
                    std::cmp::Ordering::Less => {
                        removed.push(ok);
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        written.push(*entry);
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if *ov != entry.1 {
                            written.push(*entry);
                        }
                        old.next();
                        new.next();
                    }
                },
            }
        }
        (removed, written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_removals_and_writes() {
        let old: SortedTable<u32, char> = [(1, 'a'), (2, 'b'), (4, 'd')].into_iter().collect();
        let new: SortedTable<u32, char> = [(4, 'D'), (2, 'b'), (3, 'c')].into_iter().collect();
        let (removed, written) = old.changes(&new);
        assert_eq!(removed, [&1]);
        assert_eq!(written, [&(3, 'c'), &(4, 'D')]);
        assert_eq!(new.get(&4), Some(&'D'));
        assert_eq!(new.get(&1), None);
        let (removed, written) = new.changes(&new);
        assert!(removed.is_empty() && written.is_empty());
    }

    #[test]
    fn the_last_value_of_a_key_wins() {
        let table: SortedTable<u32, char> = [(1, 'a'), (1, 'b')].into_iter().collect();
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(&1), Some(&'b'));
    }
}
