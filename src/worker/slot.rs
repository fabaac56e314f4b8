//! Which of an input's worker processes runs which instance (`processes = N`).
//!
//! An input with `instances` may spread them over several worker processes, to get
//! CPU-heavy collectors past the GIL (docs/CONFIG.md, `processes`). Each process is
//! one [`ProcessSlot`]: its index and the number of processes. An instance goes to
//! the slot that wins rendezvous (highest-random-weight) hashing of its name, with a
//! fixed hash, so the assignment is the same on every start and every host: adding,
//! removing or changing one instance never moves another, and going from N to N + 1
//! processes moves only the instances the new process wins, about 1/(N + 1) of them
//! (docs/OPERATIONS.md, "Sizing a host").

use std::fmt;

/// One of an input's worker processes: `index` (from 0) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessSlot {
    index: u16,
    count: u16,
}

impl ProcessSlot {
    /// The only process of an input (`processes = 1`, the default).
    pub const SINGLE: ProcessSlot = ProcessSlot { index: 0, count: 1 };

    /// Every slot of an input with `count` processes (at least one).
    pub fn all(count: u16) -> impl Iterator<Item = ProcessSlot> {
        let count = count.max(1);
        (0..count).map(move |index| ProcessSlot { index, count })
    }

    /// Index of this process, from 0.
    pub fn index(self) -> u16 {
        self.index
    }

    /// How many processes the input has.
    pub fn count(self) -> u16 {
        self.count
    }

    /// Whether the input runs more than one process.
    pub fn is_shared(self) -> bool {
        self.count > 1
    }

    /// Whether this process runs the instance named `instance`.
    pub fn owns(self, instance: &str) -> bool {
        self.count <= 1 || assign(instance, self.count) == self.index
    }
}

/// `2/4` (1-based): how the process is shown in status and in `$PYTHOND_PROCESS`.
impl fmt::Display for ProcessSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// The slot (index from 0) of `count` that runs `instance`: the one with the highest
/// weight for it. Ties (practically impossible) go to the lower index.
pub fn assign(instance: &str, count: u16) -> u16 {
    let name = fnv1a(instance.as_bytes());
    (0..count.max(1))
        .max_by_key(|&slot| (weight(name, slot), std::cmp::Reverse(slot)))
        .unwrap_or(0)
}

/// The weight of `slot` for an instance whose name hashes to `name`: the two mixed
/// by a fixed finalizer, so every slot's weights are independent of the others'.
fn weight(name: u64, slot: u16) -> u64 {
    mix(name ^ mix(u64::from(slot).wrapping_add(1)))
}

/// 64-bit FNV-1a: fixed, fast, the same in every build (never a random seed).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The 64-bit finalizer of MurmurHash3: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("target-{i}.example.net")).collect()
    }

    #[test]
    fn one_process_owns_everything_and_slots_are_shown_from_one() {
        assert!(ProcessSlot::SINGLE.owns("anything"));
        let slots: Vec<String> = ProcessSlot::all(3).map(|s| s.to_string()).collect();
        assert_eq!(slots, ["1/3", "2/3", "3/3"]);
        assert_eq!(ProcessSlot::all(0).count(), 1);
    }

    #[test]
    fn every_instance_has_exactly_one_owner() {
        for name in names(500) {
            let owners = ProcessSlot::all(5).filter(|s| s.owns(&name)).count();
            assert_eq!(owners, 1, "{name}");
        }
    }

    #[test]
    fn the_assignment_is_fixed_and_spread_evenly() {
        // Fixed: the same on every run, build and host (a seeded hash would change it;
        // a change of the hash would move instances on upgrade).
        let known: Vec<u16> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|n| assign(n, 3))
            .collect();
        assert_eq!(
            known,
            [0, 1, 0, 1, 2, 1],
            "the hash changed: assignments would move"
        );
        let all = names(10_000);
        for count in [2u16, 3, 4, 8] {
            let mut per_slot = vec![0usize; usize::from(count)];
            for name in &all {
                per_slot[usize::from(assign(name, count))] += 1;
            }
            let expected = all.len() / usize::from(count);
            for (slot, n) in per_slot.iter().enumerate() {
                let off = n.abs_diff(expected) as f64 / expected as f64;
                assert!(
                    off < 0.08,
                    "{count} processes: slot {slot} has {n}, expected ~{expected}"
                );
            }
        }
    }

    #[test]
    fn adding_or_removing_instances_moves_no_other() {
        let all = names(1_000);
        let before: Vec<u16> = all.iter().map(|n| assign(n, 4)).collect();
        // The assignment of a name depends on that name only: another set around it
        // (one added, one removed) gives every remaining name the same slot.
        let mut changed = all.clone();
        changed.remove(17);
        changed.push("new-one".to_string());
        for name in &changed[..all.len() - 2] {
            let was = all.iter().position(|n| n == name).map(|i| before[i]);
            assert_eq!(Some(assign(name, 4)), was, "{name} moved");
        }
    }

    #[test]
    fn one_more_process_moves_only_its_share_and_only_to_itself() {
        let all = names(10_000);
        for count in [1u16, 3, 7] {
            let mut moved = 0;
            for name in &all {
                let (old, new) = (assign(name, count), assign(name, count + 1));
                if old != new {
                    assert_eq!(new, count, "{name} moved between old processes");
                    moved += 1;
                }
            }
            let share = all.len() as f64 / f64::from(count + 1);
            let off = (moved as f64 - share).abs() / share;
            assert!(
                off < 0.1,
                "{count} -> {}: {moved} moved, expected ~{share}",
                count + 1
            );
        }
    }
}
