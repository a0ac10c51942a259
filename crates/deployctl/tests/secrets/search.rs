//! Markers and the search for them: every form of a marker (raw, base64 in every alignment and both alphabets, base64 of base64) and the audit that records where one is found.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use crate::*;

pub(crate) const STD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub(crate) const URL: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub(crate) fn base64(alphabet: &[u8; 64], bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

/// The base64 characters that depend only on `value` when it is encoded after `k` other
/// bytes (k = 0, 1, 2): whatever surrounds the value, its encoding contains one of these.
pub(crate) fn base64_cores(alphabet: &[u8; 64], value: &[u8]) -> Vec<String> {
    (0..3)
        .map(|k| {
            let mut bytes = vec![0_u8; k];
            bytes.extend_from_slice(value);
            let enc = base64(alphabet, &bytes);
            let start = (8 * k).div_ceil(6);
            let end = 8 * (k + value.len()) / 6;
            enc[start..end].to_owned()
        })
        .collect()
}

/// One form of one secret value.
#[derive(Debug, Clone)]
pub(crate) struct Needle {
    pub(crate) what: String,
    pub(crate) bytes: Vec<u8>,
}

/// `value` raw, base64 (every alignment, both alphabets) and base64 of that (a base64 value
/// inside base64, as in a `.dockerconfigjson` or a Secret's data in a request body).
pub(crate) fn forms(name: &str, value: &str) -> Vec<Needle> {
    let mut out = vec![Needle {
        what: name.to_owned(),
        bytes: value.as_bytes().to_vec(),
    }];
    let push = |out: &mut Vec<Needle>, what: String, core: String| {
        if core.len() >= KEY && out.iter().all(|n| n.bytes != core.as_bytes()) {
            out.push(Needle {
                what,
                bytes: core.into_bytes(),
            });
        }
    };
    for (alphabet, label) in [(STD, "base64"), (URL, "base64url")] {
        for (k, core) in base64_cores(alphabet, value.as_bytes())
            .into_iter()
            .enumerate()
        {
            for (j, twice) in base64_cores(alphabet, core.as_bytes())
                .into_iter()
                .enumerate()
            {
                push(
                    &mut out,
                    format!("{name} ({label} twice, offsets {k}, {j})"),
                    twice,
                );
            }
            push(&mut out, format!("{name} ({label}, offset {k})"), core);
        }
    }
    out
}

pub(crate) fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len().max(1))
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Needles are found by their first `KEY` bytes, then compared whole.
pub(crate) const KEY: usize = 8;

/// Every place a marker was found where it must not be, and the count of bytes searched.
#[derive(Default)]
pub(crate) struct Audit {
    pub(crate) needles: Vec<Needle>,
    pub(crate) index: std::collections::HashMap<[u8; KEY], Vec<usize>>,
    pub(crate) leaks: Vec<String>,
    pub(crate) places: usize,
    pub(crate) bytes: usize,
}

impl Audit {
    pub(crate) fn add(&mut self, name: &str, value: &str) {
        assert!(value.len() >= 12, "{name}: a marker this short finds noise");
        for n in forms(name, value) {
            let key: [u8; KEY] = n.bytes[..KEY].try_into().unwrap();
            self.index.entry(key).or_default().push(self.needles.len());
            self.needles.push(n);
        }
    }

    /// The needles found in `bytes`, with their offsets.
    pub(crate) fn found(&self, bytes: &[u8]) -> Vec<(&Needle, usize)> {
        let mut out = Vec::new();
        for (at, window) in bytes.windows(KEY).enumerate() {
            let Some(ids) = self.index.get(window) else {
                continue;
            };
            for &id in ids {
                let n = &self.needles[id];
                if bytes[at..].starts_with(&n.bytes) {
                    out.push((n, at));
                }
            }
        }
        out
    }

    /// Records a leak for every marker in `bytes`, which must hold none.
    pub(crate) fn check(&mut self, place: &str, bytes: &[u8]) {
        self.places += 1;
        self.bytes += bytes.len();
        let found: Vec<String> = self
            .found(bytes)
            .into_iter()
            .map(|(n, at)| {
                let from = at.saturating_sub(80);
                let to = (at + n.bytes.len() + 80).min(bytes.len());
                format!(
                    "{} in {place} at byte {at}: …{}…",
                    n.what,
                    String::from_utf8_lossy(&bytes[from..to]).replace('\n', "⏎")
                )
            })
            .collect();
        self.leaks.extend(found);
    }

    /// Whether `bytes` holds the marker `name` in some form (the positive controls).
    pub(crate) fn holds(&self, name: &str, bytes: &[u8]) -> bool {
        let prefix = format!("{name} (");
        self.found(bytes)
            .iter()
            .any(|(n, _)| n.what == name || n.what.starts_with(&prefix))
    }
}

pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{:x}{:x}", nanos, std::process::id())
}
