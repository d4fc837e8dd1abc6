//! Whether a version is active at a knowledge cut K: known at K, and not revoked by a version
//! that is itself active at K (SPEC §3). Shared by the in-memory timeline and the indexed query.

use std::collections::HashMap;

use pactum_domain::Version;

/// `known(v)` gives the revokers of `v` known at K (all later than `v`, ascending); `memo`
/// keeps answers across calls of one query. Revocations point backwards only, so the walk
/// ends; it keeps its own stack, so a long chain of corrections cannot overflow the thread's.
pub(crate) fn is_active<'a>(
    v: Version,
    k: Version,
    known: impl Fn(Version) -> &'a [Version],
    memo: &mut HashMap<Version, bool>,
) -> bool {
    if v == 0 || v > k {
        return false;
    }
    if known(v).is_empty() {
        return true;
    }
    if let Some(&answer) = memo.get(&v) {
        return answer;
    }
    // Frames are (version, index of the next revoker to look at).
    let mut stack = vec![(v, 0usize)];
    while let Some(&(node, i)) = stack.last() {
        match known(node).get(i).copied() {
            None => {
                memo.insert(node, true);
                stack.pop();
            }
            Some(w) => match memo
                .get(&w)
                .copied()
                .or_else(|| known(w).is_empty().then_some(true))
            {
                Some(true) => {
                    memo.insert(node, false);
                    stack.pop();
                }
                Some(false) => {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                }
                None => stack.push((w, 0)),
            },
        }
    }
    memo.get(&v).copied().unwrap_or(true)
}
