package tap

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqHwaddr is struct ifreq with ifr_hwaddr (struct sockaddr) in the union: 16 bytes of
// name, then sa_family and 14 bytes of sa_data, padded to the 40-byte ifreq (include/uapi/
// linux/if.h). unix.Ifreq has no accessor for a sockaddr, hence this file.
type ifreqHwaddr struct {
	name   [unix.IFNAMSIZ]byte
	family uint16
	data   [14]byte
	_      [8]byte
}

func hwaddrIoctl(fd int, req uint, name string, mac net.HardwareAddr) (net.HardwareAddr, error) {
	var ifr ifreqHwaddr
	if len(name) >= unix.IFNAMSIZ {
		return nil, unix.EINVAL
	}
	copy(ifr.name[:], name)
	if mac != nil {
		ifr.family = unix.ARPHRD_ETHER
		copy(ifr.data[:], mac)
	}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&ifr)))
	if e != 0 {
		return nil, e
	}
	out := make(net.HardwareAddr, 6)
	copy(out, ifr.data[:6])
	return out, nil
}

// tungetiff asks the driver which interface fd is attached to (TUNGETIFF), into a stack
// ifreq (struct ifreq is 40 bytes on 64-bit Linux), so that Probe does not allocate.
func tungetiff(fd int) unix.Errno {
	var ifr [40]byte
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TUNGETIFF), uintptr(unsafe.Pointer(&ifr[0])))
	return e
}
