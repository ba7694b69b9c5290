//! Loading, attaching and pinning a BPF_MODIFY_RETURN program, which aya
//! 0.14 does not do: it loads fentry and fexit programs, not the third kind
//! of trampoline program. What aya offers is used (aya-obj parses and
//! relocates the object, aya creates the maps, `aya::Btf` finds the target
//! function); these are the three bpf(2) commands left, PROG_LOAD,
//! LINK_CREATE and OBJ_PIN, each on a zeroed `bpf_attr` of aya-obj's
//! bindings of the kernel's header.

use std::ffi::{c_char, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type};

/// The verifier's log, when a program is refused (grown until it fits).
const LOG_SIZES: [usize; 3] = [64 << 10, 1 << 20, 16 << 20];

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of integers and arrays of them; all
    // zeroes is its "nothing set" value, as the kernel requires.
    unsafe { std::mem::zeroed() }
}

/// bpf(2); a new file descriptor for the commands that return one.
fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: the kernel reads at most size_of::<bpf_attr>() bytes of a valid
    // bpf_attr; every pointer in it refers to a buffer the caller keeps
    // alive across the call.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr as *mut bpf_attr, std::mem::size_of::<bpf_attr>())
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: a descriptor bpf(2) just created for this process; nothing
    // else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Load `insns` as a BPF_MODIFY_RETURN program for the kernel function
/// whose vmlinux BTF id is `target_btf_id`. A refusal carries the
/// verifier's log.
pub fn load(name: &str, insns: &[bpf_insn], license: &CString, target_btf_id: u32) -> Result<OwnedFd> {
    let attempt = |log: &mut [u8]| {
        let mut attr = zeroed_attr();
        // SAFETY: the member of the union that BPF_PROG_LOAD reads.
        let u = unsafe { &mut attr.__bindgen_anon_3 };
        u.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        u.expected_attach_type = bpf_attach_type::BPF_MODIFY_RETURN as u32;
        u.attach_btf_id = target_btf_id;
        u.insns = insns.as_ptr() as u64;
        u.insn_cnt = insns.len() as u32;
        u.license = license.as_ptr() as u64;
        for (to, from) in u.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *to = from as c_char;
        }
        if !log.is_empty() {
            u.log_level = 1;
            u.log_buf = log.as_mut_ptr() as u64;
            u.log_size = log.len() as u32;
        }
        sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    let first = match attempt(&mut []) {
        Ok(fd) => return Ok(owned(fd)),
        // Before the verifier: the program type itself is refused.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(TracingRefused.into()),
        Err(e) => e,
    };
    // Again with the verifier's log, for the error.
    for size in LOG_SIZES {
        let mut log = vec![0u8; size];
        match attempt(&mut log) {
            Ok(fd) => return Ok(owned(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => continue,
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                bail!("the kernel refused the {name} program: {e}\nverifier log:\n{}", text.trim_end());
            }
        }
    }
    Err(first).with_context(|| format!("the kernel refused the {name} program"))
}

/// The kernel refuses BPF tracing programs (fentry, fexit, fmod_ret) even to
/// a holder of CAP_BPF and CAP_PERFMON: it is locked down, or a security
/// module's policy forbids them. Other program types may still load.
#[derive(Debug, thiserror::Error)]
#[error("the kernel refuses BPF tracing programs (BPF_PROG_TYPE_TRACING, as fmod_ret is) even to root: it is locked down (see `dmesg | grep -i lockdown`) or a security module forbids them")]
pub struct TracingRefused;

/// Attach a program loaded by [`load`] to its function: the link holds it
/// there until the link's last reference (descriptor or pin) goes.
pub fn attach(prog: BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: the member of the union that BPF_LINK_CREATE reads.
    let u = unsafe { &mut attr.link_create };
    u.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    // No target: the function the program was loaded for.
    u.attach_type = bpf_attach_type::BPF_MODIFY_RETURN as u32;
    sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr).map(owned).context("attaching the program (BPF_LINK_CREATE)")
}

/// Pin a link (or any BPF object) at `path` on a bpffs.
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut attr = zeroed_attr();
    // SAFETY: the member of the union that BPF_OBJ_PIN reads.
    let u = unsafe { &mut attr.__bindgen_anon_4 };
    u.pathname = c_path.as_ptr() as u64;
    u.bpf_fd = fd.as_raw_fd() as u32;
    sys_bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).with_context(|| format!("cannot pin at {}", path.display()))?;
    Ok(())
}
