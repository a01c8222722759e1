package control

import (
	"fmt"
	"strings"
	"time"

	"github.com/vhostd/vhostd/busypoll"
	"github.com/vhostd/vhostd/netdev"
)

// StatusReply is the answer to GET /status.
type StatusReply struct {
	Version    string       `json:"version"`
	Started    time.Time    `json:"started"`
	Uptime     float64      `json:"uptime_seconds"`
	VhostUser  VhostUser    `json:"vhost_user"`
	Interface  Interface    `json:"interface"`
	QueuePairs int          `json:"queue_pairs"`
	Threads    string       `json:"threads"` // always inline (one worker per queue pair), kept for the reply's readers
	TAPWrite   TAPWrite     `json:"tap_write"`
	Features   Features     `json:"features"`
	Queues     []QueueState `json:"queues"`
	XDP        XDPState     `json:"xdp"`
	// Capture is the file a capture writes to, "" when none runs.
	Capture string `json:"capture"`
}

// TAPWrite is how guest TX frames go to the TAP (write or uring) and how
// that was chosen (config, or a calibration's figures).
type TAPWrite = netdev.TAPWriteChoice

// VhostUser is how vhostd meets its front-end.
type VhostUser struct {
	Mode   string `json:"mode"`   // server (listening), client, or fd (inherited)
	Socket string `json:"socket"` // the socket path, or "fd N"
}

// Interface is the host side.
type Interface struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // tap or macvtap
	MTU  int    `json:"mtu"`
}

// Features are the virtio feature bits, as hex strings (they do not fit
// a JSON number exactly) and by name.
type Features struct {
	Offered      string   `json:"offered"`
	OfferedNames []string `json:"offered_names"`
	Acked        string   `json:"acked"`
	AckedNames   []string `json:"acked_names"`
	Negotiated   bool     `json:"negotiated"` // a driver has acked features
}

// QueueState is one queue pair's rings.
type QueueState struct {
	Queue   int       `json:"queue"`
	RX      RingState `json:"rx"`
	TX      RingState `json:"tx"`
	TAPGone bool      `json:"tap_gone"`
}

// RingState is one ring: its vhost-user index, size and state (stopped,
// enabled, disabled or broken).
type RingState struct {
	Index int    `json:"index"`
	Size  uint16 `json:"size"`
	State string `json:"state"`
}

// XDPState names the XDP program on the host interface ("off": none) and
// how it is attached (native or generic).
type XDPState struct {
	Program string `json:"program"`
	Attach  string `json:"attach,omitempty"`
}

// StatsReply is the answer to GET /stats.
type StatsReply struct {
	Uptime   float64           `json:"uptime_seconds"`
	Queues   []QueueCounters   `json:"queues"`
	XDP      map[string]uint64 `json:"xdp,omitempty"`
	XDPError string            `json:"xdp_error,omitempty"`
}

// QueueCounters are one queue pair's counters (netdev's names) and its
// worker's busypoll figures: none before its first ring started, else
// one.
type QueueCounters struct {
	Queue    int               `json:"queue"`
	Counters map[string]uint64 `json:"counters"`
	Workers  []WorkerCounters  `json:"workers"`
}

// WorkerCounters are one busypoll worker's figures. Role is always inline
// (one worker does the pair), kept for readers of the reply.
type WorkerCounters struct {
	Role       string `json:"role"`
	Polls      uint64 `json:"polls"`
	Work       uint64 `json:"work"`
	IdleRounds uint64 `json:"idle_rounds"`
	Sleeps     uint64 `json:"sleeps"`
	ArmPending uint64 `json:"arm_pending"`
	Wakeups    uint64 `json:"wakeups"`
	CtlWakes   uint64 `json:"ctl_wakes"`
}

func (s *Server) status() StatusReply {
	st := s.cfg.Device.Status()
	r := StatusReply{
		Version: s.cfg.Version, Started: s.started, Uptime: s.uptime(),
		VhostUser:  VhostUser{Mode: s.cfg.Mode, Socket: s.cfg.Socket},
		Interface:  Interface{Name: st.Interface, Kind: st.Kind, MTU: st.MTU},
		QueuePairs: st.QueuePairs, Threads: inline, TAPWrite: st.TAPWrite,
		Features: Features{
			Offered: fmt.Sprintf("%#x", st.Offered), OfferedNames: featureNames(st.Offered),
			Acked: fmt.Sprintf("%#x", st.Acked), AckedNames: featureNames(st.Acked), Negotiated: st.Acked != 0,
		},
		Queues: make([]QueueState, len(st.Pairs)),
		XDP:    XDPState{Program: "off"},
	}
	for i, p := range st.Pairs {
		r.Queues[i] = QueueState{Queue: p.Pair, RX: ringState(p.RX), TX: ringState(p.TX), TAPGone: p.TAPGone}
	}
	if x := s.cfg.XDP; x != nil {
		r.XDP = XDPState{Program: x.Program, Attach: x.Attach}
	}
	if c := s.cfg.Capture; c != nil {
		r.Capture = c.Capturing()
	}
	return r
}

func ringState(r netdev.RingStatus) RingState {
	return RingState{Index: r.Index, Size: r.Size, State: r.State}
}

func featureNames(f uint64) []string {
	if f == 0 {
		return []string{}
	}
	return strings.Split(netdev.FeatureString(f), "|")
}

func (s *Server) stats() StatsReply {
	qs := s.cfg.Device.Stats()
	ws := s.cfg.Device.WorkerStats()
	r := StatsReply{Uptime: s.uptime(), Queues: make([]QueueCounters, len(qs))}
	for i, q := range qs {
		r.Queues[i] = QueueCounters{Queue: q.Pair, Counters: q.Values, Workers: []WorkerCounters{}}
		if i < len(ws) && ws[i] != nil {
			r.Queues[i].Workers = []WorkerCounters{workerCounters(ws[i])}
		}
	}
	if x := s.cfg.XDP; x != nil && x.Counters != nil {
		c, err := x.Counters()
		if err != nil {
			r.XDPError = err.Error()
		} else {
			r.XDP = c
		}
	}
	return r
}

// inline is the threads and worker role the replies report: one worker
// runs each queue pair.
const inline = "inline"

// workerCounters are a pair's worker's figures.
func workerCounters(w *busypoll.Stats) WorkerCounters {
	return WorkerCounters{Role: inline, Polls: w.Polls, Work: w.Work, IdleRounds: w.IdleRounds, Sleeps: w.Sleeps,
		ArmPending: w.ArmPending, Wakeups: w.Wakeups, CtlWakes: w.CtlWakes}
}
