//! `check --shard I/N`: which inputs one of N workers checks.

use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Shard `index` of `count`: the paths whose hash is `index` modulo `count`.
/// The hash is SHA-256 of the path's bytes, so every worker decides alone,
/// on any machine, and the N shards cover every input exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 0.
    pub index: u64,
    /// How many shards.
    pub count: u64,
}

impl Shard {
    /// Whether this shard checks `path` (as given or as found by the walk).
    pub fn owns(&self, path: &Path) -> bool {
        let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
        let mut leading = [0u8; 8];
        leading.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(leading) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let (index, count) = text.split_once('/').ok_or_else(|| format!("`{text}` is not I/N"))?;
        let number = |word: &str| word.trim().parse::<u64>().map_err(|e| format!("`{word}` in `{text}`: {e}"));
        let (index, count) = (number(index)?, number(count)?);
        if count == 0 || index >= count {
            return Err(format!("`{text}`: needs N at least 1 and I from 0 to N-1"));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_path_has_exactly_one_shard() {
        let shards: Vec<Shard> = (0..4).map(|index| Shard { index, count: 4 }).collect();
        let mut sizes = [0usize; 4];
        for n in 0..400 {
            let path = format!("/usr/lib/lib{n}.so");
            let owners: Vec<u64> = shards.iter().filter(|s| s.owns(Path::new(&path))).map(|s| s.index).collect();
            assert_eq!(owners.len(), 1, "{path}");
            sizes[owners[0] as usize] += 1;
        }
        // A hash, not one bucket: every shard gets a fair share of 400 paths.
        assert!(sizes.iter().all(|&n| (60..140).contains(&n)), "{sizes:?}");
    }
}
