//! Aligning the records of a manifest with the records of a data set, so that a check
//! reports which records changed, were added, removed, relabelled or moved, rather than
//! every index after the first insertion.
//!
//! Records are matched by image digest (first occurrence with first occurrence when an
//! image appears several times). The longest run of matches whose order is the same on
//! both sides (a longest increasing subsequence, O(n log n)) anchors the alignment;
//! matched records outside it have moved. Between two consecutive anchors, unmatched
//! records of the manifest and of the data are paired in order as *changed*; those left
//! over were *removed* (manifest side) or *added* (data side).

use std::collections::{HashMap, VecDeque};

use super::RecordDigest;

/// A record found on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMatch {
    /// Its index in the manifest.
    pub manifest_index: usize,
    /// Its index in the data set now.
    pub index: usize,
    /// Its label in the manifest.
    pub manifest_label: u32,
    /// Its label now.
    pub label: u32,
}

/// A record found on one side only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOnly {
    /// Its index on that side.
    pub index: usize,
    /// Its label.
    pub label: u32,
}

/// The differences between a manifest's records and a data set's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordDiff {
    /// Records whose image differs (paired by position between unchanged neighbours);
    /// their labels may differ too.
    pub changed: Vec<RecordMatch>,
    /// Records with the same image and a different label.
    pub relabelled: Vec<RecordMatch>,
    /// Manifest records with no counterpart in the data (indices into the manifest).
    pub removed: Vec<RecordOnly>,
    /// Data records with no counterpart in the manifest (indices into the data).
    pub added: Vec<RecordOnly>,
    /// Records with the same image that moved relative to the others.
    pub moved: Vec<RecordMatch>,
    /// Records with the same image and label, in order.
    pub unchanged: usize,
}

impl RecordDiff {
    /// Whether the two record lists are identical.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.relabelled.is_empty()
            && self.removed.is_empty()
            && self.added.is_empty()
            && self.moved.is_empty()
    }
}

/// Aligns `expected` (from a manifest) with `actual` (from the data) and lists the
/// differences.
pub fn diff_records(expected: &[RecordDigest], actual: &[RecordDigest]) -> RecordDiff {
    if expected == actual {
        return RecordDiff {
            unchanged: expected.len(),
            ..RecordDiff::default()
        };
    }
    let mut by_image: HashMap<&[u8; 32], VecDeque<usize>> = HashMap::new();
    for (i, r) in expected.iter().enumerate() {
        by_image.entry(&r.image).or_default().push_back(i);
    }
    let mut matched_old = vec![false; expected.len()];
    let mut matched_new = vec![false; actual.len()];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (j, r) in actual.iter().enumerate() {
        if let Some(i) = by_image.get_mut(&r.image).and_then(VecDeque::pop_front) {
            matched_old[i] = true;
            matched_new[j] = true;
            pairs.push((i, j));
        }
    }
    let olds: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    let mut in_order = vec![false; pairs.len()];
    for k in longest_increasing(&olds) {
        in_order[k] = true;
    }

    let pair = |(i, j): (usize, usize)| RecordMatch {
        manifest_index: i,
        index: j,
        manifest_label: expected[i].label,
        label: actual[j].label,
    };
    let mut diff = RecordDiff::default();
    let mut anchors = Vec::new();
    for (k, &(i, j)) in pairs.iter().enumerate() {
        let m = pair((i, j));
        if m.label != m.manifest_label {
            diff.relabelled.push(m);
        }
        if in_order[k] {
            anchors.push((i, j));
            if m.label == m.manifest_label {
                diff.unchanged += 1;
            }
        } else {
            diff.moved.push(m);
        }
    }
    anchors.push((expected.len(), actual.len()));

    let (mut from_old, mut from_new) = (0, 0);
    for (to_old, to_new) in anchors {
        let gone: Vec<usize> = (from_old..to_old).filter(|&i| !matched_old[i]).collect();
        let new: Vec<usize> = (from_new..to_new).filter(|&j| !matched_new[j]).collect();
        for (&i, &j) in gone.iter().zip(&new) {
            diff.changed.push(pair((i, j)));
        }
        diff.removed
            .extend(gone.iter().skip(new.len()).map(|&i| RecordOnly {
                index: i,
                label: expected[i].label,
            }));
        diff.added
            .extend(new.iter().skip(gone.len()).map(|&j| RecordOnly {
                index: j,
                label: actual[j].label,
            }));
        from_old = to_old + 1;
        from_new = to_new + 1;
    }
    diff
}

/// Positions of one longest strictly increasing subsequence of `values` (patience sorting).
fn longest_increasing(values: &[usize]) -> Vec<usize> {
    // tails[k]: position of the smallest last value of an increasing run of length k + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; values.len()];
    for (pos, &v) in values.iter().enumerate() {
        let k = tails.partition_point(|&t| values[t] < v);
        prev[pos] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(pos);
        } else {
            tails[k] = pos;
        }
    }
    let mut out = Vec::with_capacity(tails.len());
    let mut cur = tails.last().copied();
    while let Some(pos) = cur {
        out.push(pos);
        cur = prev[pos];
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records whose image digest is determined by `id` (the same id, the same image).
    fn recs(items: &[(u8, u32)]) -> Vec<RecordDigest> {
        items
            .iter()
            .map(|&(id, label)| RecordDigest {
                label,
                image: [id; 32],
            })
            .collect()
    }

    fn base() -> Vec<RecordDigest> {
        recs(&[(1, 0), (2, 1), (3, 2), (4, 0), (5, 1)])
    }

    #[test]
    fn identical_lists_have_no_differences() {
        let d = diff_records(&base(), &base());
        assert!(d.is_empty());
        assert_eq!(d.unchanged, 5);
    }

    #[test]
    fn a_changed_image_is_reported_at_its_index() {
        let now = recs(&[(1, 0), (2, 1), (9, 2), (4, 0), (5, 1)]);
        let d = diff_records(&base(), &now);
        assert_eq!(
            d.changed,
            vec![RecordMatch {
                manifest_index: 2,
                index: 2,
                manifest_label: 2,
                label: 2
            }]
        );
        assert!(d.removed.is_empty() && d.added.is_empty() && d.relabelled.is_empty());
        assert_eq!(d.unchanged, 4);
    }

    #[test]
    fn a_flipped_label_is_a_relabelling_not_a_change() {
        let now = recs(&[(1, 0), (2, 1), (3, 7), (4, 0), (5, 1)]);
        let d = diff_records(&base(), &now);
        assert_eq!(d.relabelled.len(), 1);
        assert_eq!(
            (d.relabelled[0].manifest_label, d.relabelled[0].label),
            (2, 7)
        );
        assert!(d.changed.is_empty() && d.moved.is_empty());
    }

    #[test]
    fn a_removal_and_an_insertion_do_not_shift_every_later_index() {
        let removed = recs(&[(1, 0), (3, 2), (4, 0), (5, 1)]);
        let d = diff_records(&base(), &removed);
        assert_eq!(d.removed, vec![RecordOnly { index: 1, label: 1 }]);
        assert!(d.changed.is_empty() && d.added.is_empty() && d.moved.is_empty());
        assert_eq!(d.unchanged, 4);

        let added = recs(&[(1, 0), (2, 1), (3, 2), (8, 4), (4, 0), (5, 1)]);
        let d = diff_records(&base(), &added);
        assert_eq!(d.added, vec![RecordOnly { index: 3, label: 4 }]);
        assert!(d.changed.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn swapped_neighbours_are_reported_as_one_move() {
        let now = recs(&[(1, 0), (3, 2), (2, 1), (4, 0), (5, 1)]);
        let d = diff_records(&base(), &now);
        assert_eq!(d.moved.len(), 1);
        assert!(d.changed.is_empty() && d.removed.is_empty() && d.added.is_empty());
    }

    #[test]
    fn repeated_images_pair_in_order() {
        let old = recs(&[(1, 0), (1, 0), (2, 1)]);
        let now = recs(&[(1, 0), (2, 1)]);
        let d = diff_records(&old, &now);
        assert_eq!(d.removed, vec![RecordOnly { index: 1, label: 0 }]);
    }

    #[test]
    fn longest_increasing_subsequence_is_longest() {
        let v = [3, 1, 4, 1, 5, 9, 2, 6];
        let lis = longest_increasing(&v);
        assert_eq!(lis.len(), 4);
        assert!(lis.windows(2).all(|w| v[w[0]] < v[w[1]] && w[0] < w[1]));
        assert!(longest_increasing(&[]).is_empty());
    }
}
