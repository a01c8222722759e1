package vhost

import "github.com/vhostd/vhostd/virtqueue"

// RingSpec is everything a device needs to run one vring. vhost has already
// validated it: the three ring areas are translated to guest physical
// addresses, each lies inside one region of the current memory table and is
// aligned (BAD-INPUTS 23, 24).
type RingSpec struct {
	Index int
	Size  uint16 // power of two, 1..32768
	Desc  uint64 // guest physical address of the descriptor table
	Avail uint64 // guest physical address of the available ring
	Used  uint64 // guest physical address of the used ring
	// Base is the SET_VRING_BASE value: for a split ring the index of the
	// next available entry to consume (16 bits); for a packed ring
	// (Packed) the next avail slot in bits 0-14 and its wrap counter in bit
	// 15, the used side in the high half the same way (QEMU's layout).
	Base uint32
	// EventIdx, Indirect and Packed are the ring features the driver
	// acked (VIRTIO_F_RING_PACKED for Packed: Desc, Avail and Used are
	// then the descriptor ring and the driver and device event areas).
	EventIdx bool
	Indirect bool
	Packed   bool
	// Kick, Call and Err are eventfds owned by vhost (it checked that
	// they are eventfds): the device reads, writes and polls them but never
	// closes them. Kick is always set (a kick without an fd, polling mode,
	// is refused: BAD-INPUTS 57); Call and Err are -1 when not given.
	Kick, Call, Err int
	// Enabled is the ring's enable state at start (SET_VRING_ENABLE, or
	// always enabled when VHOST_USER_F_PROTOCOL_FEATURES was not acked).
	Enabled bool
	// LogUsed asks for the used ring's writes to be marked in the dirty
	// log, at the guest-physical address LogAddr (SET_VRING_ADDR with
	// VHOST_VRING_F_LOG); it matters only to a DirtyLogger with a log.
	LogUsed bool
	LogAddr uint64
}

// Device is the virtio device behind a vhost-user connection. vhost calls
// it from the connection's goroutine only, one call at a time, after every
// check of the message that caused the call has passed. Methods that
// change what the data path uses (SetMemory, StartRing, StopRing,
// EnableRing, SetCallFd, SetErrFd) apply the change at a safe point and
// return only when the data path has switched over, so vhost can close what
// was replaced as soon as they return.
type Device interface {
	// Features is the virtio feature set the device offers. vhost adds
	// VHOST_USER_F_PROTOCOL_FEATURES itself.
	Features() uint64
	// ProtocolFeatures is the set of vhost-user protocol features that
	// depend on the device (MQ, NET_MTU, RARP, CONFIG); vhost adds the ones
	// it implements on its own.
	ProtocolFeatures() uint64
	// QueueNum is what GET_QUEUE_NUM answers (queue pairs for virtio-net).
	QueueNum() uint64
	// NumVrings is the number of vrings: every ring index must be below it.
	NumVrings() int
	// SetFeatures applies the driver's acked features (a subset of
	// Features, without vhost-only bits). It is called before rings start,
	// and again with the same value while rings run.
	SetFeatures(acked uint64) error
	// Config returns a copy of the device's configuration space.
	Config() []byte
	// WriteConfig writes data at offset of the configuration space;
	// migration is true for the front-end's live-migration writes, which
	// may set read-only fields.
	WriteConfig(offset uint32, data []byte, migration bool) error
	// SetMTU sets the MTU the device reports (NET_SET_MTU).
	SetMTU(mtu uint16) error
	// SendRARP asks the device to announce mac (SEND_RARP).
	SendRARP(mac [6]byte) error
	// SetMemory switches to a new memory table (nil on disconnect). Every
	// running ring's addresses translate in mem: vhost checked.
	SetMemory(mem *virtqueue.Memory)
	// StartRing starts processing a ring.
	StartRing(r RingSpec) error
	// StopRing stops a started ring and returns its GET_VRING_BASE value,
	// in RingSpec.Base's layout: the next available entry it has not
	// consumed (and for a packed ring, the used position in the high
	// half); chains in flight are completed first (BAD-INPUTS 46).
	StopRing(index int) (base uint32)
	// EnableRing changes a started ring's enable state. A ring enabled
	// after start must be checked for work at once: a kick that arrived
	// while it was disabled is not lost.
	EnableRing(index int, enabled bool)
	// SetCallFd and SetErrFd replace a started ring's call or error eventfd.
	SetCallFd(index int, fd int)
	SetErrFd(index int, fd int)
	// Reset returns the device to its state before negotiation. Every ring
	// has been stopped and the memory table removed.
	Reset()
}
