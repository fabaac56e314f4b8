//! The disk buffer's file I/O: positioned reads, appends and data syncs of segment
//! files, in one place so that the faults a disk can return are handled the same way
//! wherever they happen (docs/BUFFER.md, "Read and write errors").
//!
//! In unit tests a fault can be injected per file: a read error (`EIO`) from an
//! offset on, a write cut short by `ENOSPC`, a sync held until the test releases
//! it. No test can make a real disk return `EIO` portably, and a full disk needs a
//! tiny filesystem only root can mount; the hooks exist only under `cfg(test)`, and
//! the production build calls the plain system functions.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;

/// Reads as much of `buf` as the file holds from `offset` (short only at its end).
pub(super) fn read_up_to_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(test)]
    faults::check_read(file, offset, buf.len())?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Appends all of `bytes` at the file's position.
pub(super) fn append(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    #[cfg(test)]
    if let Some(keep) = faults::check_write(file, bytes.len()) {
        file.write_all(&bytes[..keep])?;
        return Err(io::Error::from_raw_os_error(libc::ENOSPC));
    }
    file.write_all(bytes)
}

/// Appends all of `parts`, in order, with as few `writev` calls as the system
/// allows: frames are written from their header and their record's body without
/// being copied together first.
pub(super) fn append_parts(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    #[cfg(test)]
    {
        let len = parts.iter().map(|p| p.len()).sum();
        if let Some(keep) = faults::check_write(file, len) {
            let flat = parts.concat();
            file.write_all(&flat[..keep])?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
    }
    // The first part not fully written, and how much of it was.
    let (mut first, mut offset) = (0, 0);
    let mut slices = Vec::with_capacity(parts.len());
    while first < parts.len() {
        slices.clear();
        slices.push(IoSlice::new(&parts[first][offset..]));
        slices.extend(parts[first + 1..].iter().map(|p| IoSlice::new(p)));
        match file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                let mut n = written + offset;
                while first < parts.len() && n >= parts[first].len() {
                    n -= parts[first].len();
                    first += 1;
                }
                offset = n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `fdatasync`.
pub(super) fn sync(file: &File) -> io::Result<()> {
    #[cfg(test)]
    faults::before_sync(file);
    file.sync_data()
}

/// Faults injected by unit tests, keyed by the file's device and inode so that tests
/// running in parallel never see each other's faults, and so that a fault stays with
/// its file when the file is renamed. Each is removed when its guard is dropped; the
/// guard keeps the file open, so that its inode is not reused by a new file while the
/// fault exists.
#[cfg(test)]
pub(super) mod faults {
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::sync::{Arc, Condvar, Mutex};

    #[derive(Clone)]
    enum Fault {
        /// Reads touching `from..` fail with EIO.
        Read { from: u64 },
        /// The next write keeps this many bytes, then fails with ENOSPC.
        Write { keep: usize },
        /// Syncs wait until the gate opens; `held` counts syncs that waited.
        Sync(Arc<Gate>),
    }

    pub struct Gate {
        state: Mutex<(bool, usize)>,
        changed: Condvar,
    }

    impl Gate {
        /// Syncs waiting (or that waited) at the gate.
        pub fn held(&self) -> usize {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).1
        }

        /// Lets every waiting and later sync through.
        pub fn open(&self) {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = true;
            self.changed.notify_all();
        }
    }

    /// (guard id, (device, inode), fault).
    type Faults = Vec<(u64, (u64, u64), Fault)>;

    static FAULTS: Mutex<Faults> = Mutex::new(Vec::new());
    static NEXT: Mutex<u64> = Mutex::new(0);

    /// Removes its fault when dropped.
    pub struct Guard {
        id: u64,
        pub gate: Option<Arc<Gate>>,
        _file: File,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(gate) = &self.gate {
                gate.open();
            }
            lock().retain(|(id, _, _)| *id != self.id);
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, Faults> {
        FAULTS.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key_of(meta: &std::fs::Metadata) -> (u64, u64) {
        (meta.dev(), meta.ino())
    }

    fn add(path: &Path, fault: Fault) -> Guard {
        let file = File::open(path).expect("faulted file exists");
        let key = key_of(&file.metadata().expect("metadata"));
        let id = {
            let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let gate = match &fault {
            Fault::Sync(gate) => Some(gate.clone()),
            _ => None,
        };
        lock().push((id, key, fault));
        Guard {
            id,
            gate,
            _file: file,
        }
    }

    /// Reads of `path` that touch `from` or anything after it fail with EIO.
    pub fn fail_reads(path: &Path, from: u64) -> Guard {
        add(path, Fault::Read { from })
    }

    /// The next write to `path` stops after `keep` bytes with ENOSPC.
    pub fn fail_next_write(path: &Path, keep: usize) -> Guard {
        add(path, Fault::Write { keep })
    }

    /// Syncs of `path` wait until the guard's gate opens (or the guard is dropped).
    pub fn hold_syncs(path: &Path) -> Guard {
        add(
            path,
            Fault::Sync(Arc::new(Gate {
                state: Mutex::new((false, 0)),
                changed: Condvar::new(),
            })),
        )
    }

    fn key(file: &File) -> Option<(u64, u64)> {
        // Quick exit: most tests inject nothing.
        if lock().is_empty() {
            return None;
        }
        file.metadata().ok().map(|m| key_of(&m))
    }

    pub(super) fn check_read(file: &File, offset: u64, len: usize) -> io::Result<()> {
        let Some(key) = key(file) else { return Ok(()) };
        let end = offset + len as u64;
        let hit = lock()
            .iter()
            .any(|(_, k, f)| *k == key && matches!(f, Fault::Read { from } if end > *from));
        if hit {
            Err(io::Error::from_raw_os_error(libc::EIO))
        } else {
            Ok(())
        }
    }

    pub(super) fn check_write(file: &File, len: usize) -> Option<usize> {
        let key = key(file)?;
        let mut faults = lock();
        let at = faults
            .iter()
            .position(|(_, k, f)| *k == key && matches!(f, Fault::Write { .. }))?;
        let (_, _, fault) = faults.remove(at);
        match fault {
            Fault::Write { keep } => Some(keep.min(len)),
            _ => None,
        }
    }

    pub(super) fn before_sync(file: &File) {
        let Some(key) = key(file) else { return };
        let gate = lock().iter().find_map(|(_, k, f)| match f {
            Fault::Sync(gate) if *k == key => Some(gate.clone()),
            _ => None,
        });
        if let Some(gate) = gate {
            let mut state = gate.state.lock().unwrap_or_else(|p| p.into_inner());
            state.1 += 1;
            while !state.0 {
                state = gate.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_appended_whole_and_in_order() {
        let mut file = tempfile::tempfile().expect("temp");
        let big = vec![7u8; 300 << 10];
        let parts: [&[u8]; 5] = [b"head", b"", &big, b"tail", b"!"];
        append_parts(&mut file, &parts).expect("append");
        append_parts(&mut file, &[b"more"]).expect("append");
        let mut read = vec![0u8; 300 << 10 | 64];
        let n = read_up_to_at(&file, &mut read, 0).expect("read");
        let mut expected = parts.concat();
        expected.extend_from_slice(b"more");
        assert_eq!(&read[..n], &expected[..]);
    }
}
