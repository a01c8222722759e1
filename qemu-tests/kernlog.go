package qemutests

import (
	"regexp"
	"strings"
)

// kernelErrorRE matches a guest kernel line that means the virtqueues or the NIC went wrong.
// Each alternative is a message of the guest's 6.1 virtio_ring.c, virtio_net.c or
// net/sched/sch_generic.c (TestKernelErrorsMatch holds an example of each):
//   - BAD_RING in virtio_ring.c prints "virtio_net virtio0: input.0:id 149 is not a head!"
//     (a used id the driver never handed out, or handed out and got back already: issue 12),
//     "...:id N out of range", "...:used len N is larger than...", "...:vq N is broken"; any
//     line that starts with the device and a data queue's name ("virtio0: input.0:") is one.
//   - virtio_net's start_xmit: "Unexpected TXQ (0) queue failure: -28"; its tx_timeout:
//     "TX timeout on queue: 0, sq: output.0, ...".
//   - the TX watchdog: "NETDEV WATCHDOG: eth0 (virtio_net): transmit queue 0 timed out" and
//     the WARNING that carries it ("WARNING: CPU: 0 PID: 0 at net/sched/sch_generic.c...").
//   - anything else from virtio_net, or about a vring or virtqueue, that says error, bad,
//     broken or fail.
//   - an oops, soft lockup or WARN whose instruction pointer is in virtio_net or virtio_ring
//     ("RIP: 0010:virtnet_poll+0xf7/0x4e4 [virtio_net]"): a driver stuck in a loop on what
//     the rings hold.
//   - any oops, panic or memory corruption report ("general protection fault", "BUG: unable
//     to handle", "Bad page state", "list_add corruption"): a back-end that writes a frame
//     into a buffer the guest has taken back (a head used twice) corrupts whatever the guest
//     keeps there next, and the crash shows up far from virtio (kmem_cache_alloc_node).
var kernelErrorRE = regexp.MustCompile(strings.Join([]string{
	`is not a head`,
	`\bid \d+ out of range`,
	`virtio\d+: (input|output)\.\d+:`,
	`used len \d+ is larger`,
	`Unexpected TXQ`,
	`(?i)\btx timeout\b`,
	`(?i)(input|output)\.\d+.*time(d )?out`,
	`NETDEV WATCHDOG`,
	`transmit queue \d+ timed out`,
	`WARNING: CPU: \d+ PID: \d+ at (drivers/(virtio|net)/|net/)`,
	`(?i)virtio_net.*\b(error|bad|broken|fail)`,
	`(?i)(vring|virtqueue).*\b(error|bad|broken|fail)`,
	`RIP: \w+:(virtnet|virtqueue|vring|virtio)\w*\+`,
	`general protection fault|BUG: unable to handle|kernel BUG at|\bOops\b|Kernel panic|Bad page state|(list_add|list_del) corruption`,
}, "|"))

// KernelErrors returns the lines of the guest's serial log that report virtqueue or NIC
// errors (kernelErrorRE), each once, in the order they first appear. Lines the harness
// prints itself ("VHOSTD: ..." markers) never count.
func KernelErrors(log string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range strings.Split(log, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "VHOSTD: ") || !kernelErrorRE.MatchString(l) {
			continue
		}
		// The same message comes twice when the console shows it live and a dmesg dump
		// repeats it: compare without the "[   12.345678] " time stamp.
		key := l
		if i := strings.Index(l, "] "); strings.HasPrefix(l, "[") && i > 0 {
			key = l[i+2:]
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, l)
		}
	}
	return out
}
