package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestPrintCapabilities(t *testing.T) {
	var out, errb bytes.Buffer
	// Other options are ignored, as the conventions ask.
	if rc := run([]string{"--print-capabilities", "--queues", "999"}, &out, &errb); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errb.String())
	}
	var caps struct {
		Type     string   `json:"type"`
		Features []string `json:"features"`
	}
	if err := json.Unmarshal(out.Bytes(), &caps); err != nil {
		t.Fatalf("not JSON: %q: %v", out.String(), err)
	}
	if caps.Type != "net" {
		t.Fatalf("type %q, want net", caps.Type)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tap", "t0"}, "one of --socket-path or --fd"},
		{[]string{"--socket-path", "s", "--fd", "3", "--tap", "t0"}, "incompatible"},
		{[]string{"--client", "--fd", "3", "--tap", "t0"}, "--client needs --socket-path"},
		{[]string{"--socket-path", "s"}, "one of --tap or --macvtap"},
		{[]string{"--socket-path", "s", "--tap", "a", "--macvtap", "b"}, "incompatible"},
		{[]string{"--socket-path", "s", "--tap", "a", "--busy-poll", "-5"}, "--busy-poll"},
		{[]string{"--socket-path", "s", "--tap", "a", "--log-level", "loud"}, "--log-level"},
		{[]string{"--socket-path", "s", "--tap", "a", "--queues", "0"}, "queue pairs"},
		{[]string{"--socket-path", "s", "--tap", "a", "--mtu", "20"}, "mtu"},
		{[]string{"--socket-path", "s", "--tap", "a", "--mac", "zz"}, "--mac"},
		{[]string{"--socket-path", "s", "--tap", "a", "--cpus", "1-0"}, "--cpus"},
		{[]string{"--socket-path", "s", "--tap", "a", "extra"}, "unexpected arguments"},
		{[]string{"--socket-path", "s", "--tap", "a", "--threads", "many"}, `--threads "many": unknown mode`},
		{[]string{"--socket-path", "s", "--tap", "a", "--tap-write", "io_uring"}, `--tap-write "io_uring"`},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp", "bogus"}, "--xdp"},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp", "guard"}, "needs the guest's MAC"},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp", "guard", "--mac", "52:54:00:00:00:01", "--xdp-guard-addrs", "nonsense"}, "--xdp-guard-addrs"},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp", "count", "--xdp-acl", "f"}, "belong to --xdp guard"},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp-program", "p"}, "needs --xdp-object"},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp", "count", "--xdp-object", "o.elf"}, "incompatible"},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp-acl", "f"}, "need an --xdp program"},
		{[]string{"--socket-path", "s", "--tap", "a", "--xdp", "count", "--xdp-attach", "maybe"}, "--xdp-attach"},
	} {
		var out, errb bytes.Buffer
		rc := run(tc.args, &out, &errb)
		if rc != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, rc, errb.String(), tc.want)
		}
	}
}

// TestThreadsFlagDeprecated: --threads stays accepted for existing unit
// files and libvirt configs. inline, the only mode, is a no-op; split,
// removed, fails at start naming the flag, the value and why; the help
// says the flag is deprecated.
func TestThreadsFlagDeprecated(t *testing.T) {
	base := []string{"--socket-path", "s", "--tap", "a"}
	if _, err := parseFlags(append(base, "--threads", "inline"), io.Discard); err != nil {
		t.Fatalf("--threads inline: %v", err)
	}
	want := "--threads split: removed in this version (it lost to inline on every machine measured, perf/FINDINGS.md); drop the flag"
	split := append(base, "--threads", "split")
	if _, err := parseFlags(split, io.Discard); err == nil || err.Error() != want {
		// Accepted, run would start serving: stop here.
		t.Fatalf("--threads split: %v; want %q", err, want)
	}
	var out, errb bytes.Buffer
	if rc := run(split, &out, &errb); rc != 2 || !strings.Contains(errb.String(), want) {
		t.Errorf("--threads split: exit %d, stderr %q; want exit 2 and %q", rc, errb.String(), want)
	}
	if rc := run([]string{"--help"}, &out, io.Discard); rc != 0 || !strings.Contains(out.String(), "deprecated: inline is the only mode") {
		t.Errorf("--help: exit %d, no deprecation of --threads in:\n%s", rc, out.String())
	}
}

func TestParseCPUs(t *testing.T) {
	got, err := parseCPUs("0,2-4,7")
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, 2, 3, 4, 7}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
	for _, bad := range []string{"a", "-1", "3-1", "1,,2"} {
		if _, err := parseCPUs(bad); err == nil {
			t.Errorf("parseCPUs(%q) accepted", bad)
		}
	}
}
