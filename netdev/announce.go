package netdev

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/tap"
)

// rarpEvery is the shortest interval between two announcements: a
// front-end that floods SEND_RARP gets one frame per interval into the
// host network, not one per message.
const rarpEvery = 100 * time.Millisecond

// rarpFrame is the announcement a guest that cannot announce itself gets
// after migration (no GUEST_ANNOUNCE): a broadcast RARP reverse request
// (RFC 903) from mac, which teaches bridges and switches the port the MAC
// now lives behind, preceded by an empty virtio-net header.
func rarpFrame(mac [6]byte) []byte {
	f := make([]byte, tap.VnetHdrLen+60) // the minimum Ethernet frame, padded
	e := f[tap.VnetHdrLen:]
	copy(e[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(e[6:12], mac[:])
	binary.BigEndian.PutUint16(e[12:], 0x8035) // ETH_P_RARP
	a := e[14:]
	binary.BigEndian.PutUint16(a[0:], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // protocol: IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 3) // reverse request
	copy(a[8:14], mac[:])                // sender hardware address
	copy(a[18:24], mac[:])               // target hardware address
	return f
}

// SendRARP implements vhost.Device: QEMU asks for it after a migration
// when the guest did not ack GUEST_ANNOUNCE. The frame goes into the host
// interface's first queue as if the guest had sent it.
func (d *Device) SendRARP(mac [6]byte) error {
	d.mu.Lock()
	now := time.Now()
	if now.Sub(d.lastRARP) < rarpEvery {
		d.mu.Unlock()
		d.log.Debug("SEND_RARP ignored: announced less than 100 ms ago", "mac", fmt.Sprintf("% x", mac[:]))
		return nil
	}
	d.lastRARP = now
	q := d.tap.Queue(0)
	d.mu.Unlock()
	if _, errno := rawio.Write(q.Fd(), rarpFrame(mac)); errno != 0 {
		return fmt.Errorf("announce %x on %s: %w", mac, d.tap.Name(), errno)
	}
	d.log.Info("announced the guest's MAC (RARP)", "mac", fmt.Sprintf("% x", mac[:]))
	return nil
}
