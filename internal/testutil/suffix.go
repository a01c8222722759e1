package testutil

import (
	"crypto/rand"
	"encoding/hex"
)

// Suffix returns n random hex characters, for interface, namespace and
// file names that must not collide with another test's (or another
// session's on a shared machine).
func Suffix(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
