//! Which channels a busy instance holds: the filter its announcements
//! carry, so that the others hold back only the publishes that reach it.
//!
//! A Bloom filter of the Redis channel names the instance is subscribed
//! to, or is subscribing (topics and sockets; the broadcast channel
//! reaches every instance and is not in it). A channel's hash is XXH3-64
//! of its name; its four bits are `(lo + i * hi) mod m` for `i` in 0..4
//! (32-bit wrapping arithmetic), `lo` and `hi` the hash's low and high
//! 32 bits, `m` the filter's size in bits. Bit `p` is bit `p % 8` of byte
//! `p / 8`. A channel held is never missed; a false positive holds back a
//! publish that need not wait (as before filters), and since the busy
//! instance never takes it, it is not granted back either.

use std::collections::HashMap;

/// The smallest filter, in bits.
const MIN_BITS: usize = 1 << MIN_LOG2;
const MIN_LOG2: u8 = 9;
/// The largest filter (8 KiB on the wire); past about 4,000 channels its
/// false positives grow (an instance holding 16,000 holds back about one
/// publish in seven to channels it does not hold).
const MAX_LOG2: u8 = 16;
/// Bits per held channel, before rounding up to a power of two: with four
/// bits set per channel, about 0.24 % false positives.
const BITS_PER_CHANNEL: usize = 16;
/// Bits set per channel.
const BITS_SET: u32 = 4;

/// A channel name's hash, as the filter uses it.
pub(crate) fn hash(channel: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(channel.as_bytes())
}

/// A filter of held channels.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    bytes: Box<[u8]>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl Filter {
    /// A filter sized for the channels `hashes` holds, with each of them.
    pub(crate) fn of<'a>(hashes: impl ExactSizeIterator<Item = &'a u64>) -> Self {
        let bits = hashes
            .len()
            .saturating_mul(BITS_PER_CHANNEL)
            .next_power_of_two()
            .clamp(MIN_BITS, 1 << MAX_LOG2);
        let mut filter = Self {
            bytes: vec![0; bits / 8].into_boxed_slice(),
        };
        for &h in hashes {
            for p in filter.positions(h) {
                filter.bytes[p / 8] |= 1 << (p % 8);
            }
        }
        filter
    }

    fn bits(&self) -> usize {
        self.bytes.len() * 8
    }

    fn positions(&self, hash: u64) -> impl Iterator<Item = usize> {
        let (lo, hi) = (hash as u32, (hash >> 32) as u32);
        let mask = self.bits() - 1;
        (0..BITS_SET).map(move |i| lo.wrapping_add(i.wrapping_mul(hi)) as usize & mask)
    }

    /// Whether the channel of `hash` may be held (no: it is not).
    pub(crate) fn may_hold(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|p| self.bytes[p / 8] & (1 << (p % 8)) != 0)
    }

    /// Appends the wire form: the size's base-2 logarithm (one byte), then
    /// the bits.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.bits().trailing_zeros() as u8);
        out.extend_from_slice(&self.bytes);
    }

    /// Reads the wire form, which must fill `bytes` exactly.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let [log2, bits @ ..] = bytes else {
            return None;
        };
        if !(MIN_LOG2..=MAX_LOG2).contains(log2) || bits.len() != (1usize << log2) / 8 {
            return None;
        }
        Some(Self { bytes: bits.into() })
    }
}

/// The channels this instance's subscriber holds (by hash, counted, so
/// that two channels of one hash are both held until both are gone), kept
/// by the provider's task as it subscribes and unsubscribes, and the
/// filter of them last built (rebuilt only after a change).
#[derive(Default)]
pub(crate) struct Held {
    hashes: HashMap<u64, u32>,
    built: Option<Filter>,
}

impl Held {
    #[cfg(test)]
    pub(crate) fn extend(&mut self, channels: &[String]) {
        for channel in channels {
            let _ = self.add(channel);
        }
    }

    /// A channel is (being) subscribed: once per subscription. Whether
    /// the filter changed (its hash was not held yet).
    pub(crate) fn add(&mut self, channel: &str) -> bool {
        let n = self.hashes.entry(hash(channel)).or_insert(0);
        *n = n.saturating_add(1);
        let new = *n == 1;
        if new {
            self.built = None;
        }
        new
    }

    /// A subscription added before is gone.
    pub(crate) fn remove(&mut self, channel: &str) {
        let h = hash(channel);
        if let Some(n) = self.hashes.get_mut(&h) {
            *n -= 1;
            if *n == 0 {
                self.hashes.remove(&h);
                self.built = None;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.hashes = HashMap::new();
        self.built = None;
    }

    /// The filter of what is held now.
    pub(crate) fn filter(&mut self) -> Filter {
        self.built
            .get_or_insert_with(|| Filter::of(self.hashes.keys()))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_channel_is_always_found_and_few_others_are() {
        let held: Vec<String> = (0..1000).map(|i| format!("ori:t:held-{i}")).collect();
        let mut h = Held::default();
        for c in &held {
            assert!(h.add(c));
        }
        let filter = h.filter();
        assert_eq!(filter.bits(), 16384);
        assert!(held.iter().all(|c| filter.may_hold(hash(c))));
        let false_positives = (0..10_000)
            .filter(|i| filter.may_hold(hash(&format!("ori:t:other-{i}"))))
            .count();
        assert!(false_positives < 100, "{false_positives} of 10,000");
        // Two channels of one hash: held until both are gone.
        let mut twice = Held::default();
        assert!(twice.add("ori:t:same"));
        assert!(!twice.add("ori:t:same"), "no change: already held");
        twice.remove("ori:t:same");
        assert!(twice.filter().may_hold(hash("ori:t:same")));
        twice.remove("ori:t:same");
        assert!(!twice.filter().may_hold(hash("ori:t:same")));
        // A change rebuilds the filter: without a channel removed, or
        // anything after a clear.
        let mut one = Held::default();
        let _ = one.add("ori:t:only");
        let _ = one.add("ori:t:second");
        assert!(one.filter().may_hold(hash("ori:t:only")));
        one.remove("ori:t:only");
        assert!(!one.filter().may_hold(hash("ori:t:only")));
        assert!(one.filter().may_hold(hash("ori:t:second")));
        h.clear();
        assert!(!h.filter().may_hold(hash(&held[1])));
    }

    #[test]
    fn filters_are_sized_by_what_they_hold_within_bounds() {
        let none: [u64; 0] = [];
        assert_eq!(Filter::of(none.iter()).bits(), MIN_BITS);
        let many: Vec<u64> = (0..100_000u64).collect();
        assert_eq!(Filter::of(many.iter()).bits(), 1 << MAX_LOG2);
        // The same channels give the same bits wherever they are built.
        let names = ["a", "b", "ori:t:x"];
        let hashes: Vec<u64> = names.iter().map(|n| hash(n)).collect();
        assert_eq!(Filter::of(hashes.iter()), Filter::of(hashes.iter().rev()));
        assert_eq!(hash("ori:t:x"), xxhash_rust::xxh3::xxh3_64(b"ori:t:x"));
    }

    #[test]
    fn the_wire_form_round_trips_and_wrong_sizes_are_refused() {
        let hashes = [hash("ori:t:a"), hash("ori:s:b")];
        let filter = Filter::of(hashes.iter());
        let mut wire = Vec::new();
        filter.encode_into(&mut wire);
        assert_eq!(wire.len(), 1 + 64);
        assert_eq!(Filter::decode(&wire), Some(filter));
        assert_eq!(Filter::decode(&wire[..wire.len() - 1]), None);
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(Filter::decode(&long), None);
        for log2 in [0, 3, MIN_LOG2 - 1, MAX_LOG2 + 1, 64, 255] {
            let mut odd = vec![log2];
            odd.extend(std::iter::repeat_n(0, (1usize << log2.min(20)) / 8));
            assert_eq!(Filter::decode(&odd), None, "log2 {log2}");
        }
        assert_eq!(Filter::decode(&[]), None);
    }
}
