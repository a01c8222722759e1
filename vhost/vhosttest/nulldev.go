package vhosttest

import (
	"errors"
	"sync"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue"
)

// NullDevice is a vhost.Device that negotiates like a real one and records
// what vhost asked of it, but moves no data: StopRing hands back the base it
// was started with. Tests use it to check the protocol layer on its own; it
// is safe for concurrent inspection.
type NullDevice struct {
	// Offered, Proto, Queues and Vrings configure what the device offers;
	// set them before serving.
	Offered uint64
	Proto   uint64
	Queues  uint64
	Vrings  int

	mu       sync.Mutex
	acked    uint64
	mem      *virtqueue.Memory
	rings    map[int]vhost.RingSpec
	enabled  map[int]bool
	cfg      []byte
	mtu      uint16
	mtuSets  int
	rarps    int
	resets   int
	memSwaps int
}

// NewNullDevice returns a device offering features with vrings rings.
func NewNullDevice(features uint64, vrings int) *NullDevice {
	return &NullDevice{
		Offered: features, Proto: 1<<vhost.ProtoMQ | 1<<vhost.ProtoNetMTU | 1<<vhost.ProtoRARP | 1<<vhost.ProtoConfig,
		Queues: uint64(vrings / 2), Vrings: vrings,
		rings: map[int]vhost.RingSpec{}, enabled: map[int]bool{}, cfg: make([]byte, 24),
	}
}

func (d *NullDevice) Features() uint64         { return d.Offered }
func (d *NullDevice) ProtocolFeatures() uint64 { return d.Proto }
func (d *NullDevice) QueueNum() uint64         { return d.Queues }
func (d *NullDevice) NumVrings() int           { return d.Vrings }

func (d *NullDevice) SetFeatures(acked uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if acked&^d.Offered != 0 {
		return errors.New("features not offered")
	}
	d.acked = acked
	return nil
}

func (d *NullDevice) Config() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.cfg...)
}

func (d *NullDevice) WriteConfig(off uint32, data []byte, migration bool) error {
	if !migration {
		return errors.New("config space is read-only for the driver")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.cfg[off:], data)
	return nil
}

func (d *NullDevice) SetMTU(mtu uint16) error {
	d.mu.Lock()
	d.mtu = mtu
	d.mtuSets++
	d.mu.Unlock()
	return nil
}

func (d *NullDevice) SendRARP(mac [6]byte) error {
	d.mu.Lock()
	d.rarps++
	d.mu.Unlock()
	return nil
}

func (d *NullDevice) SetMemory(mem *virtqueue.Memory) {
	d.mu.Lock()
	d.mem = mem
	d.memSwaps++
	d.mu.Unlock()
}

func (d *NullDevice) StartRing(r vhost.RingSpec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.rings[r.Index]; ok {
		return errors.New("ring already started")
	}
	d.rings[r.Index] = r
	d.enabled[r.Index] = r.Enabled
	return nil
}

func (d *NullDevice) StopRing(i int) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.rings[i]
	if !ok {
		panic("StopRing on a ring that is not started")
	}
	delete(d.rings, i)
	return r.Base
}

func (d *NullDevice) EnableRing(i int, on bool) {
	d.mu.Lock()
	d.enabled[i] = on
	d.mu.Unlock()
}

func (d *NullDevice) SetCallFd(i, fd int) { d.update(i, func(r *vhost.RingSpec) { r.Call = fd }) }
func (d *NullDevice) SetErrFd(i, fd int)  { d.update(i, func(r *vhost.RingSpec) { r.Err = fd }) }

// update changes the recorded spec of ring i.
func (d *NullDevice) update(i int, f func(*vhost.RingSpec)) {
	d.mu.Lock()
	r := d.rings[i]
	f(&r)
	d.rings[i] = r
	d.mu.Unlock()
}

func (d *NullDevice) Reset() {
	d.mu.Lock()
	d.acked = 0
	d.resets++
	d.mu.Unlock()
}

// NullState is a snapshot of what a NullDevice was told.
type NullState struct {
	Acked    uint64
	Running  map[int]vhost.RingSpec
	Enabled  map[int]bool
	Regions  int
	MTU      uint16
	MTUSets  int // NET_SET_MTU requests that reached the device
	RARPs    int
	Resets   int
	MemSwaps int
}

// State returns a snapshot of the device's state.
func (d *NullDevice) State() NullState {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := NullState{Acked: d.acked, Running: map[int]vhost.RingSpec{}, Enabled: map[int]bool{},
		Regions: d.mem.Len(), MTU: d.mtu, MTUSets: d.mtuSets, RARPs: d.rarps, Resets: d.resets, MemSwaps: d.memSwaps}
	for k, v := range d.rings {
		st.Running[k] = v
	}
	for k, v := range d.enabled {
		st.Enabled[k] = v
	}
	return st
}
