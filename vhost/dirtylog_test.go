package vhost_test

import (
	"sync"
	"testing"
	"time"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// logDev is a NullDevice that can log: it records what vhost hands it.
type logDev struct {
	*vhosttest.NullDevice
	mu       sync.Mutex
	log      *virtqueue.DirtyLog
	logCalls int
	ringLog  map[int]uint64 // ring -> log_guest_addr, while on
}

func (d *logDev) SetDirtyLog(l *virtqueue.DirtyLog) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = l
	d.logCalls++
}

func (d *logDev) SetRingLog(i int, on bool, gpa uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.ringLog[i] = gpa
	} else {
		delete(d.ringLog, i)
	}
}

func (d *logDev) current() *virtqueue.DirtyLog {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log
}

// migrationFE serves a logging device to a front-end that negotiated
// everything and started two rings.
func migrationFE(t *testing.T) (*logDev, *vhosttest.FrontEnd) {
	t.Helper()
	dev := &logDev{NullDevice: vhosttest.NewNullDevice(testFeatures, 2), ringLog: map[int]uint64{}}
	fe := vhosttest.Serve(t, dev)
	if err := fe.Start(testFeatures|1<<vhost.FeatProtocolFeatures, allProto, 2, 256, vhosttest.Layout{Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	if fe.Offered&(1<<vhost.FeatLogAll) == 0 || fe.OfferedProto&(1<<vhost.ProtoLogShmfd) == 0 {
		t.Fatalf("a logging device is offered features %#x, protocol features %#x: no LOG_ALL or LOG_SHMFD", fe.Offered, fe.OfferedProto)
	}
	if fe.Proto&(1<<vhost.ProtoLogShmfd) == 0 {
		t.Fatalf("LOG_SHMFD not negotiated (%#x)", fe.Proto)
	}
	return dev, fe
}

// logFd is a memfd of n bytes for SET_LOG_BASE.
func logFd(t *testing.T, n int64) int {
	t.Helper()
	fd, err := unix.MemfdCreate(uniqueName("vhostd-log"), unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestSetLogBaseAnsweredOnce: SET_LOG_BASE has a reply of its own, sent
// once whether or not NEED_REPLY is set (QEMU blocks on it; a second one
// would answer its next request); the next request gets its own answer.
func TestSetLogBaseAnsweredOnce(t *testing.T) {
	for _, flags := range []uint32{0, vhosttest.FlagNeedReply} {
		dev, fe := migrationFE(t)
		r, err := fe.Call(vhost.ReqSetLogBase, flags, vhosttest.LogBase(4096, 0), logFd(t, 4096))
		if err != nil {
			t.Fatalf("flags %#x: %v", flags, err)
		}
		if v, err := r.U64(); err != nil || v != 0 {
			t.Fatalf("flags %#x: SET_LOG_BASE answered %d, %v", flags, v, err)
		}
		if f, err := fe.GetU64(vhost.ReqGetFeatures); err != nil || f&(1<<vhost.FeatLogAll) == 0 {
			t.Fatalf("flags %#x: the request after SET_LOG_BASE got %#x, %v", flags, f, err)
		}
		if dev.current() != nil {
			t.Fatalf("logging on before VHOST_F_LOG_ALL was acked")
		}
	}
}

// TestLogAllWhileRunning is QEMU's migration start and end on running
// rings: the log, VHOST_F_LOG_ALL on, every ring's log flag on with its
// addresses unchanged; then all off again. Other changes on running rings
// stay refused.
func TestLogAllWhileRunning(t *testing.T) {
	dev, fe := migrationFE(t)
	if _, err := fe.Call(vhost.ReqSetLogBase, 0, vhosttest.LogBase(8192, 0), logFd(t, 8192)); err != nil {
		t.Fatal(err)
	}
	on := fe.Features | 1<<vhost.FeatLogAll
	if err := fe.Request(vhost.ReqSetFeatures, vhosttest.U64(on)); err != nil {
		t.Fatalf("LOG_ALL on running rings: %v", err)
	}
	if l := dev.current(); l == nil || l.Pages() != 8192*8 {
		t.Fatalf("device log after LOG_ALL: %v", l)
	}
	for i := 0; i < 2; i++ {
		r := fe.Ring(i)
		if err := fe.Request(vhost.ReqSetVringAddr, vhosttest.VringAddr(uint32(i), 1, r.DescVA, r.UsedVA, r.AvailVA, r.Config.Used)); err != nil {
			t.Fatalf("ring %d: log flag on a running ring: %v", i, err)
		}
	}
	if len(dev.ringLog) != 2 || dev.ringLog[1] != fe.Ring(1).Config.Used {
		t.Fatalf("ring logs %v", dev.ringLog)
	}
	r := fe.Ring(0)
	if err := fe.Request(vhost.ReqSetVringAddr, vhosttest.VringAddr(0, 1, r.DescVA+4096, r.UsedVA, r.AvailVA, r.Config.Used)); err == nil {
		t.Fatal("a running ring's descriptor table moved")
	}
	if err := fe.Request(vhost.ReqSetFeatures, vhosttest.U64(on&^(1<<fMrgRxbuf))); err == nil {
		t.Fatal("a feature other than LOG_ALL changed on running rings")
	}
	// A second log (memory added during migration) replaces the first.
	first := dev.current()
	if _, err := fe.Call(vhost.ReqSetLogBase, 0, vhosttest.LogBase(16384, 0), logFd(t, 16384)); err != nil {
		t.Fatal(err)
	}
	if l := dev.current(); l == first || l == nil || l.Pages() != 16384*8 {
		t.Fatalf("the second log did not replace the first")
	}
	if err := fe.Request(vhost.ReqSetFeatures, vhosttest.U64(fe.Features)); err != nil {
		t.Fatalf("LOG_ALL off: %v", err)
	}
	if dev.current() != nil {
		t.Fatal("logging still on after LOG_ALL went off")
	}
}

// TestSetLogBaseBadInputs: a log that cannot be mapped whole is refused,
// and since SET_LOG_BASE has no failure reply the connection closes (the
// migration fails, the guest keeps running on the source).
func TestSetLogBaseBadInputs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size, off uint64
		file      int64
	}{
		{"size 0", 0, 0, 4096},
		{"file shorter than the log", 8192, 0, 4096},
		{"offset past the file", 4096, 4096, 4096},
		{"offset overflows", 4096, 1 << 63, 4096},
		{"size over 1 GiB", 2 << 30, 0, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev, fe := migrationFE(t)
			if err := fe.Send(vhost.ReqSetLogBase, 0, vhosttest.LogBase(tc.size, tc.off), logFd(t, tc.file)); err != nil {
				t.Fatal(err)
			}
			if err := fe.WaitClosed(5 * time.Second); err != nil {
				t.Fatalf("connection not closed: %v", err)
			}
			if dev.current() != nil {
				t.Fatal("a refused log reached the device")
			}
		})
	}
}

// TestStartDirtyLog: vhosttest's StartDirtyLog, which the perf harness's
// logging subject uses, turns logging on the way QEMU does: the device has a
// log covering all of guest memory and both rings log their used rings.
func TestStartDirtyLog(t *testing.T) {
	dev, fe := migrationFE(t)
	l, err := fe.StartDirtyLog()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fe.Features&(1<<vhost.FeatLogAll) == 0 {
		t.Fatal("LOG_ALL not set")
	}
	got := dev.current()
	if got == nil || got.Pages() < (8<<20)/virtqueue.LogPage {
		t.Fatalf("device log %v does not cover 8 MiB of guest memory", got)
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	for i := 0; i < 2; i++ {
		if gpa, ok := dev.ringLog[i]; !ok || gpa != fe.Ring(i).Config.Used {
			t.Fatalf("ring %d logs used ring at %#x (%v), want %#x", i, gpa, ok, fe.Ring(i).Config.Used)
		}
	}
}
