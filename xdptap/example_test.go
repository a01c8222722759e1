package xdptap_test

import (
	"fmt"
	"log"
	"net"

	"github.com/vhostd/vhostd/xdptap"
)

// How cmd/vhostd wires its flags: --xdp guard, the guard's allowed addresses, an ACL file
// re-read on SIGHUP, and the counters next to netdev's.
func Example() {
	mode, err := xdptap.ParseMode("guard") // --xdp
	if err != nil {
		log.Fatal(err)
	}
	v4, v6, err := xdptap.ParseAddrList("10.0.0.2,2001:db8::2") // --xdp-guard-addrs
	if err != nil {
		log.Fatal(err)
	}
	mac, _ := net.ParseMAC("52:54:00:12:34:56") // the guest's MAC
	rules, err := xdptap.ParseRulesFile("/etc/vhostd/acl.rules")
	if err != nil {
		log.Fatal(err)
	}
	ifindex := 7 // tap.Device.Ifindex()
	a, err := xdptap.Attach(ifindex, xdptap.Config{
		Mode: mode,
		// Macvtap: dev.Kind() == tap.KindMacvtap,
		Guard: xdptap.GuardConfig{MAC: mac, IPv4: v4, IPv6: append(v6, xdptap.EUI64LinkLocal(mac)), AllowDHCP: true},
		ACL:   rules,
	})
	if err != nil {
		log.Fatal(err) // plain words: the verifier's message, or the mode that failed
	}
	defer a.Close()
	log.Printf("XDP: %v", a) // "xdp_guard native on ifindex 7"

	// On SIGHUP:
	if n, err := a.LoadRules("/etc/vhostd/acl.rules"); err != nil {
		log.Printf("ACL not changed: %v", err)
	} else {
		log.Printf("ACL: %d rules", n)
	}

	counters, err := a.Counters()
	if err != nil {
		log.Print(err)
	}
	fmt.Println(counters["xdp_guard_drop_src_ipv4"])
}
