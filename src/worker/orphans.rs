//! Processes that escaped their worker: the agent as a child subreaper.
//!
//! A worker's process group (see [`super::process`]) catches what its collectors start
//! the ordinary way, but not a child started in a new session
//! (`start_new_session=True`) nor a daemon that double-forks and calls `setsid`. With
//! `PR_SET_CHILD_SUBREAPER` set on the agent, every such process is re-parented to the
//! agent, rather than to init, once the process it descended from (its worker, or the
//! intermediate of a double fork) is gone. This module finds those adopted processes
//! among the agent's children, kills and reaps them: periodically and on SIGCHLD while
//! the agent runs ([`spawn_sweeper`]), and until none is left at shutdown
//! ([`sweep_until_gone`]). What the guarantee covers in which case is in
//! docs/OPERATIONS.md ("No orphans").
//!
//! Which children are adopted: every child of the agent that is neither a live worker
//! (registered here by [`super::process`] while it spawns, under the same lock a sweep
//! holds) nor in the agent's own process group. Workers lead groups of their own, and
//! anything the agent itself might start in its group is left to its own waiter.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// How often the agent looks for adopted processes when no SIGCHLD says so: a live
/// process re-parented to the agent sends no signal. A sweep reads one small file
/// per agent thread, and a stat file per adopted child only.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Pids of live workers: children of the agent that are not orphans.
static WORKERS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// The worker registry, locked. Held across a worker's spawn and across a sweep, so a
/// sweep never sees a worker that is forked but not registered yet.
pub(crate) fn workers() -> MutexGuard<'static, Option<HashSet<u32>>> {
    WORKERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers a freshly spawned worker (with the registry already locked).
pub(crate) fn register(registry: &mut Option<HashSet<u32>>, pid: u32) {
    registry.get_or_insert_with(HashSet::new).insert(pid);
}

/// Forgets a worker once it has been reaped.
pub(crate) fn unregister(pid: u32) {
    if let Some(set) = workers().as_mut() {
        set.remove(&pid);
    }
}

/// Makes this process a child subreaper: orphaned descendants are re-parented to it.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Adopted processes still alive that were sent SIGKILL.
    pub killed: usize,
    /// Adopted processes reaped (exited, now gone).
    pub reaped: usize,
    /// Adopted processes seen, dead or alive.
    pub adopted: usize,
}

/// Kills every adopted process that is alive and reaps every one that has exited.
pub fn sweep() -> Swept {
    let registry = workers();
    let own_pgid = process_group_of(std::process::id());
    let mut swept = Swept::default();
    for pid in children() {
        if registry.as_ref().is_some_and(|set| set.contains(&pid)) {
            continue;
        }
        let Some(stat) = Stat::read(pid) else {
            continue;
        };
        if Some(stat.pgid) == own_pgid {
            continue;
        }
        swept.adopted += 1;
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            continue;
        };
        if !stat.zombie {
            tracing::warn!(
                pid,
                command = %stat.command,
                "killing a process that left its worker (a new session or a daemon); \
                 nothing a worker starts may outlive it"
            );
            // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
            unsafe {
                libc::kill(raw, libc::SIGKILL);
            }
            swept.killed += 1;
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        if unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) } == raw {
            swept.reaped += 1;
        }
    }
    swept
}

/// Sweeps until no adopted process is left or `within` has passed; returns how many
/// adopted processes were killed.
pub async fn sweep_until_gone(within: Duration) -> usize {
    let end = Instant::now() + within;
    let mut killed = 0;
    loop {
        let swept = sweep();
        killed += swept.killed;
        if swept.adopted == swept.reaped || Instant::now() >= end {
            if swept.adopted > swept.reaped {
                tracing::warn!(
                    left = swept.adopted - swept.reaped,
                    "processes left by workers could not all be reaped"
                );
            }
            return killed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sweeps on every SIGCHLD and every [`SWEEP_INTERVAL`] until `shutdown`.
pub fn spawn_sweeper(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut child_signals = signal(SignalKind::child())
            .map_err(|error| tracing::warn!(%error, "cannot listen for SIGCHLD; sweeping for orphans on a timer only"))
            .ok();
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                Some(()) = async {
                    match child_signals.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            sweep();
        }
    });
}

/// The pids of this process's children: every thread's `children` list, or, where the
/// kernel has none (no CONFIG_PROC_CHILDREN), every process whose parent we are.
fn children() -> Vec<u32> {
    let mut pids = Vec::new();
    let mut found_list = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                found_list = true;
                pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    if found_list {
        return pids;
    }
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Stat::read(*pid).is_some_and(|s| s.ppid == me))
        .collect()
}

fn process_group_of(pid: u32) -> Option<u32> {
    Stat::read(pid).map(|s| s.pgid)
}

/// The fields of `/proc/<pid>/stat` a sweep needs.
#[derive(Debug)]
struct Stat {
    command: String,
    zombie: bool,
    ppid: u32,
    pgid: u32,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// `pid (comm) state ppid pgrp ...`; `comm` may hold spaces and parentheses, so
    /// the fields after it are found from the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let open = text.find('(')?;
        let (head, rest) = text.rsplit_once(')')?;
        let command = head.get(open + 1..)?.to_string();
        let mut fields = rest.split_whitespace();
        let state = fields.next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgid = fields.next()?.parse().ok()?;
        Some(Stat {
            command,
            zombie: state == "Z" || state == "X",
            ppid,
            pgid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_command_with_parentheses() {
        let stat = Stat::parse("4242 (a (b) c) Z 17 4242 4242 0 -1").expect("parses");
        assert_eq!(stat.command, "a (b) c");
        assert!(stat.zombie);
        assert_eq!((stat.ppid, stat.pgid), (17, 4242));
        assert!(Stat::parse("garbage").is_none());
        assert!(Stat::parse("1 (x) S notanumber 1").is_none());
    }

    #[test]
    fn the_own_process_group_is_read_from_proc() {
        let me = std::process::id();
        let stat = Stat::read(me).expect("own stat");
        assert!(!stat.zombie);
        assert_eq!(process_group_of(me), Some(stat.pgid));
    }
}
