package harness

import (
	"slices"
	"testing"
)

// TestMatrixHasNoSplitSubject: vhostd's split mode is gone (its vhostd
// refuses --threads split), so no subject of the matrix asks for it and
// `vperf run` has no --vhostd-split flag any more.
func TestMatrixHasNoSplitSubject(t *testing.T) {
	if _, _, err := parseFlags([]string{"--vhostd-split", "--threads split"}); err == nil {
		t.Error("vperf run accepted --vhostd-split")
	}
	for _, g := range matrix(Abilities{TapWrite: true}) {
		for _, s := range g.Subjects {
			if s.Name == "vhostd-split" || slices.Contains(s.Extra, "--threads") {
				t.Errorf("group %s: subject %s runs %v", g.Name, s.Name, s.Extra)
			}
		}
	}
}

// TestBeforeSubject: with --vhostd-before every group but idle gains the
// vhostd-before subject, run by the older binary, and the goals table
// gains an after/before row per group (two for ping: p50 and p99).
func TestBeforeSubject(t *testing.T) {
	o, _, err := parseFlags([]string{"--vhostd-before", "/old/vhostd", "--vhostd-before-at", "abc1234"})
	if err != nil || o.Before != "/old/vhostd" || o.BeforeAt != "abc1234" {
		t.Fatalf("parseFlags = %+v, %v", o, err)
	}
	plain := matrix(Abilities{})
	gs := matrix(Abilities{Before: true})
	rows := beforeAfter(gs)
	if len(beforeAfter(plain)) != 0 {
		t.Fatal("after/before rows without vhostd-before")
	}
	want := 0
	for i, g := range gs {
		has := slices.ContainsFunc(g.Subjects, func(s Subject) bool { return s.Before && s.Name == "vhostd-before" })
		if has != (g.Dir != "idle") {
			t.Errorf("group %s: vhostd-before present %v", g.Name, has)
		}
		if len(g.Subjects) != len(plain[i].Subjects)+map[bool]int{true: 1}[has] {
			t.Errorf("group %s: %d subjects, %d without --vhostd-before", g.Name, len(g.Subjects), len(plain[i].Subjects))
		}
		if has {
			want++
			if g.Dir == "ping" {
				want++
			}
		}
	}
	if len(rows) != want {
		t.Fatalf("%d after/before rows, want %d", len(rows), want)
	}
	x := &runState{h: &harness{o: Options{Vhostd: "/new/vhostd", Before: "/old/vhostd"}}, s: sBefore}
	if bin := x.vhostdBinary(); bin != "/old/vhostd" {
		t.Fatalf("vhostd-before runs %s", bin)
	}
	x.s = sBP
	if bin := x.vhostdBinary(); bin != "/new/vhostd" {
		t.Fatalf("vhostd-bp50 runs %s", bin)
	}
}
