package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vhostd/vhostd/internal/control"
)

const ctlUsage = `usage: vhostd ctl [--control-socket PATH | --socket-path PATH] COMMAND [--watch] [--interval D] [--count N]

Commands:
  status   state of the device: interface, features, queues and rings, XDP
  stats    counters per queue and per worker, as tables
  metrics  the Prometheus exposition, as served at /metrics
  pcap start FILE | pcap stop | pcap
           start or stop a capture into FILE (pcapng), or say which runs
--watch repeats the command every --interval (1s) until interrupted, or
--count times; stats then shows frames per second too.
Exit status: 0; 1 when the control socket cannot be reached or answers
wrongly; 2 on a bad command line.
`

// ctlOptions are vhostd ctl's flags.
type ctlOptions struct {
	control, socket string
	watch           bool
	interval        time.Duration
	count           int
	pcap            []string // the arguments of pcap
}

// runCtl is "vhostd ctl": a client of the control socket. It exits 0, 1
// when the socket cannot be reached or answers wrongly, 2 on usage errors.
func runCtl(args []string, stdout, stderr io.Writer) int {
	o := &ctlOptions{}
	fs := flag.NewFlagSet("vhostd ctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.control, "control-socket", "", "the control socket")
	fs.StringVar(&o.socket, "socket-path", "", "the vhost-user socket: the control socket is this path with .ctl appended")
	fs.BoolVar(&o.watch, "watch", false, "repeat every --interval")
	fs.DurationVar(&o.interval, "interval", time.Second, "refresh interval with --watch")
	fs.IntVar(&o.count, "count", 0, "with --watch, stop after this many refreshes (0 = never)")
	cmd, err := o.parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, ctlUsage)
		return 0
	} else if err != nil {
		fmt.Fprintf(stderr, "vhostd ctl: %v\n%s", err, ctlUsage)
		return 2
	}
	c := &ctlClient{path: o.control}
	if c.path == "" {
		c.path = o.socket + ".ctl"
	}
	c.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.path)
		}}}
	show := map[string]func(io.Writer) error{"status": c.status, "stats": c.stats, "metrics": c.metrics, "pcap": c.ctlPcap(o.pcap)}[cmd]
	for i := 0; ; i++ {
		if o.watch {
			clearScreen(stdout)
		}
		if err := show(stdout); err != nil {
			fmt.Fprintln(stderr, "vhostd ctl:", err)
			return 1
		}
		if !o.watch || (o.count > 0 && i+1 >= o.count) {
			return 0
		}
		time.Sleep(o.interval)
	}
}

// parse reads the flags before and after the command and checks them.
func (o *ctlOptions) parse(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", errors.New("no command: want status, stats, metrics or pcap")
	}
	cmd := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return "", err
	}
	if cmd == "pcap" {
		if o.pcap = fs.Args(); o.watch {
			return "", errors.New("--watch: not with pcap")
		}
		if err := pcapArgs(o.pcap); err != nil {
			return "", err
		}
	}
	switch {
	case cmd != "status" && cmd != "stats" && cmd != "metrics" && cmd != "pcap":
		return "", fmt.Errorf("unknown command %q: want status, stats, metrics or pcap", cmd)
	case cmd != "pcap" && fs.NArg() > 0:
		return "", fmt.Errorf("unexpected arguments after %s: %q", cmd, fs.Args())
	case (o.control == "") == (o.socket == ""):
		return "", errors.New("give one of --control-socket PATH or --socket-path PATH")
	case o.interval <= 0:
		return "", fmt.Errorf("--interval %v: must be positive", o.interval)
	case o.count < 0:
		return "", fmt.Errorf("--count %d: must be 0 or more", o.count)
	}
	return cmd, nil
}

// clearScreen clears a terminal; into a file or pipe it writes a blank
// line between refreshes instead.
func clearScreen(w io.Writer) {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			io.WriteString(w, "\x1b[H\x1b[2J")
			return
		}
	}
	io.WriteString(w, "\n")
}

// ctlClient talks HTTP to the control socket.
type ctlClient struct {
	path string
	http *http.Client
	last *control.StatsReply // the previous stats, for rates
	at   time.Time
}

func (c *ctlClient) get(path string) ([]byte, error) {
	resp, err := c.http.Get("http://vhostd" + path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, err
}

func (c *ctlClient) getJSON(path string, v any) error {
	b, err := c.get(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: not the JSON expected: %v", path, err)
	}
	return nil
}

func (c *ctlClient) metrics(w io.Writer) error {
	b, err := c.get("/metrics")
	if err == nil {
		_, err = w.Write(b)
	}
	return err
}

func (c *ctlClient) status(w io.Writer) error {
	var st control.StatusReply
	if err := c.getJSON("/status", &st); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	fmt.Fprintf(tw, "uptime:\t%s (since %s)\n", (time.Duration(st.Uptime) * time.Second).Round(time.Second), st.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "vhost-user:\t%s %s\n", st.VhostUser.Mode, st.VhostUser.Socket)
	fmt.Fprintf(tw, "interface:\t%s (%s, mtu %d)\n", st.Interface.Name, st.Interface.Kind, st.Interface.MTU)
	fmt.Fprintf(tw, "queue pairs:\t%d\n", st.QueuePairs)
	if st.Features.Negotiated {
		fmt.Fprintf(tw, "features:\t%s %s\n", st.Features.Acked, strings.Join(st.Features.AckedNames, " "))
	} else {
		fmt.Fprintf(tw, "features:\tnone acked yet (offered %s)\n", st.Features.Offered)
	}
	xdp := st.XDP.Program
	if st.XDP.Attach != "" {
		xdp += " (" + st.XDP.Attach + ")"
	}
	fmt.Fprintf(tw, "xdp:\t%s\n", xdp)
	fmt.Fprintf(tw, "capture:\t%s\n", cmp.Or(st.Capture, "off"))
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nQUEUE\tRX RING\tSIZE\tSTATE\tTX RING\tSIZE\tSTATE\tHOST QUEUE")
	for _, q := range st.Queues {
		host := "ok"
		if q.TAPGone {
			host = "gone"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%d\t%s\t%s\n", q.Queue, q.RX.Index, q.RX.Size, q.RX.State, q.TX.Index, q.TX.Size, q.TX.State, host)
	}
	return tw.Flush()
}

// mainCounters are stats' table columns; dropCounters add up to DROPPED.
var (
	mainCounters = []string{"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "kicks", "calls", "tap_gone"}
	dropCounters = []string{"rx_truncated", "rx_malformed", "tx_malformed", "tx_oversize", "tx_dropped_tap_full", "tx_dropped_tap", "tx_discarded"}
)

func (c *ctlClient) stats(w io.Writer) error {
	var st control.StatsReply
	if err := c.getJSON("/stats", &st); err != nil {
		return err
	}
	now := time.Now()
	prev, dt := c.last, now.Sub(c.at).Seconds()
	c.last, c.at = &st, now
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "QUEUE\tRX FRAMES\tRX BYTES\tRX/S\tTX FRAMES\tTX BYTES\tTX/S\tDROPPED\tKICKS\tCALLS\t")
	var others []string
	for i, q := range st.Queues {
		v := q.Counters
		var drops uint64
		for _, n := range dropCounters {
			drops += v[n]
		}
		rxr, txr := "-", "-"
		if prev != nil && i < len(prev.Queues) && dt > 0 {
			p := prev.Queues[i].Counters
			rxr, txr = rate(v["rx_packets"], p["rx_packets"], dt), rate(v["tx_packets"], p["tx_packets"], dt)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t\n", q.Queue, v["rx_packets"], v["rx_bytes"], rxr,
			v["tx_packets"], v["tx_bytes"], txr, drops, v["kicks"], v["calls"])
		if o := otherCounters(v); o != "" {
			others = append(others, fmt.Sprintf("queue %d: %s", q.Queue, o))
		}
	}
	tw.Flush()
	for _, o := range others {
		fmt.Fprintln(w, o)
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nQUEUE\tPOLLS\tWORK\tIDLE ROUNDS\tSLEEPS\tARM PENDING\tWAKEUPS\tCTL WAKES\t")
	for _, q := range st.Queues {
		for _, k := range q.Workers {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", q.Queue, k.Polls, k.Work, k.IdleRounds, k.Sleeps, k.ArmPending, k.Wakeups, k.CtlWakes)
		}
	}
	tw.Flush()
	switch {
	case st.XDPError != "":
		fmt.Fprintf(w, "xdp: counters unavailable: %s\n", st.XDPError)
	case len(st.XDP) > 0:
		fmt.Fprintf(w, "xdp: %s\n", nonZero(st.XDP, true))
	}
	return nil
}

// rate is (now-before)/dt, or "-" if the counter went back (another
// vhostd answers on the socket now).
func rate(now, before uint64, dt float64) string {
	if now < before {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(now-before)/dt)
}

// otherCounters lists a queue's non-zero counters that have no column.
func otherCounters(v map[string]uint64) string {
	rest := map[string]uint64{}
	for k, n := range v {
		rest[k] = n
	}
	for _, k := range mainCounters {
		delete(rest, k)
	}
	s := nonZero(rest, false)
	if v["tap_gone"] != 0 {
		s = strings.TrimSpace(s + " tap_gone=1 (the host interface queue is gone)")
	}
	return s
}

// nonZero renders counters as "name=value" sorted by name, zeros left out
// unless all is set.
func nonZero(m map[string]uint64, all bool) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 || all {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
