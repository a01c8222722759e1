package netdev

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vhostd/vhostd/internal/pcapng"
	"golang.org/x/sys/unix"
)

// CaptureConfig starts a capture (Device.StartCapture).
type CaptureConfig struct {
	// Path is the pcapng file: created, or truncated if it is a regular
	// file; a symlink, FIFO or anything else there is refused.
	Path string
	// Snaplen is the most bytes kept of a frame (0: DefaultSnaplen).
	Snaplen int
	// Extra, when set, is opened with the capture and closed with it:
	// frames seen outside the data path (the XDP guard's drops).
	Extra CaptureSource
}

// ExtraFrame is a frame captured outside the data path.
type ExtraFrame struct {
	When    time.Time
	Data    []byte
	OrigLen int
	Comment string
}

// CaptureSource feeds frames to a capture from outside the data path.
type CaptureSource interface {
	// Open turns the source on: frames come on the channel, which Close
	// closes.
	Open() (<-chan ExtraFrame, error)
	Close() error
}

// Capture errors.
var (
	ErrCaptureRunning = errors.New("a capture is already running")
	ErrNoCapture      = errors.New("no capture is running")
)

// MaxSnaplen is the largest snap length accepted: the largest GSO frame.
const MaxSnaplen = maxGSOFrame

// capture is a running capture: the pairs' rings and the writer.
type capture struct {
	path  string
	f     *os.File
	w     *pcapng.Writer
	rings []*capRing
	extra CaptureSource
	stop  chan struct{}
	done  chan error
}

// StartCapture starts writing every pair's guest-side frames, and those
// dropped, with the reason, to cfg.Path.
func (d *Device) StartCapture(cfg CaptureConfig) error {
	if cfg.Snaplen == 0 {
		cfg.Snaplen = DefaultSnaplen
	}
	if cfg.Snaplen < 64 || cfg.Snaplen > MaxSnaplen {
		return fmt.Errorf("pcap snaplen: %d, want 64..%d", cfg.Snaplen, MaxSnaplen)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.capture != nil {
		return fmt.Errorf("pcap start %s: %w (to %s)", cfg.Path, ErrCaptureRunning, d.capture.path)
	}
	f, err := openCaptureFile(cfg.Path)
	if err != nil {
		return err
	}
	c := &capture{path: cfg.Path, f: f, extra: cfg.Extra, stop: make(chan struct{}), done: make(chan error, 1)}
	if c.w, err = pcapng.New(f, len(d.pairs), cfg.Snaplen, d.tap.Name()); err != nil {
		f.Close()
		return fmt.Errorf("pcap %s: %w", cfg.Path, err)
	}
	var extra <-chan ExtraFrame
	if cfg.Extra != nil {
		if extra, err = cfg.Extra.Open(); err != nil {
			f.Close()
			return fmt.Errorf("pcap %s: %w", cfg.Path, err)
		}
	}
	for range d.pairs {
		c.rings = append(c.rings, newCapRing(cfg.Snaplen))
	}
	for i, p := range d.pairs {
		p.tx.capture.ring.Store(c.rings[i])
		p.rx.capture.ring.Store(c.rings[i])
	}
	d.capture = c
	go c.run(extra)
	d.log.Info("capture started", "path", cfg.Path, "snaplen", cfg.Snaplen)
	return nil
}

// openCaptureFile creates path, or truncates it if it is a regular file.
func openCaptureFile(path string) (*os.File, error) {
	if path == "" {
		return nil, errors.New("pcap: no file named")
	}
	// O_NONBLOCK: a FIFO must not block the open; it is refused below.
	// O_TRUNC, not ftruncate: the sandbox's seccomp filter allows openat.
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o640)
	if err != nil {
		if err == unix.ELOOP {
			return nil, fmt.Errorf("pcap %s: a symbolic link, refused", path)
		}
		return nil, fmt.Errorf("pcap %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("pcap %s: not a regular file, refused", path)
	}
	return f, nil
}

// StopCapture stops the running capture and returns once its file is
// complete and closed.
func (d *Device) StopCapture() error {
	d.mu.Lock()
	c := d.capture
	if c == nil {
		d.mu.Unlock()
		return fmt.Errorf("pcap stop: %w", ErrNoCapture)
	}
	for _, p := range d.pairs {
		p.tx.capture.ring.Store(nil)
		p.rx.capture.ring.Store(nil)
		// A worker that loaded the ring before the store finishes its
		// batch before the pause returns: no producer is left after.
		p.paused(func() {})
	}
	d.capture = nil
	d.mu.Unlock()
	close(c.stop)
	err := <-c.done
	d.log.Info("capture stopped", "path", c.path, "error", err)
	return err
}

// Capturing returns the file of the running capture, "" if none.
func (d *Device) Capturing() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.capture == nil {
		return ""
	}
	return d.capture.path
}

// run is the writer: it takes frames from the rings and the extra source
// until stopped, then writes what is left and closes the file.
func (c *capture) run(extra <-chan ExtraFrame) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var err error
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	for stopped := false; !stopped; {
		select {
		case <-c.stop:
			stopped = true
		case f, ok := <-extra:
			if !ok {
				extra = nil
				continue
			}
			keep(c.w.Write(pcapng.Frame{When: f.When, Iface: c.w.XDPIface(), Data: f.Data, OrigLen: f.OrigLen, Comments: []string{f.Comment}}))
		case <-tick.C:
		}
		keep(c.drain())
	}
	if c.extra != nil {
		keep(c.extra.Close())
		for f := range extra {
			keep(c.w.Write(pcapng.Frame{When: f.When, Iface: c.w.XDPIface(), Data: f.Data, OrigLen: f.OrigLen, Comments: []string{f.Comment}}))
		}
	}
	keep(c.w.Flush())
	keep(c.f.Close())
	c.done <- err
}

// drain writes every frame the rings hold.
func (c *capture) drain() error {
	var err error
	for pair, r := range c.rings {
		head, tail := r.head.Load(), r.tail.Load()
		for ; head != tail; head++ {
			if e := c.w.Write(slotFrame(pair, &r.slots[head%capSlots])); err == nil {
				err = e
			}
		}
		r.head.Store(head)
	}
	return err
}

// slotFrame turns a captured slot into a pcapng frame with its comments:
// the header decoded, and the drop's reason.
func slotFrame(pair int, s *capSlot) pcapng.Frame {
	f := pcapng.Frame{
		When: time.Unix(0, s.when), Iface: 2*pair + int(s.dir),
		Data: s.data[:s.n], OrigLen: int(s.orig),
	}
	if s.hasHdr {
		h := pcapng.DecodeHdr(s.hdr[:], s.dir == pcapng.RX)
		if s.dir == pcapng.RX && s.reason == capOK && s.hdr[10] == 0 && s.hdr[11] == 0 {
			h += " (several buffers, MRG_RXBUF)"
		}
		f.Comments = append(f.Comments, h)
	}
	if s.reason != capOK {
		f.Comments = append(f.Comments, "dropped: "+counterNames[s.reason]+causeText[s.cause])
	}
	return f
}
