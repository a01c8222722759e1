package netdev

import (
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue"
)

// Ring roles within a queue pair: vq 2i receives, vq 2i+1 transmits.
const (
	rxRing = 0
	txRing = 1
)

// pair is one queue pair: two rings, one TAP queue, one worker.
type pair struct {
	dev   *Device
	index int
	tq    *tap.Queue
	rings [2]ringState
}

type ringState struct {
	running bool
	spec    vhost.RingSpec
	enabled bool
}

func newPair(d *Device, index int, tq *tap.Queue) *pair {
	return &pair{dev: d, index: index, tq: tq}
}

func (p *pair) start(r vhost.RingSpec, mem *virtqueue.Memory, acked uint64) error {
	p.rings[r.Index%2] = ringState{running: true, spec: r, enabled: r.Enabled}
	return nil
}

func (p *pair) stop(role int) uint16 {
	rs := &p.rings[role]
	rs.running = false
	return rs.spec.Base
}

func (p *pair) enable(role int, on bool)        { p.rings[role].enabled = on }
func (p *pair) setCall(role int, fd int)        { p.rings[role].spec.Call = fd }
func (p *pair) setErr(role int, fd int)         { p.rings[role].spec.Err = fd }
func (p *pair) setMemory(mem *virtqueue.Memory) {}
func (p *pair) shutdown()                       {}
