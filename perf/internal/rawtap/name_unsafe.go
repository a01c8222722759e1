package rawtap

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// nameThread sets the calling thread's name (comm, 15 bytes at most).
func nameThread(name string) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return
	}
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(p)), 0, 0, 0)
}
