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
