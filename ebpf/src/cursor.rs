//! The one way the programs read a packet: a cursor that checks every read against the end
//! of the data before it happens, so the verifier sees a bound for each access.

use core::mem::size_of;

pub struct Cursor {
    pos: usize,
    end: usize,
}

impl Cursor {
    #[inline(always)]
    pub const fn new(data: usize, end: usize) -> Self {
        Self { pos: data, end }
    }

    /// Reads a header of type `T` and moves past it, or None if the packet is too short.
    #[inline(always)]
    pub fn read<T: Copy>(&mut self) -> Option<T> {
        let start = self.pos;
        if start + size_of::<T>() > self.end {
            return None;
        }
        self.pos = start + size_of::<T>();
        // SAFETY: the bytes [start, start + size_of::<T>()) were checked to lie in the packet;
        // headers have no alignment guarantee, hence the unaligned read.
        Some(unsafe { (start as *const T).read_unaligned() })
    }

    /// The current position, as an address.
    #[inline(always)]
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// The end of the data, as an address.
    #[inline(always)]
    pub const fn end(&self) -> usize {
        self.end
    }

    /// Moves past `len` bytes, which the caller bounded; fails if the packet is shorter.
    #[inline(always)]
    pub fn skip(&mut self, len: usize) -> Option<()> {
        let next = self.pos + len;
        if next > self.end {
            return None;
        }
        self.pos = next;
        Some(())
    }
}
