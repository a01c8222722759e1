// Package closeflag is the closed flag of a resource whose Close may be
// called more than once (tap devices, XDP attachments, the netdev device,
// the vhost server): the first Close does the work, later ones return nil.
package closeflag

import "sync"

// Flag is false until Set; its owner guards it with the owner's own lock.
// It reads as a bool: `if d.closed { ... }`.
type Flag bool

// Set marks the resource closed and reports whether this call closed it
// (false: it was closed already).
func (f *Flag) Set() (first bool) {
	if *f {
		return false
	}
	*f = true
	return true
}

// Close runs close with mu held, the first time only, and returns its
// error; later calls return nil. It is the whole Close of a resource that
// releases everything under its lock.
func (f *Flag) Close(mu sync.Locker, close func() error) error {
	mu.Lock()
	defer mu.Unlock()
	if !f.Set() {
		return nil
	}
	return close()
}
