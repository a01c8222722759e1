// Package ptrring is a bounded, lock-free, single-producer single-consumer ring of pointers.
package ptrring
