package testutil

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Concurrent writers and a reader: nothing is lost (and -race sees no race).
func TestSyncBufferConcurrent(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				fmt.Fprintf(&b, "w%d\n", w)
				_ = b.String()
			}
		}(w)
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 400 {
		t.Fatalf("%d lines, want 400", n)
	}
}
