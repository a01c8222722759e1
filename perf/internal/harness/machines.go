package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Issue 17 wants a full run on record from every machine type the work
// lands on, and one perf/ directory holds one RESULTS.md. So a full run
// also keeps its results.json as machines/<cpu model>.json, and RESULTS.md
// ends with the goals tables of the other machine types' latest full runs.

// Other is another machine type's latest full run, as RESULTS.md shows it.
type Other struct {
	File    string
	Started string
	Command string
	Machine Machine
	Targets []Target
}

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// machineSlug names a machine type's file: its CPU model, lower case, each
// run of other characters one dash ("AMD EPYC" -> "amd-epyc").
func machineSlug(model string) string {
	s := strings.Trim(nonAlnum.ReplaceAllString(strings.ToLower(model), "-"), "-")
	if s == "" {
		return "unknown-cpu"
	}
	return s
}

// full reports whether res is a whole matrix worth keeping for its
// machine type: every group, full windows, not interrupted.
func (res *Results) full() bool {
	return res.Options.Only == "" && !res.Options.Smoke && len(res.Warnings) == 0 && len(res.Runs) > 0
}

// loadOthers reads out/machines/*.json, the latest full run of each
// machine type, and keeps those of other CPU models than res's.
func (res *Results) loadOthers(out string) error {
	files, _ := filepath.Glob(filepath.Join(out, "machines", "*.json"))
	sort.Strings(files)
	res.others = nil
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var o Results
		if err := json.Unmarshal(b, &o); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if o.Machine.CPUModel == res.Machine.CPUModel {
			continue
		}
		res.others = append(res.others, Other{File: filepath.Join("machines", filepath.Base(f)), Started: o.Started,
			Command: o.Command, Machine: o.Machine, Targets: o.Targets})
	}
	return nil
}

// keep saves results.json's bytes as this machine type's latest full run.
func (res *Results) keep(out string, b []byte) error {
	if !res.full() {
		return nil
	}
	dir := filepath.Join(out, "machines")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, machineSlug(res.Machine.CPUModel)+".json"), b, 0o644)
}

// mdOthers is the goals table of every other machine type's latest run.
func (res *Results) mdOthers(b *mdWriter) {
	if len(res.others) == 0 {
		return
	}
	b.w("\n## Other machine types (their latest full run)\n\nThe goals as the latest full `perf/run.sh` on each other machine type left them (results in the file named; re-render with `vperf run --from FILE --out DIR`).\n")
	for _, o := range res.others {
		m := o.Machine
		b.w("\n### %s: %d CPUs, kernel %s, vhostd at %s\n\n`%s`, started %s; [%s](%s).\n\n", m.CPUModel, m.CPUs, m.Kernel, m.Vhostd, o.Command, o.Started, o.File, o.File)
		mdTargetRows(b, o.Targets)
	}
}
