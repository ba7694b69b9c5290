//! Per-packet authentication of data packets: the multipath header carries
//! a 64-bit SipHash-2-4 tag of its other 24 bytes, keyed by a per-connection,
//! per-direction key the two controllers derive in the handshake.
//!
//! Why SipHash: it is a PRF built for short inputs (24 bytes here: three
//! blocks and the finalisation, about 170 ALU instructions and no memory),
//! so a MAC over the header costs tens of nanoseconds in the eBPF JIT; the
//! kernel offers BPF programs no keyed hash, and its crypto kfuncs only
//! skciphers. Written out here, not taken from a crate, because the verifier
//! needs straight-line code over fixed words; the host tests check it
//! against the `siphasher` crate.
//!
//! What the tag buys: without the key nobody can make a header the receiver
//! accepts, so a packet from off the path (whatever its addresses, ports and
//! token) is dropped and counted, and with the replay window over subflow
//! sequence numbers ([`crate::seq`]) a packet captured on a path and sent
//! again is too. It covers the header, not the inner packet: GSO copies one
//! header onto every segment, so no per-segment tag can be made before the
//! kernel segments. An attacker on the path who drops a packet can replace
//! its payload under its header; one who does not drop it only races it, and
//! the loser is counted as a replay.

use bytemuck::{Pod, Zeroable};

use crate::wire::MpHeader;

/// A 128-bit SipHash key, as its two little-endian halves.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DataKey {
    pub k0: u64,
    pub k1: u64,
}

impl DataKey {
    pub fn from_bytes(b: [u8; 16]) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&b[..8]);
        k1.copy_from_slice(&b[8..]);
        Self { k0: u64::from_le_bytes(k0), k1: u64::from_le_bytes(k1) }
    }
}

impl core::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// `DATA_KEYS` value: one connection's keys, as this end uses them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnKeys {
    /// Tags what this end sends.
    pub tx: DataKey,
    /// Checks what it receives (the peer's `tx`).
    pub rx: DataKey,
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[inline(always)]
fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    round(v);
    round(v);
    v[0] ^= m;
}

/// SipHash-2-4 of the 24 bytes whose little-endian words are `words`.
#[inline(always)]
pub fn siphash24_24(key: &DataKey, words: [u64; 3]) -> u64 {
    let mut v = [
        key.k0 ^ 0x736f_6d65_7073_6575,
        key.k1 ^ 0x646f_7261_6e64_6f6d,
        key.k0 ^ 0x6c79_6765_6e65_7261,
        key.k1 ^ 0x7465_6462_7974_6573,
    ];
    compress(&mut v, words[0]);
    compress(&mut v, words[1]);
    compress(&mut v, words[2]);
    // The last block: the message length (24) in the top byte, no tail bytes.
    compress(&mut v, 24 << 56);
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The tag `hdr` must carry under `key`.
#[inline(always)]
pub fn header_tag(key: &DataKey, hdr: &MpHeader) -> [u8; 8] {
    siphash24_24(key, hdr.tagged_words()).to_le_bytes()
}

/// `hdr` with its tag under `key`.
#[inline(always)]
pub fn seal(key: &DataKey, mut hdr: MpHeader) -> MpHeader {
    hdr.tag = header_tag(key, &hdr);
    hdr
}

/// Whether `hdr`'s tag is its tag under `key`. (Not constant-time, and need
/// not be: a wrong guess costs the sender a packet and teaches it only that
/// the guess was wrong, as the tag is compared whole.)
#[inline(always)]
pub fn verify(key: &DataKey, hdr: &MpHeader) -> bool {
    u64::from_le_bytes(hdr.tag) == siphash24_24(key, hdr.tagged_words())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::Hasher;
    use siphasher::sip::SipHasher24;

    fn reference(key: &DataKey, bytes: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_keys(key.k0, key.k1);
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn the_tag_is_siphash_2_4_of_the_header_bytes() {
        // The paper's test-vector key (00 01 .. 0f) and message shape, then
        // random ones: always what the siphasher crate computes.
        let mut keys = std::vec![DataKey::from_bytes(core::array::from_fn(|i| i as u8))];
        let mut msgs: std::vec::Vec<[u8; 24]> = std::vec![core::array::from_fn(|i| i as u8)];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1000 {
            keys.push(DataKey { k0: next(), k1: next() });
            msgs.push(core::array::from_fn(|_| next() as u8));
        }
        for (key, msg) in keys.iter().zip(&msgs) {
            let words = core::array::from_fn(|i| u64::from_le_bytes(msg[i * 8..i * 8 + 8].try_into().unwrap()));
            assert_eq!(siphash24_24(key, words), reference(key, msg));
        }
    }

    #[test]
    fn sealed_headers_verify_and_any_change_breaks_them() {
        let key = DataKey { k0: 0x0123_4567_89ab_cdef, k1: 0xfeed_f00d_dead_beef };
        let h = seal(&key, MpHeader::data(0xdead_beef, 2, 100, 200, 300).with_segs(3));
        assert!(verify(&key, &h));
        let b = bytemuck::bytes_of(&h);
        assert_eq!(u64::from_le_bytes(h.tag), reference(&key, &b[..crate::wire::TAGGED_LEN]));
        // Every bit of the header is covered, and the key matters.
        for bit in 0..crate::wire::MP_HDR_LEN * 8 {
            let mut c = b.to_vec();
            c[bit / 8] ^= 1 << (bit % 8);
            let forged: MpHeader = bytemuck::pod_read_unaligned(&c);
            assert!(!verify(&key, &forged), "bit {bit}");
        }
        assert!(!verify(&DataKey { k0: key.k0 ^ 1, ..key }, &h));
    }

    #[test]
    fn keys_never_print() {
        let k = ConnKeys { tx: DataKey { k0: 0x1122_3344, k1: 5 }, rx: DataKey::default() };
        let s = std::format!("{k:?}");
        assert!(!s.contains("1122") && !s.contains("287454020"), "{s}");
    }
}
