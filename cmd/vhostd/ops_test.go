package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
)

// TestHelp: --help goes to stdout with exit 0 and lists every flag once,
// in groups, with examples, signals and exit codes; no line of the flag
// lists is wider than 80 columns.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		var out, errb bytes.Buffer
		if rc := run([]string{"--tap", "x", arg}, &out, &errb); rc != 0 || errb.Len() != 0 {
			t.Fatalf("%s: exit %d, stderr %q", arg, rc, errb.String())
		}
		text := out.String()
		for _, want := range []string{"Usage:\n", "vhost-user socket:\n", "Operation:\n", "Examples:\n", "Signals:\n", "SIGUSR1", "Exit status:\n", "  2  bad command line"} {
			if !strings.Contains(text, want) {
				t.Fatalf("%s: no %q in\n%s", arg, want, text)
			}
		}
		if strings.Contains(text, "Other options") {
			t.Errorf("a flag is in no help group:\n%s", text[strings.Index(text, "Other options"):])
		}
		checkFlagsListedOnce(t, text)
		for _, line := range strings.Split(text[strings.Index(text, "vhost-user socket:"):strings.Index(text, "Examples:")], "\n") {
			if len(line) > 80 {
				t.Errorf("help line wider than 80 columns: %q", line)
			}
		}
	}
}

// checkFlagsListedOnce checks that every flag parseFlags defines starts
// exactly one line of the help.
func checkFlagsListedOnce(t *testing.T, text string) {
	t.Helper()
	var names []string
	helpFlagSet(t).VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if len(names) < 30 {
		t.Fatalf("only %d flags found", len(names))
	}
	for _, n := range names {
		if c := strings.Count(text, "\n  --"+n+" ") + strings.Count(text, "\n  --"+n+"\n"); c != 1 {
			t.Errorf("--%s is listed %d times", n, c)
		}
	}
}

// helpFlagSet is the flag set parseFlags defines, as --help sees it.
func helpFlagSet(t *testing.T) *flag.FlagSet {
	t.Helper()
	_, err := parseFlags([]string{"--help"}, &bytes.Buffer{})
	h, ok := err.(*helpRequest)
	if !ok {
		t.Fatalf("parseFlags --help: %v", err)
	}
	return h.fs
}

// TestVersion: --version prints the Go version and ignores the other
// arguments, like --print-capabilities.
func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"--version", "--queues", "999"}, &out, &errb); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errb.String())
	}
	if !strings.HasPrefix(out.String(), "vhostd ") || !strings.Contains(out.String(), "go: "+runtime.Version()) {
		t.Fatalf("--version: %q", out.String())
	}
	if l := versionLine(); !strings.HasPrefix(l, "vhostd ") || !strings.HasSuffix(l, runtime.Version()) {
		t.Fatalf("versionLine: %q", l)
	}
}

// TestVersionFromBuildInfo builds the binary with VCS stamping and checks
// that --version reports the commit git reports.
func TestVersionFromBuildInfo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("no git checkout here: %v", err)
	}
	// The go command stamps VCS information only where .git is a
	// directory: not in a linked worktree, whose .git is a file.
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		t.Skip("a linked git worktree: the go command does not stamp VCS information here")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "vhostd")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(head))
	if !strings.Contains(string(out), "revision: "+rev) || !strings.Contains(string(out), "commit time: ") {
		t.Fatalf("--version of a build at %s:\n%s", rev, out)
	}
}

// TestPrintCapabilitiesIgnoresTheRest: --print-capabilities answers
// whatever else the command line holds, even flags vhostd does not know.
func TestPrintCapabilitiesIgnoresTheRest(t *testing.T) {
	for _, args := range [][]string{
		{"--print-capabilities", "--no-such-flag", "stray"},
		{"--socket-path", "s", "-print-capabilities=true", "--tap"},
		{"--help", "--print-capabilities"},
	} {
		var out, errb bytes.Buffer
		if rc := run(args, &out, &errb); rc != 0 || strings.TrimSpace(out.String()) != capabilities || errb.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, rc, out.String(), errb.String())
		}
	}
	for _, args := range [][]string{{"--print-capabilities=false", "--tap", "x"}, {"--tap", "x", "--", "--print-capabilities"}} {
		var out, errb bytes.Buffer
		if rc := run(args, &out, &errb); rc != 2 {
			t.Errorf("%q: exit %d, want 2 (no capabilities asked)", args, rc)
		}
	}
}

// TestOpsFlagErrors: the control and metrics flags name what is wrong.
func TestOpsFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--socket-path", "s", "--tap", "a", "--control-socket", "s"}, `--control-socket "s": that is the vhost-user socket`},
		{[]string{"--socket-path", "s", "--tap", "a", "--metrics-listen", "9100"}, `--metrics-listen "9100": want HOST:PORT`},
		{[]string{"--socket-path", "s", "--tap", "a", "--no-such-flag"}, "vhostd --help lists the options"},
		{[]string{"--socket-path", "s", "--tap", "a", "--log-format", "xml"}, `--log-format "xml": want text or json`},
	} {
		var out, errb bytes.Buffer
		if rc := run(tc.args, &out, &errb); rc != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, rc, errb.String(), tc.want)
		}
	}
}

// TestLogFormatJSON: with --log-format json every log line is a JSON
// object with the level and message.
func TestLogFormatJSON(t *testing.T) {
	var out, errb bytes.Buffer
	rc := run([]string{"--socket-path", filepath.Join(t.TempDir(), "s"), "--macvtap", "vhc-none-" + testutil.Suffix(4), "--log-format", "json"}, &out, &errb)
	if rc != 1 {
		t.Fatalf("exit %d, want 1 (no such macvtap): %s", rc, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["@level"] == nil || m["@message"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", l, err)
		}
	}
	if !strings.Contains(lines[len(lines)-1], `"cannot open the host interface"`) {
		t.Fatalf("last line: %q", lines[len(lines)-1])
	}
}

// TestControlPath: next to the vhost-user socket by default, off with
// --fd unless given, off when given empty.
func TestControlPath(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--socket-path", "/run/v/s", "--tap", "a"}, "/run/v/s.ctl"},
		{[]string{"--socket-path", "/run/v/s", "--client", "--tap", "a"}, "/run/v/s.ctl"},
		{[]string{"--socket-path", "/run/v/s", "--tap", "a", "--control-socket", ""}, ""},
		{[]string{"--socket-path", "/run/v/s", "--tap", "a", "--control-socket", "/run/c"}, "/run/c"},
		{[]string{"--fd", "3", "--tap", "a"}, ""},
		{[]string{"--fd", "3", "--tap", "a", "--control-socket", "/run/c"}, "/run/c"},
	} {
		o, err := parseFlags(tc.args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := o.ops.controlPath(o); got != tc.want {
			t.Errorf("%q: control socket %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestControlSocketFailure: a --control-socket that cannot be created
// stops vhostd with exit 1 naming it, before the vhost-user socket exists;
// the default one only warns.
func TestControlSocketFailure(t *testing.T) {
	privtest.Require(t)
	dir := t.TempDir()
	sock, bad := filepath.Join(dir, "s"), filepath.Join(dir, "no-such-dir", "c.ctl")
	var out, errb bytes.Buffer
	rc := run([]string{"--socket-path", sock, "--tap", "vhc" + testutil.Suffix(8), "--control-socket", bad}, &out, &errb)
	if rc != 1 || !strings.Contains(errb.String(), bad) {
		t.Fatalf("exit %d, stderr:\n%s", rc, errb.String())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("vhost-user socket created: %v", err)
	}
}
