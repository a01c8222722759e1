package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const helpIntro = `vhostd is a vhost-user virtio-net back-end. QEMU (or another vhost-user
front-end) hands it a guest NIC's queues over a unix socket; vhostd moves
the frames between them and a host TAP or macvtap interface.

Usage:
  vhostd --socket-path PATH (--tap NAME | --macvtap NAME) [options]
  vhostd --fd N (--tap NAME | --macvtap NAME) [options]
  vhostd ctl [--control-socket PATH | --socket-path PATH] status|stats|metrics [--watch]
  vhostd ctl [--control-socket PATH | --socket-path PATH] pcap [start FILE | stop]
  vhostd --print-capabilities | --version | --help
`

// helpGroups sorts the flags for --help; a flag in no group is listed
// under "Other options", so none is ever left out.
var helpGroups = []struct {
	title string
	flags []string
}{
	{"vhost-user socket", []string{"socket-path", "client", "reconnect", "fd"}},
	{"Host interface", []string{"tap", "macvtap", "mtu", "mac"}},
	{"Device", []string{"queues", "no-csum", "no-tso", "no-ufo", "no-uso", "no-mrg-rxbuf", "no-event-idx", "no-indirect", "config-space"}},
	{"Workers", []string{"busy-poll", "threads", "tap-write", "cpus"}},
	{"XDP", []string{"xdp", "xdp-guard-addrs", "xdp-acl", "xdp-object", "xdp-program", "xdp-attach", "xdp-switch-pin"}},
	{"Security", []string{"runas", "seccomp", "socket-mode", "socket-group", "allow-uid", "allow-gid"}},
	{"Capture", []string{"pcap", "pcap-snaplen"}},
	{"Operation", []string{"control-socket", "metrics-listen", "stats-interval", "log-level", "log-format", "shutdown-timeout", "cpuprofile", "print-capabilities", "version"}},
}

const helpTail = `
Examples:
  Listen for QEMU and bridge to a TAP vhostd creates:
    vhostd --socket-path /run/vhostd/vm1.sock --tap vm1tap --queues 2
    qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=2G,share=on \
      -numa node,memdev=mem -chardev socket,id=c0,path=/run/vhostd/vm1.sock \
      -netdev vhost-user,id=n0,chardev=c0,queues=2 -device virtio-net-pci,netdev=n0,mq=on
  The same on two workers pinned to CPUs 2 and 3, spinning 100us before sleeping:
    vhostd --socket-path /run/vhostd/vm1.sock --tap vm1tap --queues 2 --busy-poll 100 --cpus 2-3
  QEMU listens (server=on), vhostd connects and reconnects after a restart:
    vhostd --client --socket-path /run/qemu/vm1-net0.sock --tap vm1tap
  Watch it:
    vhostd ctl --socket-path /run/vhostd/vm1.sock stats --watch
    curl --unix-socket /run/vhostd/vm1.sock.ctl http://vhostd/metrics
  Capture the guest's frames, with those vhostd or the XDP guard dropped and why
  (pcapng: one interface per queue and direction, comments decode the
  virtio-net header and name the drop counter; open it with wireshark or tshark):
    vhostd ctl --socket-path /run/vhostd/vm1.sock pcap start vm1.pcapng
    vhostd ctl --socket-path /run/vhostd/vm1.sock pcap stop

Signals:
  SIGTERM, SIGINT  stop: wind the connection down (at most --shutdown-timeout),
                   print the counters, remove the socket and a TAP vhostd created
  SIGUSR1          print the per-queue counters to stderr
  SIGHUP           re-read the --xdp-acl file

Exit status:
  0  stopped by a signal, or the front-end closed an inherited connected --fd;
     also --help, --version and --print-capabilities
  1  could not start (host interface, socket, XDP program: the log says which)
     or serving failed
  2  bad command line
`

// helpArgs name the flags' arguments (the flag package would say
// "string" or "int").
var helpArgs = map[string]string{
	"socket-path": "PATH", "fd": "N", "tap": "NAME", "macvtap": "NAME", "mtu": "BYTES", "mac": "ADDR",
	"queues": "N", "busy-poll": "USEC", "threads": "MODE", "tap-write": "MODE", "cpus": "LIST", "xdp": "PROGRAM",
	"xdp-guard-addrs": "ADDRS", "xdp-acl": "FILE", "xdp-object": "FILE", "xdp-program": "NAME",
	"xdp-attach": "MODE", "xdp-switch-pin": "PATH", "control-socket": "PATH", "metrics-listen": "ADDR",
	"stats-interval": "DURATION", "log-level": "LEVEL", "log-format": "FORMAT", "shutdown-timeout": "DURATION",
	"cpuprofile": "FILE", "reconnect": "DURATION", "pcap": "FILE", "pcap-snaplen": "BYTES",
}

// helpRequest is what parseFlags returns for -h/--help: run prints the
// help for its flag set on stdout and exits 0.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string        { return flag.ErrHelp.Error() }
func (h *helpRequest) Is(target error) bool { return target == flag.ErrHelp }

// parseError turns fs.Parse's error into parseFlags's: a help request
// carries the flag set.
func parseError(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return &helpRequest{fs: fs}
	}
	return fmt.Errorf("%w (vhostd --help lists the options)", err)
}

// answerFlags handles what parseFlags returned when it is the whole
// answer: --print-capabilities (whatever else args hold, as the back-end
// program conventions ask), a bad command line (exit 2), --help or
// --version (exit 0).
func answerFlags(args []string, o *options, err error, stdout, stderr io.Writer) (rc int, done bool) {
	var help *helpRequest
	switch {
	case asksCapabilities(args):
		fmt.Fprintln(stdout, capabilities)
		return 0, true
	case errors.As(err, &help):
		writeHelp(stdout, help.fs)
		return 0, true
	case err != nil:
		fmt.Fprintln(stderr, "vhostd:", err)
		return 2, true
	case o.ops.version:
		writeVersion(stdout)
		return 0, true
	}
	return 0, false
}

// asksCapabilities reports whether args (up to a "--") hold
// -print-capabilities or --print-capabilities, or one =true.
func asksCapabilities(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "print-capabilities" {
			continue
		}
		if on, err := strconv.ParseBool(val); !hasVal || (err == nil && on) {
			return true
		}
	}
	return false
}

// writeHelp writes the --help text for fs's flags.
func writeHelp(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	b.WriteString(helpIntro)
	for _, g := range helpFlagGroups(fs) {
		writeFlagGroup(&b, g.title, g.flags)
	}
	b.WriteString(helpTail)
	io.WriteString(w, b.String())
}

type flagGroup struct {
	title string
	flags []*flag.Flag
}

// helpFlagGroups sorts fs's flags into helpGroups, the ones in none last
// under "Other options".
func helpFlagGroups(fs *flag.FlagSet) []flagGroup {
	var out []flagGroup
	listed := map[string]bool{}
	for _, g := range helpGroups {
		fg := flagGroup{title: g.title}
		for _, name := range g.flags {
			if f := fs.Lookup(name); f != nil {
				fg.flags = append(fg.flags, f)
				listed[name] = true
			}
		}
		out = append(out, fg)
	}
	other := flagGroup{title: "Other options"}
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] {
			other.flags = append(other.flags, f)
		}
	})
	return append(out, other)
}

// flagHelp returns a flag's argument name and its usage with the default.
func flagHelp(f *flag.Flag) (arg, usage string) {
	arg, usage = flag.UnquoteUsage(f)
	if a, ok := helpArgs[f.Name]; ok {
		arg = a
	}
	if d := f.DefValue; d != "" && d != "0" && d != "-1" && d != "false" && d != "0s" {
		usage += fmt.Sprintf(" (default %s)", d)
	}
	return strings.ToUpper(arg), usage
}

// writeFlagGroup lists flags as "  --name ARG  usage (default x)", the
// usage wrapped to 80 columns under its own indent.
func writeFlagGroup(b *strings.Builder, title string, fl []*flag.Flag) {
	if len(fl) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s:\n", title)
	const indent = 26
	for _, f := range fl {
		arg, usage := flagHelp(f)
		head := "  --" + f.Name
		if arg != "" {
			head += " " + arg
		}
		b.WriteString(head)
		col := len(head)
		if col >= indent-1 {
			col = 80 // the usage starts on the next line
		}
		for _, word := range strings.Fields(usage) {
			if col+1+len(word) > 80 {
				b.WriteString("\n")
				col = 0
			}
			if col < indent {
				b.WriteString(strings.Repeat(" ", indent-col))
				col = indent
			} else {
				b.WriteString(" ")
				col++
			}
			b.WriteString(word)
			col += len(word)
		}
		b.WriteString("\n")
	}
}
