//! Naming a data set on the command line, finding it on disk and loading it.

use std::path::{Path, PathBuf};

use crate::{DataError, Dataset, Result, Split, bundled, cifar, idx, npy};

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// MNIST's class names (the digits), in label order.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The environment variable naming an extra directory to search for installed data sets.
pub const DATA_DIR_ENV: &str = "NNGUARD_DATA";

/// Where a data set comes from, as written after `--data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// `fashion-mnist`: the installed Fashion-MNIST (70,000 images).
    FashionMnist,
    /// `mnist`: the installed MNIST digits.
    Mnist,
    /// `bundled`: the Fashion-MNIST subset compiled into the binary.
    Bundled,
    /// `idx:DIR`: MNIST-style IDX files in a directory.
    Idx(PathBuf),
    /// `cifar10:DIR`: the CIFAR-10 binary version in a directory.
    Cifar10(PathBuf),
    /// `npy:X.npy,Y.npy`: images and labels as NumPy arrays.
    Npy {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
    },
}

impl std::str::FromStr for DataSource {
    type Err = DataError;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| DataError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let nonempty = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(bad(&format!("expected a {what} after the colon")))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match spec.split_once(':') {
            None => match spec {
                "fashion-mnist" | "fashion_mnist" | "fmnist" => Ok(DataSource::FashionMnist),
                "mnist" => Ok(DataSource::Mnist),
                "bundled" => Ok(DataSource::Bundled),
                _ => Err(bad(
                    "unknown data set; expected fashion-mnist, mnist, bundled, idx:DIR, cifar10:DIR or npy:X.npy,Y.npy",
                )),
            },
            Some(("idx", rest)) => Ok(DataSource::Idx(nonempty(rest, "directory")?)),
            Some(("cifar10", rest)) => Ok(DataSource::Cifar10(nonempty(rest, "directory")?)),
            Some(("npy", rest)) => match rest.split_once(',') {
                Some((x, y)) if !x.is_empty() && !y.is_empty() => Ok(DataSource::Npy {
                    images: x.into(),
                    labels: y.into(),
                }),
                _ => Err(bad("expected npy:IMAGES.npy,LABELS.npy")),
            },
            Some((kind, _)) => Err(bad(&format!(
                "unknown kind {kind:?}; expected idx:, cifar10: or npy:"
            ))),
        }
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::FashionMnist => f.write_str("fashion-mnist"),
            DataSource::Mnist => f.write_str("mnist"),
            DataSource::Bundled => f.write_str("bundled"),
            DataSource::Idx(d) => write!(f, "idx:{}", d.display()),
            DataSource::Cifar10(d) => write!(f, "cifar10:{}", d.display()),
            DataSource::Npy { images, labels } => {
                write!(f, "npy:{},{}", images.display(), labels.display())
            }
        }
    }
}

impl DataSource {
    /// Loads `split` of this data set.
    ///
    /// `npy:` sources have no splits: both splits load the same arrays.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        match self {
            DataSource::Bundled => bundled::load(split),
            DataSource::FashionMnist => {
                let dir = find_installed(
                    "Fashion-MNIST",
                    "fashion-mnist",
                    "install it with `apt-get install dataset-fashion-mnist`, or put the four IDX files in $NNGUARD_DATA/fashion-mnist (or use --data bundled for the built-in subset)",
                )?;
                load_idx_dir(&dir, split, "fashion-mnist", Some(10))
                    .map(|d| d.with_class_names(&FASHION_MNIST_CLASSES))
            }
            DataSource::Mnist => {
                let dir = find_installed(
                    "MNIST",
                    "mnist",
                    "put the four IDX files (train-images-idx3-ubyte.gz, ...) in $NNGUARD_DATA/mnist, or point at them with --data idx:DIR",
                )?;
                load_idx_dir(&dir, split, "mnist", Some(10))
                    .map(|d| d.with_class_names(&MNIST_CLASSES))
            }
            DataSource::Idx(dir) => {
                load_idx_dir(dir, split, &format!("idx:{}", dir.display()), None)
            }
            DataSource::Cifar10(dir) => cifar::load(dir, split),
            DataSource::Npy { images, labels } => npy::load(images, labels),
        }
    }
}

fn load_idx_dir(dir: &Path, split: Split, name: &str, classes: Option<usize>) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(if dir.exists() {
            DataError::WrongKind {
                path: dir.into(),
                expected: "a directory with IDX files",
            }
        } else {
            DataError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            )
        });
    }
    let (images, labels) = idx::find_split_files(dir, split)?;
    idx::load_pair(&format!("{name}/{split}"), &images, &labels, classes)
}

/// The directories searched for an installed data set, in order.
pub fn search_dirs(subdir: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = std::env::var_os(DATA_DIR_ENV) {
        dirs.push(PathBuf::from(&root).join(subdir));
    }
    dirs.push(Path::new("/usr/share/datasets").join(subdir));
    dirs
}

fn find_installed(name: &'static str, subdir: &str, hint: &'static str) -> Result<PathBuf> {
    let dirs = search_dirs(subdir);
    dirs.iter()
        .find(|d| d.is_dir())
        .cloned()
        .ok_or_else(|| DataError::NotInstalled {
            name,
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hint,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_spelling() {
        assert_eq!(
            "fashion-mnist".parse::<DataSource>().unwrap(),
            DataSource::FashionMnist
        );
        assert_eq!(
            "bundled".parse::<DataSource>().unwrap(),
            DataSource::Bundled
        );
        assert_eq!(
            "idx:/d".parse::<DataSource>().unwrap(),
            DataSource::Idx("/d".into())
        );
        assert_eq!(
            "npy:a.npy,b.npy".parse::<DataSource>().unwrap(),
            DataSource::Npy {
                images: "a.npy".into(),
                labels: "b.npy".into()
            }
        );
        for bad in ["imagenet", "idx:", "npy:a.npy", "foo:bar"] {
            let err = bad.parse::<DataSource>().unwrap_err();
            assert!(err.to_string().contains("--data"), "{err}");
        }
    }

    #[test]
    fn bundled_subset_has_the_documented_size_and_classes() {
        let train = DataSource::Bundled.load(Split::Train).unwrap();
        let test = DataSource::Bundled.load(Split::Test).unwrap();
        assert_eq!((train.len(), test.len()), (2000, 1000));
        assert_eq!(test.shape, [1, 28, 28]);
        // The first Fashion-MNIST test labels, as published.
        assert_eq!(&test.labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
        assert!(train.class_counts().iter().all(|&c| c > 150));
        assert_eq!(test.class_name(9), "Ankle boot");
    }
}
