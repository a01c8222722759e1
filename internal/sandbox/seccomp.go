package sandbox

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// SeccompMode is what the allow-list does with a call outside it.
type SeccompMode int

// The --seccomp modes.
const (
	SeccompKill SeccompMode = iota // the process dies with SIGSYS (SECCOMP_RET_KILL_PROCESS)
	SeccompLog                     // the call proceeds and the kernel logs it (SECCOMP_RET_LOG)
	SeccompOff                     // no filter
)

// ParseSeccompMode parses --seccomp.
func ParseSeccompMode(s string) (SeccompMode, error) {
	switch s {
	case "kill":
		return SeccompKill, nil
	case "log":
		return SeccompLog, nil
	case "off":
		return SeccompOff, nil
	}
	return 0, fmt.Errorf("--seccomp %q: want kill, log or off", s)
}

func (m SeccompMode) String() string {
	return [...]string{"kill", "log", "off"}[m]
}

// allowed is every system call vhostd makes after setup, on any thread,
// found by reading the code and measured: every qemu-tests scenario run
// with --seccomp log leaves no audit line, and strace -f -c on vhostd
// serving TestPing counts 37 distinct calls, all below. Names an
// architecture lacks (epoll_wait on arm64) are skipped there.
var allowed = []string{
	// Go runtime (and glibc's thread start with cgo): memory, threads,
	// scheduling, signals, timers (--cpuprofile).
	"mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "mincore",
	"exit", "exit_group", "futex", "set_robust_list", "rseq",
	"sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep",
	"clock_gettime", "gettimeofday", "gettid", "getpid", "tgkill", "tkill",
	"getuid", "geteuid", "getgid", "getegid",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
	"timer_create", "timer_settime", "timer_delete", "setitimer", "getrandom",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
	"eventfd2", "pipe2", "fcntl", "prlimit64", "uname", "membarrier",
	// File descriptors: vhost-user messages, eventfds, TAP queues (readv,
	// writev, poll, preadv2 RWF_NOWAIT on shared eventfds: internal/rawio),
	// the TAP ioctls (TUNSETOFFLOAD, TUNGETIFF, SIOCSIFMTU, SIOCGIF*),
	// region fds (fstat, fstatfs).
	"read", "write", "readv", "writev", "pread64", "preadv2", "close",
	"poll", "fstat", "newfstatat", "statx", "fstatfs", "ioctl",
	// The vhost-user socket: accept, --client dials (socket below),
	// SO_PEERCRED, the fd passing.
	"accept4", "connect", "getsockopt", "getsockname", "getpeername", "recvmsg", "sendmsg",
	// Workers pin themselves when a ring starts (--cpus).
	"sched_setaffinity",
	// Files: the sockets removed at exit, the XDP ACL re-read on SIGHUP,
	// /proc/self/fd/N read to check that kick/call/err fds are eventfds.
	"openat", "unlinkat", "readlinkat",
	// The control socket and --metrics-listen (TCP_NODELAY and keepalive
	// on each accepted TCP connection).
	"setsockopt",
	// XDP map reads and updates (counters, ACL, switch ports).
	"bpf",
}

// uringCalls are the io_uring calls, allowed only when TX frames go to the
// TAP through io_uring (netdev --tap-write uring): io_uring_enter on the
// data path, setup and register when a reattached TAP gets its rings.
var uringCalls = []string{"io_uring_enter", "io_uring_setup", "io_uring_register"}

// installSeccomp loads the allow-list on every thread, with uringCalls
// when uring. Calls outside it kill the process (SeccompKill) or are
// logged (SeccompLog).
func installSeccomp(m SeccompMode, uring bool) error {
	if m == SeccompOff {
		return nil
	}
	p, err := policy(m, uring)
	if err != nil {
		return err
	}
	f := seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: p}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("sandbox: seccomp: %w", err)
	}
	return nil
}

// policy builds the allow-list for this architecture.
func policy(m SeccompMode, uring bool) (seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Policy{}, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	list := allowed
	if uring {
		list = append(list[:len(list):len(list)], uringCalls...)
	}
	var names []string
	for _, n := range list {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	def := seccomp.ActionKillProcess
	if m == SeccompLog {
		def = seccomp.ActionLog
	}
	return seccomp.Policy{
		DefaultAction: def,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionAllow, Names: names, NamesWithCondtions: []seccomp.NameWithConditions{
				// Threads, never new namespaces (a user namespace would
				// hand back every capability inside it).
				{Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsNotSet, Value: nsFlags}}},
				// Only unix sockets: --client dials the front-end. No
				// netlink, which with CAP_NET_ADMIN reconfigures the host.
				{Name: "socket", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: unix.AF_UNIX}}},
			}},
			// clone3's flags are in memory the filter cannot read: ENOSYS
			// makes glibc's pthread_create (cgo) fall back to clone.
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
		},
	}, nil
}

// nsFlags are clone's namespace flags.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
