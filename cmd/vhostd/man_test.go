package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateMan = flag.Bool("update-man", false, "rewrite dist/vhostd.8 from the --help text")

// manPage renders the manual page for vhostd's flags.
func manPage(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	writeMan(&b, helpFlagSet(t))
	return b.Bytes()
}

// TestManPageUpToDate: dist/vhostd.8 is what the --help text renders to
// (go test ./cmd/vhostd -run TestManPage -update-man rewrites it), and
// groff reads it without a warning.
func TestManPageUpToDate(t *testing.T) {
	path := filepath.Join("dist", "vhostd.8")
	got := manPage(t)
	if *updateMan {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with the --help text: run go test ./cmd/vhostd -run TestManPage -update-man", path)
	}
	for _, s := range []string{".SH OPTIONS", `.B \-\-control\-socket PATH`, `.SH "SIGNALS"`, `.SH "EXIT STATUS"`} {
		if !bytes.Contains(got, []byte(s)) {
			t.Errorf("no %q in the man page", s)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff not installed: the man page's markup not checked")
		return
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() != 0 {
		t.Fatalf("groff: %v\n%s", err, errb.String())
	}
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m|.\b").ReplaceAllString(out.String(), "") // SGR or overstrike
	if !strings.Contains(plain, "--metrics-listen ADDR") {
		t.Fatalf("rendered page lacks --metrics-listen ADDR:\n%s", plain)
	}
}
