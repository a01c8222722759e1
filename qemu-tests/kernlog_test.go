package qemutests

import (
	"slices"
	"testing"
)

// TestKernelErrorsMatch needs no QEMU: the guest kernel's own words for a broken virtqueue
// must be caught, and the harness's and the scripts' lines must not.
func TestKernelErrorsMatch(t *testing.T) {
	bad := []string{
		// issue 12, as the guest printed it
		"virtio_net virtio0: input.0:id 149 is not a head!",
		"[   42.123456] virtio_net virtio0: input.0:id 149 is not a head!",
		"virtio_net virtio0: output.0:id 12 is not a head!",
		"virtio_net virtio0: input.0:id 300 out of range",
		"virtio_net virtio0: input.0:used len 2000 is larger than in buflen 1536",
		"virtio_net virtio0: output.0:vq 1 is broken",
		"virtio_net virtio0 eth0: Unexpected TXQ (0) queue failure: -28",
		"virtio_net virtio0 eth0: TX timeout on queue: 0, sq: output.0, vq: 0x1, name: output.0, 5104000 usecs ago",
		"NETDEV WATCHDOG: eth0 (virtio_net): transmit queue 0 timed out",
		"[   30.000000] NETDEV WATCHDOG: eth0 (virtio_net): transmit queue 0 timed out 5104 ms",
		"WARNING: CPU: 0 PID: 0 at net/sched/sch_generic.c:525 dev_watchdog+0x207/0x210",
		"WARNING: CPU: 0 PID: 12 at drivers/virtio/virtio_ring.c:2400 virtqueue_add+0x10/0x20",
		"virtio_net virtio0 eth0: bad gso: type: 1, size: 1448",
		"virtio_net: probe of virtio0 failed with error -22",
		"vring_create_virtqueue: failed to allocate",
		"[   60.972769] RIP: 0010:virtnet_poll+0xf7/0x4e4 [virtio_net]",
		"[   88.971445] RIP: 0010:virtqueue_disable_cb+0x0/0x80 [virtio_ring]",
		// issue 12 with 1024-entry rings: a frame written into a buffer the guest had freed
		"[   14.997411] general protection fault, probably for non-canonical address 0x7ce8cc72235f825: 0000 [#1] PREEMPT SMP NOPTI",
		"BUG: unable to handle page fault for address: ffff8a2600000000",
		"Kernel panic - not syncing: Fatal exception in interrupt",
		"list_del corruption. next->prev should be ffff8a26, but was dead000000000122",
	}
	good := []string{
		"VHOSTD: NET eth0 mac=52:54:00:12:34:56 mtu=1500 carrier=1 rxqs=1 t=2.34",
		"VHOSTD: MODULE-FAILED virtio_net",
		"STAT t=12.34 carrier=1 rx_packets=3000 tx_packets=3000 rx_errors=0 rx_length_errors=0 rx_dropped=0 tx_errors=0 tx_dropped=0 mem_kb=230000",
		"LOOP t=3.1 carrier=1 rx_packets=10 rx_errors=0 rx_dropped=0 tx_packets=10 irqs=20",
		"PING first_ok=1 tries=1 rcv=3",
		"BLAST sent=120000 errors=3",
		"CTL got=klog n=2",
		"TERM lost rcv=0 carrier=0",
		"[    2.000000] virtio_net virtio0 eth0: renamed from eth0",
		"[    1.234567] virtio-pci 0000:00:02.0: virtio_pci: leaving for legacy driver",
		"[    0.500000] clocksource: timekeeping watchdog on CPU0: Marking clocksource 'tsc' as unstable",
		"64 bytes from 10.1.2.1: seq=3 ttl=64 time=1.2 ms",
		"[   40.000000] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
		"[   12.000000] ACPI: memory hotplug: ...",
		"[   70.000000] RIP: 0010:default_idle+0x10/0x20",
		"[   70.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:0]",
		"[    0.000000] NX (Execute Disable) protection: active",
		"[    1.100000] Kernel command line: console=ttyS0 panic=-1 quiet",
	}
	for _, l := range bad {
		if got := KernelErrors(l + "\n"); len(got) != 1 {
			t.Errorf("KernelErrors misses %q", l)
		}
	}
	for _, l := range good {
		if got := KernelErrors(l + "\n"); len(got) != 0 {
			t.Errorf("KernelErrors takes %q for an error", l)
		}
	}
	// A message shown live on the console and again in a dmesg dump counts once.
	log := "[   42.123456] virtio_net virtio0: input.0:id 149 is not a head!\nSTAT t=1\r\n" +
		"KLOG BEGIN\n[   42.123456] virtio_net virtio0: input.0:id 149 is not a head!\nKLOG END n=1\n"
	if got := KernelErrors(log); !slices.Equal(got, []string{"[   42.123456] virtio_net virtio0: input.0:id 149 is not a head!"}) {
		t.Errorf("KernelErrors(%q) = %q, want the line once", log, got)
	}
}
