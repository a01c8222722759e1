package control

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// A queue counter's place in the exposition: its family and the labels
// it adds to queue="N".
type queueMetric struct {
	family string
	labels string
}

// queueMetrics maps netdev's counter names to metric families. Directions
// are the guest's: rx is toward the guest, tx from it. A counter missing
// here is still exported, as vhostd_<name>_total (see family).
var queueMetrics = map[string]queueMetric{
	"rx_packets":          {"vhostd_frames_total", `direction="rx"`},
	"tx_packets":          {"vhostd_frames_total", `direction="tx"`},
	"rx_bytes":            {"vhostd_bytes_total", `direction="rx"`},
	"tx_bytes":            {"vhostd_bytes_total", `direction="tx"`},
	"rx_malformed":        {"vhostd_malformed_chains_total", `direction="rx"`},
	"tx_malformed":        {"vhostd_malformed_chains_total", `direction="tx"`},
	"rx_queue_broken":     {"vhostd_ring_broken_total", `direction="rx"`},
	"tx_queue_broken":     {"vhostd_ring_broken_total", `direction="tx"`},
	"rx_truncated":        {"vhostd_dropped_frames_total", `direction="rx",reason="truncated"`},
	"tx_oversize":         {"vhostd_dropped_frames_total", `direction="tx",reason="oversize"`},
	"tx_dropped_tap_full": {"vhostd_dropped_frames_total", `direction="tx",reason="tap_full"`},
	"tx_dropped_tap":      {"vhostd_dropped_frames_total", `direction="tx",reason="tap_error"`},
	"tx_discarded":        {"vhostd_dropped_frames_total", `direction="tx",reason="ring_disabled"`},
	"tx_offload_refused":  {"vhostd_dropped_frames_total", `direction="tx",reason="offload_not_negotiated"`},
	"guest_memory_faults": {"vhostd_guest_memory_faults_total", ""},
	"calls_deferred":      {"vhostd_calls_deferred_total", ""},
	"rx_no_buffer":        {"vhostd_rx_no_buffer_total", ""},
	"kicks":               {"vhostd_kicks_total", ""},
	"calls":               {"vhostd_calls_total", ""},
	"tap_gone":            {"vhostd_tap_gone", ""},
	"capture_dropped":     {"vhostd_capture_dropped_frames_total", ""},
}

// families are the exposition's metric families in output order, with
// their type and help.
var families = []struct{ name, typ, help string }{
	{"vhostd_info", "gauge", "Always 1; the labels say which vhostd serves which interface."},
	{"vhostd_start_time_seconds", "gauge", "When vhostd started, in seconds since the Unix epoch."},
	{"vhostd_queue_pairs", "gauge", "Queue pairs offered to the guest."},
	{"vhostd_ring_size", "gauge", "Entries of each ring (0 before the front-end set it up)."},
	{"vhostd_ring_up", "gauge", "1 while the ring is started, enabled and not broken."},
	{"vhostd_frames_total", "counter", "Frames moved: rx from the host interface to the guest, tx from the guest to the host interface."},
	{"vhostd_bytes_total", "counter", "Bytes of the frames moved, virtio-net header excluded."},
	{"vhostd_dropped_frames_total", "counter", "Frames dropped, by direction and reason."},
	{"vhostd_malformed_chains_total", "counter", "Descriptor chains rejected as malformed."},
	{"vhostd_ring_broken_total", "counter", "Times the guest broke the ring (it stays broken until restarted)."},
	{"vhostd_rx_no_buffer_total", "counter", "Times the host interface had frames but the guest had posted no receive buffers."},
	{"vhostd_kicks_total", "counter", "Guest notifications (kick eventfd wake-ups) drained."},
	{"vhostd_calls_total", "counter", "Interrupts (call eventfd signals) sent to the guest."},
	{"vhostd_calls_deferred_total", "counter", "Interrupts put off because the front-end's call eventfd would have blocked; sent with a later batch."},
	{"vhostd_guest_memory_faults_total", "counter", "Faults touching guest memory (a region shrunk under vhostd); the queue pair's rings are broken."},
	{"vhostd_tap_gone", "gauge", "1 once the queue's host interface queue stopped carrying traffic."},
	{"vhostd_capture_dropped_frames_total", "counter", "Frames a running capture (--pcap, ctl pcap) left out of its file: the queue's capture ring was full. Traffic is not affected."},
	{"vhostd_worker_polls_total", "counter", "Poll calls by the queue pair's worker thread."},
	{"vhostd_worker_work_total", "counter", "Work units (frames and chains) the worker's polls reported."},
	{"vhostd_worker_idle_rounds_total", "counter", "Rounds in which the worker found no work (idle spins)."},
	{"vhostd_worker_sleeps_total", "counter", "Times the worker blocked in epoll_wait."},
	{"vhostd_worker_arm_pending_total", "counter", "Times the worker was about to sleep but found work."},
	{"vhostd_worker_wakeups_total", "counter", "Wake-ups by a kick or the host interface."},
	{"vhostd_worker_control_wakeups_total", "counter", "Wake-ups by the worker's own eventfd (wake or control request)."},
	{"vhostd_xdp_frames_total", "counter", "The XDP program's frame counters, by counter name."},
	{"vhostd_xdp_bytes_total", "counter", "The XDP program's byte counters, by counter name."},
	{"vhostd_xdp_counters_up", "gauge", "1 if the XDP program's counters could be read, 0 if not (see /stats for the error)."},
}

// exposition collects samples by family.
type exposition map[string][]string

func (e exposition) add(family, labels string, v any) {
	if labels != "" {
		labels = "{" + labels + "}"
	}
	e[family] = append(e[family], fmt.Sprintf("%s%s %v", family, labels, v))
}

// WriteMetrics writes the Prometheus text exposition (format 0.0.4) of the
// counters /stats reports, plus a few gauges from /status.
func (s *Server) WriteMetrics(w io.Writer) error {
	st, c := s.status(), s.stats()
	e := exposition{}
	x := st.XDP.Program
	if st.XDP.Attach != "" {
		x += " " + st.XDP.Attach
	}
	e.add("vhostd_info", fmt.Sprintf("version=%s,interface=%s,xdp=%s",
		quote(st.Version), quote(st.Interface.Name), quote(x)), 1)
	e.add("vhostd_start_time_seconds", "", float64(st.Started.UnixMilli())/1000)
	e.add("vhostd_queue_pairs", "", st.QueuePairs)
	for _, q := range st.Queues {
		for _, r := range []struct {
			dir string
			r   RingState
		}{{"rx", q.RX}, {"tx", q.TX}} {
			l := fmt.Sprintf(`queue="%d",direction="%s"`, q.Queue, r.dir)
			e.add("vhostd_ring_size", l, r.r.Size)
			e.add("vhostd_ring_up", l, b2i(r.r.State == "enabled"))
		}
	}
	for _, q := range c.Queues {
		e.queue(q)
	}
	if st.XDP.Program != "off" {
		e.add("vhostd_xdp_counters_up", "", b2i(c.XDPError == ""))
	}
	for name, v := range c.XDP {
		f := "vhostd_xdp_frames_total"
		if strings.HasSuffix(name, "_bytes") {
			f = "vhostd_xdp_bytes_total"
		}
		e.add(f, "counter="+quote(name), v)
	}
	return e.write(w)
}

// queue adds one queue pair's counters and its worker's figures.
func (e exposition) queue(q QueueCounters) {
	ql := fmt.Sprintf(`queue="%d"`, q.Queue)
	for name, v := range q.Counters {
		m, ok := queueMetrics[name]
		if !ok {
			m = queueMetric{family: "vhostd_" + name + "_total"}
		}
		l := ql
		if m.labels != "" {
			l += "," + m.labels
		}
		e.add(m.family, l, v)
	}
	for _, w := range q.Workers {
		e.add("vhostd_worker_polls_total", ql, w.Polls)
		e.add("vhostd_worker_work_total", ql, w.Work)
		e.add("vhostd_worker_idle_rounds_total", ql, w.IdleRounds)
		e.add("vhostd_worker_sleeps_total", ql, w.Sleeps)
		e.add("vhostd_worker_arm_pending_total", ql, w.ArmPending)
		e.add("vhostd_worker_wakeups_total", ql, w.Wakeups)
		e.add("vhostd_worker_control_wakeups_total", ql, w.CtlWakes)
	}
}

// write prints the families in order, each with HELP and TYPE once and
// its samples sorted; families no table knows (counters netdev added
// later, all counting events) come last.
func (e exposition) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	known := map[string]bool{}
	for _, f := range families {
		known[f.name] = true
		e.family(bw, f.name, f.typ, f.help)
	}
	var extra []string
	for name := range e {
		if !known[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		e.family(bw, name, "counter", "netdev's counter "+strings.TrimSuffix(strings.TrimPrefix(name, "vhostd_"), "_total")+".")
	}
	return bw.Flush()
}

func (e exposition) family(w io.Writer, name, typ, help string) {
	samples := e[name]
	if len(samples) == 0 {
		return
	}
	sort.Strings(samples)
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	for _, s := range samples {
		fmt.Fprintln(w, s)
	}
}

// quote quotes a label value: backslash, double quote and newline are
// escaped, as the text format asks.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
