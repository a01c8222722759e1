package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ping waits for the ping front-end to finish and records its round
// trips.
func (x *runState) ping(r *Run) error {
	r.SetupSeconds = time.Since(x.began).Seconds()
	select {
	case <-x.fe.done:
	case <-time.After(x.h.o.Ping + 60*time.Second):
		return fmt.Errorf("ping front-end did not finish")
	}
	var rep struct {
		Ping *struct{ Sent, Received, P50, P99, Min int64 }
	}
	if err := json.Unmarshal(bytes.TrimSpace(x.fe.stdout.Bytes()), &rep); err != nil || rep.Ping == nil {
		return fmt.Errorf("ping front-end: %v %v: %s", err, x.fe.err, lastLines(x.fe.stderr.String(), 4))
	}
	r.Pings, r.Lost = int(rep.Ping.Sent), int(rep.Ping.Sent-rep.Ping.Received)
	r.RTTP50us, r.RTTP99us, r.RTTMinus = float64(rep.Ping.P50)/1e3, float64(rep.Ping.P99)/1e3, float64(rep.Ping.Min)/1e3
	if rep.Ping.Received == 0 {
		// A measurement, not a harness failure.
		r.Note = "no echo reply came back"
		if x.g.Reflect && x.s.Kind == kTestpmd {
			r.Note += noReflectEcho
		}
	}
	return nil
}

// count returns the frames and bytes the run has moved so far: the XDP
// program's counters, or the TAP's (rx on guest TX, tx on guest RX); 0 when
// idle.
func (x *runState) count() (uint64, uint64) {
	if x.g.Dir == "idle" {
		return 0, 0
	}
	if x.att != nil {
		m, err := x.att.Counters()
		if err != nil {
			return 0, 0
		}
		var p, b uint64
		for k, v := range m {
			switch {
			case strings.HasSuffix(k, "_packets"):
				p += v
			case strings.HasSuffix(k, "_bytes"):
				b += v
			}
		}
		return p, b
	}
	stat := map[string][2]string{"tx": {"rx_packets", "rx_bytes"}, "rx": {"tx_packets", "tx_bytes"}}[x.g.Dir]
	p, _ := tapStat(x.tap, stat[0])
	b, _ := tapStat(x.tap, stat[1])
	return p, b
}

// measure waits for traffic and the warm-up (or, idle, for the handshake),
// then records the frames, bytes and CPU of one window.
func (x *runState) measure(r *Run) {
	o := x.h.o
	procs := []*proc{x.be, x.fe, x.inj}
	window := o.Window
	if x.g.Dir == "idle" {
		r.SetupSeconds = time.Since(x.began).Seconds()
		// Connected and set up, then nothing: give the handshake time.
		time.Sleep(o.Warmup + time.Second)
		window = o.Idle
	} else {
		p0, _ := x.count()
		moving := func() bool { p, _ := x.count(); return p > p0+100 }
		wait := 20 * time.Second
		if o.Smoke {
			wait = 5 * time.Second
		}
		if err := waitFor("traffic", wait, moving, procs...); err != nil {
			r.Note = fmt.Sprintf("no traffic within %v (%v); measured anyway", wait, err)
		}
		r.SetupSeconds = time.Since(x.began).Seconds()
		time.Sleep(o.Warmup)
	}
	f0, b0 := x.count()
	c0 := map[string]uint64{}
	for _, p := range procs {
		if p != nil {
			c0[p.role] = cpuNs(p.pid())
		}
	}
	var p0 uint64
	if x.s.cold() {
		p0 = partnerNs(x.be.pid())
	}
	m0, t0 := busyNs(), time.Now()
	time.Sleep(window)
	f1, b1 := x.count()
	el := time.Since(t0)
	m1 := busyNs()
	r.Frames, r.Bytes, r.Seconds = f1-f0, b1-b0, el.Seconds()
	r.Mpps = float64(r.Frames) / el.Seconds() / 1e6
	r.Gbps = float64(r.Bytes) * 8 / el.Seconds() / 1e9
	var partner uint64
	if x.s.cold() {
		partner = partnerNs(x.be.pid()) - p0
	}
	cpuShares(r, procs, c0, m1-m0, el, partner)
}

// cpuShares records each process's cores and CPU time per frame over the
// window el (c0: their CPU time at its start), and the CPU used by
// everything else (busy: the whole machine's busy time in the window). A
// process that exited during the window fails the run. partner is the CPU
// time of a cold raw loop's partner thread, the guest's work: the
// front-end's figures.
func cpuShares(r *Run, procs []*proc, c0 map[string]uint64, busy uint64, el time.Duration, partner uint64) {
	r.Cores = map[string]float64{}
	r.CPUNsPerFrame = map[string]float64{}
	var ours float64
	for _, p := range procs {
		if p == nil {
			continue
		}
		if p.exited() {
			r.Error = fmt.Sprintf("%s exited during the window (%v): %s", p.role, p.err, lastLines(p.stderr.String(), 4))
			return
		}
		d := float64(cpuNs(p.pid()) - c0[p.role])
		r.Cores[p.role] = d / float64(el.Nanoseconds())
		ours += d
		if r.Frames > 0 {
			r.CPUNsPerFrame[p.role] = d / float64(r.Frames)
		}
	}
	if partner > 0 {
		d := float64(partner)
		r.Cores["fe"] = d / float64(el.Nanoseconds())
		ours += d
		if r.Frames > 0 {
			r.CPUNsPerFrame["fe"] = d / float64(r.Frames)
		}
	}
	r.Foreign = (float64(busy) - ours) / float64(el.Nanoseconds())
	if r.Foreign < 0 {
		r.Foreign = 0
	}
}
