package harness

import (
	"fmt"
	"slices"
	"time"

	"github.com/vhostd/vhostd/perf/internal/frames"
)

// Backend kinds.
const (
	kVhostd  = "vhostd"
	kTestpmd = "testpmd"
	kRawTx   = "rawtx"
	kRawRx   = "rawrx"
)

// Subject is one thing measured: a back-end in one configuration, or a
// limit (a raw loop standing in for the back-end).
type Subject struct {
	Name     string
	Kind     string
	BusyPoll int      // vhostd --busy-poll
	Extra    []string `json:",omitempty"` // more vhostd flags
	// FEFlags are more flags for the Go front-end (vperf fe) when it
	// drives this subject.
	FEFlags []string `json:",omitempty"`
	// CPUs is the back-end's taskset CPU list ("1" when empty).
	CPUs string `json:",omitempty"`
	// CtlPoll, when set, is how often the harness GETs /stats from
	// vhostd's control socket during the run.
	CtlPoll time.Duration `json:",omitempty"`
	// Packed: the front-end negotiates VIRTIO_F_RING_PACKED.
	Packed bool `json:",omitempty"`
	// Before: run the binary of --vhostd-before instead of --vhostd.
	Before bool `json:",omitempty"`
}

var (
	sBP    = Subject{Name: "vhostd-bp50", Kind: kVhostd, BusyPoll: 50}
	sEvent = Subject{Name: "vhostd-event", Kind: kVhostd, BusyPoll: 0}
	sSpin  = Subject{Name: "vhostd-spin", Kind: kVhostd, BusyPoll: -1}
	// sLog is vhostd-bp50 with dirty logging on, as during a live
	// migration: every page written and every used ring is marked.
	sLog   = Subject{Name: "vhostd-log", Kind: kVhostd, BusyPoll: 50, FEFlags: []string{"--dirty-log"}}
	sDPDK  = Subject{Name: "testpmd", Kind: kTestpmd}
	sRawTx = Subject{Name: "raw-write", Kind: kRawTx}
	sRawRx = Subject{Name: "raw-read", Kind: kRawRx}
	// sRawTxUring is the batched limit: 128 writes per io_uring_enter.
	sRawTxUring = Subject{Name: "raw-write-uring", Kind: kRawTx, Extra: []string{"--uring", "128"}}
	// sRawTxUringFixed is the same writing to the TAP fd registered as a
	// fixed file (no file lookup and reference count per write).
	sRawTxUringFixed = Subject{Name: "raw-write-uring-fixed", Kind: kRawTx, Extra: []string{"--uring", "128", "--uring-fixed"}}
	// sRawRxUringFixed is the batched read limit: 64 reads (RWF_NOWAIT)
	// per io_uring_enter from the TAP fd registered as a fixed file.
	sRawRxUringFixed = Subject{Name: "raw-read-uring-fixed", Kind: kRawRx, Extra: []string{"--uring", "64", "--uring-fixed"}}
	tsoSize          = frames.TSOFrame
	// sRawTxCold and sRawRxCold are the fair limits (issue 17): every
	// frame written by a partner thread on CPU 0 just before the loop
	// on CPU 1 sends it, or read there just after the loop received it.
	sRawTxCold = Subject{Name: "raw-write-cold", Kind: kRawTx, Extra: []string{"--cold", "0", "--cpu", "1"}}
	sRawRxCold = Subject{Name: "raw-read-cold", Kind: kRawRx, Extra: []string{"--cold", "0", "--cpu", "1"}}
	// sRawTxUringCold is raw-write-uring-fixed with raw-write-cold's
	// partner: the fair limit for io_uring writes (tx-64-go).
	sRawTxUringCold = Subject{Name: "raw-write-uring-cold", Kind: kRawTx, Extra: []string{"--uring", "128", "--uring-fixed", "--cold", "0", "--cpu", "1"}}
	// sCold is vhostd-bp50 with a guest that rewrites every cache line of
	// a frame before it publishes it: the same frames as raw-write-cold.
	sCold = Subject{Name: "vhostd-cold", Kind: kVhostd, BusyPoll: 50, FEFlags: []string{"--touch"}}
	// sCtl is vhostd-bp50 while the harness GETs /stats from its control
	// socket every CtlPoll (issue 16; capture off).
	sCtl = Subject{Name: "vhostd-ctl", Kind: kVhostd, BusyPoll: 50, CtlPoll: 100 * time.Millisecond}
	// sUring and sWrite force vhostd's TAP write strategy (issue 17), when
	// the vhostd under test has --tap-write.
	sUring = Subject{Name: "vhostd-uring", Kind: kVhostd, BusyPoll: 50, Extra: []string{"--tap-write", "uring"}}
	sWrite = Subject{Name: "vhostd-write", Kind: kVhostd, BusyPoll: 50, Extra: []string{"--tap-write", "write"}}
	// sPacked and sDPDKPacked drive packed rings (issue 18): the Go
	// front-end with --packed, testpmd's virtio-user with packed_vq=1.
	sPacked = Subject{Name: "vhostd-packed", Kind: kVhostd, BusyPoll: 50, Packed: true}
	// sBefore is vhostd-bp50 run by the binary of --vhostd-before (vhostd
	// built from an older tree): a change's before and after, interleaved
	// round by round in one run.
	sBefore     = Subject{Name: "vhostd-before", Kind: kVhostd, BusyPoll: 50, Before: true}
	sDPDKPacked = Subject{Name: "testpmd-packed", Kind: kTestpmd, Packed: true}
)

// cold reports whether s is a fair-limit loop with a partner thread.
func (s Subject) cold() bool { return slices.Contains(s.Extra, "--cold") }

// Group is a set of subjects measured the same way, interleaved round by
// round (A B C A B C ...).
type Group struct {
	Name string
	Dir  string // tx (guest TX), rx (guest RX), ping, idle
	FE   string // go (perf/internal/fe) or dpdk (testpmd virtio-user)
	Size int    // frame bytes; tsoSize for 64 KiB TSO
	// Reflect (ping): xdptap's reflect program sends the guest's frame
	// straight back into the TAP, instead of the host stack answering.
	Reflect  bool `json:",omitempty"`
	Subjects []Subject
}

// Primary is the figure a group is judged by.
func (g Group) Primary() string {
	switch {
	case g.Dir == "ping":
		return "rtt_p50_us"
	case g.Dir == "idle":
		return "backend_cores"
	case g.Size == tsoSize:
		return "gbps"
	}
	return "mpps"
}

func sizeName(n int) string {
	if n == tsoSize {
		return "64k-tso"
	}
	return fmt.Sprint(n)
}

// Abilities is what the vhostd under test can do, found out before the
// matrix is built: subjects that need more are left out (and said so).
type Abilities struct {
	TapWrite bool // vhostd --tap-write write|uring
	Before   bool // --vhostd-before names an older vhostd to compare with
}

// matrix is the whole scenario matrix.
func matrix(ab Abilities) []Group {
	var gs []Group
	for _, dir := range []string{"tx", "rx"} {
		raw := sRawTx
		if dir == "rx" {
			raw = sRawRx
		}
		for _, fe := range []string{"go", "dpdk"} {
			for _, size := range []int{64, 1518, tsoSize} {
				if fe == "dpdk" && size == tsoSize {
					continue // testpmd's txonly cannot ask for TSO
				}
				subj := []Subject{sBP, sDPDK, raw}
				if fe == "go" && size != 64 && (dir == "tx" || size == tsoSize) {
					subj = append(subj, map[string]Subject{"tx": sRawTxCold, "rx": sRawRxCold}[dir])
					if dir == "tx" {
						subj = append(subj, sCold)
					}
				}
				if fe == "go" && dir == "tx" && size == 1518 && ab.TapWrite {
					subj = append(subj, sUring, sWrite)
				}
				if size == 64 {
					subj = []Subject{sBP, sEvent, sDPDK, raw}
					if fe == "dpdk" {
						subj = []Subject{sBP, sDPDK, raw} // event mode: see the go groups
					}
					if fe == "go" {
						subj = append(subj, sLog)
					}
					if fe == "go" || dir == "tx" {
						subj = append(subj, sPacked, sDPDKPacked)
					}
					if dir == "rx" && fe == "go" {
						subj = append(subj, sRawRxUringFixed)
					}
					if dir == "tx" && fe == "go" {
						subj = append(subj, sRawTxUring, sRawTxUringFixed, sCtl, sCold, sRawTxUringCold)
						if ab.TapWrite {
							subj = append(subj, sUring, sWrite)
						}
					}
				}
				gs = append(gs, Group{Name: fmt.Sprintf("%s-%s-%s", dir, sizeName(size), fe), Dir: dir, FE: fe, Size: size, Subjects: subj})
			}
		}
	}
	gs = append(gs,
		Group{Name: "ping-go", Dir: "ping", FE: "go", Size: 64, Subjects: []Subject{sBP, sEvent, sSpin, sDPDK}},
		Group{Name: "ping-reflect-go", Dir: "ping", FE: "go", Size: 64, Reflect: true, Subjects: []Subject{sBP, sEvent, sSpin, sDPDK}},
		Group{Name: "idle-go", Dir: "idle", FE: "go", Size: 64, Subjects: []Subject{sBP, sEvent, sDPDK}},
	)
	if ab.Before {
		for i := range gs {
			if gs[i].Dir != "idle" {
				gs[i].Subjects = append(gs[i].Subjects, sBefore)
			}
		}
	}
	return gs
}
