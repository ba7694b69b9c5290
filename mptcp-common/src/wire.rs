//! The multipath header that follows the outer UDP header on every packet
//! exchanged by two mptcp-ebpf peers.
//!
//! ```text
//!  0               1               2               3
//! +---------------+---------------+---------------+---------------+
//! |    version    |     kind      |  subflow id   |     flags     |
//! +---------------+---------------+---------------+---------------+
//! |                    connection token (BE)                      |
//! +---------------------------------------------------------------+
//! |            data sequence number, per connection (BE)          |
//! +---------------------------------------------------------------+
//! |            subflow sequence number, per subflow (BE)          |
//! +---------------------------------------------------------------+
//! |            send timestamp, microseconds, wrapping (BE)        |
//! +-------------------------------+-------------------------------+
//! |     GSO segments (BE)         | subflow seq. bits 32..48 (BE) |
//! +-------------------------------+-------------------------------+
//! |        tag: SipHash-2-4 of the 24 bytes above (8 bytes)       |
//! +---------------------------------------------------------------+
//! ```
//! Data packets carry the inner IP packet after the header, and their tag is
//! keyed by the connection's key for that direction ([`crate::auth`]).
//! Control packets (handshake, probes) carry a control message, authenticated
//! on its own, and are passed up to the controller's UDP socket untouched.
//!
//! A GSO super-packet is encapsulated once and segmented by the kernel, which
//! copies this header onto every segment: the sender therefore advances both
//! sequence numbers by the segment count and says how many segments share
//! the header, and the receiver takes that many packets with it, no more
//! (see [`crate::seq`]).

use bytemuck::{Pod, Zeroable};

/// Wire format version. A receiver drops data packets of any other version.
pub const VERSION: u8 = 2;

/// Default UDP port of the bond (outer destination and source port).
pub const DEFAULT_PORT: u16 = 7495;

/// `kind`: an encapsulated inner IP packet.
pub const KIND_DATA: u8 = 0;
/// `kind`: a control message for the controller.
pub const KIND_CONTROL: u8 = 1;

/// `flags`: one of several copies of a packet (redundant policy); the
/// receiver delivers only the first copy of its DSN.
pub const FLAG_REPLICATED: u8 = 1;

/// Length of [`MpHeader`] on the wire.
pub const MP_HDR_LEN: usize = core::mem::size_of::<MpHeader>();
pub const ETH_HLEN: usize = 14;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Outer IP family of a subflow.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Bytes the encapsulation adds in front of the inner IP packet.
pub const fn encap_overhead(family: u8) -> usize {
    if family == FAMILY_V6 {
        IPV6_HLEN + UDP_HLEN + MP_HDR_LEN
    } else {
        IPV4_HLEN + UDP_HLEN + MP_HDR_LEN
    }
}

/// Inner IP + TCP headers (with timestamps) that GSO repeats on every
/// segment after the first; an estimate, the packet is not parsed for it.
pub const GSO_INNER_HDR_LEN: u32 = 52;

/// Bytes a bond packet of `inner_len` bytes (in `segs` GSO segments) puts on
/// an uplink behind `outer_len` bytes of encapsulation: every segment carries
/// an Ethernet header and the encapsulation, and repeats the inner headers.
#[inline(always)]
pub const fn frame_len(inner_len: u32, segs: u32, outer_len: u32) -> u32 {
    let segs = if segs == 0 { 1 } else { segs };
    inner_len + segs * (ETH_HLEN as u32 + outer_len) + (segs - 1) * GSO_INNER_HDR_LEN
}

/// [`frame_len`] over IPv4 outer headers: what the token buckets count, so a
/// path's rate is its line rate as the link counts it. (The subflow is not
/// known yet when they are charged; IPv6 outer headers are 20 bytes longer,
/// so such paths are undercounted by about 1.3 %.)
#[inline(always)]
pub const fn wire_len(inner_len: u32, segs: u32) -> u32 {
    frame_len(inner_len, segs, encap_overhead(FAMILY_V4) as u32)
}

/// The multipath header; multi-byte fields are stored in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MpHeader {
    pub version: u8,
    pub kind: u8,
    pub subflow_id: u8,
    pub flags: u8,
    token_be: u32,
    dsn_be: u32,
    subflow_seq_be: u32,
    tstamp_us_be: u32,
    segs_be: u16,
    /// The subflow sequence number's bits 32..48: a 48-bit number never
    /// wraps on a connection (2^48 packets), so a header captured long ago
    /// stays older than the replay window however long the connection
    /// lives (a 32-bit one wraps in hours at a gigabit, and every number
    /// taken before turns new again after 2^31 more).
    seq_hi_be: u16,
    /// [`crate::auth::header_tag`] of the bytes before it, little-endian.
    pub tag: [u8; 8],
}

impl MpHeader {
    /// A data header for one packet (`segs` = 1) with no tag yet: see
    /// [`MpHeader::with_segs`] and [`crate::auth::seal`].
    pub const fn data(token: u32, subflow_id: u8, dsn: u32, subflow_seq: u32, tstamp_us: u32) -> Self {
        Self {
            version: VERSION,
            kind: KIND_DATA,
            subflow_id,
            flags: 0,
            token_be: token.to_be(),
            dsn_be: dsn.to_be(),
            subflow_seq_be: subflow_seq.to_be(),
            tstamp_us_be: tstamp_us.to_be(),
            segs_be: 1u16.to_be(),
            seq_hi_be: 0,
            tag: [0; 8],
        }
    }

    pub const fn with_flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    /// The packet is a GSO super-packet the kernel cuts into `segs` segments
    /// (more than 65535 cannot be: GSO packets are at most 64 KiB).
    pub const fn with_segs(mut self, segs: u16) -> Self {
        self.segs_be = segs.to_be();
        self
    }

    /// The subflow sequence number's bits 32..48 (`data` sets bits 0..32).
    pub const fn with_seq_hi(mut self, hi: u16) -> Self {
        self.seq_hi_be = hi.to_be();
        self
    }

    pub const fn control(token: u32, subflow_id: u8) -> Self {
        Self {
            version: VERSION,
            kind: KIND_CONTROL,
            subflow_id,
            flags: 0,
            token_be: token.to_be(),
            dsn_be: 0,
            subflow_seq_be: 0,
            tstamp_us_be: 0,
            segs_be: 0,
            seq_hi_be: 0,
            tag: [0; 8],
        }
    }

    /// A control header names the key that signed its message (which client
    /// it comes from, on a concentrator serving several) in the `dsn` field,
    /// which control messages do not use.
    pub const fn with_key_id(mut self, id: u32) -> Self {
        self.dsn_be = id.to_be();
        self
    }

    /// See [`MpHeader::with_key_id`].
    pub const fn key_id(&self) -> u32 {
        self.dsn()
    }

    pub const fn token(&self) -> u32 {
        u32::from_be(self.token_be)
    }
    pub const fn dsn(&self) -> u32 {
        u32::from_be(self.dsn_be)
    }
    pub const fn subflow_seq(&self) -> u32 {
        u32::from_be(self.subflow_seq_be)
    }
    /// The whole 48-bit subflow sequence number.
    pub const fn subflow_seq48(&self) -> u64 {
        (u16::from_be(self.seq_hi_be) as u64) << 32 | self.subflow_seq() as u64
    }
    pub const fn tstamp_us(&self) -> u32 {
        u32::from_be(self.tstamp_us_be)
    }
    /// Packets that share this header (GSO segments); at least 1.
    pub const fn segs(&self) -> u32 {
        let n = u16::from_be(self.segs_be) as u32;
        if n == 0 {
            1
        } else {
            n
        }
    }

    /// The bytes the tag covers, as three little-endian words (what SipHash
    /// reads), built from the fields so no byte slice is cut in the kernel.
    #[inline(always)]
    pub const fn tagged_words(&self) -> [u64; 3] {
        // The fields hold their wire bytes; reading those bytes as a
        // little-endian number is a no-op on the little-endian machines
        // eBPF and our hosts run on, and a swap elsewhere.
        const fn le32(x: u32) -> u64 {
            u32::from_le_bytes(x.to_ne_bytes()) as u64
        }
        const fn le16(x: u16) -> u64 {
            u16::from_le_bytes(x.to_ne_bytes()) as u64
        }
        let w0 = self.version as u64
            | (self.kind as u64) << 8
            | (self.subflow_id as u64) << 16
            | (self.flags as u64) << 24
            | le32(self.token_be) << 32;
        let w1 = le32(self.dsn_be) | le32(self.subflow_seq_be) << 32;
        let w2 = le32(self.tstamp_us_be) | le16(self.segs_be) << 32 | le16(self.seq_hi_be) << 48;
        [w0, w1, w2]
    }
}

/// Bytes of the header the tag covers (all before it).
pub const TAGGED_LEN: usize = MP_HDR_LEN - 8;

const _: () = assert!(MP_HDR_LEN == 32 && TAGGED_LEN == 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_big_endian_on_the_wire() {
        let h = MpHeader::data(0x0102_0304, 3, 0x0a0b_0c0d, 7, 9);
        let b = bytemuck::bytes_of(&h);
        assert_eq!(&b[..4], &[VERSION, KIND_DATA, 3, 0]);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[8..12], &[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(h.token(), 0x0102_0304);
        assert_eq!(h.subflow_seq(), 7);
        assert_eq!(h.tstamp_us(), 9);
        assert_eq!(h.segs(), 1);
        assert_eq!(&b[20..22], &[0, 1]);
        assert_eq!(h.with_segs(300).segs(), 300);
    }

    #[test]
    fn the_tagged_words_are_the_wire_bytes_read_little_endian() {
        let h = MpHeader::data(0x0102_0304, 3, 0x0a0b_0c0d, 7, 9).with_flags(FLAG_REPLICATED).with_segs(0x1234);
        let b = bytemuck::bytes_of(&h);
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(h.tagged_words(), [word(0), word(1), word(2)]);
    }

    #[test]
    fn overhead_matches_header_sizes() {
        assert_eq!(encap_overhead(FAMILY_V4), 60);
        assert_eq!(encap_overhead(FAMILY_V6), 80);
    }
}
