//! `fix-permissions AGENT ORG PIPELINE`: gives one pipeline's checkout back to the
//! agent user after containers left root-owned files in it. Every job may run it
//! through sudo, so it must not be able to change the owner of anything else:
//!
//! - the three arguments are single directory names ([`elastic_ci_core::fixperms`]);
//! - the builds directory is fixed ([`BUILDS_DIR`]), never taken from an argument, a
//!   flag or the environment;
//! - the checkout is opened with `openat2` beneath the builds directory, refusing
//!   symlinks in any component, magic links and mount crossings;
//! - the walk opens each directory the same way relative to its parent and changes
//!   the owner of everything else with `fchownat(AT_SYMLINK_NOFOLLOW)`, so a link is
//!   changed itself and never its target;
//! - files with more than one hard link are left alone: a link made into the checkout
//!   from elsewhere on the file system must not hand that file to the agent user
//!   (deleting such a file only needs the directory, which is fixed).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use elastic_ci_core::fixperms::{SLOW_ADVICE, exit, slowness, validate_args};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use nix::unistd::{Gid, Uid, fchown, fchownat};

use crate::output::say;

/// The builds directory: hard-coded, because the command runs as root for any job.
pub const BUILDS_DIR: &str = "/var/lib/buildkite-agent/builds";

/// A failed run: the exit status jobs see and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixPermsFailure {
    pub code: u8,
    pub message: String,
}

/// What the walk did.
#[derive(Debug, Default)]
pub struct FixStats {
    pub(crate) n_files: AtomicU64,
    pub(crate) n_dirs: AtomicU64,
    pub n_hard_links_skipped: AtomicU64,
}

/// The command: validates, then fixes `BUILDS_DIR/AGENT/ORG/PIPELINE` for the agent
/// user.
pub(crate) fn run(program: &str, args: &[String]) -> Result<(), FixPermsFailure> {
    let [agent, org, pipeline] = validate_args(program, args)
        .map_err(|error| FixPermsFailure { code: error.exit_code(), message: error.to_string() })?;
    raise_open_file_limit();
    fix_tree(Path::new(BUILDS_DIR), [agent, org, pipeline], || {
        let user = nix::unistd::User::from_name("buildkite-agent")
            .map_err(|error| format!("Couldn't look up user buildkite-agent: {error}"))?
            .ok_or_else(|| "Couldn't look up user buildkite-agent: no such user".to_owned())?;
        Ok((user.uid.as_raw(), user.gid.as_raw()))
    })
    .map(|_| ())
}

/// Fixes `base/AGENT/ORG/PIPELINE`; `owner` gives the uid and gid, looked up only
/// once the checkout is open. A missing base or checkout is success: the first job
/// of a pipeline has nothing checked out yet.
pub fn fix_tree(
    base: &Path,
    parts: [&str; 3],
    owner: impl FnOnce() -> Result<(u32, u32), String>,
) -> Result<FixStats, FixPermsFailure> {
    let open_failure = |what: &str, error: Errno| FixPermsFailure {
        code: exit::OPEN,
        message: format!("Couldn't open {what}: {}", error.desc()),
    };
    let base_fd = match nix::fcntl::open(
        base,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(FixStats::default()),
        Err(error) => return Err(open_failure(&base.display().to_string(), error)),
    };
    let relative = parts.join("/");
    let checkout = match openat2(base_fd.as_fd(), relative.as_str(), beneath()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(FixStats::default()),
        Err(error) => {
            return Err(open_failure(&base.join(&relative).display().to_string(), error));
        }
    };
    let (uid, gid) = owner().map_err(|message| FixPermsFailure { code: exit::USER, message })?;
    let owner = (Uid::from_raw(uid), Gid::from_raw(gid));
    let chown_failure = |path: &str, error: Errno| FixPermsFailure {
        code: exit::CHOWN,
        message: format!("Couldn't recursively chown {path}: {}", error.desc()),
    };
    fchown(checkout.as_fd(), Some(owner.0), Some(owner.1))
        .map_err(|error| chown_failure(&relative, error))?;
    let stats = FixStats::default();
    stats.n_dirs.fetch_add(1, Ordering::Relaxed);
    let dir = Dir::from_fd(checkout).map_err(|error| chown_failure(&relative, error))?;
    let walk =
        Walk { owner, stats: &stats, queue: Mutex::new(Queue::default()), wake: Condvar::new() };
    lock(&walk.queue).jobs.push(Job { dir, path: relative });
    let started = Instant::now();
    let n_workers = std::thread::available_parallelism().map_or(1, |n| (n.get() * 2).clamp(1, 128));
    let (stop_heartbeat, heartbeat_stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let stats = &stats;
        scope.spawn(move || heartbeat(stats, started, &heartbeat_stopped));
        let workers: Vec<_> = (0..n_workers).map(|_| scope.spawn(|| walk.work())).collect();
        for worker in workers {
            let _ = worker.join();
        }
        let _ = stop_heartbeat.send(());
    });
    let failure = lock(&walk.queue).failure.take();
    if let Some(failure) = failure {
        return Err(failure);
    }
    let n_skipped = stats.n_hard_links_skipped.load(Ordering::Relaxed);
    if n_skipped > 0 {
        say(&format!(
            "fix-perms: left {n_skipped} file(s) with several hard links unchanged (they may be links to files outside the checkout)"
        ));
    }
    Ok(stats)
}

fn beneath() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        )
}

/// Errors that mean the tree changed under the walk: the entry is skipped.
fn is_race(error: Errno) -> bool {
    matches!(error, Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Job {
    dir: Dir,
    path: String,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    n_active: usize,
    failure: Option<FixPermsFailure>,
}

struct Walk<'a> {
    owner: (Uid, Gid),
    stats: &'a FixStats,
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Walk<'_> {
    /// Takes directories off the shared queue until none is left and no worker can
    /// add more, or a worker failed.
    fn work(&self) {
        loop {
            let job = {
                let mut queue = lock(&self.queue);
                loop {
                    if queue.failure.is_some() {
                        break None;
                    }
                    if let Some(job) = queue.jobs.pop() {
                        queue.n_active += 1;
                        break Some(job);
                    }
                    if queue.n_active == 0 {
                        break None;
                    }
                    queue =
                        self.wake.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            let Some(job) = job else {
                self.wake.notify_all();
                return;
            };
            let result = self.visit(job);
            let mut queue = lock(&self.queue);
            queue.n_active -= 1;
            match result {
                Ok(children) => queue.jobs.extend(children),
                Err(failure) => {
                    queue.failure.get_or_insert(failure);
                    queue.jobs.clear();
                }
            }
            drop(queue);
            self.wake.notify_all();
        }
    }

    /// Changes the owner of every entry of one directory; returns its subdirectories.
    fn visit(&self, mut job: Job) -> Result<Vec<Job>, FixPermsFailure> {
        let failure = |path: &str, error: Errno| FixPermsFailure {
            code: exit::CHOWN,
            message: format!("Couldn't recursively chown {path}: {}", error.desc()),
        };
        let mut entries: Vec<(CString, Option<Type>)> = Vec::new();
        for entry in job.dir.iter() {
            let entry = entry.map_err(|error| failure(&job.path, error))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            entries.push((name.to_owned(), entry.file_type()));
        }
        let mut children = Vec::new();
        for (name, kind) in entries {
            let path = format!("{}/{}", job.path, name.to_string_lossy());
            let kind = match kind {
                Some(kind) => kind,
                None => {
                    match fstatat(job.dir.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(stat) if is_dir(&stat) => Type::Directory,
                        Ok(_) => Type::File,
                        Err(error) if is_race(error) => continue,
                        Err(error) => return Err(failure(&path, error)),
                    }
                }
            };
            if kind == Type::Directory {
                let fd: OwnedFd = match openat2(job.dir.as_fd(), name.as_c_str(), beneath()) {
                    Ok(fd) => fd,
                    Err(error) if is_race(error) => continue,
                    Err(error) => return Err(failure(&path, error)),
                };
                fchown(fd.as_fd(), Some(self.owner.0), Some(self.owner.1))
                    .map_err(|error| failure(&path, error))?;
                self.stats.n_dirs.fetch_add(1, Ordering::Relaxed);
                let dir = Dir::from_fd(fd).map_err(|error| failure(&path, error))?;
                children.push(Job { dir, path });
                continue;
            }
            let stat = match fstatat(job.dir.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            {
                Ok(stat) => stat,
                Err(error) if is_race(error) => continue,
                Err(error) => return Err(failure(&path, error)),
            };
            self.stats.n_files.fetch_add(1, Ordering::Relaxed);
            if stat.st_uid == self.owner.0.as_raw() && stat.st_gid == self.owner.1.as_raw() {
                continue;
            }
            if !is_dir(&stat) && !is_symlink(&stat) && stat.st_nlink > 1 {
                self.stats.n_hard_links_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match fchownat(
                job.dir.as_fd(),
                name.as_c_str(),
                Some(self.owner.0),
                Some(self.owner.1),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(()) => {}
                Err(error) if is_race(error) => {}
                Err(error) => return Err(failure(&path, error)),
            }
        }
        Ok(children)
    }
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_symlink(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

/// Big trees need many open directories: raise the soft limit to the hard one.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok()
    {
        say(&format!("fix-perms: raised NOFILE soft limit {soft} -> {hard}"));
    }
}

/// Every 30 s: progress, speed, CPU use, and what slowness suggests.
fn heartbeat(stats: &FixStats, started: Instant, stop: &std::sync::mpsc::Receiver<()>) {
    const INTERVAL: Duration = Duration::from_secs(30);
    let n_cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut last = (Instant::now(), 0u64, cpu_time());
    let mut n_slow_ticks = 0;
    let mut advised = false;
    while stop.recv_timeout(INTERVAL) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
        let now = Instant::now();
        let n_files = stats.n_files.load(Ordering::Relaxed);
        let elapsed_ms =
            u64::try_from(now.duration_since(last.0).as_millis()).unwrap_or(u64::MAX).max(1);
        let files_per_sec = (n_files - last.1) * 1000 / elapsed_ms;
        let cpu = cpu_time();
        let cpu_ms = u64::try_from(cpu.saturating_sub(last.2).as_millis()).unwrap_or(u64::MAX);
        let cpu_percent = cpu_ms * 100 / elapsed_ms / n_cpus as u64;
        let mut line = format!(
            "fix-perms: {n_files} files ({files_per_sec}/s), {} dirs in {:.0?}, CPU {cpu_percent}%/core",
            stats.n_dirs.load(Ordering::Relaxed),
            now.duration_since(started)
        );
        match slowness(files_per_sec, cpu_percent) {
            Some(remark) => {
                line.push_str(": ");
                line.push_str(remark);
                n_slow_ticks += 1;
                if n_slow_ticks >= 2 && !advised {
                    line.push_str("; ");
                    line.push_str(SLOW_ADVICE);
                    advised = true;
                }
            }
            None => n_slow_ticks = 0,
        }
        say(&line);
        last = (now, n_files, cpu);
    }
}

fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |usage| {
        let total = usage.user_time() + usage.system_time();
        let micros = total.tv_sec() * 1_000_000 + total.tv_usec();
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    })
}
