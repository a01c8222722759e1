package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
)

var distUnits = []string{"vhostd@.service", "vhostd@.socket"}

// verifyUnits copies the units from src into a directory, the ExecStart
// binary bin replaced by exe, one that exists here (verify checks it is
// executable), with edit applied to the service, and returns what
// systemd-analyze verify said about an instance of each, and its error.
func verifyUnits(t *testing.T, analyze, src, bin, exe string, edit func(string) string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	for _, u := range distUnits {
		b, err := os.ReadFile(filepath.Join(src, u))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), bin, exe)
		if strings.HasSuffix(u, ".service") {
			text = edit(text)
		}
		if err := os.WriteFile(filepath.Join(dir, u), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "vhostd@vm1-net0.service"), filepath.Join(dir, "vhostd@vm1-net0.socket"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestSystemdUnits checks the units with systemd-analyze verify (when the
// machine has it), counting any warning as a failure: verify exits 0 on an
// unknown key, which the injected one below shows it reports.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		privtest.Missing(t, "systemd-analyze not installed (Debian package systemd): units not verified")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := verifyUnits(t, analyze, "dist", distBinary, exe, func(s string) string { return s }); err != nil || out != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, _ := verifyUnits(t, analyze, "dist", distBinary, exe, func(s string) string {
		return strings.Replace(s, "[Service]\n", "[Service]\nNoSuchKey=1\n", 1)
	})
	if !strings.Contains(out, "NoSuchKey") {
		t.Fatalf("verify did not report an unknown key: %q", out)
	}
}

// TestSystemdExecStart: the service's command line is one vhostd accepts,
// with an instance's options filled in.
func TestSystemdExecStart(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("dist", "vhostd@.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/vhostd (.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no ExecStart=/usr/bin/vhostd line")
	}
	line := strings.NewReplacer("%i", "vm1-net0", "$VHOSTD_OPTS", "--tap vm1tap0 --queues 2").Replace(string(m[1]))
	o, err := parseFlags(strings.Fields(line), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if o.fd != 3 || o.ops.controlPath(o) != "/run/vhostd/vm1-net0.ctl" {
		t.Fatalf("%q: fd %d, control socket %q", line, o.fd, o.ops.controlPath(o))
	}
	if !bytes.Contains(b, []byte("\nType=notify\n")) {
		t.Fatal("the service is not Type=notify")
	}
}

// TestDiscoveryFile: dist/50-vhostd.json (for /usr/share/qemu/vhost-user/)
// has exactly the fields of QEMU's VhostUserBackend, the type
// --print-capabilities reports and the binary the service runs.
func TestDiscoveryFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("dist", "50-vhostd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Description string   `json:"description"`
		Type        string   `json:"type"`
		Binary      string   `json:"binary"`
		Tags        []string `json:"tags"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("50-vhostd.json: %v", err)
	}
	var caps struct{ Type string }
	if err := json.Unmarshal([]byte(capabilities), &caps); err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join("dist", "vhostd@.service"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != caps.Type || d.Description == "" || !bytes.Contains(unit, []byte("ExecStart="+d.Binary+" ")) {
		t.Fatalf("50-vhostd.json: %+v (capabilities type %q)", d, caps.Type)
	}
}
