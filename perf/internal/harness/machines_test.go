package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMachineTypesKept: a full run keeps its results as
// machines/<cpu model>.json; RESULTS.md of a run on another machine type
// shows that run's goals table; a partial run (--only) keeps nothing and
// the same machine type's file is replaced, not listed.
func TestMachineTypesKept(t *testing.T) {
	dir := t.TempDir()
	run := func(model, only string, value float64) string {
		t.Helper()
		res := &Results{Command: "perf/run.sh", Started: "2026-12-04T00:00:00Z", Options: Options{Only: only, Rounds: 1},
			Machine: Machine{CPUs: 2, CPUModel: model, Vhostd: "abc1234"},
			Runs:    []Run{{Group: "idle-go", Subject: sBP.Name, Round: 1}},
			Targets: []Target{{Name: "Guest TX 64 B: a goal", Ratio: "r", Want: ">= 0.9", Available: true, Value: value}}}
		if err := res.write(dir); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := machineSlug("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"); got != "intel-r-xeon-r-platinum-8375c-cpu-2-90ghz" {
		t.Errorf("slug %q", got)
	}
	run("AMD EPYC", "", 0.84)
	if _, err := os.Stat(filepath.Join(dir, "machines", "amd-epyc.json")); err != nil {
		t.Fatalf("full run not kept: %v", err)
	}
	md := run("Intel Xeon", "tx-64", 0.7)
	if _, err := os.Stat(filepath.Join(dir, "machines", "intel-xeon.json")); err == nil {
		t.Fatal("a --only run was kept as the machine type's full run")
	}
	if !strings.Contains(md, "### AMD EPYC: 2 CPUs") || !strings.Contains(md, "| 0.840 |") {
		t.Fatalf("RESULTS.md on Intel lacks the AMD run's goals:\n%s", md)
	}
	md = run("AMD EPYC", "", 0.9)
	if strings.Contains(md, "## Other machine types") {
		t.Fatalf("the machine's own earlier run listed as another type:\n%s", md)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "machines", "amd-epyc.json"))
	if !strings.Contains(string(b), `"value": 0.9`) {
		t.Fatal("the AMD file was not replaced by the newer full run")
	}
}
