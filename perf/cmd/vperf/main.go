// Command vperf is the perf harness and the processes it starts.
//
//	vperf run [--smoke] [--out DIR] ...   the scenario matrix: RESULTS.md, results.json, plots
//	vperf fe --socket S --mode tx|rx|ping|idle ...   the Go front-end (a guest)
//	vperf rawtx|rawrx --tap T --size N     the raw TAP write and read loops (limits)
//	vperf inject --tap T --size N          the guest-RX source
//	vperf xdpsink --tap T                  xdptap's count-and-drop on T until SIGTERM
//
// Every child prints one JSON line with its counters on stdout when it
// stops (SIGTERM or --duration).
package main

import (
	"fmt"
	"os"

	"github.com/vhostd/vhostd/perf/internal/harness"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vperf run|fe|rawtx|rawrx|inject [flags]")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		err = harness.Main(args)
	case "fe":
		err = feMain(args)
	case "rawtx", "rawrx":
		err = rawMain(cmd, args)
	case "inject":
		err = injectMain(args)
	case "xdpsink":
		err = xdpSinkMain(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vperf:", err)
		os.Exit(1)
	}
}
