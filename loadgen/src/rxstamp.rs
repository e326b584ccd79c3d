//! Kernel receive timestamps (`SO_TIMESTAMPING`, software RX): the time the last byte of a read
//! entered the socket's receive queue, so that the client's own scheduling delay — a burst of
//! chunks on hundreds of streams waiting their turn on one core — does not count as latency.
//!
//! Linux reports them on the `CLOCK_REALTIME` scale; each is moved onto `CLOCK_MONOTONIC` with
//! the two clocks read side by side at the same read. Where the socket option is refused, or a
//! read carries no timestamp (the kernel switches receive timestamping on asynchronously for the
//! first socket that asks), the read is stamped when `recvmsg` returns.
//!
//! On loopback the kernel's stamp is the sender's TCP transmit time, taken from TCP's cached
//! clock: it can precede the moment the server's code handed the bytes over by a few
//! microseconds (seen: up to 15 µs against `benchctl sim`'s emission log).

use std::io;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, TimestampingFlag, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::clock::mono_ns;

/// Asks the kernel to timestamp received data on `stream`; false if it refuses.
pub fn enable(stream: &TcpStream) -> bool {
    let flags = TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE;
    setsockopt(stream, sockopt::Timestamping, &flags).is_ok()
}

/// Holds receive timestamping on in the kernel for as long as it lives. Linux switches the
/// feature on for the first socket that asks, asynchronously, and off when the last one closes:
/// without a keeper, the first reads of every run would go unstamped.
pub struct Keeper(#[allow(dead_code)] std::net::UdpSocket); // reason: held, never read

impl Keeper {
    pub fn new() -> Option<Keeper> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
        let flags = TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE;
        setsockopt(&s, sockopt::Timestamping, &flags).ok()?;
        Some(Keeper(s))
    }
}

/// A read and its timestamp (monotonic ns).
pub struct Stamped {
    pub n: usize,
    pub t_ns: u64,
    /// Whether `t_ns` came from the kernel (else: when `recvmsg` returned).
    pub kernel: bool,
    /// When `recvmsg` returned minus `t_ns` (0 without a kernel stamp).
    pub lag_ns: u64,
}

/// One non-blocking `recvmsg` on a readable socket (`WouldBlock` when nothing is there).
pub fn try_recv(stream: &TcpStream, buf: &mut [u8]) -> io::Result<Stamped> {
    stream.try_io(Interest::READABLE, || {
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::Timestamps);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let read_ns = mono_ns();
        let kernel_rt = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::ScmTimestampsns(t) => Some(t.system),
                _ => None,
            })
        });
        let stamped = match kernel_rt {
            Some(ts) if ts.tv_sec() > 0 => {
                let rt_ns = ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128;
                let now_rt = realtime_ns() as i128;
                let t = read_ns as i128 - (now_rt - rt_ns);
                // never later than the read itself, never negative
                let t_ns = t.clamp(0, read_ns as i128) as u64;
                Stamped {
                    n: msg.bytes,
                    t_ns,
                    kernel: true,
                    lag_ns: read_ns - t_ns,
                }
            }
            _ => Stamped {
                n: msg.bytes,
                t_ns: read_ns,
                kernel: false,
                lag_ns: 0,
            },
        };
        Ok(stamped)
    })
}

fn realtime_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn kernel_stamps_the_arrival_not_the_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        assert!(enable(&client), "Linux accepts SO_TIMESTAMPING on TCP");
        // the kernel turns receive timestamping on for the first such socket asynchronously
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let sent = mono_ns();
        server.write_all(b"hello").await.unwrap();
        // read 30 ms after the bytes arrived: the stamp stays at the arrival
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        client.readable().await.unwrap();
        let mut buf = [0u8; 16];
        let s = try_recv(&client, &mut buf).unwrap();
        let read = mono_ns();
        assert_eq!(&buf[..s.n], b"hello");
        assert!(s.kernel);
        assert!(
            s.t_ns + 500_000 >= sent,
            "stamp {} before the send {sent}",
            s.t_ns
        );
        assert!(
            read - s.t_ns > 25_000_000,
            "the stamp is the arrival, {} ns before the read",
            read - s.t_ns
        );
    }
}
