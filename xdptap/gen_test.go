package xdptap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
)

// generated are the files gen.sh writes, all committed.
var generated = []string{"xdp_bpfel.go", "xdp_bpfel.o", "testdata/user.o", "testdata/broken.o"}

// The committed objects and bindings are what gen.sh makes from the committed C. Needs
// clang and llvm-strip (regen-check.sh installs them): skipped without them, failed
// without them when VHOSTD_TEST_PRIVILEGED=1.
func TestGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clang and bpf2go")
	}
	privtest.RequireCommand(t, "clang")
	privtest.RequireCommand(t, "llvm-strip")
	out := t.TempDir()
	cmd := exec.Command("sh", "gen.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, b)
	} else if len(b) != 0 {
		t.Logf("gen.sh: %s", b)
	}
	for _, f := range generated {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what gen.sh makes now: run `go generate ./xdptap` and commit", f)
		}
	}
}
