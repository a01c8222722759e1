package main

import (
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
)

// distBinary is the binary path the files in dist/ name; install.sh
// rewrites it to the installed one.
const distBinary = "/usr/bin/vhostd"

// installedFile is one file install.sh installs: where (without DESTDIR),
// from which file of the repository ("" for the binary), and how.
type installedFile struct {
	dest, src string
	gzipped   bool // the man page
	rewritten bool // the binary path replaced: descriptor and units
}

// expectedFiles is everything install.sh must install for prefix, units
// in unitDir.
func expectedFiles(t *testing.T, prefix, unitDir string) []installedFile {
	t.Helper()
	doc := prefix + "/share/doc/vhostd"
	files := []installedFile{
		{dest: prefix + "/bin/vhostd"},
		{dest: prefix + "/share/man/man8/vhostd.8.gz", src: "cmd/vhostd/dist/vhostd.8", gzipped: true},
		{dest: prefix + "/share/qemu/vhost-user/50-vhostd.json", src: "cmd/vhostd/dist/50-vhostd.json", rewritten: true},
		{dest: unitDir + "/vhostd@.service", src: "cmd/vhostd/dist/vhostd@.service", rewritten: true},
		{dest: unitDir + "/vhostd@.socket", src: "cmd/vhostd/dist/vhostd@.socket", rewritten: true},
		{dest: doc + "/LICENSE", src: "LICENSE"},
		{dest: doc + "/README.md", src: "README.md"},
	}
	examples, err := filepath.Glob(filepath.Join("dist", "libvirt", "*.xml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no libvirt examples in dist/libvirt: %v", err)
	}
	for _, e := range examples {
		files = append(files, installedFile{dest: doc + "/examples/libvirt/" + filepath.Base(e), src: "cmd/vhostd/" + filepath.ToSlash(e)})
	}
	return files
}

// checkInstalled checks that every file of files is under root with the
// content and mode it should have, the binary paths pointing at prefix's.
func checkInstalled(t *testing.T, root, prefix string, files []installedFile, built string) {
	t.Helper()
	bin := prefix + "/bin/vhostd"
	for _, f := range files {
		path := filepath.Join(root, f.dest)
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		mode := fs.FileMode(0o644)
		if f.src == "" {
			mode = 0o755
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", f.dest, fi.Mode(), mode)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		switch {
		case f.src == "":
			want, err = os.ReadFile(built)
		case f.gzipped:
			want, err = os.ReadFile(filepath.Join("..", "..", f.src))
			got = gunzip(t, f.dest, got)
		default:
			want, err = os.ReadFile(filepath.Join("..", "..", f.src))
			if f.rewritten {
				want = bytes.ReplaceAll(want, []byte(distBinary), []byte(bin))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: content differs from %s (binary path %s)", f.dest, f.src, bin)
		}
	}
	checkBinaryPaths(t, root, bin, files)
}

// checkBinaryPaths: the descriptor's "binary" and the service's
// ExecStart name the installed binary.
func checkBinaryPaths(t *testing.T, root, bin string, files []installedFile) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f.dest))
		if err != nil {
			continue // reported by checkInstalled
		}
		switch filepath.Base(f.dest) {
		case "50-vhostd.json":
			var d struct{ Binary string }
			if err := json.Unmarshal(b, &d); err != nil || d.Binary != bin {
				t.Errorf("%s: binary %q (%v), want %q", f.dest, d.Binary, err, bin)
			}
		case "vhostd@.service":
			m := regexp.MustCompile(`(?m)^ExecStart=(\S+) `).FindSubmatch(b)
			if m == nil || string(m[1]) != bin {
				t.Errorf("%s: ExecStart %q, want %q", f.dest, m, bin)
			}
		}
	}
}

func gunzip(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// filesUnder lists the regular files and symlinks under root, relative
// to it with a leading slash, sorted.
func filesUnder(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, "/"+filepath.ToSlash(strings.TrimPrefix(p, root+"/")))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

func dests(files []installedFile) []string {
	var d []string
	for _, f := range files {
		d = append(d, f.dest)
	}
	sort.Strings(d)
	return d
}

// runScript runs one of scripts/ with env added to the environment and
// returns its stdout and stderr, and its error.
func runScript(t *testing.T, script string, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join("..", "..", "scripts", script), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustRunScript(t *testing.T, script string, env []string, args ...string) string {
	t.Helper()
	out, errs, err := runScript(t, script, env, args...)
	if err != nil {
		t.Fatalf("%s %q (%q): %v\n%s%s", script, args, env, err, out, errs)
	}
	return out
}

// buildRelease builds vhostd as install.sh documents it (static, with
// -trimpath, the commit stamped in a git checkout) and returns its path
// and its --version.
func buildRelease(t *testing.T) (string, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vhostd")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin, versionOf(t, bin)
}

func versionOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "vhostd ") {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	return string(out)
}

// TestInstall: scripts/install.sh into a DESTDIR puts exactly the files it
// should where they belong, with the binary paths rewritten for the
// prefix, a binary built static with -trimpath that reports the version
// of the same source, and --uninstall removes every file again; then
// scripts/package.sh makes a .deb of the same that dpkg installs and
// removes in a scratch root.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	built, version := buildRelease(t)
	t.Run("install.sh", func(t *testing.T) { testInstallScript(t, built, version) })
	t.Run("package.sh", func(t *testing.T) { testPackage(t, built, version) })
}

func testInstallScript(t *testing.T, built, version string) {
	dest := t.TempDir()
	env := []string{"DESTDIR=" + dest, "PREFIX=/usr/local", "SYSTEMDUNITDIR=", "VHOSTUSERDIR="}
	mustRunScript(t, "install.sh", env)
	files := expectedFiles(t, "/usr/local", "/usr/local/lib/systemd/system")
	if got, want := filesUnder(t, dest), dests(files); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("installed files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The script's own build of the same source: reproducible, so the
	// same bytes as built.
	bin := filepath.Join(dest, "usr/local/bin/vhostd")
	if v := versionOf(t, bin); v != version {
		t.Errorf("installed --version:\n%s\nbuilt --version:\n%s", v, version)
	}
	checkStaticTrimpath(t, bin)
	checkInstalled(t, dest, "/usr/local", files, built)
	verifyInstalledUnits(t, dest, "/usr/local/lib/systemd/system", "/usr/local/bin/vhostd")

	mustRunScript(t, "install.sh", env, "--uninstall")
	if left := filesUnder(t, dest); len(left) != 0 {
		t.Errorf("--uninstall left %q", left)
	}
	// SYSTEMDUNITDIR and VHOSTUSERDIR move those files, and --uninstall
	// with the same variables finds them.
	moved := []string{"DESTDIR=" + dest, "PREFIX=/opt/vhostd", "SYSTEMDUNITDIR=/etc/systemd/system", "VHOSTUSERDIR=/etc/qemu/vhost-user"}
	mustRunScript(t, "install.sh", moved, "--bin", built)
	for _, p := range []string{"etc/systemd/system/vhostd@.service", "etc/qemu/vhost-user/50-vhostd.json", "opt/vhostd/bin/vhostd"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Error(err)
		}
	}
	mustRunScript(t, "install.sh", moved, "--uninstall")
	if left := filesUnder(t, dest); len(left) != 0 {
		t.Errorf("--uninstall left %q", left)
	}
}

// checkStaticTrimpath: the build info says the binary was built without
// cgo (so static: the package depends on nothing) and with -trimpath.
func checkStaticTrimpath(t *testing.T, bin string) {
	t.Helper()
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("%s: built with CGO_ENABLED=%q -trimpath=%q, want 0 and true", bin, settings["CGO_ENABLED"], settings["-trimpath"])
	}
}

// verifyInstalledUnits runs systemd-analyze verify on the units installed
// under root (TestSystemdUnits makes it mandatory in privileged runs).
func verifyInstalledUnits(t *testing.T, root, unitDir, bin string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze not installed: installed units not verified")
		return
	}
	if out, err := verifyUnits(t, analyze, filepath.Join(root, unitDir), bin, filepath.Join(root, bin), func(s string) string { return s }); err != nil || out != "" {
		t.Errorf("systemd-analyze verify of the installed units: %v\n%s", err, out)
	}
}

// TestInstallErrors: install.sh refuses what it cannot do with a message
// naming it, before it writes anything.
func TestInstallErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	noGo := "no-such-go-" + testutil.Suffix(8)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no go", []string{"GO=" + noGo}, nil, noGo},
		{"DESTDIR a file", []string{"DESTDIR=" + file}, []string{"--bin", "/bin/sh"}, file},
		{"relative PREFIX", []string{"PREFIX=usr"}, nil, "PREFIX"},
		{"PREFIX with a space", []string{"PREFIX=/opt/my vhostd"}, nil, "/opt/my vhostd"},
		{"missing --bin", nil, []string{"--bin", "/nonexistent/vhostd"}, "/nonexistent/vhostd"},
		{"unknown argument", nil, []string{"--frobnicate"}, "--frobnicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			env := append([]string{"DESTDIR=" + dest, "PREFIX=/usr/local", "GO=go"}, tc.env...)
			out, errs, err := runScript(t, "install.sh", env, tc.args...)
			if err == nil || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %v, stdout %q, stderr %q; want a failure naming %q", err, out, errs, tc.want)
			}
			if left := filesUnder(t, dest); len(left) != 0 {
				t.Errorf("wrote %q before failing", left)
			}
		})
	}
}

// testPackage: scripts/package.sh builds a .deb whose control fields,
// contents and owners are right, and dpkg installs it into a scratch root
// (its own database, never the host's), where the binary reports the
// built version and the units verify; dpkg -r removes every file again.
func testPackage(t *testing.T, built, version string) {
	privtest.RequireCommand(t, "dpkg-deb")
	privtest.RequireCommand(t, "dpkg")
	if os.Geteuid() != 0 {
		privtest.Missing(t, "dpkg gives the package's files to root: needs root (euid %d)", os.Geteuid())
	}
	outDir := t.TempDir()
	deb := strings.TrimSpace(mustRunScript(t, "package.sh", []string{"VERSION="}, "--out", outDir))
	arch := strings.TrimSpace(string(command(t, "dpkg", "--print-architecture")))
	fields := debFields(t, deb)
	wantVersion := debVersion(t)
	if filepath.Dir(deb) != outDir || filepath.Base(deb) != "vhostd_"+wantVersion+"_"+arch+".deb" {
		t.Errorf("package.sh printed %q, want %s/vhostd_%s_%s.deb", deb, outDir, wantVersion, arch)
	}
	for k, want := range map[string]string{"Package": "vhostd", "Version": wantVersion, "Architecture": arch, "Section": "net", "Priority": "optional", "Depends": ""} {
		if fields[k] != want {
			t.Errorf("control field %s: %q, want %q", k, fields[k], want)
		}
	}
	if fields["Maintainer"] == "" || !strings.Contains(fields["Description"], "vhost-user") {
		t.Errorf("control: Maintainer %q, Description %q", fields["Maintainer"], fields["Description"])
	}
	files := expectedFiles(t, "/usr", "/usr/lib/systemd/system")
	if got, want := debFiles(t, deb), dests(files); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("package files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	root := t.TempDir()
	dpkgRoot(t, root, "-i", deb)
	if got := string(command(t, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${db:Status-Abbrev}${Version}", "vhostd")); got != "ii "+wantVersion {
		t.Errorf("dpkg-query: %q, want %q", got, "ii "+wantVersion)
	}
	if v := versionOf(t, filepath.Join(root, "usr/bin/vhostd")); v != version {
		t.Errorf("packaged --version:\n%s\nbuilt --version:\n%s", v, version)
	}
	checkVersionsAgree(t, wantVersion, version)
	checkInstalled(t, root, "/usr", files, built)
	verifyInstalledUnits(t, root, "/usr/lib/systemd/system", "/usr/bin/vhostd")
	dpkgRoot(t, root, "-r", "vhostd")
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(root, f.dest)); !os.IsNotExist(err) {
			t.Errorf("dpkg -r left %s: %v", f.dest, err)
		}
	}
}

// dpkgRoot runs dpkg on the scratch root, its database prepared there.
func dpkgRoot(t *testing.T, root string, args ...string) {
	t.Helper()
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"status", "available"} {
		if _, err := os.Stat(filepath.Join(admin, f)); os.IsNotExist(err) {
			if err := os.WriteFile(filepath.Join(admin, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	command(t, "dpkg", append([]string{"--root=" + root, "--log=" + filepath.Join(root, "dpkg.log"),
		"--force-not-root", "--force-script-chrootless"}, args...)...)
}

func command(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s%s", name, args, err, out, errb.String())
	}
	return out
}

// debFields is the .deb's control file, field by field (continuation
// lines joined to their field).
func debFields(t *testing.T, deb string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	key := ""
	for _, line := range strings.Split(string(command(t, "dpkg-deb", "--field", deb)), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			key = k
			fields[k] = v
		} else if key != "" && strings.HasPrefix(line, " ") {
			fields[key] += "\n" + line
		}
	}
	return fields
}

// debFiles lists the .deb's files (not directories), checking they are
// root's.
func debFiles(t *testing.T, deb string) []string {
	t.Helper()
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(command(t, "dpkg-deb", "--contents", deb))), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s owned by %s, want root/root", f[len(f)-1], f[1])
		}
		if !strings.HasPrefix(f[0], "d") {
			files = append(files, strings.TrimPrefix(f[len(f)-1], "."))
		}
	}
	sort.Strings(files)
	return files
}

// debVersion is the version package.sh must give this checkout: the
// tag's (git describe) if it has one, else 0.0.0+git and the short hash,
// +dirty with changes (untracked files too, as the go command counts
// them).
func debVersion(t *testing.T) string {
	t.Helper()
	git := func(args ...string) (string, error) {
		out, err := exec.Command("git", args...).Output()
		return strings.TrimSpace(string(out)), err
	}
	var v string
	if d, err := git("describe", "--tags", "--match", "v[0-9]*"); err == nil {
		v = strings.ReplaceAll(strings.Replace(strings.TrimPrefix(d, "v"), "-", "+", 1), "-", ".")
	} else if short, err := git("rev-parse", "--short", "HEAD"); err == nil {
		v = "0.0.0+git" + short
	} else {
		t.Skipf("not a git checkout: %v", err)
	}
	if st, _ := git("status", "--porcelain"); st != "" {
		v += "+dirty"
	}
	return v
}

// checkVersionsAgree: where the binary has the commit stamped, the
// package's version names the same commit and both say whether the tree
// was dirty.
func checkVersionsAgree(t *testing.T, debVersion, binVersion string) {
	t.Helper()
	rev := regexp.MustCompile(`(?m)^revision: ([0-9a-f]{40})( \(with uncommitted changes\))?$`).FindStringSubmatch(binVersion)
	if rev == nil {
		t.Logf("the binary has no commit stamped (not a git checkout, or a linked worktree): %q", binVersion)
		return
	}
	if h := regexp.MustCompile(`(?:git|\.g)([0-9a-f]{7,})`).FindStringSubmatch(debVersion); h != nil && !strings.HasPrefix(rev[1], h[1]) {
		t.Errorf("package version %s, binary built from %s", debVersion, rev[1])
	}
	if dirty := rev[2] != ""; dirty != strings.HasSuffix(debVersion, "+dirty") {
		t.Errorf("package version %s, binary's revision line %q", debVersion, rev[0])
	}
}

// TestPackageErrors: package.sh refuses a version Debian would not take,
// naming it, before it builds anything.
func TestPackageErrors(t *testing.T) {
	out := t.TempDir()
	for _, v := range []string{"v1.0", "1.0 beta", "1_0"} {
		_, errs, err := runScript(t, "package.sh", []string{"VERSION=" + v}, "--out", out)
		if err == nil || !strings.Contains(errs, "'"+v+"'") {
			t.Errorf("VERSION=%q: exit %v, stderr %q", v, err, errs)
		}
	}
	if left := filesUnder(t, out); len(left) != 0 {
		t.Errorf("wrote %q", left)
	}
}
