package netdev

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/closeflag"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// Virtio-net config space layout (virtio 1.x 5.1.4, struct virtio_net_config).
const (
	cfgMAC       = 0
	cfgStatus    = 6
	cfgMaxPairs  = 8
	cfgMTU       = 10
	configLen    = 12
	statusLinkUp = 1 // VIRTIO_NET_S_LINK_UP
)

// Device is the virtio-net device: it implements vhost.Device and bridges
// the guest's queue pairs to the queues of one TAP or macvtap. The TAP
// outlives front-end connections.
type Device struct {
	cfg     Config
	log     hclog.Logger
	tap     hostIf
	offered uint64
	// probe asks a TAP queue whether it is still attached, every
	// probeEvery (hostwatch.go); tests replace both before the first ring
	// starts.
	probe      func(*tap.Queue) unix.Errno
	probeEvery time.Duration

	// mu serialises the control plane (vhost calls, Close, Stats).
	mu    sync.Mutex
	acked uint64
	mtu   uint16
	mem   *virtqueue.Memory
	dirty *virtqueue.DirtyLog // while the front-end migrates the guest
	// lastRARP is when SendRARP last announced (announce.go).
	lastRARP time.Time
	pairs    []*pair
	closed   closeflag.Flag
	offload  tap.Offloads
	// watchStop ends the host watch, which closes watchDone on its way
	// out; both nil until the first ring starts.
	watchStop chan struct{}
	watchDone chan struct{}
	// re reattaches the host interface when it comes back (reattach.go).
	re reattachState
	// capture is the running capture, nil if none (capwriter.go).
	capture *capture
	tw      TAPWriteChoice // how TX frames go to the TAP (tapwrite.go)
}

// Open opens the host side and returns the device.
func Open(cfg Config) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var tw TAPWriteChoice
	cfg.TAPWrite, tw = chooseTAPWrite(cfg.TAPWrite, log)
	tc := tap.Config{Name: cfg.TAP, Queues: cfg.QueuePairs}
	var td *tap.Device
	var err error
	if cfg.TAP != "" {
		td, err = tap.OpenTAP(tc)
	} else {
		tc.Name = cfg.Macvtap
		td, err = tap.OpenMacvtap(tc)
	}
	if err != nil {
		return nil, err
	}
	d, err := newDevice(cfg, log, td)
	if err != nil {
		td.Close()
		return nil, err
	}
	d.re.reopen = reopener(cfg)
	d.tw = tw
	log.Info("host interface ready", "kind", td.Kind().String(), "name", td.Name(), "queues", td.NumQueues(), "mtu", d.mtu)
	return d, nil
}

// hostIf is the host side as the device uses it: *tap.Device, or a
// stand-in in tests.
type hostIf interface {
	Name() string
	Ifindex() int
	Kind() tap.Kind
	NumQueues() int
	Queue(i int) *tap.Queue
	SetOffload(tap.Offloads) (tap.Offloads, error)
	SetMTU(int) error
	MTU() (int, error)
	SetUp(bool) error
	Close() error
}

// newDevice builds the device over an opened host interface.
func newDevice(cfg Config, log hclog.Logger, td hostIf) (*Device, error) {
	if td.NumQueues() < cfg.QueuePairs {
		return nil, fmt.Errorf("%s has %d queues, %d queue pairs asked", td.Name(), td.NumQueues(), cfg.QueuePairs)
	}
	d := &Device{cfg: cfg, log: log, tap: td, offered: cfg.features(), probe: (*tap.Queue).Probe, probeEvery: probeInterval}
	if cfg.MTU != 0 {
		if err := td.SetMTU(cfg.MTU); err != nil {
			return nil, fmt.Errorf("set mtu %d on %s: %w", cfg.MTU, td.Name(), err)
		}
		d.mtu = uint16(cfg.MTU)
	} else if m, err := td.MTU(); err == nil && m > 0 && m <= 65535 {
		d.mtu = uint16(m)
	}
	if err := td.SetUp(true); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", td.Name(), err)
	}
	if err := useTAPWrite(td, cfg.QueuePairs, cfg.TAPWrite); err != nil {
		return nil, err
	}
	d.tw = TAPWriteChoice{Mode: td.Queue(0).WriteMode().String(), By: "config"}
	d.pairs = make([]*pair, cfg.QueuePairs)
	for i := range d.pairs {
		d.pairs[i] = newPair(d, i, td.Queue(i))
	}
	return d, nil
}

// Name is the host interface's name.
func (d *Device) Name() string { return d.tap.Name() }

// Ifindex is the host interface's index (for XDP).
func (d *Device) Ifindex() int { return d.tap.Ifindex() }

// Macvtap reports whether the host interface is a macvtap.
func (d *Device) Macvtap() bool { return d.tap.Kind() == tap.KindMacvtap }

// Close stops the host watch and every worker and closes the TAP (a TAP
// vhostd created goes away with it). Call it after the vhost server has
// stopped. It returns once the host watch's goroutine has exited.
func (d *Device) Close() error {
	d.mu.Lock()
	if !d.closed.Set() {
		d.mu.Unlock()
		return nil
	}
	if d.watchStop != nil {
		close(d.watchStop)
	}
	for _, p := range d.pairs {
		p.shutdown()
	}
	err := d.tap.Close()
	done := d.watchDone
	d.mu.Unlock()
	// The watch may be waiting for d.mu: wait for it only now.
	if done != nil {
		<-done
	}
	d.StopCapture() // completes the file of a running capture
	return err
}

// Features implements vhost.Device.
func (d *Device) Features() uint64 { return d.offered }

// ProtocolFeatures implements vhost.Device.
// CONFIG is offered only when asked for: QEMU's virtio-net takes its config
// space from its own options and warns about a back-end offering CONFIG.
func (d *Device) ProtocolFeatures() uint64 {
	f := uint64(1<<vhost.ProtoMQ | 1<<vhost.ProtoNetMTU | 1<<vhost.ProtoRARP)
	if d.cfg.ConfigSpace {
		f |= 1 << vhost.ProtoConfig
	}
	return f
}

// QueueNum implements vhost.Device: queue pairs.
func (d *Device) QueueNum() uint64 { return uint64(d.cfg.QueuePairs) }

// NumVrings implements vhost.Device: an rx and a tx ring per pair (the
// control queue, if any, stays in the front-end).
func (d *Device) NumVrings() int { return 2 * d.cfg.QueuePairs }

// SetFeatures implements vhost.Device.
func (d *Device) SetFeatures(acked uint64) error {
	if acked&^d.offered != 0 {
		return fmt.Errorf("features %#x not offered", acked&^d.offered)
	}
	if acked&bit(FVersion1) == 0 {
		// Every driver since Linux 4.0 acks VERSION_1; the legacy 10-byte
		// header is not supported.
		return errors.New("legacy virtio-net without VERSION_1 is not supported")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if acked == d.acked {
		return nil
	}
	want := tapOffloads(acked)
	applied, err := d.tap.SetOffload(want)
	if err != nil {
		return fmt.Errorf("TUNSETOFFLOAD %v: %w", want, err)
	}
	if applied != want.Effective() {
		d.log.Warn("TAP took fewer offloads than the guest acked", "asked", want.String(), "applied", applied.String())
	}
	d.acked, d.offload = acked, applied
	d.log.Info("features acked", "features", FeatureString(acked), "tap_offloads", applied.String())
	return nil
}

// Config implements vhost.Device.
func (d *Device) Config() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := make([]byte, configLen)
	copy(b[cfgMAC:], d.cfg.MAC)
	b[cfgStatus] = statusLinkUp
	b[cfgMaxPairs] = byte(d.cfg.QueuePairs)
	b[cfgMaxPairs+1] = byte(d.cfg.QueuePairs >> 8)
	b[cfgMTU] = byte(d.mtu)
	b[cfgMTU+1] = byte(d.mtu >> 8)
	return b
}

// WriteConfig implements vhost.Device. The driver cannot write a modern
// virtio-net config space; migration may restore the MAC.
func (d *Device) WriteConfig(off uint32, data []byte, migration bool) error {
	if !migration {
		return errors.New("virtio-net config space is read-only for the driver")
	}
	if off != cfgMAC || len(data) != 6 {
		return fmt.Errorf("only the 6-byte MAC at offset 0 can be restored, got %d bytes at %d", len(data), off)
	}
	d.mu.Lock()
	d.cfg.MAC = append([]byte(nil), data...)
	d.mu.Unlock()
	return nil
}

// SetMTU implements vhost.Device: the MTU the front-end exposes to the
// guest is applied to the TAP so both ends agree.
func (d *Device) SetMTU(mtu uint16) error {
	if err := d.tap.SetMTU(int(mtu)); err != nil {
		return fmt.Errorf("set mtu %d on %s: %w", mtu, d.tap.Name(), err)
	}
	d.mu.Lock()
	d.mtu = mtu
	d.mu.Unlock()
	d.log.Info("mtu set by front-end", "mtu", mtu)
	return nil
}

// SetMemory implements vhost.Device.
func (d *Device) SetMemory(mem *virtqueue.Memory) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mem = mem
	for _, p := range d.pairs {
		p.setMemory(mem)
	}
}

// SetDirtyLog implements vhost.DirtyLogger: from now on (nil: no longer)
// every page of guest memory the data path writes is marked in log.
func (d *Device) SetDirtyLog(log *virtqueue.DirtyLog) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if log == d.dirty {
		return
	}
	d.dirty = log
	for _, p := range d.pairs {
		p.setLog(log)
	}
	d.log.Info("dirty logging", "on", log != nil)
}

// SetRingLog implements vhost.DirtyLogger.
func (d *Device) SetRingLog(i int, on bool, usedGPA uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pairs[i/2].setRingLog(i%2, on, usedGPA)
}

// StartRing implements vhost.Device.
func (d *Device) StartRing(r vhost.RingSpec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("device closed")
	}
	if err := d.pairs[r.Index/2].start(r, d.mem, d.dirty, d.acked); err != nil {
		return err
	}
	d.startWatch()
	return nil
}

// StopRing implements vhost.Device.
func (d *Device) StopRing(i int) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pairs[i/2].stop(i % 2)
}

// EnableRing implements vhost.Device.
func (d *Device) EnableRing(i int, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pairs[i/2].enable(i%2, on)
}

// SetCallFd implements vhost.Device.
func (d *Device) SetCallFd(i, fd int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pairs[i/2].setCall(i%2, fd)
}

// SetErrFd implements vhost.Device.
func (d *Device) SetErrFd(i, fd int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pairs[i/2].setErr(i%2, fd)
}

// Reset implements vhost.Device.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acked = 0
	d.dropHeld()
}

var _ vhost.Device = (*Device)(nil)
