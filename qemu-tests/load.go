package qemutests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Load: traffic in both directions at the rate the guest manages, for lifecycle events
// (QMP stop/cont, vhostd restarts, reboots) that happen in the middle of it.
//
//   - host -> guest: the host's flood ping (iputils "ping -f"), Flood;
//   - guest -> host: qemu-tests/blast in the guest, UDP datagrams as fast as the guest can
//     send them, to a UDPSink on the host that counts them.
//
// The guest runs LoadScript: it starts blast, prints its eth0 counters every second (STAT
// lines) and takes commands from the host on TCP port 5000 (Bed.Control).

var blastBin struct {
	once sync.Once
	data []byte
	err  error
}

// BlastBinary builds qemu-tests/blast (static, CGO_ENABLED=0) once per test binary and
// returns it, for the guest's /bin/blast.
func BlastBinary(t testing.TB) []byte {
	t.Helper()
	blastBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "vhostd-blast-")
		if err != nil {
			blastBin.err = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "blast")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", path, "github.com/vhostd/vhostd/qemu-tests/blast")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			blastBin.err = fmt.Errorf("go build ./qemu-tests/blast: %w\n%s", err, out)
			return
		}
		blastBin.data, blastBin.err = os.ReadFile(path)
	})
	if blastBin.err != nil {
		t.Fatalf("%v", blastBin.err)
	}
	return blastBin.data
}

// CtlPort is where LoadScript's guest listens for the host's commands (Bed.Control).
const CtlPort = 5000

// LoadScript is the guest's half of the load, for a sink on UDP port sinkPort of the host:
//
//	RING rx=256 tx=256                   eth0's ring sizes (ethtool -g)
//	LOAD started                         blast runs; STAT lines follow every second
//	STAT t=.. carrier=1 rx_packets=.. tx_packets=.. rx_errors=.. rx_length_errors=..
//	     rx_dropped=.. tx_errors=.. tx_dropped=.. mem_kb=..   (eth0's counters, MemTotal)
//	CTL listen n=N                       waiting for the host's N-th command on port 5000
//	CTL got=CMD n=N                      ... and got CMD:
//	  klog        KLOG BEGIN n=N, the kernel log since the last dump (dmesg -c), KLOG END n=N
//	  reboot      reboot -f (the next boot runs the script again from the start)
//	  sysrq-reboot  echo b >/proc/sysrq-trigger: reboot at once, without the kernel's device
//	              shutdown (see TestLifecycleUnderLoad's reboot step for why)
//	  expectdown  wait for eth0's carrier to go (vhostd is about to exit), then ping the host
//	              3 times: "TERM lost rcv=N carrier=C", and end
//	  end         end
//	BLAST sent=N errors=M                at the end: what blast sent
//	KLOG BEGIN n=end ... KLOG END n=end  the kernel log since the last dump
//
// The script first raises the console log level to 8 (dmesg -n 8): the default "quiet" shows
// only errors, and virtio_net's warnings ("Unexpected TXQ", the TX watchdog) would not reach
// the console. Kernel messages then appear on the serial console as they happen, and
// KernelErrors finds them there even when the guest cannot be reached for a dump.
func LoadScript(sinkPort int) string {
	return `dmesg -n 8
pingcheck $HIP || exit 1
E=/sys/class/net/eth0
stat() {
	read t _ </proc/uptime
	read c <$E/carrier
	read rp <$E/statistics/rx_packets
	read tp <$E/statistics/tx_packets
	read re <$E/statistics/rx_errors
	read rl <$E/statistics/rx_length_errors
	read rd <$E/statistics/rx_dropped
	read te <$E/statistics/tx_errors
	read td <$E/statistics/tx_dropped
	read _ mk _ </proc/meminfo
	echo "STAT t=$t carrier=$c rx_packets=$rp tx_packets=$tp rx_errors=$re rx_length_errors=$rl rx_dropped=$rd tx_errors=$te tx_dropped=$td mem_kb=$mk"
}
klog() {
	echo "KLOG BEGIN n=$1"
	dmesg -c
	echo "KLOG END n=$1"
}
ethtool -g eth0 2>/dev/null | awk '/^Current/{c=1} c&&/^RX:/{r=$2} c&&/^TX:/{x=$2} END{print "RING rx=" r " tx=" x}'
/bin/blast $HIP ` + strconv.Itoa(sinkPort) + ` >/tmp/blast.out 2>&1 &
bp=$!
(while :; do stat; sleep 1; done) &
sp=$!
echo "LOAD started"
n=0
while :; do
	n=$((n + 1))
	echo "CTL listen n=$n"
	c=$(nc -l -p ` + strconv.Itoa(CtlPort) + ` </dev/null)
	echo "CTL got=$c n=$n"
	case "$c" in
	klog) klog $n ;;
	reboot) reboot -f; sleep 60 ;;
	sysrq-reboot) echo b >/proc/sysrq-trigger; sleep 60 ;;
	expectdown)
		k=0
		while [ "$(cat $E/carrier 2>/dev/null)" = 1 ] && [ $k -lt 600 ]; do k=$((k + 1)); sleep 0.1; done
		c=$(cat $E/carrier 2>/dev/null)
		ping -c 3 -W 1 $HIP >/tmp/p 2>&1
		echo "TERM lost rcv=$(awk '/packets received/{print $4}' /tmp/p) carrier=$c"
		ip link show eth0
		break ;;
	end) break ;;
	esac
done
kill $sp $bp
wait $bp
cat /tmp/blast.out
stat
klog end
`
}

// LoadFiles adds what LoadScript needs to files: /bin/blast.
func LoadFiles(t testing.TB, files map[string][]byte) map[string][]byte {
	t.Helper()
	f := map[string][]byte{}
	for k, v := range files {
		f[k] = v
	}
	f["bin/blast"] = BlastBinary(t)
	return f
}

// StartLoadBed is StartBed for a guest that runs LoadScript (c.Guest.Script is replaced) and
// blasts to a new UDPSink; it returns once the guest has pinged the host and started the
// load.
func StartLoadBed(t *testing.T, c BedConfig) (*Bed, *UDPSink) {
	t.Helper()
	Gate(t)
	sink := NewUDPSink(t)
	c.Guest.Script = LoadScript(sink.Port)
	c.Guest.Files = LoadFiles(t, c.Guest.Files)
	b := StartBed(t, c)
	b.ctl = true
	b.GuestPinged(0)
	b.WaitLine(`(?m)^LOAD started\n`, 0)
	return b, sink
}

// UDPSink counts the datagrams blast sends from the guest. It listens on every address of
// this namespace (so it outlives a TAP that vhostd deletes and creates again) on a port of
// its own, and is closed at cleanup.
type UDPSink struct {
	Port  int
	conn  *net.UDPConn
	count atomic.Uint64
	bytes atomic.Uint64
}

// NewUDPSink starts a sink on a free UDP port.
func NewUDPSink(t testing.TB) *UDPSink {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatalf("udp sink: %v", err)
	}
	c.SetReadBuffer(4 << 20)
	s := &UDPSink{Port: c.LocalAddr().(*net.UDPAddr).Port, conn: c}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			s.count.Add(1)
			s.bytes.Add(uint64(n))
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return s
}

// Count is the number of datagrams received so far.
func (s *UDPSink) Count() uint64 { return s.count.Load() }

// WaitCount waits until at least n datagrams have arrived in all, or ctx ends, and returns
// the count.
func (s *UDPSink) WaitCount(ctx context.Context, n uint64) uint64 {
	for {
		c := s.Count()
		if c >= n {
			return c
		}
		select {
		case <-ctx.Done():
			return c
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PingResult is what a host ping printed.
type PingResult struct {
	Sent, Received int
	Took           time.Duration
	Out            string
	Err            error
}

func (r PingResult) String() string {
	return fmt.Sprintf("%d/%d replies in %.1f s", r.Received, r.Sent, r.Took.Seconds())
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`)

func parsePing(out []byte, err error, took time.Duration) PingResult {
	r := PingResult{Took: took, Out: string(out), Err: err}
	if m := pingSummary.FindSubmatch(out); m != nil {
		r.Sent, _ = strconv.Atoi(string(m[1]))
		r.Received, _ = strconv.Atoi(string(m[2]))
	}
	return r
}

// pingCmd is ping(8) with args against the guest, from the host's end (in Netns when set).
func (b *Bed) pingCmd(ctx context.Context, args ...string) *exec.Cmd {
	argv := append([]string{"ping"}, args...)
	argv = append(argv, b.Net.GuestIP())
	if b.Netns != "" {
		argv = append([]string{"ip", "netns", "exec", b.Netns}, argv...)
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// HostPings pings the guest from the host's end with args (count, interval, ...) and
// returns the summary; it does not judge it.
func (b *Bed) HostPings(ctx context.Context, args ...string) PingResult {
	start := time.Now()
	out, err := b.pingCmd(ctx, args...).CombinedOutput()
	return parsePing(out, err, time.Since(start))
}

// WaitReachable pings the guest from the host once a second until a reply comes or d has
// passed, and returns how long it took.
func (b *Bed) WaitReachable(d time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, d)
	defer cancel()
	start := time.Now()
	for {
		r := b.HostPings(ctx, "-c", "1", "-W", "1")
		if r.Received == 1 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("the guest did not answer a ping for %v: %s", d, strings.TrimSpace(r.Out))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Flood is a host flood ping of the guest (ping -f) running in the background.
type Flood struct {
	cmd   *exec.Cmd
	out   bytes.Buffer
	start time.Time
	done  chan struct{}
	err   error
}

// StartFlood starts "ping -f -q -c count -w deadline GUEST" on the host's end. It ends by
// itself, or on Stop; it is killed at cleanup.
func (b *Bed) StartFlood(count int, deadline time.Duration) *Flood {
	b.T.Helper()
	f := &Flood{done: make(chan struct{}), start: time.Now()}
	f.cmd = b.pingCmd(context.Background(), "-f", "-q", "-c", strconv.Itoa(count), "-w", strconv.Itoa(int(deadline.Seconds())))
	f.cmd.Stdout = &f.out
	f.cmd.Stderr = &f.out
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := f.cmd.Start(); err != nil {
		b.T.Fatalf("flood ping: %v", err)
	}
	go func() {
		f.err = f.cmd.Wait()
		close(f.done)
	}()
	b.T.Cleanup(func() {
		f.cmd.Process.Kill()
		<-f.done
	})
	return f
}

// Stop ends the flood with SIGINT (ping prints its summary) unless it has ended, and returns
// the summary.
func (f *Flood) Stop() PingResult {
	select {
	case <-f.done:
	default:
		f.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			f.cmd.Process.Kill()
			<-f.done
		}
	}
	return parsePing(f.out.Bytes(), f.err, time.Since(f.start))
}

// Wait waits for the flood to end by itself (count or deadline) and returns the summary.
func (f *Flood) Wait(ctx context.Context) PingResult {
	select {
	case <-f.done:
		return parsePing(f.out.Bytes(), f.err, time.Since(f.start))
	case <-ctx.Done():
		return f.Stop()
	}
}

// Control sends cmd to LoadScript's control loop and waits, up to d in all, until the guest
// says it got it. It returns the serial log offset just after that line.
func (b *Bed) Control(cmd string, d time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, d)
	defer cancel()
	from := len(b.Guest.Log())
	c, err := b.dialCtx(ctx, net.JoinHostPort(b.Net.GuestIP(), strconv.Itoa(CtlPort)))
	if err != nil {
		return 0, fmt.Errorf("guest control %q: %w", cmd, err)
	}
	c.SetDeadline(time.Now().Add(d))
	_, err = io.WriteString(c, cmd+"\n")
	if err == nil {
		err = c.(*net.TCPConn).CloseWrite()
	}
	c.Close()
	if err != nil {
		return 0, fmt.Errorf("guest control %q: %w", cmd, err)
	}
	re := regexp.MustCompile(`(?m)^CTL got=` + regexp.QuoteMeta(cmd) + ` n=\d+\n`)
	if _, err := b.Guest.WaitForFrom(ctx, re, from); err != nil {
		return 0, fmt.Errorf("guest control %q: %w", cmd, err)
	}
	loc := re.FindStringIndex(b.Guest.Log()[from:])
	return from + loc[1], nil
}

// KernelLog has the guest dump its kernel log since the last dump (LoadScript's "klog") and
// waits for the end of the dump, up to d in all.
func (b *Bed) KernelLog(d time.Duration) error {
	start := time.Now()
	from, err := b.Control("klog", d)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(b.Ctx, max(d-time.Since(start), time.Second))
	defer cancel()
	if _, err := b.Guest.WaitForFrom(ctx, regexp.MustCompile(`(?m)^KLOG END n=\d+\n`), from); err != nil {
		return err
	}
	b.klogs++
	return nil
}

// AssertGuestKernelClean fails the test if the guest's kernel has logged a virtqueue or NIC
// error (KernelErrors) since the last check, and prints the offending lines; step names what
// just happened. When the guest runs LoadScript (StartLoadBed) it first asks for a dmesg dump; a guest that cannot be reached is still checked on its console,
// where LoadScript makes the kernel print everything. It returns the number of new lines.
func (b *Bed) AssertGuestKernelClean(step string) int {
	b.T.Helper()
	return b.assertKernelClean(step, 30*time.Second)
}

// assertKernelClean is AssertGuestKernelClean waiting at most dump for the dmesg dump.
func (b *Bed) assertKernelClean(step string, dump time.Duration) int {
	b.T.Helper()
	if b.ctl {
		if err := b.KernelLog(dump); err != nil {
			b.T.Logf("%s: no kernel log dump from the guest (%v): checking its console output alone", step, err)
		}
	}
	errs := KernelErrors(b.Guest.Log())
	fresh := errs[min(b.kerrs, len(errs)):]
	b.kerrs = len(errs)
	if len(fresh) > 0 {
		b.T.Errorf("%s: the guest kernel logged %d virtqueue/NIC error line(s):\n\t%s", step, len(fresh), strings.Join(fresh, "\n\t"))
	} else {
		b.T.Logf("%s: guest kernel log clean (0 virtqueue/NIC error lines)", step)
	}
	return len(fresh)
}

var statLine = regexp.MustCompile(`(?m)^STAT (t=.*)\n`)

// GuestStat returns the last STAT line LoadScript printed after offset from, parsed, and
// the line itself; nil if there is none.
func (b *Bed) GuestStat(from int) (map[string]uint64, string) {
	log := b.Guest.Log()
	ms := statLine.FindAllStringSubmatch(log[min(from, len(log)):], -1)
	if ms == nil {
		return nil, ""
	}
	line := ms[len(ms)-1][1]
	st := map[string]uint64{}
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			st[k] = n
		}
	}
	return st, line
}

// WaitGuestStat waits up to d for a STAT line after offset from for which ok holds, and
// returns it.
func (b *Bed) WaitGuestStat(from int, d time.Duration, ok func(map[string]uint64) bool) (map[string]uint64, string, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, d)
	defer cancel()
	for {
		log := b.Guest.Log()
		for _, m := range statLine.FindAllStringSubmatch(log[min(from, len(log)):], -1) {
			st := map[string]uint64{}
			for _, kv := range strings.Fields(m[1]) {
				k, v, _ := strings.Cut(kv, "=")
				if n, err := strconv.ParseUint(v, 10, 64); err == nil {
					st[k] = n
				}
			}
			if ok(st) {
				return st, m[1], nil
			}
		}
		if _, err := b.Guest.WaitForFrom(ctx, statLine, len(log)); err != nil {
			return nil, "", err
		}
	}
}
