//! Walking a model directory and hashing its files, streamed and in parallel.
//!
//! Files are read in [`READ_CHUNK_BYTES`] chunks, so memory stays flat whatever the model
//! size, and different files (or shards) are hashed on different threads with rayon.
//! Symbolic links, files with several hard links, special files and names that are not
//! UTF-8 are collected as [`Anomaly`]s: signing refuses them, verification reports them.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Result, SigningError};
use crate::manifest::{
    GIT_PATHS, HASH_TYPE_SHA256, ItemKey, Manifest, Method, Resource, Serialization,
};

/// Bytes read from a file per `read` call while hashing.
pub const READ_CHUNK_BYTES: usize = 1 << 20;

/// What to hash and what to refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashOptions {
    /// Whole files or fixed-size shards.
    pub method: Method,
    /// Follow symbolic links (hashing their targets) instead of refusing them.
    pub allow_symlinks: bool,
    /// Accept regular files that have more than one hard link.
    pub allow_hardlinks: bool,
    /// Leave out `.git`, `.gitattributes`, `.github` and `.gitignore` at the model root.
    pub ignore_git_paths: bool,
    /// Further paths to leave out, relative to the model root (`/`-separated); a directory
    /// is left out with everything below it.
    pub ignore_paths: Vec<String>,
    /// Number of hashing threads; `None` uses one per CPU core.
    pub threads: Option<usize>,
}

impl Default for HashOptions {
    /// Whole files, no links, git metadata ignored: the defaults of `model_signing`.
    fn default() -> Self {
        HashOptions {
            method: Method::Files,
            allow_symlinks: false,
            allow_hardlinks: false,
            ignore_git_paths: true,
            ignore_paths: Vec::new(),
            threads: None,
        }
    }
}

/// Receives progress while a model is hashed.
pub trait Progress: Sync {
    /// Called once, after the walk, with the total number of bytes to hash.
    fn start(&self, _total_bytes: u64) {}
    /// Called from hashing threads as bytes are hashed.
    fn advance(&self, _bytes: u64) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Something in the model directory that cannot be hashed safely as a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// A symbolic link, found while links were not allowed.
    Symlink {
        /// Its path relative to the model root (`"."` for the root itself).
        rel: String,
        /// Its full path.
        path: PathBuf,
    },
    /// A regular file with more than one hard link, found while hard links were not allowed.
    HardLink {
        /// Its path relative to the model root.
        rel: String,
        /// Its full path.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },
    /// A FIFO, socket or device.
    Special {
        /// Its path relative to the model root.
        rel: String,
        /// Its full path.
        path: PathBuf,
    },
    /// A file whose name is not valid UTF-8.
    NonUtf8 {
        /// Its path relative to the model root, lossily converted for display.
        rel: String,
        /// Its full path.
        path: PathBuf,
    },
}

impl Anomaly {
    /// The anomaly as the error that refuses to sign it.
    pub fn into_error(self) -> SigningError {
        match self {
            Anomaly::Symlink { path, .. } => SigningError::SymlinkRefused { path },
            Anomaly::HardLink { path, links, .. } => SigningError::HardLinkRefused { path, links },
            Anomaly::Special { path, .. } => SigningError::SpecialFileRefused { path },
            Anomaly::NonUtf8 { path, .. } => SigningError::NonUtf8Path { path },
        }
    }

    /// The path relative to the model root.
    pub fn rel(&self) -> &str {
        match self {
            Anomaly::Symlink { rel, .. }
            | Anomaly::HardLink { rel, .. }
            | Anomaly::Special { rel, .. }
            | Anomaly::NonUtf8 { rel, .. } => rel,
        }
    }
}

/// The result of hashing a model: its manifest and whatever could not be hashed.
#[derive(Debug, Clone)]
pub struct HashedModel {
    /// The manifest of every regular file that was hashed, in canonical order.
    pub manifest: Manifest,
    /// Paths that were skipped as unsafe, in walk order.
    pub anomalies: Vec<Anomaly>,
    /// Total number of bytes hashed.
    pub bytes_hashed: u64,
}

/// One unit of hashing work: a whole file or a byte range of one.
struct Job {
    key: ItemKey,
    path: PathBuf,
    len: u64,
    identity: Option<(u64, u64)>,
}

/// Hashes the model at `root` (a directory or a single file).
///
/// The manifest records the serialization (method, `sha256`, `allow_symlinks`, and the
/// ignored paths: the given ones plus the git paths when `ignore_git_paths` is set).
pub fn hash_model(
    root: &Path,
    options: &HashOptions,
    progress: &dyn Progress,
) -> Result<HashedModel> {
    if let Method::Shards { shard_size: 0 } = options.method {
        return Err(SigningError::InvalidOption {
            name: "shard size",
            reason: "must be at least 1 byte".to_owned(),
        });
    }
    let ignore = ignore_list(options);
    let (jobs, anomalies) = walk(root, options, &ignore)?;
    let total: u64 = jobs
        .iter()
        .map(|j| j.key.range.map_or(j.len, |(s, e)| e - s))
        .sum();
    progress.start(total);

    let hash_all = || -> Result<Vec<Resource>> {
        jobs.par_iter().map(|job| hash_job(job, progress)).collect()
    };
    let resources = match options.threads {
        None => hash_all()?,
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| SigningError::InvalidOption {
                name: "threads",
                reason: e.to_string(),
            })?
            .install(hash_all)?,
    };

    let mut ignore_paths: Vec<String> = ignore
        .iter()
        .map(|components| components.join("/"))
        .collect();
    ignore_paths.sort();
    ignore_paths.dedup();
    let serialization = Serialization {
        method: options.method,
        hash_type: HASH_TYPE_SHA256.to_owned(),
        allow_symlinks: options.allow_symlinks,
        ignore_paths,
    };
    Ok(HashedModel {
        manifest: Manifest::new(model_name(root), serialization, resources),
        anomalies,
        bytes_hashed: total,
    })
}

/// The model's name as `model_signing` records it: the final path component, or the
/// final component of the resolved path for `.`, `..` and the like.
pub fn model_name(root: &Path) -> String {
    match root.components().next_back() {
        Some(Component::Normal(name)) => name.to_string_lossy().into_owned(),
        _ => fs::canonicalize(root)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    }
}

/// The ignored paths as lists of components; `..` entries are dropped since no file
/// inside the model can match them.
fn ignore_list(options: &HashOptions) -> Vec<Vec<String>> {
    let git = options
        .ignore_git_paths
        .then_some(GIT_PATHS.iter().map(|p| (*p).to_owned()))
        .into_iter()
        .flatten();
    options
        .ignore_paths
        .iter()
        .cloned()
        .chain(git)
        .filter_map(|p| {
            let components: Vec<String> = p
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(str::to_owned)
                .collect();
            (!components.iter().any(|c| c == "..")).then_some(components)
        })
        .collect()
}

fn is_ignored(rel: &[String], ignore: &[Vec<String>]) -> bool {
    ignore.iter().any(|prefix| rel.starts_with(prefix))
}

fn walk(
    root: &Path,
    options: &HashOptions,
    ignore: &[Vec<String>],
) -> Result<(Vec<Job>, Vec<Anomaly>)> {
    let mut jobs = Vec::new();
    let mut anomalies = Vec::new();
    let root_meta =
        fs::symlink_metadata(root).map_err(|e| SigningError::io("read model", root, e))?;
    let root_meta = if root_meta.file_type().is_symlink() {
        if !options.allow_symlinks {
            anomalies.push(Anomaly::Symlink {
                rel: ".".to_owned(),
                path: root.to_path_buf(),
            });
            return Ok((jobs, anomalies));
        }
        fs::metadata(root).map_err(|e| SigningError::io("follow link", root, e))?
    } else {
        root_meta
    };

    if root_meta.is_file() {
        // A single-file model: one item named ".". Ignored paths cannot apply.
        push_file(
            &mut jobs,
            &mut anomalies,
            ".".to_owned(),
            root.to_path_buf(),
            &root_meta,
            options,
        );
        return Ok((jobs, anomalies));
    }
    if !root_meta.is_dir() {
        anomalies.push(Anomaly::Special {
            rel: ".".to_owned(),
            path: root.to_path_buf(),
        });
        return Ok((jobs, anomalies));
    }

    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(options.allow_symlinks)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            let rel = relative_components(root, entry.path());
            !is_ignored(&rel, ignore)
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            match e.into_io_error() {
                Some(io) => SigningError::io("read", path, io),
                None => SigningError::io("walk", path, std::io::Error::other("symbolic link loop")),
            }
        })?;
        let path = entry.path().to_path_buf();
        let file_type = entry.file_type();
        let Some(rel) = relative_utf8(root, &path) else {
            if !file_type.is_dir() {
                let rel = relative_components(root, &path).join("/");
                anomalies.push(Anomaly::NonUtf8 { rel, path });
            }
            continue;
        };
        if file_type.is_dir() {
            continue;
        }
        if file_type.is_symlink() {
            anomalies.push(Anomaly::Symlink { rel, path });
            continue;
        }
        let meta = entry.metadata().map_err(|e| {
            let io = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("cannot read metadata"));
            SigningError::io("read metadata of", path.clone(), io)
        })?;
        push_file(&mut jobs, &mut anomalies, rel, path, &meta, options);
    }
    Ok((jobs, anomalies))
}

fn push_file(
    jobs: &mut Vec<Job>,
    anomalies: &mut Vec<Anomaly>,
    rel: String,
    path: PathBuf,
    meta: &fs::Metadata,
    options: &HashOptions,
) {
    if !meta.is_file() {
        anomalies.push(Anomaly::Special { rel, path });
        return;
    }
    let links = link_count(meta);
    if links > 1 && !options.allow_hardlinks {
        anomalies.push(Anomaly::HardLink { rel, path, links });
        return;
    }
    let len = meta.len();
    let identity = file_identity(meta);
    match options.method {
        Method::Files => jobs.push(Job {
            key: ItemKey {
                path: rel,
                range: None,
            },
            path,
            len,
            identity,
        }),
        Method::Shards { shard_size } => {
            let mut start = 0;
            while start < len {
                let end = start.saturating_add(shard_size).min(len);
                jobs.push(Job {
                    key: ItemKey {
                        path: rel.clone(),
                        range: Some((start, end)),
                    },
                    path: path.clone(),
                    len,
                    identity,
                });
                start = end;
            }
        }
    }
}

fn hash_job(job: &Job, progress: &dyn Progress) -> Result<Resource> {
    use std::io::{Seek, SeekFrom};
    let mut file =
        File::open(&job.path).map_err(|e| SigningError::io("open", job.path.clone(), e))?;
    let meta = file
        .metadata()
        .map_err(|e| SigningError::io("read metadata of", job.path.clone(), e))?;
    // The file that was opened must be the one that was walked: a swap for a link or
    // another file in between is refused.
    if !meta.is_file() || file_identity(&meta) != job.identity {
        return Err(SigningError::ChangedWhileHashing {
            path: job.path.clone(),
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    match job.key.range {
        None => loop {
            let n = read_retrying(&mut file, &mut buf, &job.path)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            progress.advance(n as u64);
        },
        Some((start, end)) => {
            file.seek(SeekFrom::Start(start))
                .map_err(|e| SigningError::io("seek in", job.path.clone(), e))?;
            let mut left = end - start;
            while left > 0 {
                let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                let n = read_retrying(&mut file, &mut buf[..want], &job.path)?;
                if n == 0 {
                    return Err(SigningError::ChangedWhileHashing {
                        path: job.path.clone(),
                    });
                }
                hasher.update(&buf[..n]);
                progress.advance(n as u64);
                left -= n as u64;
            }
        }
    }
    Ok(Resource {
        key: job.key.clone(),
        digest: hasher.finalize().into(),
    })
}

fn read_retrying(file: &mut File, buf: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SigningError::io("read", path, e)),
        }
    }
}

/// The components of `path` below `root`, lossily converted (for ignore matching and display).
fn relative_components(root: &Path, path: &Path) -> Vec<String> {
    path.strip_prefix(root)
        .map(|rel| {
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The `/`-separated path of `path` below `root`, or `None` if it is not valid UTF-8.
fn relative_utf8(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(unix)]
fn link_count(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
fn link_count(_meta: &fs::Metadata) -> u64 {
    1
}

#[cfg(unix)]
fn file_identity(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, bytes)
    }

    #[test]
    fn hashes_every_file_but_git_metadata() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), "a.txt", b"y")?;
        write(dir.path(), "sub/a.txt", b"x")?;
        write(dir.path(), ".git/HEAD", b"ref")?;
        write(dir.path(), ".gitattributes", b"*")?;
        write(dir.path(), "sub/.gitignore", b"nested, so kept")?;
        let hashed = hash_model(dir.path(), &HashOptions::default(), &NoProgress)?;
        let names: Vec<_> = hashed
            .manifest
            .resources
            .iter()
            .map(|r| r.key.name())
            .collect();
        assert_eq!(names, ["a.txt", "sub/.gitignore", "sub/a.txt"]);
        // sha256("y")
        assert_eq!(
            hex::encode(hashed.manifest.resources[0].digest),
            "a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa"
        );
        assert!(hashed.anomalies.is_empty());
        assert_eq!(
            hashed.manifest.serialization.ignore_paths,
            [".git", ".gitattributes", ".github", ".gitignore"]
        );
        Ok(())
    }

    #[test]
    fn shards_cover_each_file_and_skip_empty_files()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), "w.bin", &[7u8; 25])?;
        write(dir.path(), "empty", b"")?;
        let options = HashOptions {
            method: Method::Shards { shard_size: 10 },
            ..HashOptions::default()
        };
        let hashed = hash_model(dir.path(), &options, &NoProgress)?;
        let names: Vec<_> = hashed
            .manifest
            .resources
            .iter()
            .map(|r| r.key.name())
            .collect();
        assert_eq!(names, ["w.bin:0:10", "w.bin:10:20", "w.bin:20:25"]);
        let expected_last: [u8; 32] = Sha256::digest([7u8; 5]).into();
        assert_eq!(hashed.manifest.resources[2].digest, expected_last);
        Ok(())
    }

    #[test]
    fn user_ignore_paths_match_whole_components()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), "sub/x", b"1")?;
        write(dir.path(), "subway", b"2")?;
        let options = HashOptions {
            ignore_paths: vec!["sub".to_owned(), "../outside".to_owned()],
            ..HashOptions::default()
        };
        let hashed = hash_model(dir.path(), &options, &NoProgress)?;
        let names: Vec<_> = hashed
            .manifest
            .resources
            .iter()
            .map(|r| r.key.name())
            .collect();
        assert_eq!(names, ["subway"]);
        assert!(
            hashed
                .manifest
                .serialization
                .ignore_paths
                .contains(&"sub".to_owned())
        );
        assert!(
            !hashed
                .manifest
                .serialization
                .ignore_paths
                .iter()
                .any(|p| p.contains(".."))
        );
        Ok(())
    }

    #[test]
    fn a_single_file_is_one_item_named_dot() -> std::result::Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        write(dir.path(), "model.onnx", b"onnx")?;
        let hashed = hash_model(
            &dir.path().join("model.onnx"),
            &HashOptions::default(),
            &NoProgress,
        )?;
        assert_eq!(hashed.manifest.model_name, "model.onnx");
        assert_eq!(hashed.manifest.resources.len(), 1);
        assert_eq!(hashed.manifest.resources[0].key.name(), ".");
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn links_are_anomalies_unless_allowed() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), "real", b"r")?;
        std::os::unix::fs::symlink("real", dir.path().join("soft"))?;
        fs::hard_link(dir.path().join("real"), dir.path().join("hard"))?;
        let hashed = hash_model(dir.path(), &HashOptions::default(), &NoProgress)?;
        let kinds: Vec<_> = hashed
            .anomalies
            .iter()
            .map(|a| match a {
                Anomaly::HardLink { rel, links, .. } => format!("hard {rel} {links}"),
                Anomaly::Symlink { rel, .. } => format!("soft {rel}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["hard hard 2", "hard real 2", "soft soft"]);
        assert!(hashed.manifest.resources.is_empty());

        let permissive = HashOptions {
            allow_symlinks: true,
            allow_hardlinks: true,
            ..HashOptions::default()
        };
        let hashed = hash_model(dir.path(), &permissive, &NoProgress)?;
        assert!(hashed.anomalies.is_empty());
        let names: Vec<_> = hashed
            .manifest
            .resources
            .iter()
            .map(|r| r.key.name())
            .collect();
        assert_eq!(names, ["hard", "real", "soft"]);
        assert!(
            hashed
                .manifest
                .resources
                .iter()
                .all(|r| r.digest == hashed.manifest.resources[0].digest)
        );
        Ok(())
    }

    #[test]
    fn a_missing_model_is_an_io_error_naming_it() {
        let err = hash_model(
            Path::new("/nonexistent/model"),
            &HashOptions::default(),
            &NoProgress,
        )
        .err();
        assert!(
            matches!(err, Some(SigningError::Io { ref path, .. }) if path == Path::new("/nonexistent/model"))
        );
    }
}
