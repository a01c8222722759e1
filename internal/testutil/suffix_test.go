package testutil

import (
	"strings"
	"testing"
)

func TestSuffix(t *testing.T) {
	for _, n := range []int{1, 6, 8, 15} {
		s := Suffix(n)
		if len(s) != n || strings.Trim(s, "0123456789abcdef") != "" {
			t.Fatalf("Suffix(%d) = %q", n, s)
		}
	}
	if Suffix(16) == Suffix(16) {
		t.Fatal("two Suffix(16) are equal")
	}
}
