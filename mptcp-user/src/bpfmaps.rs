//! Typed access to the data path's maps, opened from their pins so that a
//! fresh start and an adopting restart use the very same code.

use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::util::nr_cpus;
use mptcp_common::auth::ConnKeys;
use mptcp_common::classify::ClassRule;
use mptcp_common::maps::{
    names, Connection, ControlCounter, DedupWindow, FlowKey, RxSeq, Settings, SubflowKey, SubflowStats, TxState,
};
use mptcp_common::{ClassPolicy, DropReason, Policy};

pub struct DataPathMaps {
    pub settings: Array<MapData, Settings>,
    pub class_policy: Array<MapData, ClassPolicy>,
    pub class_rules: Array<MapData, ClassRule>,
    pub connections: HashMap<MapData, u32, Connection>,
    pub conn_by_dest_v4: LpmTrie<MapData, [u8; 4], u32>,
    pub conn_by_dest_v6: LpmTrie<MapData, [u8; 16], u32>,
    pub tx_state: HashMap<MapData, u32, TxState>,
    pub subflow_by_tuple: HashMap<MapData, FlowKey, SubflowKey>,
    pub subflow_stats: PerCpuHashMap<MapData, SubflowKey, SubflowStats>,
    pub rx_seq: HashMap<MapData, SubflowKey, RxSeq>,
    pub dedup: HashMap<MapData, u32, DedupWindow>,
    pub drops: PerCpuArray<MapData, u64>,
    pub control_counters: Array<MapData, u64>,
    pub data_keys: HashMap<MapData, u32, ConnKeys>,
    /// A connection's paths changed what auto stands for over them
    /// ([`crate::subflows`] sets it on each write): the control loop brings
    /// the classes set to auto in line at once, not at its next look.
    pub auto_stale: bool,
}

fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| format!("cannot open pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("pinned map {} has an unexpected type", path.display()))
}

macro_rules! typed {
    ($dir:expr, $name:expr) => {
        open($dir, $name)?.try_into().with_context(|| format!("pinned map {} does not match this build", $name))?
    };
}

impl DataPathMaps {
    pub fn open(pin_dir: &Path) -> Result<Self> {
        Ok(Self {
            settings: typed!(pin_dir, names::SETTINGS),
            class_policy: typed!(pin_dir, names::CLASS_POLICY),
            class_rules: typed!(pin_dir, names::CLASS_RULES),
            connections: typed!(pin_dir, names::CONNECTIONS),
            conn_by_dest_v4: typed!(pin_dir, names::CONN_BY_DEST_V4),
            conn_by_dest_v6: typed!(pin_dir, names::CONN_BY_DEST_V6),
            tx_state: typed!(pin_dir, names::TX_STATE),
            subflow_by_tuple: typed!(pin_dir, names::SUBFLOW_BY_TUPLE),
            subflow_stats: typed!(pin_dir, names::SUBFLOW_STATS),
            rx_seq: typed!(pin_dir, names::RX_SEQ),
            dedup: typed!(pin_dir, names::DEDUP),
            drops: typed!(pin_dir, names::DROPS),
            control_counters: typed!(pin_dir, names::CONTROL_COUNTERS),
            data_keys: typed!(pin_dir, names::DATA_KEYS),
            auto_stale: false,
        })
    }

    pub fn policy(&self) -> Result<Policy> {
        Ok(self.class_policy(0)?.policy())
    }

    pub fn class_policy(&self, class: u32) -> Result<ClassPolicy> {
        let v = self.class_policy.get(&class, 0)?;
        Policy::from_u8(v.policy)
            .with_context(|| format!("CLASS_POLICY[{class}] holds unknown policy {}", v.policy))?;
        Ok(v)
    }

    /// One map write; the next packet follows the new policy.
    pub fn set_class_policy(&mut self, class: u32, cp: ClassPolicy) -> Result<()> {
        self.class_policy.set(class, cp, 0)?;
        Ok(())
    }

    /// Route a destination prefix to a connection.
    pub fn add_prefix(&mut self, prefix: &ipnet::IpNet, token: u32) -> Result<()> {
        match prefix {
            ipnet::IpNet::V4(p) => {
                self.conn_by_dest_v4.insert(&Key::new(p.prefix_len() as u32, p.network().octets()), token, 0)?
            }
            ipnet::IpNet::V6(p) => {
                self.conn_by_dest_v6.insert(&Key::new(p.prefix_len() as u32, p.network().octets()), token, 0)?
            }
        }
        Ok(())
    }

    /// Prefixes routed to `token`.
    pub fn prefixes_of(&self, token: u32) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (k, t) in self.conn_by_dest_v4.iter().flatten() {
            if t == token {
                if let Ok(n) = ipnet::Ipv4Net::new(k.data().into(), k.prefix_len() as u8) {
                    out.push(n.into());
                }
            }
        }
        for (k, t) in self.conn_by_dest_v6.iter().flatten() {
            if t == token {
                if let Ok(n) = ipnet::Ipv6Net::new(k.data().into(), k.prefix_len() as u8) {
                    out.push(n.into());
                }
            }
        }
        out
    }

    /// The connection that holds exactly `net`, if any.
    pub fn prefix_owner(&self, net: &ipnet::IpNet) -> Option<u32> {
        match net {
            ipnet::IpNet::V4(n) => self
                .conn_by_dest_v4
                .iter()
                .flatten()
                .find(|(k, _)| k.prefix_len() as u8 == n.prefix_len() && k.data() == n.network().octets())
                .map(|(_, t)| t),
            ipnet::IpNet::V6(n) => self
                .conn_by_dest_v6
                .iter()
                .flatten()
                .find(|(k, _)| k.prefix_len() as u8 == n.prefix_len() && k.data() == n.network().octets())
                .map(|(_, t)| t),
        }
    }

    pub fn remove_prefixes_of(&mut self, token: u32) {
        let v4: Vec<_> = self.conn_by_dest_v4.iter().flatten().filter(|(_, t)| *t == token).map(|(k, _)| k).collect();
        for k in v4 {
            let _ = self.conn_by_dest_v4.remove(&k);
        }
        let v6: Vec<_> = self.conn_by_dest_v6.iter().flatten().filter(|(_, t)| *t == token).map(|(k, _)| k).collect();
        for k in v6 {
            let _ = self.conn_by_dest_v6.remove(&k);
        }
    }

    /// Create the kernel-owned per-connection and per-subflow entries if absent
    /// (kept when present, so counters survive re-joins and restarts).
    pub fn ensure_tx_state(&mut self, token: u32) -> Result<()> {
        if self.tx_state.get(&token, 0).is_err() {
            self.tx_state.insert(token, TxState::default(), 0)?;
        }
        Ok(())
    }

    /// Subflow `subflow`'s token bucket in the data path (None: no such connection).
    pub fn bucket(&self, token: u32, subflow: u8) -> Option<mptcp_common::maps::Bucket> {
        let t = self.tx_state.get(&token, 0).ok()?;
        t.buckets.get(subflow as usize).copied()
    }

    /// The connection's duplicate-suppression window (kept when present:
    /// clearing it under traffic would let a late copy through).
    pub fn ensure_dedup_window(&mut self, token: u32) -> Result<()> {
        if self.dedup.get(&token, 0).is_err() {
            self.dedup.insert(token, DedupWindow::default(), 0)?;
        }
        Ok(())
    }

    pub fn ensure_subflow_counters(&mut self, key: SubflowKey) -> Result<()> {
        if self.subflow_stats.get(&key, 0).is_err() {
            let zero = PerCpuValues::try_from(vec![SubflowStats::default(); nr_cpus().map_err(|(_, e)| e)?])?;
            self.subflow_stats.insert(key, zero, 0)?;
        }
        // Kept when present: the sender's numbers go on across a rejoin, and
        // a window started afresh would take one replayed packet.
        if self.rx_seq.get(&key, 0).is_err() {
            self.rx_seq.insert(key, RxSeq::default(), 0)?;
        }
        Ok(())
    }

    /// Per-subflow counters summed over CPUs.
    pub fn subflow_stats(&self, key: SubflowKey) -> SubflowStats {
        let mut total = SubflowStats::default();
        if let Ok(v) = self.subflow_stats.get(&key, 0) {
            for s in v.iter() {
                total.add(s);
            }
        }
        total
    }

    pub fn drops(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops.get(&(*r as u32), 0).map(|v| v.iter().sum()).unwrap_or(0)))
            .collect()
    }

    pub fn bump(&mut self, c: ControlCounter) {
        let i = c as u32;
        if let Ok(v) = self.control_counters.get(&i, 0) {
            let _ = self.control_counters.set(i, v + 1, 0);
        }
    }

    pub fn control_counters(&self) -> Vec<(ControlCounter, u64)> {
        ControlCounter::ALL.iter().map(|c| (*c, self.control_counters.get(&(*c as u32), 0).unwrap_or(0))).collect()
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.connections.iter().flatten().map(|(_, c)| c).collect()
    }
}
