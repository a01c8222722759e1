// Package busypoll is the per-queue-pair worker: poll for a budget, then arm
// notifications and sleep.
package busypoll
