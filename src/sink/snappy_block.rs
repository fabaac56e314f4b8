//! Snappy block compression for record bodies stored compressed
//! (`prometheus_remote_write`, docs/BUFFER.md "Frame format"), and the splicing of
//! such records into one request body without decompressing them.
//!
//! A snappy block — the format remote write sends — is a varint preamble holding the
//! uncompressed length, followed by literal and copy elements; a copy's offset
//! reaches back into the output decoded so far. A block compressed on its own copies
//! only from its own output, so the elements of several blocks, one after the other
//! under one new preamble (the sum of their lengths), form a valid block that
//! decompresses to the concatenation of theirs. Record bodies whose concatenation is
//! a request (docs/BUFFER.md) are therefore compressed once, when buffered, and a
//! request is built from them by copying their elements.

use std::borrow::Cow;

use prost::encoding::{decode_varint, encode_varint};

/// Largest uncompressed length a snappy block may declare (its preamble is a 32-bit
/// varint).
const MAX_PLAIN_LEN: u64 = u32::MAX as u64;

/// A snappy block could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("a snappy block without a valid length preamble")]
    Preamble,
    #[error("snappy blocks of {0} bytes in all, more than one block can hold")]
    TooLong(u64),
}

/// A block split into its declared uncompressed length and its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block<'a> {
    pub plain_len: u64,
    pub elements: &'a [u8],
}

impl<'a> Block<'a> {
    /// Reads the preamble of `block`.
    pub fn parse(block: &'a [u8]) -> Result<Self, BlockError> {
        // A snappy preamble is at most 5 bytes (a 32-bit length).
        let mut preamble = &block[..block.len().min(5)];
        let plain_len = decode_varint(&mut preamble).map_err(|_| BlockError::Preamble)?;
        if plain_len > MAX_PLAIN_LEN {
            return Err(BlockError::Preamble);
        }
        let used = block.len().min(5) - preamble.len();
        Ok(Block {
            plain_len,
            elements: &block[used..],
        })
    }
}

/// Appends the block made of `blocks`, in order: it decompresses to the
/// concatenation of what they decompress to.
pub fn splice(blocks: &[Block<'_>], out: &mut Vec<u8>) -> Result<(), BlockError> {
    let plain_len: u64 = blocks.iter().map(|b| b.plain_len).sum();
    if plain_len > MAX_PLAIN_LEN {
        return Err(BlockError::TooLong(plain_len));
    }
    out.reserve(5 + blocks.iter().map(|b| b.elements.len()).sum::<usize>());
    encode_varint(plain_len, out);
    for block in blocks {
        out.extend_from_slice(block.elements);
    }
    Ok(())
}

/// The uncompressed contents of `block`.
pub fn decompress(block: &[u8]) -> Result<Vec<u8>, BlockError> {
    Ok(snap::raw::Decoder::new().decompress_vec(block)?)
}

/// Like [`decompress`], for a body that may be empty (an empty body is no block).
pub fn decompress_body(body: &[u8]) -> Result<Cow<'_, [u8]>, BlockError> {
    if body.is_empty() {
        return Ok(Cow::Borrowed(body));
    }
    decompress(body).map(Cow::Owned)
}

/// A snappy compressor that keeps its tables and output space from one body to the
/// next (fresh memory for every body would be paged in each time).
#[derive(Default)]
pub struct Compressor {
    encoder: Option<snap::raw::Encoder>,
    scratch: Vec<u8>,
}

/// Output space kept between bodies at most; a larger body's is given back.
const KEPT_SCRATCH: usize = 4 << 20;

impl Compressor {
    /// Appends `plain` compressed as one block to `out`, which grows by exactly the
    /// block's length.
    pub fn compress(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), BlockError> {
        let max = snap::raw::max_compress_len(plain.len());
        if max == 0 {
            return Err(BlockError::TooLong(plain.len() as u64));
        }
        if self.scratch.len() < max {
            self.scratch.resize(max, 0);
        }
        let encoder = self.encoder.get_or_insert_with(snap::raw::Encoder::new);
        let n = encoder.compress(plain, &mut self.scratch)?;
        out.reserve_exact(n);
        out.extend_from_slice(&self.scratch[..n]);
        if self.scratch.len() > KEPT_SCRATCH {
            self.scratch = Vec::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn compressed(plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Compressor::default()
            .compress(plain, &mut out)
            .expect("compress");
        out
    }

    #[test]
    fn a_block_is_what_snap_makes_and_its_preamble_is_its_length() {
        let plain = b"abcabcabcabcabcabcabcabcabcabc-and-some-more-abcabcabc".repeat(50);
        let block = compressed(&plain);
        assert_eq!(
            block,
            snap::raw::Encoder::new()
                .compress_vec(&plain)
                .expect("snap")
        );
        let parsed = Block::parse(&block).expect("preamble");
        assert_eq!(parsed.plain_len, plain.len() as u64);
        assert!(parsed.elements.len() < plain.len() / 4, "it compresses");
        assert_eq!(decompress(&block).expect("decompress"), plain);
    }

    #[test]
    fn a_broken_preamble_is_refused() {
        assert!(matches!(Block::parse(&[]), Err(BlockError::Preamble)));
        assert!(matches!(
            Block::parse(&[0x80; 5]),
            Err(BlockError::Preamble)
        ));
        // 2^35 - 1: more than a block may declare.
        assert!(matches!(
            Block::parse(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(BlockError::Preamble)
        ));
        assert_eq!(
            Block::parse(&[0xff, 0xff, 0xff, 0xff, 0x0f, 9]).expect("u32::MAX"),
            Block {
                plain_len: MAX_PLAIN_LEN,
                elements: &[9]
            }
        );
    }

    /// Bodies with long repeats (so that copies, also long-distance ones, are made)
    /// and random stretches (so that literals are).
    fn any_body() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            (prop::collection::vec(0u8..4, 1..40), 1usize..400)
                .prop_map(|(unit, times)| unit.repeat(times)),
            Just(b"cpu_usage{host=\"h1\",region=\"eu\"} ".repeat(30)),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// The spliced block of records compressed one by one decompresses (with
        /// snap's decoder, which checks every copy's offset against what was
        /// decoded) to the concatenation of the records.
        #[test]
        fn spliced_blocks_decompress_to_the_concatenation(
            body in any_body(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
            at.push(0);
            at.push(body.len());
            at.sort_unstable();
            let mut compressor = Compressor::default();
            let records: Vec<Vec<u8>> = at
                .windows(2)
                .map(|w| {
                    let mut out = Vec::new();
                    compressor.compress(&body[w[0]..w[1]], &mut out).expect("compress");
                    out
                })
                .collect();
            let blocks: Vec<Block<'_>> = records
                .iter()
                .map(|r| Block::parse(r).expect("preamble"))
                .collect();
            let mut spliced = Vec::new();
            splice(&blocks, &mut spliced).expect("splice");
            prop_assert_eq!(decompress(&spliced).expect("a valid block"), body.clone());
            prop_assert_eq!(
                snap::raw::decompress_len(&spliced).expect("length"),
                body.len()
            );
            let elements: usize = blocks.iter().map(|b| b.elements.len()).sum();
            prop_assert!(spliced.len() <= elements + 5);
        }
    }
}
