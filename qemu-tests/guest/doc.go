// Package guest boots a small Linux guest under QEMU for vhostd's end-to-end tests and demos.
//
//	Boot(ctx, Options)
//	  |- FindQEMU: qemu-system-x86_64, version (QEMU 7.x gets vectors=0, see DESIGN.md)
//	  |- BuildInitramfs: busybox-static + virtio modules + ethtool + /init + the caller's Script
//	  '- qemu -kernel vmlinuz -initrd initramfs.cpio -chardev socket,...  -netdev vhost-user
//	        serial console --> Guest.Log / Guest.WaitFor (event driven, no sleeps)
//
// The guest's /init loads the virtio modules, brings up lo and eth0 (with Options.GuestIP),
// prints marker lines that start with Marker, runs Options.Script and powers off. The kernel
// and modules come from the cache that qemu-tests/setup.sh fills (CacheDir).
//
// The package also holds the host-side pieces the tests need: a Process type that runs a
// back-end (vhostd) with its log captured and stops it by PID, and helpers that give a host
// interface an address in a random 10.x.y.0/24 subnet.
//
// Nothing here imports "testing": the demo command uses it as well as the tests.
package guest
