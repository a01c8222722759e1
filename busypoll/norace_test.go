//go:build !race

package busypoll

const raceEnabled = false
