//! Kernel numbers that keep their names from one policy to the next.
//!
//! Services, source groups and rules are numbers in the kernel: a flow holds its service's
//! number and its deciding rule's, a counter row (cumulative, kept across reloads and
//! restarts) its rule's and its group's. The compiler numbers by position (catalog order,
//! group-name order, rule order in `policy.toml`), so a name added before the others would move
//! every later one onto another's number, and what the kernel holds under that number would
//! be read under the wrong name. The daemon therefore renumbers each policy after the
//! numbering in force: a name keeps its number, a new name takes one never given, and a
//! removed name's number stays reserved for it while the kernel's table has room.

use std::collections::{HashMap, HashSet};

use vigie_common::{action, limits};

/// Names by number: index = number, "" where no name holds the number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Numbering(Vec<String>);

/// The numbers one kernel table gives: `first..limit` (those below `first` mean "none").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbers {
    pub first: usize,
    pub limit: usize,
}

impl Numbers {
    /// 0 is "no service"; a rule selects services with a 128-bit mask.
    pub const SERVICES: Self = Self {
        first: 1,
        limit: limits::MAX_SERVICES as usize,
    };
    /// 0 is "in no group"; a rule selects groups with a 64-bit mask.
    pub const GROUPS: Self = Self {
        first: 1,
        limit: limits::MAX_GROUPS as usize,
    };
    /// Below the numbers that name no rule (`action::rule::NO_POLICY`, `DEFAULT`), which also
    /// keeps them within a counter row's 16 bits.
    pub const RULES: Self = Self {
        first: 0,
        limit: action::rule::NO_POLICY as usize,
    };
}

/// The numbers given to a policy's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renumbering {
    /// `numbers[i]` is the number of the i-th name.
    pub numbers: Vec<usize>,
    /// False when the reserved numbers left no room for the new names: some of them took the
    /// number of a removed name, whose rows and flows may then be read under the newcomer's.
    pub kept_reserved: bool,
}

impl From<Vec<String>> for Numbering {
    fn from(names: Vec<String>) -> Self {
        Self(names)
    }
}

impl Numbering {
    /// The numbering of `numbered`'s (number, name) pairs.
    pub fn of<'a>(numbered: impl IntoIterator<Item = (usize, &'a str)>) -> Self {
        let mut names = Vec::new();
        for (number, name) in numbered {
            if names.len() <= number {
                names.resize(number + 1, String::new());
            }
            name.clone_into(&mut names[number]);
        }
        Self(names)
    }

    #[must_use]
    pub fn into_names(self) -> Vec<String> {
        self.0
    }

    /// The name that holds `number`, if one does.
    #[must_use]
    pub fn name(&self, number: usize) -> Option<&str> {
        self.0
            .get(number)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    /// Numbers within `numbers` for `names` (each given once): a name this numbering knows
    /// keeps its number, a new one takes the lowest number this numbering gave no name (the
    /// numbers of removed names stay reserved). When those leave no room, the numbers never given
    /// go first, then reserved ones, lowest first (`kept_reserved` is false then). `None` when the names
    /// outnumber the table itself.
    #[must_use]
    pub fn renumber(&self, names: &[&str], numbers: Numbers) -> Option<Renumbering> {
        let known: HashMap<&str, usize> = self
            .0
            .iter()
            .enumerate()
            .filter(|(number, name)| {
                !name.is_empty() && (numbers.first..numbers.limit).contains(number)
            })
            .map(|(number, name)| (name.as_str(), number))
            // A name written twice (a hand-edited state file) keeps the lower number.
            .rev()
            .collect();
        let current: HashSet<&str> = names.iter().copied().collect();
        let assign = |reserve_removed: bool| -> Option<Vec<usize>> {
            let held = |number: usize| {
                self.name(number)
                    .is_some_and(|name| reserve_removed || current.contains(name))
            };
            // Numbers never given first; then, only when those run out, the removed names'
            // (lowest first): each one given away loses a removed name its counts.
            let never_given = |n: &usize| self.name(*n).is_none();
            let range = numbers.first..numbers.limit;
            let mut free = range
                .clone()
                .filter(never_given)
                .chain(range.filter(|n| !never_given(n)))
                .filter(|&n| !held(n));
            names
                .iter()
                .map(|name| known.get(name).copied().or_else(|| free.next()))
                .collect()
        };
        match assign(true) {
            Some(numbers) => Some(Renumbering {
                numbers,
                kept_reserved: true,
            }),
            None => assign(false).map(|numbers| Renumbering {
                numbers,
                kept_reserved: false,
            }),
        }
    }

    /// The names of this numbering that `current` no longer has, at the numbers `current`
    /// leaves free ("" elsewhere): what stays reserved after a policy numbered `current`.
    #[must_use]
    pub fn removed_from(&self, current: &Self) -> Self {
        let kept: HashSet<&str> = current.0.iter().map(String::as_str).collect();
        let mut removed: Vec<String> = self
            .0
            .iter()
            .enumerate()
            .map(|(number, name)| {
                if current.name(number).is_none() && !kept.contains(name.as_str()) {
                    name.clone()
                } else {
                    String::new()
                }
            })
            .collect();
        // No trailing gap: the same reservations always compare equal.
        while removed.last().is_some_and(String::is_empty) {
            removed.pop();
        }
        Self(removed)
    }

    /// This numbering, with `other`'s names at the numbers it leaves free.
    #[must_use]
    pub fn merged(&self, other: &Self) -> Self {
        let mut names = self.0.clone();
        if names.len() < other.0.len() {
            names.resize(other.0.len(), String::new());
        }
        for (name, theirs) in names.iter_mut().zip(&other.0) {
            if name.is_empty() {
                name.clone_from(theirs);
            }
        }
        Self(names)
    }

    /// The numbering to keep after a policy that numbered its names `current` (renumbered
    /// after this one): `current`, and the numbers this one reserved that no name of `current`
    /// took.
    #[must_use]
    pub fn after(&self, current: &Self) -> Self {
        current.merged(&self.removed_from(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbering(names: &[&str]) -> Numbering {
        Numbering(names.iter().map(|&n| n.to_owned()).collect())
    }

    const SMALL: Numbers = Numbers { first: 1, limit: 4 };

    #[test]
    fn known_names_keep_their_numbers_and_new_ones_take_unused_numbers() {
        let previous = numbering(&["", "b", "", "c"]);
        let renumbered = previous.renumber(&["a", "b", "c"], SMALL).unwrap();
        assert_eq!(renumbered.numbers, [2, 1, 3]);
        assert!(renumbered.kept_reserved);
    }

    #[test]
    fn removed_names_keep_their_numbers_reserved_until_there_is_no_other() {
        let previous = numbering(&["", "gone", "b"]);
        let renumbered = previous.renumber(&["b", "new"], SMALL).unwrap();
        assert_eq!(
            (renumbered.numbers, renumbered.kept_reserved),
            (vec![2, 3], true)
        );
        let after = previous.after(&Numbering::of([(2, "b"), (3, "new")]));
        assert_eq!(after, numbering(&["", "gone", "b", "new"]));

        // One more name: only the removed one's number is left.
        let crowded = after.renumber(&["b", "new", "newer"], SMALL).unwrap();
        assert_eq!(
            (crowded.numbers, crowded.kept_reserved),
            (vec![2, 3, 1], false)
        );
        assert_eq!(after.renumber(&["v", "w", "x", "y"], SMALL), None);
    }

    #[test]
    fn a_crowded_table_gives_away_only_the_reserved_numbers_it_must() {
        // Three removed names, two numbers never given, three new names: the two never-given
        // numbers first, then one reserved number (the lowest); the other two keep their names.
        let previous = numbering(&["", "g1", "g2", "g3", "a", "b"]);
        let eight = Numbers { first: 1, limit: 8 };
        let renumbered = previous
            .renumber(&["a", "b", "n1", "n2", "n3"], eight)
            .unwrap();
        assert_eq!(
            (renumbered.numbers, renumbered.kept_reserved),
            (vec![4, 5, 6, 7, 1], false)
        );
    }

    #[test]
    fn names_past_the_table_take_new_numbers() {
        let previous = numbering(&["", "a", "", "", "b"]);
        let renumbered = previous.renumber(&["b", "a"], SMALL).unwrap();
        assert_eq!(renumbered.numbers, [2, 1]);
    }

    #[test]
    fn reservations_compare_equal_whatever_the_gaps_after_them() {
        let previous = numbering(&["", "gone", "", "", ""]);
        let current = Numbering::of([(2, "b")]);
        assert_eq!(previous.removed_from(&current), numbering(&["", "gone"]));
        let after = previous.after(&current);
        assert_eq!(
            after.removed_from(&current),
            previous.removed_from(&current)
        );
    }
}
