package guest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCpioWriter checks the archive with the system's cpio, which must list every entry.
func TestCpioWriter(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	w.dir("bin", 0o755)
	w.dir("bin", 0o755) // written once
	w.file("bin/a", []byte("hello"), 0o755)
	w.file("odd", []byte("x"), 0o644)
	w.symlink("bin/b", "a")
	w.chardev("dev/console", 0o600, 5, 1)
	w.trailer()
	if w.err != nil {
		t.Fatal(w.err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
	cmd := exec.Command(cpio, "-t", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	got := strings.Fields(string(out))
	want := []string{"bin", "bin/a", "odd", "bin/b", "dev/console"}
	if !slices.Equal(got, want) {
		t.Errorf("cpio -t lists %q, want %q", got, want)
	}
}

// TestInitramfsBuild builds a real initramfs when busybox and the module cache are there and
// extracts it with cpio.
func TestInitramfsBuild(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox")
	}
	if err := CheckCache(); err != nil {
		t.Skip(err)
	}
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "i.cpio")
	c := Initramfs{Script: "echo hi\n", Net: true, GuestIP: "10.1.2.2/24", Ethtool: true, Files: map[string][]byte{"/etc/x": []byte("y")}}
	if err := c.Build(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(cpio, "-t", "--quiet")
	cmd.Stdin = f
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	names := strings.Fields(string(out))
	need := []string{"init", "test.sh", "bin/busybox", "etc/vhostd-guest.conf", "etc/x", "dev/console"}
	for _, m := range Modules {
		need = append(need, "lib/modules/"+m+".ko")
	}
	if _, err := exec.LookPath("ethtool"); err == nil {
		need = append(need, "sbin/ethtool")
	}
	for _, n := range need {
		if !slices.Contains(names, n) {
			t.Errorf("initramfs lacks %s", n)
		}
	}
	conf := c.conf()
	for _, s := range []string{"NET=1\n", "GUEST_IP='10.1.2.2/24'\n", "MODULES='virtio_ring virtio "} {
		if !strings.Contains(conf, s) {
			t.Errorf("conf %q lacks %q", conf, s)
		}
	}
}

func TestQEMUArgs(t *testing.T) {
	q10 := QEMU{Path: "qemu", Major: 10}
	q72 := QEMU{Path: "qemu", Major: 7, Minor: 2}
	for _, tc := range []struct {
		name      string
		o         Options
		want, not []string
	}{
		{"no nic", Options{QEMU: q10, CPUs: 1, MemoryMiB: 256}, []string{"-m 256 ", "size=256M,share=on", "-accel tcg,thread=multi", " -no-reboot "}, []string{"-netdev", "-device"}},
		{"reboot", Options{QEMU: q10, Reboot: true}, nil, []string{"-no-reboot"}},
		{"client", Options{QEMU: q10, CPUs: 2, MemoryMiB: 512, NIC: &NIC{SocketPath: "/s", MAC: "52:54:00:01:02:03"}},
			[]string{"-smp 2 ", "-chardev socket,id=c0,path=/s -netdev vhost-user,id=n0,chardev=c0,queues=1 ", "virtio-net-pci,netdev=n0,mac=52:54:00:01:02:03,romfile="},
			[]string{"server=on", "vectors", "mq=on"}},
		{"mq mtu reconnect", Options{QEMU: q10, NIC: &NIC{SocketPath: "/s", QueuePairs: 2, MTU: 9000, ReconnectMS: 1000}},
			[]string{"path=/s,reconnect-ms=1000 ", "queues=2 ", ",mq=on,vectors=6,host_mtu=9000"}, nil},
		{"server", Options{QEMU: q10, NIC: &NIC{SocketPath: "/s", Server: true}}, []string{"path=/s,server=on,wait=off "}, []string{"reconnect"}},
		{"server wait", Options{QEMU: q10, NIC: &NIC{SocketPath: "/s", Server: true, ServerWait: true}}, []string{"path=/s,server=on,wait=on "}, nil},
		{"qemu 7.2", Options{QEMU: q72, NIC: &NIC{SocketPath: "/s"}}, []string{",romfile=,vectors=0"}, nil},
		{"ring sizes", Options{QEMU: q10, NIC: &NIC{SocketPath: "/s", RxQueueSize: 1024, TxQueueSize: 1024}}, []string{",romfile=,rx_queue_size=1024,tx_queue_size=1024 "}, nil},
		{"qmp, hot-add slots", Options{QEMU: q10, MemoryMiB: 256, MemSlots: 2, QMP: "/d/qmp.sock"}, []string{"-m 256M,slots=2,maxmem=2048M ", "-qmp unix:/d/qmp.sock,server=on,wait=off ", "size=256M,share=on"}, nil},
		{"kvm, extras", Options{QEMU: q10, KVM: true, KernelArgs: []string{"a=b"}, QEMUArgs: []string{"-x"}}, []string{"-accel kvm ", "panic=-1 quiet no_timer_check a=b -x"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.CPUs == 0 {
				o.CPUs = 1
			}
			if o.MemoryMiB == 0 {
				o.MemoryMiB = 256
			}
			g := &Guest{Opts: o}
			if o.NIC != nil {
				g.MAC = o.NIC.MAC
			}
			line := strings.Join(g.qemuArgs("initrd"), " ") + " "
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("command line lacks %q:\n%s", w, line)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(line, n) {
					t.Errorf("command line has %q:\n%s", n, line)
				}
			}
		})
	}
}

func TestParents(t *testing.T) {
	got := parents("/lib/x86_64-linux-gnu/libc.so.6")
	if want := []string{"lib", "lib/x86_64-linux-gnu"}; !slices.Equal(got, want) {
		t.Errorf("parents = %q, want %q", got, want)
	}
}

func TestRandomSubnet(t *testing.T) {
	s, err := RandomSubnet()
	if err != nil {
		t.Fatal(err)
	}
	if s.A < 100 || s.A >= 228 || s.HostCIDR() != s.IP(1)+"/24" {
		t.Errorf("subnet %v", s)
	}
}
