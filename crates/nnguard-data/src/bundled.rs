//! The Fashion-MNIST subset compiled into the binary (`--data bundled`): the first 2,000
//! training and the first 1,000 test images, so the demo and the tests need no download.

use std::path::Path;

use crate::idx::{decode_pair, gunzip_if_compressed};
use crate::source::FASHION_MNIST_CLASSES;
use crate::{Dataset, Result, Split};

const TRAIN_IMAGES: &[u8] = include_bytes!("../data/bundled/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../data/bundled/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../data/bundled/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../data/bundled/t10k-labels-idx1-ubyte.gz");

/// The embedded files of `split` as `(file name, role, bytes)`, for hash manifests.
pub(crate) fn raw_files(split: Split) -> [(&'static str, &'static str, &'static [u8]); 2] {
    match split {
        Split::Train => [
            ("train-images-idx3-ubyte.gz", "images", TRAIN_IMAGES),
            ("train-labels-idx1-ubyte.gz", "labels", TRAIN_LABELS),
        ],
        Split::Test => [
            ("t10k-images-idx3-ubyte.gz", "images", TEST_IMAGES),
            ("t10k-labels-idx1-ubyte.gz", "labels", TEST_LABELS),
        ],
    }
}

/// Decodes the bundled subset's `split`.
pub(crate) fn load(split: Split) -> Result<Dataset> {
    let (images, labels) = match split {
        Split::Train => (TRAIN_IMAGES, TRAIN_LABELS),
        Split::Test => (TEST_IMAGES, TEST_LABELS),
    };
    let image_name = Path::new("<bundled images>");
    let label_name = Path::new("<bundled labels>");
    let images = gunzip_if_compressed(image_name, images.to_vec())?;
    let labels = gunzip_if_compressed(label_name, labels.to_vec())?;
    Ok(decode_pair(
        &format!("bundled/{split}"),
        (image_name, &images),
        (label_name, &labels),
        Some(FASHION_MNIST_CLASSES.len()),
    )?
    .with_class_names(&FASHION_MNIST_CLASSES))
}
