package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// writeMan renders the --help text as a vhostd(8) manual page: the same
// intro, option groups, examples, signals and exit status, in man(7)
// markup. dist/vhostd.8 is its output (TestManPageUpToDate).
func writeMan(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	b.WriteString(".TH VHOSTD 8 \"\" vhostd \"System Administration\"\n.SH NAME\nvhostd \\- vhost-user virtio-net back-end\n")
	desc, usage, _ := strings.Cut(helpIntro, "Usage:\n")
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	for _, l := range strings.Split(strings.TrimRight(usage, "\n"), "\n") {
		b.WriteString(roff(strings.TrimSpace(l)) + "\n")
	}
	b.WriteString(".fi\n.SH DESCRIPTION\n" + roff(strings.Join(strings.Fields(desc), " ")) + "\n")
	b.WriteString(".SH OPTIONS\n")
	for _, g := range helpFlagGroups(fs) {
		if len(g.flags) == 0 {
			continue
		}
		fmt.Fprintf(&b, ".SS %s\n", roff(g.title))
		for _, f := range g.flags {
			arg, usage := flagHelp(f)
			fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roff(strings.TrimSpace("--"+f.Name+" "+arg)), roff(usage))
		}
	}
	// The tail's sections: a title line ("Signals:") and indented text.
	for _, sec := range strings.Split(strings.TrimSpace(helpTail), "\n\n") {
		title, body, _ := strings.Cut(sec, ":\n")
		fmt.Fprintf(&b, ".SH %q\n.nf\n", strings.ToUpper(title))
		for _, l := range strings.Split(body, "\n") {
			b.WriteString(roff(strings.TrimPrefix(l, "  ")) + "\n")
		}
		b.WriteString(".fi\n")
	}
	io.WriteString(w, b.String())
}

// roff escapes text for man(7): backslashes, hyphens as minus signs, and a
// leading dot or quote that would start a request.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
