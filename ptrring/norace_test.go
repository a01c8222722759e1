//go:build !race

package ptrring

const raceEnabled = false
