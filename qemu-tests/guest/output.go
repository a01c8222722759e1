package guest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"sync"
)

// output is a process's growing output (QEMU's serial console and stderr, a helper's
// stdout and stderr): one copier writes it, tests read it and wait for patterns in it.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced whenever buf grows
	tee     io.Writer     // gets a copy as it arrives, when not nil
}

func newOutput(tee io.Writer) *output {
	return &output{changed: make(chan struct{}), tee: tee}
}

// Write appends b and wakes the waiters.
func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tee != nil {
		o.tee.Write(b)
	}
	o.buf.Write(b)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(b), nil
}

// String returns the output so far.
func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *output) snapshot() (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String(), o.changed
}

// errDone: the writer finished (done closed) before the pattern appeared.
var errDone = errors.New("writer done")

// waitFrom waits until re matches the output from byte offset from on and returns the
// submatches. done is closed once the output is complete: then one last look, and errDone.
func (o *output) waitFrom(ctx context.Context, re *regexp.Regexp, from int, done <-chan struct{}) ([]string, error) {
	for {
		s, ch := o.snapshot()
		if m := re.FindStringSubmatch(s[from:]); m != nil {
			return m, nil
		}
		select {
		case <-ch:
		case <-done:
			if s, _ := o.snapshot(); re.MatchString(s[from:]) {
				return re.FindStringSubmatch(s[from:]), nil
			}
			return nil, errDone
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
