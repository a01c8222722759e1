package closeflag

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestSetOnce(t *testing.T) {
	var f Flag
	if f {
		t.Fatal("a new flag reads closed")
	}
	if !f.Set() || !bool(f) {
		t.Fatal("the first Set did not close it")
	}
	if f.Set() || !bool(f) {
		t.Fatal("a second Set reported the first close, or reopened it")
	}
}

func TestCloseRunsOnce(t *testing.T) {
	var (
		f    Flag
		mu   sync.Mutex
		runs atomic.Int32
		wg   sync.WaitGroup
	)
	boom := errors.New("boom")
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = f.Close(&mu, func() error { runs.Add(1); return boom })
		})
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("close ran %d times, want 1", n)
	}
	got := 0
	for _, err := range errs {
		if err == boom {
			got++
		} else if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
	}
	if got != 1 {
		t.Fatalf("%d callers saw close's error, want exactly 1", got)
	}
	if !bool(f) {
		t.Fatal("the flag does not read closed after Close")
	}
}
