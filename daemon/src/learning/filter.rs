//! The daemon's side of the filter in front of the kernel's learned table (see
//! `vigie_common::learned::FILTER_BITS`): a bit per address hash and slot, set before an
//! address is written into the table, so that a packet that finds the address also finds its
//! bit; rebuilt from the addresses a slot holds when some left it, since a bit cannot tell
//! which of the addresses sharing it went.
//!
//! A word the kernel reads while it is written is either word or a mix of their bytes: setting
//! bits, every byte of the new word holds the old one's bits; rebuilding, the new word is made of
//! addresses still in the table, whose bits the old word holds too. Either way no bit of an
//! address in the table is ever missing.

use std::net::IpAddr;

use aya::maps::{Array, MapData, MapError};
use vigie_common::learned::{FILTER_WORDS, filter_position};

use super::learned_key;

/// The kernel's filter and the daemon's copy of it.
pub struct LearnedFilter {
    map: Array<MapData, u64>,
    words: Vec<u64>,
}

impl LearnedFilter {
    /// Reads the filter the kernel holds (a daemon may start over an earlier one's).
    pub fn open(map: Array<MapData, u64>) -> Result<Self, MapError> {
        let words = (0..2 * FILTER_WORDS)
            .map(|i| map.get(&i, 0))
            .collect::<Result<_, _>>()?;
        Ok(Self { map, words })
    }

    /// Sets the bit of `addr` in `slot`, in the kernel first if it was not set.
    pub fn mark(&mut self, slot: u32, addr: IpAddr) -> Result<(), MapError> {
        let (word, bit) = position(slot, addr);
        let value = self.words[word as usize];
        if value & bit == 0 {
            self.write(word, value | bit)?;
        }
        Ok(())
    }

    /// Makes the filter of `slot` hold exactly the bits of `addrs` (the addresses the slot's
    /// table holds): only the words that change are written.
    pub fn rebuild<'a>(
        &mut self,
        slot: u32,
        addrs: impl IntoIterator<Item = &'a IpAddr>,
    ) -> Result<(), MapError> {
        let first = (slot & 1) * FILTER_WORDS;
        let mut wanted = vec![0u64; FILTER_WORDS as usize];
        for addr in addrs {
            let (word, bit) = position(slot, *addr);
            wanted[(word - first) as usize] |= bit;
        }
        for (offset, value) in wanted.into_iter().enumerate() {
            let word = first + offset as u32;
            if self.words[word as usize] != value {
                self.write(word, value)?;
            }
        }
        Ok(())
    }

    /// Whether the kernel's filter holds the bit of `addr` in `slot` (what a packet reads).
    pub fn holds(&self, slot: u32, addr: IpAddr) -> Result<bool, MapError> {
        let (word, bit) = position(slot, addr);
        Ok(self.map.get(&word, 0)? & bit != 0)
    }

    fn write(&mut self, word: u32, value: u64) -> Result<(), MapError> {
        self.map.set(word, &value, 0)?;
        self.words[word as usize] = value;
        Ok(())
    }
}

fn position(slot: u32, addr: IpAddr) -> (u32, u64) {
    let key = learned_key(slot, addr);
    filter_position(slot, key.family, &key.addr)
}
