package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// buildVersion is what the build info says about this binary: the
// module's version ("(devel)" for a plain go build in the repository),
// the VCS revision, its time and whether the tree had changes, and the Go
// version.
type buildVersion struct {
	module   string
	revision string
	time     string
	modified bool
	goVer    string
}

func readBuildVersion() buildVersion {
	v := buildVersion{module: "(devel)", goVer: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.module = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.revision = s.Value
		case "vcs.time":
			v.time = s.Value
		case "vcs.modified":
			v.modified = s.Value == "true"
		}
	}
	return v
}

// versionLine is the version on one line, as the control socket and the
// metrics report it.
func versionLine() string {
	v := readBuildVersion()
	s := "vhostd " + v.module
	if v.revision != "" {
		rev := v.revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " " + rev
		if v.modified {
			s += "+modified"
		}
	}
	return s + " " + v.goVer
}

// writeVersion is --version's output.
func writeVersion(w io.Writer) {
	v := readBuildVersion()
	var b strings.Builder
	fmt.Fprintf(&b, "vhostd %s\n", v.module)
	if v.revision == "" {
		b.WriteString("revision: unknown (built without VCS information)\n")
	} else {
		mod := ""
		if v.modified {
			mod = " (with uncommitted changes)"
		}
		fmt.Fprintf(&b, "revision: %s%s\n", v.revision, mod)
		if v.time != "" {
			fmt.Fprintf(&b, "commit time: %s\n", v.time)
		}
	}
	fmt.Fprintf(&b, "go: %s %s/%s\n", v.goVer, runtime.GOOS, runtime.GOARCH)
	io.WriteString(w, b.String())
}
