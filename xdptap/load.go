package xdptap

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
)

// Program names in bpf/xdptap.c.
const (
	progGuard     = "xdp_guard"
	progCount     = "xdp_count"
	progCountDrop = "xdp_count_drop"
	progReflect   = "xdp_reflect"
	progSwitch    = "xdp_switch"
)

// VerifierError is a program the kernel's verifier refused, with the end of its log.
type VerifierError struct {
	Program string
	// Log is the verifier's log, the reason in its last lines.
	Log []string
	err error
}

// verifierTail is how many of the log's last lines Error shows.
const verifierTail = 12

func (e *VerifierError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "xdptap: the kernel's verifier rejected XDP program %q: %v", e.Program, e.err)
	tail := e.Log
	if len(tail) > verifierTail {
		fmt.Fprintf(&b, "\n\t(%d earlier line(s) of the verifier log omitted)", len(tail)-verifierTail)
		tail = tail[len(tail)-verifierTail:]
	}
	for _, l := range tail {
		b.WriteString("\n\t")
		b.WriteString(l)
	}
	return b.String()
}

func (e *VerifierError) Unwrap() error { return e.err }

// loadError turns a load failure into plain words, keeping the verifier's log.
func loadError(prog string, err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return &VerifierError{Program: prog, Log: ve.Log, err: ve.Cause}
	}
	return fmt.Errorf("xdptap: load XDP program %q: %w", prog, err)
}

// loadOnly loads one program of spec and the maps its instructions refer to, nothing else.
// Maps named in replace are used instead of new ones.
func loadOnly(spec *ebpf.CollectionSpec, prog string, opts ebpf.CollectionOptions) (*ebpf.Collection, error) {
	ps, ok := spec.Programs[prog]
	if !ok {
		return nil, fmt.Errorf("xdptap: no program %q", prog)
	}
	s := spec.Copy()
	s.Programs = map[string]*ebpf.ProgramSpec{prog: s.Programs[prog]}
	used := map[string]bool{}
	for _, ins := range ps.Instructions {
		if ins.IsLoadFromMap() && ins.Reference() != "" {
			used[ins.Reference()] = true
		}
	}
	for name := range s.Maps {
		if !used[name] {
			delete(s.Maps, name)
		}
	}
	c, err := ebpf.NewCollectionWithOptions(s, opts)
	if err != nil {
		return nil, loadError(prog, err)
	}
	return c, nil
}

// builtin is the embedded object's spec, parsed once per call (cheap: it is small).
func builtin() (*ebpf.CollectionSpec, error) {
	spec, err := loadXdp()
	if err != nil {
		return nil, fmt.Errorf("xdptap: embedded object: %w", err)
	}
	return spec, nil
}

func (a *Attachment) loadBuiltin(prog string) (*ebpf.Program, error) {
	spec, err := builtin()
	if err != nil {
		return nil, err
	}
	c, err := loadOnly(spec, prog, ebpf.CollectionOptions{})
	if err != nil {
		return nil, err
	}
	a.objs, a.prog = c, prog
	return c.Programs[prog], nil
}

func (a *Attachment) loadCounting(m Mode, ifindex int) (*ebpf.Program, error) {
	name := map[Mode]string{ModeCount: progCount, ModeCountDrop: progCountDrop, ModeReflect: progReflect}[m]
	p, err := a.loadBuiltin(name)
	if err != nil {
		return nil, err
	}
	if m == ModeReflect {
		if err := a.objs.Maps[xdpMapReflectPort].Put(uint32(0), uint32(ifindex)); err != nil {
			return nil, fmt.Errorf("xdptap: reflect: put ifindex %d in %s: %w", ifindex, xdpMapReflectPort, err)
		}
	}
	return p, nil
}

// loadObject loads the user's XDP program name from the ELF object file, with the maps
// the object defines.
func (a *Attachment) loadObject(file, name string) (*ebpf.Program, error) {
	if file == "" {
		return nil, errors.New("xdptap: mode object needs an object file")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("xdptap: %w", err)
	}
	defer f.Close()
	spec, err := ebpf.LoadCollectionSpecFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("xdptap: %s is not a BPF object cilium/ebpf can read: %w", file, err)
	}
	var xdp []string
	for n, p := range spec.Programs {
		if p.Type == ebpf.XDP {
			xdp = append(xdp, n)
		}
	}
	sort.Strings(xdp)
	if name == "" {
		if len(xdp) != 1 {
			return nil, fmt.Errorf("xdptap: %s has %d XDP programs %v: name one", file, len(xdp), xdp)
		}
		name = xdp[0]
	}
	ps, ok := spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("xdptap: %s has no program %q (its XDP programs: %v)", file, name, xdp)
	}
	if ps.Type != ebpf.XDP {
		return nil, fmt.Errorf("xdptap: program %q in %s is a %v program, not XDP (its XDP programs: %v)", name, file, ps.Type, xdp)
	}
	s := spec.Copy()
	s.Programs = map[string]*ebpf.ProgramSpec{name: s.Programs[name]}
	c, err := ebpf.NewCollection(s)
	if err != nil {
		return nil, loadError(name, err)
	}
	a.objs, a.prog = c, name
	return c.Programs[name], nil
}

// Map returns one of the attachment's maps by its name in the object (for ModeObject: the
// user's maps), or nil. The map stays owned by the attachment: do not Close it.
func (a *Attachment) Map(name string) *ebpf.Map {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.objs == nil {
		return nil
	}
	return a.objs.Maps[name]
}
