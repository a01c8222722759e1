// Package tap owns vhostd's host side: TAP and macvtap devices, one nonblocking fd per queue
// pair, the virtio-net header those fds speak, receive offloads, link settings, and batched
// zero-copy I/O. It knows nothing of virtqueues or guest memory: callers hand it iovecs.
//
//	                    netdev (caller)
//	guest TX frames           |  ^   guest RX buffers
//	[][]unix.Iovec            |  |   [][]unix.Iovec + sizes
//	hdr(12) + frame,          v  |   hdr(12) + frame written by the kernel
//	validated: VnetHdr.   +---------------------------------------------+
//	Validate              | tap.Device (control plane, mutex, ctl sock) |
//	                      |   OpenTAP / OpenMacvtap, SetOffload,        |
//	                      |   SetMTU, SetMAC, SetUp, SetTxQueueLen      |
//	                      |                                             |
//	                      |   Queue 0 ... Queue N-1 (one owner each,    |
//	                      |   no locks, no allocation)                  |
//	                      |   WriteBatch: writev per frame              |
//	                      |   ReadBatch:  readv per frame until EAGAIN  |
//	                      |   Fd() for epoll, Probe, Close              |
//	                      +-------|------------------------------^------+
//	                              | O_NONBLOCK fds               |
//	                /dev/net/tun (TUNSETIFF x N, IFF_MULTI_QUEUE)  or  /dev/tapN (open x N)
//	                              v                              |
//	                    kernel: tun.c / tap.c queue i  <->  host stack, bridge, XDP
//
// Conventions every caller relies on:
//   - Every frame in both directions starts with the 12-byte struct virtio_net_hdr_mrg_rxbuf
//     (TUNSETVNETHDRSZ 12, little-endian: the VERSION_1 layout), so the guest's header
//     passes through untouched and segmentation and checksums stay in the kernel.
//   - Batch calls take caller-owned slices and return a count and a unix.Errno; 0 means
//     the whole batch was done. EAGAIN means the queue is full (write) or empty (read): the
//     caller chooses drop or back-pressure and waits on Fd() (BAD-INPUTS 52). IsGone(errno)
//     means the device is gone or down: remove Fd() from the poller (BAD-INPUTS 51).
//   - Nothing here blocks, spins or retries except on EINTR.
//
// The per-frame syscalls are internal/rawio's (readv/writev through RawSyscall, returning
// unix.Errno; every queue fd is O_NONBLOCK, which RawSyscall needs). The ioctls whose
// struct ifreq the x/sys helpers lack live in ioctl_unsafe.go. Privileged tests use internal/privtest: they skip without CAP_NET_ADMIN and
// /dev/net/tun unless VHOSTD_TEST_PRIVILEGED=1, each in its own network namespace.
package tap
