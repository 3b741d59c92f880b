//! A byte-budgeted little-endian reader over a buffered source.
//!
//! Every read of the GGUF header goes through [`Source`], which counts the bytes consumed and
//! refuses, before reading or allocating, anything that would take the header past
//! [`MAX_HEADER_BYTES`]. Skips consume the underlying buffer directly, so passing over a
//! 260,000-entry token list costs no allocation at all. End of data becomes
//! [`GgufError::Truncated`] with the offset where the failed item started.

use std::io::{self, BufRead, Read};

use super::{GgufError, MAX_HEADER_BYTES};

/// A buffered source that counts and limits the bytes taken from it.
#[derive(Debug)]
pub(crate) struct Source<R> {
    inner: R,
    consumed: u64,
    limit: u64,
    /// Whether lengths and counts are `u32` (GGUF v1) rather than `u64`.
    pub(crate) narrow: bool,
}

impl<R: BufRead> Source<R> {
    /// A source with the default budget of [`MAX_HEADER_BYTES`].
    pub(crate) fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_HEADER_BYTES)
    }

    /// A source that refuses to read past `limit` bytes.
    pub(crate) fn with_limit(inner: R, limit: u64) -> Self {
        Self {
            inner,
            consumed: 0,
            limit,
            narrow: false,
        }
    }

    /// Bytes consumed so far: the offset of the next read.
    pub(crate) fn offset(&self) -> u64 {
        self.consumed
    }

    /// Fails unless `n` more bytes fit in the budget.
    fn reserve(&self, n: u64) -> Result<(), GgufError> {
        match self.consumed.checked_add(n) {
            Some(end) if end <= self.limit => Ok(()),
            _ => Err(GgufError::HeaderTooLarge),
        }
    }

    fn io_error(&self, what: &'static str, source: io::Error) -> GgufError {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            GgufError::Truncated {
                what,
                offset: self.consumed,
            }
        } else {
            GgufError::Io {
                offset: self.consumed,
                source,
            }
        }
    }

    /// Reads exactly `N` bytes.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], GgufError> {
        let n = N as u64;
        self.reserve(n)?;
        let mut bytes = [0u8; N];
        if let Err(e) = self.inner.read_exact(&mut bytes) {
            return Err(self.io_error(what, e));
        }
        self.consumed += n;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a length or count: `u32` in GGUF v1, `u64` from v2.
    pub(crate) fn len(&mut self, what: &'static str) -> Result<u64, GgufError> {
        if self.narrow {
            self.u32(what).map(u64::from)
        } else {
            self.u64(what)
        }
    }

    /// Passes over `n` bytes without keeping them.
    pub(crate) fn skip(&mut self, n: u64, what: &'static str) -> Result<(), GgufError> {
        self.reserve(n)?;
        let start = self.consumed;
        let mut left = n;
        while left > 0 {
            let available = match self.inner.fill_buf() {
                Ok(buf) => buf.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.consumed = start;
                    return Err(self.io_error(what, e));
                }
            };
            if available == 0 {
                return Err(GgufError::Truncated {
                    what,
                    offset: start,
                });
            }
            let step = usize::try_from(left).map_or(available, |l| l.min(available));
            self.inner.consume(step);
            // `step <= left`, so neither can wrap.
            let step = step as u64;
            left -= step;
            self.consumed += step;
        }
        Ok(())
    }

    /// Passes over `count` length-prefixed strings (a token list, say).
    ///
    /// Strings that lie wholly inside the buffered data are stepped over in a tight loop;
    /// one that straddles the end of the buffer goes through [`Self::len`] and [`Self::skip`].
    pub(crate) fn skip_strings(&mut self, count: u64) -> Result<(), GgufError> {
        let width = if self.narrow { 4 } else { 8 };
        let mut left = count;
        while left > 0 {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error("string length", e)),
            };
            let mut pos = 0usize;
            while left > 0 {
                let Some(len_bytes) = buf.get(pos..pos + width) else {
                    break;
                };
                let len = match <[u8; 8]>::try_from(len_bytes) {
                    Ok(wide) => u64::from_le_bytes(wide),
                    Err(_) => len_bytes
                        .iter()
                        .rev()
                        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
                };
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| (pos + width).checked_add(len));
                match end {
                    Some(end) if end <= buf.len() => {
                        pos = end;
                        left -= 1;
                    }
                    _ => break,
                }
            }
            // `pos` is at most the buffer's length.
            let stepped = pos as u64;
            self.reserve(stepped)?;
            self.inner.consume(pos);
            self.consumed += stepped;
            if left > 0 {
                let len = self.len("string length")?;
                self.skip(len, "string")?;
                left -= 1;
            }
        }
        Ok(())
    }

    /// Reads `n` bytes into a vector, growing it as data arrives rather than trusting `n`.
    pub(crate) fn bytes(&mut self, n: u64, what: &'static str) -> Result<Vec<u8>, GgufError> {
        self.reserve(n)?;
        let mut out = Vec::new();
        let read = (&mut self.inner).take(n).read_to_end(&mut out);
        match read {
            Ok(got) if got as u64 == n => {
                self.consumed += n;
                Ok(out)
            }
            Ok(_) => Err(GgufError::Truncated {
                what,
                offset: self.consumed,
            }),
            Err(e) => Err(self.io_error(what, e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_counts() {
        let data = [1u8, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0];
        let mut s = Source::new(&data[..]);
        assert_eq!(s.u8("a").unwrap(), 1);
        assert_eq!(s.u16("b").unwrap(), 2);
        assert_eq!(s.u32("c").unwrap(), 3);
        assert_eq!(s.u64("d").unwrap(), 4);
        assert_eq!(s.offset(), 15);
        assert!(matches!(
            s.u8("e"),
            Err(GgufError::Truncated {
                what: "e",
                offset: 15
            })
        ));
    }

    #[test]
    fn narrow_lengths_are_u32() {
        let data = [7u8, 0, 0, 0, 9];
        let mut s = Source::new(&data[..]);
        s.narrow = true;
        assert_eq!(s.len("len").unwrap(), 7);
        assert_eq!(s.offset(), 4);
    }

    #[test]
    fn skip_and_bytes_respect_end_and_budget() {
        let data = [0u8; 10];
        let mut s = Source::with_limit(&data[..], 8);
        s.skip(3, "x").unwrap();
        assert_eq!(s.bytes(2, "y").unwrap(), vec![0, 0]);
        assert!(matches!(s.skip(4, "z"), Err(GgufError::HeaderTooLarge)));
        assert!(matches!(
            s.bytes(u64::MAX, "z"),
            Err(GgufError::HeaderTooLarge)
        ));
        assert_eq!(s.offset(), 5);

        let mut s = Source::new(&data[..]);
        assert!(matches!(
            s.skip(11, "z"),
            Err(GgufError::Truncated { offset: 0, .. })
        ));
        let mut s = Source::new(&data[..]);
        assert!(matches!(
            s.bytes(11, "z"),
            Err(GgufError::Truncated { offset: 0, .. })
        ));
    }

    #[test]
    fn skip_strings_handles_both_widths_and_buffer_edges() {
        for narrow in [false, true] {
            let mut data = Vec::new();
            for i in 0..1000u32 {
                let text = "x".repeat((i % 37) as usize);
                if narrow {
                    data.extend_from_slice(&(text.len() as u32).to_le_bytes());
                } else {
                    data.extend_from_slice(&(text.len() as u64).to_le_bytes());
                }
                data.extend_from_slice(text.as_bytes());
            }
            data.push(42);
            for capacity in [1, 7, 13, 64, 1 << 16] {
                let mut s = Source::new(io::BufReader::with_capacity(capacity, &data[..]));
                s.narrow = narrow;
                s.skip_strings(1000).unwrap();
                assert_eq!(s.u8("end").unwrap(), 42, "capacity {capacity}");
                assert_eq!(s.offset(), data.len() as u64);

                let cut = &data[..data.len() - 2];
                let mut s = Source::new(io::BufReader::with_capacity(capacity, cut));
                s.narrow = narrow;
                assert!(matches!(
                    s.skip_strings(1000),
                    Err(GgufError::Truncated { .. })
                ));
            }
        }
    }

    #[test]
    fn skip_strings_respects_the_budget() {
        let mut data = Vec::new();
        for _ in 0..10 {
            data.extend_from_slice(&4u64.to_le_bytes());
            data.extend_from_slice(b"abcd");
        }
        let mut s = Source::with_limit(&data[..], 50);
        assert!(matches!(s.skip_strings(10), Err(GgufError::HeaderTooLarge)));
    }

    #[test]
    fn skip_crosses_buffer_boundaries() {
        let data = vec![5u8; 100_000];
        let mut s = Source::new(io::BufReader::with_capacity(7, &data[..]));
        s.skip(99_999, "x").unwrap();
        assert_eq!(s.u8("y").unwrap(), 5);
        assert_eq!(s.offset(), 100_000);
    }
}
