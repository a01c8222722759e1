package netdev

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config describes the virtio-net device and the host side it bridges to.
type Config struct {
	// TAP names a TAP to create or attach to; Macvtap names an existing
	// macvtap interface. Exactly one is set.
	TAP     string
	Macvtap string
	// QueuePairs is the number of queue pairs offered (1..256).
	QueuePairs int
	// MTU, when non-zero, is set on the TAP and offered to the guest
	// (VIRTIO_NET_F_MTU).
	MTU int
	// MAC is the guest MAC address reported in the config space; nil
	// leaves it to the front-end (QEMU always sets its own).
	MAC net.HardwareAddr
	// Offload switches groups of offloads off.
	Offload Offload
	// ConfigSpace offers VHOST_USER_PROTOCOL_F_CONFIG (GET/SET_CONFIG) for
	// front-ends that read the device config space from the back-end.
	ConfigSpace bool
	// NoMrgRxbuf, NoEventIdx and NoIndirect withhold those features.
	NoMrgRxbuf, NoEventIdx, NoIndirect bool
	// BusyPoll is how long a worker spins without work before it sleeps;
	// 0 is pure event mode, a negative value never sleeps.
	BusyPoll time.Duration
	// CPUs, when set, pins the workers round-robin: queue pair i's worker
	// to CPUs[i%len(CPUs)].
	CPUs []int
	// TAPWrite is how guest TX frames go to the TAP: write(2) (the zero
	// value), io_uring, or auto, chosen at Open by calibration
	// (tapwrite.go).
	TAPWrite TAPWrite
	// Log receives control-plane messages; nil discards them.
	Log hclog.Logger
}

// MaxQueuePairs is the most queue pairs a device offers (the TAP limit).
const MaxQueuePairs = 256

// Validate checks the configuration.
func (c *Config) Validate() error {
	if (c.TAP == "") == (c.Macvtap == "") {
		return errors.New("exactly one of a TAP or a macvtap interface must be named")
	}
	if c.QueuePairs < 1 || c.QueuePairs > MaxQueuePairs {
		return fmt.Errorf("queue pairs: %d, want 1..%d", c.QueuePairs, MaxQueuePairs)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fmt.Errorf("mtu: %d, want 68..65535", c.MTU)
	}
	if c.MAC != nil && len(c.MAC) != 6 {
		return fmt.Errorf("mac: %v is not a 6-byte Ethernet address", c.MAC)
	}
	if c.TAPWrite > TAPWriteAuto {
		return fmt.Errorf("tap write mode %d: want write, uring or auto", c.TAPWrite)
	}
	for _, cpu := range c.CPUs {
		if cpu < 0 {
			return fmt.Errorf("cpus: %d is not a CPU number", cpu)
		}
	}
	return nil
}
