package main

import (
	"bytes"
	"encoding/json"
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
		{[]string{"--socket-path", "s", "--tap", "a", "--threads", "many"}, "--threads"},
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
