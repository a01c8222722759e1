//go:build race

package ptrring

const raceEnabled = true
