//! The two system calls std does not offer: recvmmsg, so a socket with
//! several datagrams queued costs one syscall, and getrusage for the
//! process's CPU time.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams taken per recvmmsg: a 720p keyframe burst to one subscriber is
/// a few dozen packets, and the buffers are shared by all subscribers.
pub const BATCH: usize = 32;
/// Receive buffer per datagram; anything longer than an Ethernet MTU is not
/// media and is dropped as truncated.
pub const DATAGRAM_BUF: usize = 2048;

pub struct Batch {
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
}

impl Batch {
    pub fn new() -> Box<Batch> {
        // SAFETY: all-zero is a valid value of these C structs (null
        // pointers, zero lengths); `recv` sets every pointer before use.
        let zeroed = unsafe {
            (
                MaybeUninit::<[libc::sockaddr_storage; BATCH]>::zeroed().assume_init(),
                MaybeUninit::<[libc::iovec; BATCH]>::zeroed().assume_init(),
                MaybeUninit::<[libc::mmsghdr; BATCH]>::zeroed().assume_init(),
            )
        };
        Box::new(Batch {
            bufs: vec![0; BATCH * DATAGRAM_BUF],
            lens: [0; BATCH],
            addrs: zeroed.0,
            iovs: zeroed.1,
            hdrs: zeroed.2,
        })
    }

    /// Receives up to `BATCH` datagrams without blocking; `Ok(0)` never
    /// happens (an empty socket is `WouldBlock`).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * DATAGRAM_BUF..].as_mut_ptr().cast(),
                iov_len: DATAGRAM_BUF,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self`, which
        // outlive the call; the lengths given are those of the buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            let truncated = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lens[i] = if truncated {
                0
            } else {
                self.hdrs[i].msg_len as usize
            };
        }
        Ok(n)
    }

    /// The i-th datagram of the last `recv`, `None` if it was truncated or
    /// its source is not an IP address.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if self.lens[i] == 0 {
            return None;
        }
        let addr = sockaddr(&self.addrs[i])?;
        Some((
            addr,
            &self.bufs[i * DATAGRAM_BUF..i * DATAGRAM_BUF + self.lens[i]],
        ))
    }
}

fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// User plus system CPU time of this process (all threads), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let ru = unsafe {
        let mut ru = MaybeUninit::<libc::rusage>::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return 0.0;
        }
        ru.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Asks the kernel for a larger receive buffer, so a keyframe burst that
/// arrives while the loop serves other sockets is queued, not dropped.
/// Best effort: the kernel caps it at net.core.rmem_max.
pub fn set_recv_buffer(fd: RawFd, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: the option value is a c_int that lives across the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
