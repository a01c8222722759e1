package qemutests

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// mqFlowsPerDirection concurrent TCP flows each way spread over the queue pairs: the guest
// picks a flow's transmit queue by hash (XPS), and the TAP sends the replies to the queue the
// flow came from. With 32 flows the chance that one of 4 queues gets none is 4*(3/4)^32, about
// 4e-4.
const mqFlowsPerDirection = 16

// TestMultiqueue runs 32 concurrent 1 MiB transfers (16 each way) over 1, 2 and 4 queue pairs
// (vhostd --queues N, QEMU queues=N,mq=on) and checks every transfer's SHA-256 and, from
// vhostd's SIGUSR1 counters, that every queue pair carried traffic both ways. The machine has
// 2 cores: 4 pairs run on 2 vCPUs with "ethtool -L eth0 combined 4" in the guest.
func TestMultiqueue(t *testing.T) {
	var flows []Flow
	for i := range mqFlowsPerDirection {
		flows = append(flows, Flow{Port: 5100 + i, MiB: 1}, Flow{ToGuest: true, Port: 5200 + i, MiB: 1})
	}
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("pairs=%d", n), func(t *testing.T) {
			cpus := min(n, 2)
			script := "ethtool -L eth0 combined " + strconv.Itoa(n) + "\n" +
				`echo "MQ combined=$(ethtool -l eth0 | awk '/^Combined:/{c=$2} END{print c}')"` + "\n" +
				pingScript + FlowScript(true, flows...)
			b := StartBed(t, BedConfig{NIC: guest.NIC{QueuePairs: n},
				Guest: guest.Options{CPUs: cpus, MemoryMiB: 512, Script: script}})
			if got := b.WaitLine(`MQ combined=(\d*)\n`, 0)[1]; got != strconv.Itoa(n) {
				t.Errorf("guest eth0 has %s combined channels, want %d", got, n)
			}
			b.GuestPinged(0)
			b.RunFlows(flows...)
			for i, s := range b.Stats(n) {
				t.Logf("queue %d: rx_packets=%d tx_packets=%d", i, s["rx_packets"], s["tx_packets"])
				if s["rx_packets"] == 0 || s["tx_packets"] == 0 {
					t.Errorf("queue pair %d carried no traffic one way: %v", i, s)
				}
			}
			b.WaitExit()
		})
	}
}
