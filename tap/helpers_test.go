package tap

import (
	"net"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
)

var (
	testSrcMAC = net.HardwareAddr{0x02, 0x76, 0x68, 0x64, 0x00, 0x01}
	broadcast  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// openTestTAP opens a fresh TAP in a fresh network namespace.
func openTestTAP(t testing.TB, queues int) (*Device, string) {
	t.Helper()
	ns := privtest.NetNS(t)
	d, err := OpenTAP(Config{Name: "vht" + testutil.Suffix(8), Queues: queues})
	if err != nil {
		t.Fatalf("OpenTAP: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d, ns
}

// packetSocket opens a nonblocking AF_PACKET socket bound to ifindex (in the calling
// thread's network namespace).
func packetSocket(t testing.TB, ifindex int) int {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		t.Fatalf("bind AF_PACKET to %d: %v", ifindex, err)
	}
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recvTestFrames reads from a packet socket until want frames with tag arrived or timeout.
func recvTestFrames(t testing.TB, fd int, tag string, want int, timeout time.Duration) map[uint32][]byte {
	t.Helper()
	got := map[uint32][]byte{}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
			t.Fatalf("poll: %v", err)
		}
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break
			}
			if seq, ok := testutil.ParseTaggedFrame(buf[:n], tag); ok {
				got[seq] = append([]byte(nil), buf[:n]...)
			}
		}
	}
	return got
}

// tapFrames reads from every queue of d until want frames with tag arrived or timeout, and
// returns header+frame bytes by seq and the queue each came from.
func tapFrames(t testing.TB, d *Device, tag string, want int, timeout time.Duration) (map[uint32][]byte, map[int]int) {
	t.Helper()
	got := map[uint32][]byte{}
	perQueue := map[int]int{}
	const batch = 8
	hdrs := make([][VnetHdrLen]byte, batch)
	bufs := make([][]byte, batch)
	frames := make([][]unix.Iovec, batch)
	for i := range frames {
		bufs[i] = make([]byte, 65536)
		frames[i] = []unix.Iovec{rawio.Iovec(hdrs[i][:]), rawio.Iovec(bufs[i])}
	}
	sizes := make([]int, batch)
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		pfds := make([]unix.PollFd, d.NumQueues())
		for i := range pfds {
			pfds[i] = unix.PollFd{Fd: int32(d.Queue(i).Fd()), Events: unix.POLLIN}
		}
		unix.Poll(pfds, 100)
		for qi := 0; qi < d.NumQueues(); qi++ {
			for {
				n, e := d.Queue(qi).ReadBatch(frames, sizes)
				for i := 0; i < n; i++ {
					if sizes[i] < VnetHdrLen {
						t.Fatalf("queue %d: frame of %d bytes, shorter than the header", qi, sizes[i])
					}
					f := bufs[i][:sizes[i]-VnetHdrLen]
					if seq, ok := testutil.ParseTaggedFrame(f, tag); ok {
						got[seq] = append(append([]byte(nil), hdrs[i][:]...), f...)
						perQueue[qi]++
					}
				}
				if e == unix.EAGAIN {
					break
				}
				if e != 0 {
					t.Fatalf("queue %d ReadBatch: n=%d %v", qi, n, e)
				}
			}
		}
	}
	return got, perQueue
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
