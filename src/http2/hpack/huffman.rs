//! HPACK's Huffman code for string literals (RFC 7541 §5.2, the code of Appendix B in `huffman/table.rs`).
//!
//! Decoding reads four bits at a time through a state table built at compile time from the code: a state is an
//! inner node of the code's tree (256 of them for 257 symbols), and each (state, nibble) step says the next state,
//! the symbol completed on the way if any (at most one: the shortest code is 5 bits) and whether the bits since
//! the last symbol are a valid end (§5.2: padding is the most significant bits of EOS, all ones, at most 7 of
//! them). A string holding EOS is refused. The table is 256 x 16 steps of 3 bytes, 12 KiB, a `static`: no
//! start-up work, no lazy initialisation to check per string. Encoding shifts codes into a 64-bit accumulator.

mod table;

use bytes::{BufMut, BytesMut};
use table::CODES;

/// Why a Huffman-coded string is refused (RFC 7541 §5.2): both are decoding errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HuffmanError {
    #[error("a Huffman-coded string contains EOS")]
    Eos,
    #[error("a Huffman-coded string ends in padding longer than 7 bits or not all ones")]
    Padding,
}

/// The symbol past the 256 byte values.
const EOS: usize = 256;
/// The code tree's inner nodes: 257 leaves need 256.
const NODES: usize = 256;
/// A tree child that is a leaf: the symbol in the low bits.
const LEAF: u16 = 0x8000;

/// The step completed a symbol: `symbol` is output.
const EMIT: u8 = 1;
/// The step completed EOS: the string is refused.
const FAIL: u8 = 2;
/// The string may end after this step: no bits pending, or at most 7 pending, all ones.
const ACCEPT: u8 = 4;

#[derive(Debug, Clone, Copy)]
struct Step {
    next: u8,
    symbol: u8,
    flags: u8,
}

/// The code tree of Appendix B: each inner node's two children (0: empty, `LEAF | symbol`, or an inner node),
/// its depth, and whether the path from the root to it is all ones (the only paths padding may take).
struct Tree {
    children: [[u16; 2]; NODES],
    depth: [u8; NODES],
    all_ones: [bool; NODES],
}

const fn tree() -> Tree {
    let mut tree = Tree {
        children: [[0; 2]; NODES],
        depth: [0; NODES],
        all_ones: [false; NODES],
    };
    tree.all_ones[0] = true;
    let mut used = 1;
    let mut symbol = 0;
    while symbol < CODES.len() {
        let (code, bits) = CODES[symbol];
        let mut node = 0;
        let mut bit_index = bits as u32;
        while bit_index > 1 {
            bit_index -= 1;
            let bit = ((code >> bit_index) & 1) as usize;
            if tree.children[node][bit] == 0 {
                // More than 256 inner nodes would index out of bounds here: a compile error, as it should be.
                tree.children[node][bit] = used as u16;
                tree.depth[used] = tree.depth[node] + 1;
                tree.all_ones[used] = tree.all_ones[node] && bit == 1;
                used += 1;
            }
            let child = tree.children[node][bit];
            assert!(child & LEAF == 0, "a code is a prefix of another");
            node = child as usize;
        }
        let last = (code & 1) as usize;
        assert!(tree.children[node][last] == 0, "two codes are equal");
        tree.children[node][last] = LEAF | symbol as u16;
        symbol += 1;
    }
    let mut node = 0;
    while node < NODES {
        assert!(
            tree.children[node][0] != 0 && tree.children[node][1] != 0,
            "the code is not complete"
        );
        node += 1;
    }
    tree
}

const fn steps() -> [[Step; 16]; NODES] {
    let tree = tree();
    let mut steps = [[Step {
        next: 0,
        symbol: 0,
        flags: 0,
    }; 16]; NODES];
    let mut state = 0;
    while state < NODES {
        let mut nibble = 0;
        while nibble < 16 {
            let mut node = state;
            let mut step = Step {
                next: 0,
                symbol: 0,
                flags: 0,
            };
            let mut bit_index = 4;
            while bit_index > 0 {
                bit_index -= 1;
                let child = tree.children[node][(nibble >> bit_index) & 1];
                if child & LEAF == 0 {
                    node = child as usize;
                    continue;
                }
                let symbol = (child & !LEAF) as usize;
                if symbol == EOS {
                    step.flags |= FAIL;
                } else {
                    step.flags |= EMIT;
                    step.symbol = symbol as u8;
                }
                node = 0;
            }
            if node == 0 || (tree.all_ones[node] && tree.depth[node] <= 7) {
                step.flags |= ACCEPT;
            }
            step.next = node as u8;
            steps[state][nibble] = step;
            nibble += 1;
        }
        state += 1;
    }
    steps
}

static STEPS: [[Step; 16]; NODES] = steps();

/// Decodes the Huffman-coded `src`, appending the bytes to `dst`.
pub(crate) fn decode(src: &[u8], dst: &mut BytesMut) -> Result<(), HuffmanError> {
    let mut state = 0;
    let mut accept = true;
    for &byte in src {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = STEPS[state][usize::from(nibble)];
            if step.flags & FAIL != 0 {
                return Err(HuffmanError::Eos);
            }
            if step.flags & EMIT != 0 {
                dst.put_u8(step.symbol);
            }
            state = usize::from(step.next);
            accept = step.flags & ACCEPT != 0;
        }
    }
    if accept {
        Ok(())
    } else {
        Err(HuffmanError::Padding)
    }
}

/// The length of `src` Huffman-coded, in bytes.
pub(crate) fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&byte| usize::from(CODES[usize::from(byte)].1))
        .sum();
    bits.div_ceil(8)
}

/// Appends `src` Huffman-coded to `dst`, padded with the most significant bits of EOS (ones).
pub(crate) fn encode(src: &[u8], dst: &mut BytesMut) {
    // Bits above the pending ones are stale and never read: each byte written is the eight below `pending`.
    let mut bits: u64 = 0;
    let mut pending: u32 = 0;
    for &byte in src {
        let (code, length) = CODES[usize::from(byte)];
        bits = (bits << length) | u64::from(code);
        pending += u32::from(length);
        while pending >= 8 {
            pending -= 8;
            dst.put_u8((bits >> pending) as u8);
        }
    }
    if pending > 0 {
        dst.put_u8(((bits << (8 - pending)) as u8) | (0xff >> pending));
    }
}
