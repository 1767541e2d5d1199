//! The pressure channel's announcements (layout in the parent module's
//! docs).

use crate::envelope::InstanceId;

use super::holds::Filter;
use super::MAX_GRANTS;

const VERSION: u8 = 1;
const BEHIND: u8 = 1;
const GRANTS: u8 = 2;
const HOLDS: u8 = 4;
/// An entry of a grant: the instance's id, its count.
const GRANT_LEN: usize = 20;

/// A decoded announcement.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub(crate) instance: InstanceId,
    pub(crate) behind: bool,
    /// Envelopes of each instance the announcing one took from Redis since
    /// its previous grant.
    pub(crate) grants: Vec<(InstanceId, u32)>,
    /// The channels the announcing instance holds.
    pub(crate) holds: Option<Filter>,
}

#[cfg(test)]
impl Announcement {
    /// "Behind" from `instance`, with `grants`.
    pub(crate) fn behind(instance: InstanceId, grants: &[(InstanceId, u32)]) -> Self {
        Self {
            instance,
            behind: true,
            grants: grants.to_vec(),
            holds: None,
        }
    }
}

/// An announcement without grants.
pub(crate) fn encode(instance: &InstanceId, behind: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.push(VERSION);
    out.push(if behind { BEHIND } else { 0 });
    out.extend_from_slice(instance);
    out
}

/// "Behind", with grants (1..=[`MAX_GRANTS`] of them, counts at least 1).
pub(crate) fn encode_grants(instance: &InstanceId, grants: &[(InstanceId, u32)]) -> Vec<u8> {
    debug_assert!(!grants.is_empty() && grants.len() <= MAX_GRANTS);
    let mut out = Vec::with_capacity(19 + GRANT_LEN * grants.len());
    out.push(VERSION);
    out.push(BEHIND | GRANTS);
    out.extend_from_slice(instance);
    out.push(grants.len() as u8);
    for (id, n) in grants {
        out.extend_from_slice(id);
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// "Behind", with the filter of the channels the instance holds.
pub(crate) fn encode_holds(instance: &InstanceId, holds: &Filter) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + (1 << 13));
    out.push(VERSION);
    out.push(BEHIND | HOLDS);
    out.extend_from_slice(instance);
    holds.encode_into(&mut out);
    out
}

/// Reads an announcement; `None` if it is not one.
pub(crate) fn decode(payload: &[u8]) -> Option<Announcement> {
    let [VERSION, flags, rest @ ..] = payload else {
        return None;
    };
    if flags & !(BEHIND | GRANTS | HOLDS) != 0 || rest.len() < 16 {
        return None;
    }
    let (id, rest) = rest.split_at(16);
    let behind = flags & BEHIND != 0;
    let mut grants = Vec::new();
    let mut holds = None;
    if flags & HOLDS != 0 {
        // Only with "behind", and on its own.
        if !behind || flags & GRANTS != 0 {
            return None;
        }
        holds = Some(Filter::decode(rest)?);
    } else if flags & GRANTS == 0 {
        if !rest.is_empty() {
            return None;
        }
    } else {
        let [n, entries @ ..] = rest else {
            return None;
        };
        let n = usize::from(*n);
        if !behind || n == 0 || n > MAX_GRANTS || entries.len() != n * GRANT_LEN {
            return None;
        }
        for entry in entries.chunks_exact(GRANT_LEN) {
            let (who, count) = entry.split_at(16);
            let count = u32::from_be_bytes(count.try_into().ok()?);
            if count == 0 {
                return None;
            }
            grants.push((who.try_into().ok()?, count));
        }
    }
    Some(Announcement {
        instance: id.try_into().ok()?,
        behind,
        grants,
        holds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behind(instance: InstanceId, grants: &[(InstanceId, u32)]) -> Announcement {
        Announcement::behind(instance, grants)
    }

    #[test]
    fn announcements_round_trip_and_anything_else_is_refused() {
        let id = [7u8; 16];
        assert_eq!(decode(&encode(&id, true)), Some(behind(id, &[])));
        assert_eq!(
            decode(&encode(&id, false)),
            Some(Announcement {
                instance: id,
                behind: false,
                grants: Vec::new(),
                holds: None,
            })
        );
        let grants = [([1u8; 16], 3), ([2u8; 16], u32::MAX)];
        let granting = encode_grants(&id, &grants);
        assert_eq!(decode(&granting), Some(behind(id, &grants)));
        let mut bad = encode(&id, true);
        bad[1] = 8;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&bad[..17]), None);
        assert_eq!(decode(b""), None);
        let mut v2 = encode(&id, true);
        v2[0] = 2;
        assert_eq!(decode(&v2), None);
        // Trailing bytes, a grant count that disagrees with the entries, a
        // zero count, none at all, grants with "caught up".
        let mut long = encode(&id, true);
        long.push(0);
        assert_eq!(decode(&long), None);
        assert_eq!(decode(&granting[..granting.len() - 1]), None);
        let mut more = granting.clone();
        more[18] = 3;
        assert_eq!(decode(&more), None);
        let mut zero = granting.clone();
        let last = zero.len() - 4;
        zero[last..].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode(&zero), None);
        let mut empty = granting[..19].to_vec();
        empty[18] = 0;
        assert_eq!(decode(&empty), None);
        let mut not_behind = granting.clone();
        not_behind[1] = GRANTS;
        assert_eq!(decode(&not_behind), None);
    }

    #[test]
    fn the_channels_held_go_with_behind_only_and_on_their_own() {
        let id = [7u8; 16];
        let hashes = [super::super::holds::hash("ori:t:a")];
        let filter = Filter::of(hashes.iter());
        let holding = encode_holds(&id, &filter);
        assert_eq!(
            decode(&holding),
            Some(Announcement {
                holds: Some(filter),
                ..behind(id, &[])
            })
        );
        let mut caught_up = holding.clone();
        caught_up[1] = HOLDS;
        assert_eq!(decode(&caught_up), None);
        let mut with_grants = holding.clone();
        with_grants[1] = BEHIND | GRANTS | HOLDS;
        assert_eq!(decode(&with_grants), None);
        assert_eq!(decode(&holding[..holding.len() - 1]), None);
        assert_eq!(decode(&holding[..18]), None);
    }
}
